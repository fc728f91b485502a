-- Secrets that every process serving one deployment must share. SQLite flavour;
-- migrations/postgres/0009_server_secrets.sql is the same change.

-- One row per secret, by name (`link_key`: the key that signs public links' password
-- cookies), as hex. Made once, by whichever process first needs it, and kept: a
-- restart, or another node, signs and checks with the same key.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
