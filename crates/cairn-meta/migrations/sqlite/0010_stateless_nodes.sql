-- State that requests on several nodes must share, so that any `cairn serve` on this
-- database can answer any request and a node may be killed at any moment. SQLite
-- flavour; migrations/postgres/0010_stateless_nodes.sql is the same change.

-- Failed password guesses, counted by the throttles of logins (keys `user:NAME`,
-- `addr:IP`) and of public links' passwords (`link:ID`, `linkaddr:IP`); see
-- `cairn-meta/src/throttle.rs`. Global operational state, like `server_secrets`: it
-- belongs to no namespace and is not partitioned by one. One row per failure (or per
-- guess being checked), alive until `expires_at` (Unix ms: when it leaves the
-- throttle's sliding window); expired rows are deleted by the writers of new ones and
-- by the maintenance pass.
CREATE TABLE throttle_failures (
    id           INTEGER PRIMARY KEY,
    throttle_key TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX throttle_failures_key ON throttle_failures (throttle_key, expires_at);
CREATE INDEX throttle_failures_expires ON throttle_failures (expires_at);

-- The lease of the request writing an upload (a PATCH while its body streams, a
-- termination, a join of parts): who holds it (a random token of that request) and
-- until when (Unix ms). The holder renews it while it works, so a node that dies
-- holding it blocks the upload only until `lease_until`; see `MetaStore::lease_upload`.
ALTER TABLE tus_uploads ADD COLUMN lease_holder TEXT;
ALTER TABLE tus_uploads ADD COLUMN lease_until INTEGER;
