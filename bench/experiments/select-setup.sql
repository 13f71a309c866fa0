-- Setup for the select-{imap,pop3}.sql pgbench scripts, in an empty database that already has the
-- mailstore schema (services/mailstore/migrations/postgres/*.sql, in order): one account whose
-- INBOX (mailbox 1) holds 10,000 messages, every tenth with a keyword, all sharing one body.
INSERT INTO domains (name) VALUES ('bench.test');
INSERT INTO accounts (domain_id, address, password_hash) VALUES (1, 'u1@bench.test', 'x');
INSERT INTO mailboxes (account_id, name, uidvalidity, uid_next, highest_modseq) VALUES (1, 'INBOX', 1, 10001, 10001);
INSERT INTO blobs (hash, data) VALUES ('h', 'Subject: x');
INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash)
SELECT 1, g, 1, g, g % 4, CASE WHEN g % 10 = 0 THEN '$label1' ELSE '' END, 0, 3000 + g % 2000, 800, 'h'
FROM generate_series(1, 10000) g;
ANALYZE;
