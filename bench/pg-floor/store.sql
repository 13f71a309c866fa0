-- STORE on up to 50 messages (`--kind store`): one flag set or cleared, so about half the
-- messages change (kubemail's STORE changes more: three flags of seven, replaced or added), with
-- the mailbox's next MODSEQ, in one statement and one durable commit.
\set mailbox :client_id + 1
\set count random(1, 50)
\set offset random(0, :messages - :count)
\set set random(0, 1)
WITH mailbox AS (
    UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = :mailbox
    RETURNING uid_next - :messages + :offset AS first, highest_modseq
)
UPDATE messages SET flags = CASE WHEN :set = 1 THEN flags | 2 ELSE flags & ~2 END, modseq = mailbox.highest_modseq
FROM mailbox
WHERE mailbox_id = :mailbox AND uid BETWEEN first AND first + :count - 1 AND (flags & 2) <> :set * 2;
