-- Trash, block garbage collection and the journal kinds they add. SQLite flavour;
-- migrations/postgres/0002_trash_gc.sql is the same change.

-- One row per delete operation: the entry the user deleted (a file, or a folder with
-- everything that was live below it). The entries keep their rows, versions and block
-- references, marked deleted and pointing here through entries.trash_id, until the item
-- is restored (the rows become live again) or purged (they are removed for good).
CREATE TABLE trash (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ns_id      INTEGER NOT NULL REFERENCES namespaces (id),
    -- The deleted entry itself. No foreign key: entries.trash_id points back here, and
    -- a purge removes both in one transaction.
    entry_id   INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('file', 'dir')),
    -- Where it was when it was deleted, and that path's key (for restore by path).
    path       TEXT    NOT NULL,
    path_key   TEXT    NOT NULL,
    -- Bytes of the current versions of the files in the item, and how many files.
    size       INTEGER NOT NULL,
    file_count INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    device_id  INTEGER REFERENCES devices (id)
);
CREATE INDEX trash_ns_path ON trash (ns_id, path_key);
CREATE INDEX trash_deleted_at ON trash (deleted_at);

ALTER TABLE entries ADD COLUMN trash_id INTEGER REFERENCES trash (id);
CREATE INDEX entries_trash ON entries (trash_id) WHERE trash_id IS NOT NULL;

-- Entries deleted before the trash existed each become an item of their own.
INSERT INTO trash (ns_id, entry_id, kind, path, path_key, size, file_count, deleted_at, user_id)
SELECT e.ns_id, e.id, e.kind, e.path, e.path_key,
       CASE WHEN e.kind = 'file' THEN e.size ELSE 0 END,
       CASE WHEN e.kind = 'file' THEN 1 ELSE 0 END,
       e.deleted_at, n.owner_user_id
FROM entries e JOIN namespaces n ON n.id = e.ns_id
WHERE e.deleted_at IS NOT NULL;
UPDATE entries SET trash_id = (SELECT t.id FROM trash t WHERE t.entry_id = entries.id)
WHERE deleted_at IS NOT NULL;

-- Garbage collection claims a block (sets gc_started) in one transaction before it
-- deletes the block's file, and removes the row in a later one. A claimed block counts
-- as absent: nobody may reference it or be told they possess it, and an upload of the
-- same block revives the row and writes the file again.
ALTER TABLE blocks ADD COLUMN gc_started INTEGER;
CREATE INDEX blocks_gc_started ON blocks (gc_started) WHERE gc_started IS NOT NULL;

-- The journal learns 'restore' (an entry came back from the trash) and 'purge' (a
-- trash item was removed for good). SQLite cannot change a CHECK constraint in place,
-- so the table is rebuilt; nothing references it.
CREATE TABLE journal_new (
    ns_id      INTEGER NOT NULL REFERENCES namespaces (id),
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL
        CHECK (kind IN ('commit', 'mkdir', 'move', 'copy', 'delete', 'restore', 'purge')),
    entry_kind TEXT    NOT NULL CHECK (entry_kind IN ('file', 'dir')),
    path       TEXT    NOT NULL,
    from_path  TEXT,
    entry_id   INTEGER NOT NULL,
    version_id INTEGER,
    user_id    INTEGER NOT NULL,
    device_id  INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (ns_id, seq)
) WITHOUT ROWID;
INSERT INTO journal_new
    (ns_id, seq, kind, entry_kind, path, from_path, entry_id, version_id, user_id,
     device_id, created_at)
SELECT ns_id, seq, kind, entry_kind, path, from_path, entry_id, version_id, user_id,
       device_id, created_at
FROM journal;
DROP TABLE journal;
ALTER TABLE journal_new RENAME TO journal;
