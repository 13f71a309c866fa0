-- New messages are counted by the statements that insert them, as on PostgreSQL, where the
-- insert trigger was the costliest part of a delivery. Deletes and updates keep their triggers.
DROP TRIGGER messages_counted_insert;
