-- The PostgreSQL floor (bench/imap.sh, step `cost`): the least any design that keeps each
-- message's IMAP state in a PostgreSQL row must do for a command, without kubemail: a table of
-- mailboxes (the MODSEQ and UID counters every writer takes), one of messages (their flags and
-- MODSEQ) and one of bodies, each with no index but its key. No CONDSTORE index, no shared bodies,
-- no compression, no quota, no counters, no expunge records. Run as
-- `psql -v mailboxes=N -v messages=M`: mailboxes 1..N, each of M messages of 4,096 octets (the
-- corpus's median is 4.4 kB).
SET client_min_messages = warning;
DROP TABLE IF EXISTS bodies, messages, mailboxes;
CREATE TABLE mailboxes (
    id             BIGINT PRIMARY KEY,
    uid_next       BIGINT NOT NULL,
    highest_modseq BIGINT NOT NULL
);
CREATE TABLE messages (
    mailbox_id BIGINT NOT NULL,
    uid        BIGINT NOT NULL,
    modseq     BIGINT NOT NULL,
    flags      BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
-- Apart from the flags, so a flag change does not copy the body.
CREATE TABLE bodies (
    mailbox_id BIGINT NOT NULL,
    uid        BIGINT NOT NULL,
    body       BYTEA NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
-- In the row, uncompressed: no TOAST and no compression to pay for.
ALTER TABLE bodies ALTER COLUMN body SET STORAGE PLAIN;
INSERT INTO mailboxes SELECT id, :messages + 1, :messages + 1 FROM generate_series(1, :mailboxes) id;
INSERT INTO messages SELECT id, uid, uid, 0 FROM generate_series(1, :mailboxes) id, generate_series(1, :messages) uid;
INSERT INTO bodies SELECT mailbox_id, uid, convert_to(repeat('x', 4096), 'UTF8') FROM messages;
VACUUM ANALYZE;
