-- Browser sessions. SQLite flavour; migrations/postgres/0005_web_sessions.sql is the same
-- change.

-- Which kind of credential a token is: 'api' (a bearer token of the CLI, the sync
-- client or a script: lives until logout) or 'web' (a browser session, carried in a
-- cookie, which the server ends after idle_ms without use or at expires_at).
ALTER TABLE auth_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
-- When the token stops working whatever its use (Unix ms), or NULL for never.
ALTER TABLE auth_tokens ADD COLUMN expires_at INTEGER;
-- How long the token may go unused before it stops working, or NULL for ever.
ALTER TABLE auth_tokens ADD COLUMN idle_ms INTEGER;
