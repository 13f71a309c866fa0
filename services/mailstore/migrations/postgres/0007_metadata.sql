-- METADATA (RFC 5464): annotations of a mailbox, or of the account's server view (mailbox_id
-- 0). Entry names are kept in lower case. A mailbox's entries go with it (DELETE removes them).
CREATE TABLE metadata (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id BIGINT NOT NULL,
    entry      TEXT NOT NULL,
    value      BYTEA NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, entry)
);
