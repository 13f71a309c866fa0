-- Each mailbox's message count, unseen and \Deleted counts and total size, so STATUS and LIST
-- read one row instead of counting every message. Statement-level triggers keep them: one
-- update per statement, whatever number of messages it changes.
--
-- A table of their own rather than columns of `mailboxes`: a change to messages already updated
-- the mailbox row (its MODSEQ), and updating that row again in the same transaction would re-check
-- its foreign key to `accounts`, locking the account row behind the mailbox row — the reverse of
-- the account-then-mailbox order the writers lock in.
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

CREATE FUNCTION mailbox_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mailbox_counters (mailbox_id) SELECT id FROM created;
    RETURN NULL;
END $$;

CREATE FUNCTION messages_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_counters c
    SET messages = c.messages + d.messages, unseen = c.unseen + d.unseen,
        deleted = c.deleted + d.deleted, size = c.size + d.size
    FROM (
        SELECT mailbox_id, COUNT(*) AS messages,
               SUM(CASE WHEN (flags & 1) = 0 THEN 1 ELSE 0 END) AS unseen,
               SUM(CASE WHEN (flags & 8) <> 0 THEN 1 ELSE 0 END) AS deleted,
               SUM(size) AS size
        FROM added GROUP BY mailbox_id
    ) d
    WHERE c.mailbox_id = d.mailbox_id;
    RETURN NULL;
END $$;

CREATE FUNCTION messages_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_counters c
    SET messages = c.messages - d.messages, unseen = c.unseen - d.unseen,
        deleted = c.deleted - d.deleted, size = c.size - d.size
    FROM (
        SELECT mailbox_id, COUNT(*) AS messages,
               SUM(CASE WHEN (flags & 1) = 0 THEN 1 ELSE 0 END) AS unseen,
               SUM(CASE WHEN (flags & 8) <> 0 THEN 1 ELSE 0 END) AS deleted,
               SUM(size) AS size
        FROM removed GROUP BY mailbox_id
    ) d
    WHERE c.mailbox_id = d.mailbox_id;
    RETURN NULL;
END $$;

CREATE FUNCTION messages_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_counters c
    SET messages = c.messages + d.messages, unseen = c.unseen + d.unseen,
        deleted = c.deleted + d.deleted, size = c.size + d.size
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
    WHERE c.mailbox_id = d.mailbox_id AND (d.messages <> 0 OR d.unseen <> 0 OR d.deleted <> 0 OR d.size <> 0);
    RETURN NULL;
END $$;

CREATE TRIGGER mailboxes_counted AFTER INSERT ON mailboxes
    REFERENCING NEW TABLE AS created FOR EACH STATEMENT EXECUTE FUNCTION mailbox_created();
CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION messages_inserted();
CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION messages_deleted();
CREATE TRIGGER messages_counted_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION messages_updated();

-- EXPUNGE finds the \Deleted messages of a mailbox without reading the others.
CREATE INDEX messages_deleted ON messages (mailbox_id, uid) WHERE (flags & 8) <> 0;

-- SELECT of a mailbox a frontend holds a snapshot of reads only what was expunged since.
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
