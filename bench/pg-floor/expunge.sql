-- The expunge round (`--kind expunge`), three commands and three durable commits: STORE
-- \Deleted on the lowest message, EXPUNGE of it (found by its UID: no search for \Deleted), and
-- APPEND of a message, so each mailbox keeps its number of messages with contiguous UIDs.
\set mailbox :client_id + 1
WITH mailbox AS (
    UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = :mailbox
    RETURNING uid_next - :messages AS lowest, highest_modseq
)
UPDATE messages SET flags = flags | 8, modseq = mailbox.highest_modseq
FROM mailbox WHERE mailbox_id = :mailbox AND uid = lowest;
WITH mailbox AS (
    UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = :mailbox RETURNING uid_next - :messages AS lowest
),
removed AS (
    DELETE FROM messages USING mailbox WHERE mailbox_id = :mailbox AND uid = lowest AND (flags & 8) <> 0
    RETURNING uid
)
DELETE FROM bodies USING removed WHERE mailbox_id = :mailbox AND bodies.uid = removed.uid;
WITH mailbox AS (
    UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1 WHERE id = :mailbox
    RETURNING uid_next - 1 AS uid, highest_modseq
),
message AS (INSERT INTO messages SELECT :mailbox, uid, highest_modseq, 0 FROM mailbox RETURNING uid)
INSERT INTO bodies SELECT :mailbox, uid, convert_to(repeat('x', 4096), 'UTF8') FROM message;
