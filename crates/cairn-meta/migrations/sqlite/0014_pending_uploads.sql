-- Uploads announced for streaming sync (issue 18). SQLite flavour;
-- migrations/postgres/0014_pending_uploads.sql is the same change.

-- A file a device is uploading and will commit at `path` (inside namespace `ns_id`):
-- the devices and members that read the namespace fetch its blocks as they are
-- stored, before the commit. `blocks` is the block list, 36 bytes a block (the hash,
-- then the size as 4 little-endian bytes). Deleted at the commit, when the uploader
-- gives up, or once `expires_at` (Unix ms) has passed; an expired row is as good as
-- gone. `device_id` is the uploading device, which is not told of its own upload.
-- Holds no block against garbage collection: until the commit, the uploader's
-- possession keeps them, as for any upload.
CREATE TABLE pending_uploads (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id    INTEGER REFERENCES devices (id) ON DELETE SET NULL,
    ns_id        INTEGER NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    path         TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    content_hash BLOB    NOT NULL,
    blocks       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX pending_uploads_ns ON pending_uploads (ns_id, expires_at);
CREATE INDEX pending_uploads_user ON pending_uploads (user_id);
