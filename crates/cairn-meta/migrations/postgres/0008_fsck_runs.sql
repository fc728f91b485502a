-- What the last integrity checks found, for administrators (the web interface's users
-- page). PostgreSQL flavour; migrations/sqlite/0008_fsck_runs.sql is the same change.

-- One row per finished `cairn admin fsck`: when it finished (Unix ms) and its report as
-- the JSON that `cairn admin fsck --json` prints. Only the newest few are kept.
CREATE TABLE fsck_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at BIGINT NOT NULL,
    report      TEXT NOT NULL
);
