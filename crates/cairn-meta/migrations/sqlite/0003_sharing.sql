-- Shared folders and public links. SQLite flavour; migrations/postgres/0003_sharing.sql
-- is the same change.

-- Who may read or change which namespace, and where it appears in their tree.
--
-- A shared folder is a namespace of its own (namespaces.owner_user_id is its owner, and
-- its content counts against that owner's quota). Every account that reads it, the
-- owner included, has one row here: its role, and the path of the folder in its home
-- namespace where the shared folder is mounted. That folder is an ordinary, empty
-- folder entry of the home namespace (so its name is taken there like any other, and
-- creating or removing it is journaled there); everything below it lives in the shared
-- namespace. A home namespace has no rows here: its owner reads it by being its owner.
CREATE TABLE memberships (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ns_id      INTEGER NOT NULL REFERENCES namespaces (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    -- The mount folder in the member's home namespace: its entry, path and path key.
    mount_entry_id INTEGER NOT NULL REFERENCES entries (id),
    mount_path     TEXT    NOT NULL,
    mount_key      TEXT    NOT NULL,
    -- Who added the member, and when.
    added_by   INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    UNIQUE (ns_id, user_id)
);
CREATE UNIQUE INDEX memberships_user_mount ON memberships (user_id, mount_key);

-- Public links: a random token that lets anyone holding it read a file or folder
-- (or, upload-only, drop files into a folder), with optional password, expiry and
-- download limit. The target is an entry, so the link follows the file when it is
-- moved or renamed; a link to a shared folder's top names its namespace's root
-- (entry_id NULL).
CREATE TABLE links (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token         TEXT    NOT NULL UNIQUE,
    -- The account that made the link; the link reads with that account's rights, and
    -- stops working when the account loses them.
    user_id       INTEGER NOT NULL REFERENCES users (id),
    ns_id         INTEGER NOT NULL REFERENCES namespaces (id),
    -- No foreign key: a link outlives a purged entry (and then finds nothing).
    entry_id      INTEGER,
    -- argon2id PHC string, or NULL for no password.
    password_hash TEXT,
    expires_at    INTEGER,
    max_downloads INTEGER,
    downloads     INTEGER NOT NULL DEFAULT 0,
    upload_only   INTEGER NOT NULL DEFAULT 0 CHECK (upload_only IN (0, 1)),
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX links_user ON links (user_id);
CREATE INDEX links_entry ON links (entry_id);
