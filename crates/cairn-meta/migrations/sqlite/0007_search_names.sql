-- Search by name (issue 15). SQLite flavour; migrations/postgres/0007_search_names.sql is
-- the same change.

-- The entry's name, lowercased: the last segment of path_key (which Rust lowercases, so
-- both backends agree on case). rtrim strips the trailing characters that are not '/',
-- so what it leaves is the path up to its last '/'. Computed, never written: no write
-- path has to remember it.
ALTER TABLE entries ADD COLUMN name_key TEXT
    GENERATED ALWAYS AS (substr(path_key, length(rtrim(path_key, replace(path_key, '/', ''))) + 1)) VIRTUAL;

-- A trigram index of every entry's name (live or in the trash; the query keeps the live
-- ones), so a substring search of at least three characters reads the matching rows
-- instead of every entry. It indexes entries' own rows (external content) and is kept in
-- step by the triggers below: a row inserted, deleted, or renamed (path_key changes on
-- every move, the name only on a rename).
CREATE VIRTUAL TABLE entry_names USING fts5 (
    name_key, content = 'entries', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO entry_names (entry_names) VALUES ('rebuild');

CREATE TRIGGER entry_names_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entry_names (rowid, name_key) VALUES (new.id, new.name_key);
END;

CREATE TRIGGER entry_names_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entry_names (entry_names, rowid, name_key) VALUES ('delete', old.id, old.name_key);
END;

CREATE TRIGGER entry_names_rename AFTER UPDATE OF path_key ON entries
WHEN old.name_key IS NOT new.name_key BEGIN
    INSERT INTO entry_names (entry_names, rowid, name_key) VALUES ('delete', old.id, old.name_key);
    INSERT INTO entry_names (rowid, name_key) VALUES (new.id, new.name_key);
END;
