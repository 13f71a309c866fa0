-- The index of message bodies by hash (`messages_blob`) as a hash index rather than a B-tree.
-- It is only ever asked for equality: whether any message still refers to a body, when bodies
-- are collected and when a body row is deleted (the foreign key's check). A flag change cannot
-- update a message in place (MODSEQ is indexed), so each STORE adds an entry for every message
-- it changes to each index of `messages`; in the B-tree that entry holds the 64-character hash,
-- and where many messages share a body (one message to many recipients) it rewrites a long
-- list of duplicates. A hash index entry holds the hash's 4-byte code. Measured with pgbench on
-- the STORE of bench/pg-floor over 10 mailboxes of 1,000: a sixth more STOREs a second when
-- every body is different, half more when each is shared by twenty messages; a tenth less WAL.
DROP INDEX messages_blob;
CREATE INDEX messages_blob ON messages USING hash (blob_hash);
