-- Trash, block garbage collection and the journal kinds they add. PostgreSQL flavour;
-- migrations/sqlite/0002_trash_gc.sql explains the columns.

CREATE TABLE trash (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ns_id      BIGINT NOT NULL REFERENCES namespaces (id),
    entry_id   BIGINT NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('file', 'dir')),
    path       TEXT   NOT NULL,
    path_key   TEXT   COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    file_count BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    device_id  BIGINT REFERENCES devices (id)
);
CREATE INDEX trash_ns_path ON trash (ns_id, path_key);
CREATE INDEX trash_deleted_at ON trash (deleted_at);

ALTER TABLE entries ADD COLUMN trash_id BIGINT REFERENCES trash (id);
CREATE INDEX entries_trash ON entries (trash_id) WHERE trash_id IS NOT NULL;

INSERT INTO trash (ns_id, entry_id, kind, path, path_key, size, file_count, deleted_at, user_id)
SELECT e.ns_id, e.id, e.kind, e.path, e.path_key,
       CASE WHEN e.kind = 'file' THEN e.size ELSE 0 END,
       CASE WHEN e.kind = 'file' THEN 1 ELSE 0 END,
       e.deleted_at, n.owner_user_id
FROM entries e JOIN namespaces n ON n.id = e.ns_id
WHERE e.deleted_at IS NOT NULL;
UPDATE entries SET trash_id = (SELECT t.id FROM trash t WHERE t.entry_id = entries.id)
WHERE deleted_at IS NOT NULL;

ALTER TABLE blocks ADD COLUMN gc_started BIGINT;
CREATE INDEX blocks_gc_started ON blocks (gc_started) WHERE gc_started IS NOT NULL;

ALTER TABLE journal DROP CONSTRAINT journal_kind_check;
ALTER TABLE journal ADD CONSTRAINT journal_kind_check
    CHECK (kind IN ('commit', 'mkdir', 'move', 'copy', 'delete', 'restore', 'purge'));
