-- Disabled and deleted accounts. PostgreSQL flavour; migrations/sqlite/0004_accounts.sql is
-- the same change.

-- When an administrator disabled the account (Unix ms), or NULL while it is enabled. A
-- disabled account keeps everything (files, shares, links, tokens), but cannot log in,
-- its tokens are refused and its links do not work, until it is enabled again.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- When the account was deleted, or NULL. A deleted account's row stays as a tombstone,
-- since versions, trash items and journal rows in other accounts' shared folders still
-- name who made them; its name is changed to NAME:deleted:ID (a ':' no live name may
-- hold), so the name can be given to a new account, its password hash is emptied, its
-- home namespace (home_ns NULL) and everything it owned are gone.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
