-- Subscriptions are names rather than a property of mailboxes (RFC 9051 §6.3.7): a name stays
-- subscribed when its mailbox is deleted, a name no mailbox has yet can be subscribed, and
-- CREATE does not subscribe. What was subscribed before stays so.
CREATE TABLE subscriptions (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

INSERT INTO subscriptions (account_id, name)
SELECT account_id, name FROM mailboxes WHERE subscribed = 1;

ALTER TABLE mailboxes DROP COLUMN subscribed;
