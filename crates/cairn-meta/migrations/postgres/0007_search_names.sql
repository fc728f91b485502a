-- Search by name (issue 15). PostgreSQL flavour; migrations/sqlite/0007_search_names.sql
-- is the same change.

-- The entry's name, lowercased: the last segment of path_key (which Rust lowercases, so
-- both backends agree on case). Computed, never written: no write path has to remember it.
ALTER TABLE entries ADD COLUMN name_key TEXT COLLATE "C"
    GENERATED ALWAYS AS (regexp_replace(path_key, '^.*/', '')) STORED;

-- A trigram index of live entries' names, so a substring search (LIKE '%…%') of at least
-- three characters reads the matching rows instead of every entry. It needs the pg_trgm
-- extension (shipped with PostgreSQL, "trusted": a database owner may create it). It is
-- created in the schema public when it can be, so that a test's schema, dropped with
-- CASCADE, does not take it away from the others. Where it cannot be had (no CREATE
-- right, no contrib package), the migration goes on without the index and search scans
-- the live entries of the caller's namespaces: slower, never wrong.
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
    WHERE x.extname = 'pg_trgm';
    IF trgm_schema IS NULL THEN
        BEGIN
            CREATE EXTENSION pg_trgm SCHEMA public;
            trgm_schema := 'public';
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'pg_trgm unavailable (%): search by name will scan', SQLERRM;
            RETURN;
        END;
    END IF;
    EXECUTE format(
        'CREATE INDEX entries_live_name_trgm ON entries USING gin (name_key %I.gin_trgm_ops) '
        'WHERE deleted_at IS NULL',
        trgm_schema
    );
END
$$;
