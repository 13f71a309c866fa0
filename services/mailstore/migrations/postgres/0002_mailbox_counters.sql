-- Each mailbox keeps its message count, unseen and \Deleted counts and total size, so STATUS and
-- LIST read one row instead of counting every message. Statement-level triggers keep them: one
-- update per statement, whatever number of messages it changes.
ALTER TABLE mailboxes
    ADD COLUMN messages BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN unseen   BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN deleted  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN size     BIGINT NOT NULL DEFAULT 0;

UPDATE mailboxes b
SET messages = c.messages, unseen = c.unseen, deleted = c.deleted, size = c.size
FROM (
    SELECT mailbox_id,
           COUNT(*) AS messages,
           SUM(CASE WHEN (flags & 1) = 0 THEN 1 ELSE 0 END) AS unseen,
           SUM(CASE WHEN (flags & 8) <> 0 THEN 1 ELSE 0 END) AS deleted,
           SUM(size) AS size
    FROM messages GROUP BY mailbox_id
) c
WHERE c.mailbox_id = b.id;

CREATE FUNCTION messages_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailboxes b
    SET messages = b.messages + d.messages, unseen = b.unseen + d.unseen,
        deleted = b.deleted + d.deleted, size = b.size + d.size
    FROM (
        SELECT mailbox_id, COUNT(*) AS messages,
               SUM(CASE WHEN (flags & 1) = 0 THEN 1 ELSE 0 END) AS unseen,
               SUM(CASE WHEN (flags & 8) <> 0 THEN 1 ELSE 0 END) AS deleted,
               SUM(size) AS size
        FROM added GROUP BY mailbox_id
    ) d
    WHERE b.id = d.mailbox_id;
    RETURN NULL;
END $$;

CREATE FUNCTION messages_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailboxes b
    SET messages = b.messages - d.messages, unseen = b.unseen - d.unseen,
        deleted = b.deleted - d.deleted, size = b.size - d.size
    FROM (
        SELECT mailbox_id, COUNT(*) AS messages,
               SUM(CASE WHEN (flags & 1) = 0 THEN 1 ELSE 0 END) AS unseen,
               SUM(CASE WHEN (flags & 8) <> 0 THEN 1 ELSE 0 END) AS deleted,
               SUM(size) AS size
        FROM removed GROUP BY mailbox_id
    ) d
    WHERE b.id = d.mailbox_id;
    RETURN NULL;
END $$;

CREATE FUNCTION messages_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailboxes b
    SET messages = b.messages + d.messages, unseen = b.unseen + d.unseen,
        deleted = b.deleted + d.deleted, size = b.size + d.size
    FROM (
        SELECT mailbox_id, SUM(sign) AS messages,
               SUM(sign * CASE WHEN (flags & 1) = 0 THEN 1 ELSE 0 END) AS unseen,
               SUM(sign * CASE WHEN (flags & 8) <> 0 THEN 1 ELSE 0 END) AS deleted,
               SUM(sign * size) AS size
        FROM (
            SELECT mailbox_id, flags, size, 1 AS sign FROM added
            UNION ALL
            SELECT mailbox_id, flags, size, -1 AS sign FROM removed
        ) changes
        GROUP BY mailbox_id
    ) d
    WHERE b.id = d.mailbox_id AND (d.messages <> 0 OR d.unseen <> 0 OR d.deleted <> 0 OR d.size <> 0);
    RETURN NULL;
END $$;

CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION messages_inserted();
CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION messages_deleted();
CREATE TRIGGER messages_counted_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION messages_updated();

-- EXPUNGE finds the \Deleted messages of a mailbox without reading the others.
CREATE INDEX messages_deleted ON messages (mailbox_id, uid) WHERE (flags & 8) <> 0;
