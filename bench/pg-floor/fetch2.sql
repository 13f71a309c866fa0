-- FETCH of one message's body (`--kind fetch2`).
\set mailbox :client_id + 1
\set offset random(1, :messages)
SELECT body FROM bodies WHERE mailbox_id = :mailbox AND uid = (SELECT uid_next - :offset FROM mailboxes WHERE id = :mailbox);
