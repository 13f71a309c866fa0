-- kubemail mailstore schema (PostgreSQL). The SQLite schema in ../sqlite mirrors it.
-- Integers are BIGINT throughout: UIDs and UIDVALIDITY are unsigned 32-bit in IMAP.

CREATE TABLE domains (
    id                     BIGSERIAL PRIMARY KEY,
    name                   TEXT NOT NULL UNIQUE,
    catch_all              TEXT NOT NULL DEFAULT '',
    default_quota_storage  BIGINT NOT NULL DEFAULT 0,
    default_quota_messages BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE accounts (
    id               BIGSERIAL PRIMARY KEY,
    domain_id        BIGINT NOT NULL REFERENCES domains (id),
    address          TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    -- Booleans are 0/1 integers: one representation for both databases.
    suspended        BIGINT NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    quota_storage    BIGINT NOT NULL DEFAULT 0,
    quota_messages   BIGINT NOT NULL DEFAULT 0,
    used_storage     BIGINT NOT NULL DEFAULT 0,
    used_messages    BIGINT NOT NULL DEFAULT 0,
    -- Highest UIDVALIDITY handed out, so a recreated mailbox always gets a new one.
    last_uidvalidity BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX accounts_domain ON accounts (domain_id);

CREATE TABLE aliases (
    address    TEXT PRIMARY KEY,
    domain_id  BIGINT NOT NULL REFERENCES domains (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE
);
CREATE INDEX aliases_account ON aliases (account_id);

CREATE TABLE mailboxes (
    id             BIGSERIAL PRIMARY KEY,
    account_id     BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    uidvalidity    BIGINT NOT NULL,
    uid_next       BIGINT NOT NULL DEFAULT 1,
    highest_modseq BIGINT NOT NULL DEFAULT 1,
    special_use    TEXT NOT NULL DEFAULT '',
    subscribed     BIGINT NOT NULL DEFAULT 1 CHECK (subscribed IN (0, 1)),
    UNIQUE (account_id, name)
);

-- Bodies are stored once per content (SHA-256, hex): a message sent to many local
-- recipients, or copied between folders, takes its space once. lz4 rather than the default
-- pglz: compressing bodies with pglz costs more CPU than the rest of a delivery.
CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    data BYTEA COMPRESSION lz4 NOT NULL
);

CREATE TABLE messages (
    mailbox_id    BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid           BIGINT NOT NULL,
    account_id    BIGINT NOT NULL,
    modseq        BIGINT NOT NULL,
    flags         BIGINT NOT NULL DEFAULT 0,
    keywords      TEXT NOT NULL DEFAULT '',
    internal_date BIGINT NOT NULL,
    size          BIGINT NOT NULL,
    header_size   BIGINT NOT NULL,
    blob_hash     TEXT NOT NULL REFERENCES blobs (hash),
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages (blob_hash);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);

-- Expunged UIDs with the MODSEQ of their removal (CONDSTORE/QRESYNC VANISHED).
CREATE TABLE expunged (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid        BIGINT NOT NULL,
    modseq     BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);

-- What each (queue message, recipient) became, so a redelivered envelope stores nothing new.
-- A delivery claims its row first (a concurrent duplicate waits on the key) and fills in the
-- result before commit. Rows outlive their account on purpose and are pruned by age.
CREATE TABLE deliveries (
    queue_message_id TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    account_id       BIGINT NOT NULL DEFAULT 0,
    mailbox_id       BIGINT NOT NULL DEFAULT 0,
    uidvalidity      BIGINT NOT NULL DEFAULT 0,
    uid              BIGINT NOT NULL DEFAULT 0,
    delivered_at     BIGINT NOT NULL,
    PRIMARY KEY (queue_message_id, recipient)
);
CREATE INDEX deliveries_age ON deliveries (delivered_at);
