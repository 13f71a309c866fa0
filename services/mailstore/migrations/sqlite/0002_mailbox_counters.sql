-- Each mailbox's message count, unseen and \Deleted counts and total size, so STATUS and LIST
-- read one row instead of counting every message; triggers keep them. A table of their own, as
-- on PostgreSQL (where the reason is lock order).
CREATE TABLE mailbox_counters (
    mailbox_id BIGINT PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    messages   BIGINT NOT NULL DEFAULT 0,
    unseen     BIGINT NOT NULL DEFAULT 0,
    deleted    BIGINT NOT NULL DEFAULT 0,
    size       BIGINT NOT NULL DEFAULT 0
);

INSERT INTO mailbox_counters (mailbox_id, messages, unseen, deleted, size)
SELECT b.id, COUNT(m.uid),
       COALESCE(SUM(CASE WHEN (m.flags & 1) = 0 THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN (m.flags & 8) <> 0 THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(m.size), 0)
FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id
GROUP BY b.id;

CREATE TRIGGER mailboxes_counted AFTER INSERT ON mailboxes BEGIN
    INSERT INTO mailbox_counters (mailbox_id) VALUES (NEW.id);
END;

CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages BEGIN
    UPDATE mailbox_counters SET messages = messages + 1, unseen = unseen + ((NEW.flags & 1) = 0),
        deleted = deleted + ((NEW.flags & 8) <> 0), size = size + NEW.size
    WHERE mailbox_id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages BEGIN
    UPDATE mailbox_counters SET messages = messages - 1, unseen = unseen - ((OLD.flags & 1) = 0),
        deleted = deleted - ((OLD.flags & 8) <> 0), size = size - OLD.size
    WHERE mailbox_id = OLD.mailbox_id;
END;

CREATE TRIGGER messages_counted_update AFTER UPDATE OF mailbox_id, flags, size ON messages BEGIN
    UPDATE mailbox_counters SET messages = messages - 1, unseen = unseen - ((OLD.flags & 1) = 0),
        deleted = deleted - ((OLD.flags & 8) <> 0), size = size - OLD.size
    WHERE mailbox_id = OLD.mailbox_id;
    UPDATE mailbox_counters SET messages = messages + 1, unseen = unseen + ((NEW.flags & 1) = 0),
        deleted = deleted + ((NEW.flags & 8) <> 0), size = size + NEW.size
    WHERE mailbox_id = NEW.mailbox_id;
END;

-- EXPUNGE finds the \Deleted messages of a mailbox without reading the others.
CREATE INDEX messages_deleted ON messages (mailbox_id, uid) WHERE (flags & 8) <> 0;

-- SELECT of a mailbox a frontend holds a snapshot of reads only what was expunged since.
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
