-- pgbench script: the statements `Store::deliver` runs today for one 4 KiB message on
-- PostgreSQL (services/mailstore/src/store/messages/deliver.rs), one round trip each: a duplicate check
-- outside the transaction, BEGIN, recipient lookup, account lock, duplicate check again, mailbox
-- lock, two UPDATEs of the same mailbox row, blob, message, usage, delivery record, COMMIT.
-- Bodies come from a `bodies` table (see README.md) so both scripts pay the same for them.
\set a random(1, 50)
\set b random(0, 999)
\set r random(1, 9000000000000000000)
SELECT account_id FROM deliveries WHERE queue_message_id = 'q' || :client_id || '-' || :r AND recipient = 'u' || :a || '@bench.test';
BEGIN;
SELECT id AS acc_id FROM accounts WHERE address = 'u' || :a || '@bench.test' UNION ALL SELECT a.id FROM aliases l JOIN accounts a ON a.id = l.account_id WHERE l.address = 'u' || :a || '@bench.test' \gset
SELECT suspended, quota_storage, quota_messages, used_storage, used_messages FROM accounts WHERE id = :acc_id FOR UPDATE;
SELECT account_id FROM deliveries WHERE queue_message_id = 'q' || :client_id || '-' || :r AND recipient = 'u' || :a || '@bench.test';
SELECT id AS mb_id, uid_next AS mb_uid, highest_modseq AS mb_modseq, uidvalidity AS mb_uv FROM mailboxes WHERE account_id = :acc_id AND name = 'INBOX' FOR UPDATE \gset
UPDATE mailboxes SET highest_modseq = :mb_modseq + 1 WHERE id = :mb_id;
UPDATE mailboxes SET uid_next = :mb_uid + 1 WHERE id = :mb_id;
INSERT INTO blobs (hash, data) SELECT md5(:client_id || '-' || :r), convert_to(data || :r, 'UTF8') FROM bodies WHERE id = :b ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash;
INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash) VALUES (:mb_id, :mb_uid, :acc_id, :mb_modseq + 1, 0, '', 1790000000, 4096, 500, md5(:client_id || '-' || :r));
UPDATE accounts SET used_storage = used_storage + 4096, used_messages = used_messages + 1 WHERE id = :acc_id;
INSERT INTO deliveries (queue_message_id, recipient, account_id, mailbox_id, uidvalidity, uid, delivered_at) VALUES ('q' || :client_id || '-' || :r, 'u' || :a || '@bench.test', :acc_id, :mb_id, :mb_uv, :mb_uid, 1790000000);
COMMIT;
