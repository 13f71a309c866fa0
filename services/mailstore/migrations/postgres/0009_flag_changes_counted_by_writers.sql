-- Flag changes are counted by the statements that make them, as inserts are (migration 0003):
-- a STORE knows each message's flags before and after, and the statement-level trigger, with its
-- transition tables and aggregate, cost a STORE about as much as its own update. No other
-- statement updates messages. Deletes keep their trigger.
DROP TRIGGER messages_counted_update ON messages;
DROP FUNCTION messages_updated();
