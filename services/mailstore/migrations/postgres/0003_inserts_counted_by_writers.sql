-- New messages are counted by the statements that insert them rather than by a trigger: each
-- insert already knows the flags and size it adds, and on the hottest statements (a delivery,
-- an APPEND) the statement-level trigger, with its transition table and aggregate, took a
-- quarter of the database's time. Deletes and updates keep their triggers.
DROP TRIGGER messages_counted_insert ON messages;
DROP FUNCTION messages_inserted();
