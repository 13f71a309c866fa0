-- Setup for the deliver-tx-*.sql pgbench scripts, in an empty database that already has the
-- mailstore schema (services/mailstore/migrations/postgres/0001_initial.sql):
-- 50 accounts with an INBOX, and 1000 message texts of about 4 KiB (words in CRLF lines).
CREATE TABLE bodies (id int PRIMARY KEY, data text);
-- PLAIN: stored inline and uncompressed, so reading a body costs both scripts the same little.
ALTER TABLE bodies ALTER COLUMN data SET STORAGE PLAIN;
INSERT INTO bodies
SELECT b, string_agg(line, E'\r\n')
FROM (
  SELECT b, l, string_agg((ARRAY['the', 'queue', 'mailbox', 'delivery', 'report', 'meeting', 'invoice',
           'attached', 'please', 'review', 'schedule', 'project', 'update', 'status', 'thanks', 'regards',
           'cluster', 'storage', 'latency', 'release', 'notes', 'customer', 'weekly', 'budget'])[1 + floor(random() * 24)::int],
         ' ') AS line
  FROM generate_series(0, 999) b, generate_series(1, 50) l, generate_series(1, 11) w
  GROUP BY b, l
) lines
GROUP BY b;
INSERT INTO domains (name) VALUES ('bench.test');
INSERT INTO accounts (domain_id, address, password_hash)
SELECT 1, 'u' || g || '@bench.test', 'x' FROM generate_series(1, 50) g;
INSERT INTO mailboxes (account_id, name, uidvalidity) SELECT id, 'INBOX', 1 FROM accounts;
ANALYZE;
