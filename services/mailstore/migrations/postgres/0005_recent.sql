-- \Recent (RFC 3501 §2.3.2): the highest UID a session has taken as recent. A message above it
-- is recent to the next session that selects the mailbox read-write, and to that one only.
-- Messages stored before this migration count as seen by a session already.
ALTER TABLE mailboxes ADD COLUMN recent_uid BIGINT NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = uid_next - 1;
