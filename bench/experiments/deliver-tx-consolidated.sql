-- pgbench script: the same delivery as deliver-tx-current.sql in one data-modifying statement
-- (BEGIN, statement, COMMIT): the account row is locked by the UPDATE that counts the usage (the
-- quota check is its WHERE clause), the mailbox row by the UPDATE that takes the UID and MODSEQ,
-- and the delivery record's ON CONFLICT DO NOTHING tells a duplicate (no row returned: roll back
-- and answer the first delivery).
\set a random(1, 50)
\set b random(0, 999)
\set r random(1, 9000000000000000000)
BEGIN;
WITH target AS (
  SELECT id FROM accounts WHERE address = 'u' || :a || '@bench.test'
  UNION ALL SELECT account_id FROM aliases WHERE address = 'u' || :a || '@bench.test' LIMIT 1),
acct AS (
  UPDATE accounts SET used_storage = used_storage + 4096, used_messages = used_messages + 1
  WHERE id = (SELECT id FROM target) AND suspended = 0
    AND (quota_storage = 0 OR used_storage + 4096 <= quota_storage)
    AND (quota_messages = 0 OR used_messages + 1 <= quota_messages)
  RETURNING id),
mbox AS (
  UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1
  WHERE account_id = (SELECT id FROM acct) AND name = 'INBOX'
  RETURNING id, account_id, uidvalidity, uid_next - 1 AS uid, highest_modseq),
blob AS (
  INSERT INTO blobs (hash, data) SELECT md5(:client_id || '-' || :r || 'c'), convert_to(data || :r, 'UTF8') FROM bodies WHERE id = :b
  ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash RETURNING hash),
msg AS (
  INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash)
  SELECT mbox.id, mbox.uid, mbox.account_id, mbox.highest_modseq, 0, '', 1790000000, 4096, 500, blob.hash FROM mbox, blob
  RETURNING uid)
INSERT INTO deliveries (queue_message_id, recipient, account_id, mailbox_id, uidvalidity, uid, delivered_at)
SELECT 'q' || :client_id || '-' || :r || 'c', 'u' || :a || '@bench.test', mbox.account_id, mbox.id, mbox.uidvalidity, mbox.uid, 1790000000 FROM mbox
ON CONFLICT DO NOTHING RETURNING uid;
COMMIT;
