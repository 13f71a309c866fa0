-- FETCH's metadata of up to 100 messages (50 on average), as `imap-cost.py --kind fetch` asks.
\set mailbox :client_id + 1
\set count random(1, 100)
\set offset random(0, :messages - :count)
SELECT uid, modseq, flags FROM messages, (SELECT uid_next - :messages + :offset AS first FROM mailboxes WHERE id = :mailbox) b
WHERE mailbox_id = :mailbox AND uid BETWEEN first AND first + :count - 1;
