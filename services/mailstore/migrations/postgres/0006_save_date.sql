-- SAVEDATE (RFC 8514): when a message was saved into its mailbox — delivered, appended, copied
-- or moved there — in Unix seconds. Messages stored before this migration have none (NIL).
ALTER TABLE messages ADD COLUMN saved_at BIGINT;
