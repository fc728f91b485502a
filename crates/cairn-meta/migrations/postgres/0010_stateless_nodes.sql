-- State that requests on several nodes must share. PostgreSQL flavour;
-- migrations/sqlite/0010_stateless_nodes.sql is the same change and explains it.

CREATE TABLE throttle_failures (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    throttle_key TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX throttle_failures_key ON throttle_failures (throttle_key, expires_at);
CREATE INDEX throttle_failures_expires ON throttle_failures (expires_at);

ALTER TABLE tus_uploads ADD COLUMN lease_holder TEXT;
ALTER TABLE tus_uploads ADD COLUMN lease_until BIGINT;
