-- Each mailbox keeps its message count, unseen and \Deleted counts and total size, so STATUS and
-- LIST read one row instead of counting every message; triggers keep them.
ALTER TABLE mailboxes ADD COLUMN messages BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN unseen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN size BIGINT NOT NULL DEFAULT 0;

UPDATE mailboxes SET
    messages = (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = mailboxes.id),
    unseen = (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = mailboxes.id AND (m.flags & 1) = 0),
    deleted = (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = mailboxes.id AND (m.flags & 8) <> 0),
    size = (SELECT COALESCE(SUM(m.size), 0) FROM messages m WHERE m.mailbox_id = mailboxes.id);

CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages BEGIN
    UPDATE mailboxes SET messages = messages + 1, unseen = unseen + ((NEW.flags & 1) = 0),
        deleted = deleted + ((NEW.flags & 8) <> 0), size = size + NEW.size
    WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages BEGIN
    UPDATE mailboxes SET messages = messages - 1, unseen = unseen - ((OLD.flags & 1) = 0),
        deleted = deleted - ((OLD.flags & 8) <> 0), size = size - OLD.size
    WHERE id = OLD.mailbox_id;
END;

CREATE TRIGGER messages_counted_update AFTER UPDATE OF mailbox_id, flags, size ON messages BEGIN
    UPDATE mailboxes SET messages = messages - 1, unseen = unseen - ((OLD.flags & 1) = 0),
        deleted = deleted - ((OLD.flags & 8) <> 0), size = size - OLD.size
    WHERE id = OLD.mailbox_id;
    UPDATE mailboxes SET messages = messages + 1, unseen = unseen + ((NEW.flags & 1) = 0),
        deleted = deleted + ((NEW.flags & 8) <> 0), size = size + NEW.size
    WHERE id = NEW.mailbox_id;
END;

-- EXPUNGE finds the \Deleted messages of a mailbox without reading the others.
CREATE INDEX messages_deleted ON messages (mailbox_id, uid) WHERE (flags & 8) <> 0;
