-- App passwords. PostgreSQL flavour; migrations/sqlite/0012_app_passwords.sql is the
-- same change and explains it.
CREATE TABLE app_passwords (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    device_id    BIGINT NOT NULL REFERENCES devices (id),
    name         TEXT   NOT NULL,
    secret_hash  BYTEA  NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX app_passwords_user_name ON app_passwords (user_id, name);
