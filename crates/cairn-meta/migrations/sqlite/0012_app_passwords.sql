-- App passwords: what WebDAV and other clients that only speak HTTP Basic sign in with,
-- never the account password. SQLite flavour; migrations/postgres/0012_app_passwords.sql
-- is the same change.
--
-- The server generates each secret (about 158 random bits), shows it once and keeps
-- only its BLAKE3 hash, as it does with bearer tokens: a secret that cannot be guessed
-- needs no slow hash, and a Basic client sends it with every request, so checking it
-- must cost one indexed lookup (secret_hash), not an argon2 verification.
--
-- Each app password has a device row of its own, named like it, so that versions,
-- trash items and conflict copies made through it say which one made them; the device
-- stays when the app password is revoked, as every device does.
CREATE TABLE app_passwords (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    device_id    INTEGER NOT NULL REFERENCES devices (id),
    -- Unique per account: the user revokes one by its name.
    name         TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_at   INTEGER NOT NULL,
    -- When a request last signed in with it (Unix ms, refreshed at most once a
    -- minute), or NULL if none has yet.
    last_used_at INTEGER
);
CREATE UNIQUE INDEX app_passwords_user_name ON app_passwords (user_id, name);
