-- SELECT_WITH_SIZES of services/mailstore/src/store/mailboxes.rs (POP3's maildrop), for pgbench.
SELECT b.id, b.name, b.uidvalidity, b.uid_next, b.highest_modseq, b.special_use, b.subscribed,
       m.messages, m.size, m.keyword_uids, m.keywords
FROM mailboxes b
CROSS JOIN LATERAL (
    SELECT coalesce(string_agg(int8send(uid) || int4send(flags::int4) || int8send(modseq) || int8send(size), ''), '') AS messages,
           coalesce(sum(size), 0)::bigint AS size,
           coalesce(array_agg(uid) FILTER (WHERE keywords <> ''), '{}') AS keyword_uids,
           coalesce(array_agg(keywords) FILTER (WHERE keywords <> ''), '{}') AS keywords
    FROM messages WHERE mailbox_id = b.id
) m
WHERE b.account_id = 1 AND b.name = 'INBOX';
