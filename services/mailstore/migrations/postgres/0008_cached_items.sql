-- What FETCH asks most of a body, derived once when it is stored (kubemail-message's `cached`):
-- the header block on its own, so header fields are read without the body, and ENVELOPE, BODY,
-- BODYSTRUCTURE and PREVIEW as IMAP shows them (a protobuf CachedItems). Bodies stored before
-- this migration have neither; the mailstore derives them the first time they are asked for.
-- lz4, as for bodies: most FETCHes read them, and pglz's decompression showed in their profile.
ALTER TABLE blobs ADD COLUMN header BYTEA COMPRESSION lz4;
ALTER TABLE blobs ADD COLUMN cached BYTEA COMPRESSION lz4;
