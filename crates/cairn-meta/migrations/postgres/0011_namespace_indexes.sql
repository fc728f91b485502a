-- Indexes that lead with the key a table is partitioned by (docs/SCALING.md, "How the
-- metadata is partitioned"; checked by crates/cairn-meta/tests/meta/partitioning.rs).
-- The same in both flavours; migrations/sqlite/0010_namespace_indexes.sql is the other.
--
-- Each also serves a query that scanned its whole table before: deleting an account
-- (`MetaStore::delete_user`, one transaction) reads the versions and deletes the
-- links of each namespace it deletes by ns_id, and its unfinished uploads by user_id.

CREATE INDEX versions_ns ON versions (ns_id);
CREATE INDEX links_ns ON links (ns_id);
CREATE INDEX tus_uploads_user ON tus_uploads (user_id);
