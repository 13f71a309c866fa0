-- \Recent marks (migration 0005) in a table of their own. A claim locks the mark while it moves;
-- in the mailbox row it waited for every STORE, EXPUNGE and APPEND of the mailbox to commit (each
-- holds that row to the end of its transaction), and they for it. Each mailbox has its row,
-- made with the mailbox.
CREATE TABLE recent_marks (
    mailbox_id BIGINT PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    recent_uid BIGINT NOT NULL DEFAULT 0
);
INSERT INTO recent_marks (mailbox_id, recent_uid) SELECT id, recent_uid FROM mailboxes;
ALTER TABLE mailboxes DROP COLUMN recent_uid;
