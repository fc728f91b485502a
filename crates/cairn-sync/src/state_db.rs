//! The sync state on disk: one SQLite file per sync folder holding the three trees and
//! the delta cursor. This is the client's own small database, not the server's
//! metadata (which only `cairn-meta` touches).
//!
//! Each save is one transaction, so the file always holds the state as of the end of
//! some round. WAL with `synchronous=NORMAL`: a power cut may lose the last rounds, never
//! consistency, and losing them is harmless (the engine finds the work done and records
//! it again).

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use cairn_core::{ContentHash, ServerPath};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::env::EnvError;
use crate::state::{Persist, State, StateChange, Which};
use crate::tree::{Kind, LocalNode, RemoteNode, SyncedNode};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS local (
    path TEXT PRIMARY KEY, kind INTEGER NOT NULL, id INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash BLOB);
CREATE TABLE IF NOT EXISTS remote (
    path TEXT PRIMARY KEY, kind INTEGER NOT NULL, id INTEGER NOT NULL,
    rev TEXT, hash BLOB, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS synced (
    path TEXT PRIMARY KEY, kind INTEGER NOT NULL, local_id INTEGER NOT NULL,
    remote_id INTEGER NOT NULL, rev TEXT, hash BLOB);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// A sync folder's state file.
#[derive(Debug, Clone)]
pub struct StateDb {
    pool: SqlitePool,
}

fn db_error(err: sqlx::Error) -> EnvError {
    EnvError::Refused(format!("sync state database: {err}"))
}

fn kind_code(kind: Kind) -> i64 {
    match kind {
        Kind::File => 0,
        Kind::Folder => 1,
    }
}

fn kind_from(code: i64) -> Kind {
    if code == 1 {
        Kind::Folder
    } else {
        Kind::File
    }
}

fn hash_from(blob: Option<Vec<u8>>) -> Option<ContentHash> {
    blob.and_then(|b| ContentHash::from_slice(&b))
}

fn table(which: Which) -> &'static str {
    match which {
        Which::Local => "local",
        Which::Remote => "remote",
        Which::Synced => "synced",
    }
}

impl StateDb {
    /// Opens (creating if needed) the state file at `path`.
    pub async fn open(path: &Path) -> Result<StateDb, EnvError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = sqlx::pool::PoolOptions::<Sqlite>::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(db_error)?;
        Ok(StateDb { pool })
    }

    /// A setting (such as the server and folder this state belongs to).
    pub async fn setting(&self, key: &str) -> Result<Option<String>, EnvError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), EnvError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db_error)
            .map(drop)
    }

    /// Reads the whole state.
    pub async fn load(&self) -> Result<State, EnvError> {
        let mut state = State::default();
        let path = |row: &sqlx::sqlite::SqliteRow| -> Option<ServerPath> {
            ServerPath::parse(row.get::<&str, _>("path")).ok()
        };
        for row in sqlx::query("SELECT * FROM local")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
        {
            if let Some(p) = path(&row) {
                state.local.insert(
                    p,
                    LocalNode {
                        kind: kind_from(row.get("kind")),
                        id: row.get::<i64, _>("id") as u64,
                        size: row.get::<i64, _>("size") as u64,
                        mtime_ns: row.get("mtime_ns"),
                        hash: hash_from(row.get("hash")),
                    },
                );
            }
        }
        for row in sqlx::query("SELECT * FROM remote")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
        {
            if let Some(p) = path(&row) {
                state.remote.insert(
                    p,
                    RemoteNode {
                        kind: kind_from(row.get("kind")),
                        id: row.get("id"),
                        rev: row.get("rev"),
                        hash: hash_from(row.get("hash")),
                        size: row.get::<i64, _>("size") as u64,
                    },
                );
            }
        }
        for row in sqlx::query("SELECT * FROM synced")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
        {
            if let Some(p) = path(&row) {
                state.synced.insert(
                    p,
                    SyncedNode {
                        kind: kind_from(row.get("kind")),
                        local_id: row.get::<i64, _>("local_id") as u64,
                        remote_id: row.get("remote_id"),
                        rev: row.get("rev"),
                        hash: hash_from(row.get("hash")),
                    },
                );
            }
        }
        state.cursor = self.setting("cursor").await?;
        Ok(state)
    }
}

async fn apply(tx: &mut Transaction<'_, Sqlite>, change: &StateChange) -> Result<(), sqlx::Error> {
    let hash = |h: &Option<ContentHash>| h.map(|h| h.as_bytes().to_vec());
    match change {
        StateChange::Local(path, Some(n)) => {
            sqlx::query("INSERT OR REPLACE INTO local (path, kind, id, size, mtime_ns, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .bind(path.as_str())
                .bind(kind_code(n.kind))
                .bind(n.id as i64)
                .bind(n.size as i64)
                .bind(n.mtime_ns)
                .bind(hash(&n.hash))
                .execute(&mut **tx)
                .await?;
        }
        StateChange::Remote(path, Some(n)) => {
            sqlx::query("INSERT OR REPLACE INTO remote (path, kind, id, rev, hash, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .bind(path.as_str())
                .bind(kind_code(n.kind))
                .bind(n.id)
                .bind(n.rev.as_deref())
                .bind(hash(&n.hash))
                .bind(n.size as i64)
                .execute(&mut **tx)
                .await?;
        }
        StateChange::Synced(path, Some(n)) => {
            sqlx::query("INSERT OR REPLACE INTO synced (path, kind, local_id, remote_id, rev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .bind(path.as_str())
                .bind(kind_code(n.kind))
                .bind(n.local_id as i64)
                .bind(n.remote_id)
                .bind(n.rev.as_deref())
                .bind(hash(&n.hash))
                .execute(&mut **tx)
                .await?;
        }
        StateChange::Local(path, None) => delete_one(tx, "local", path).await?,
        StateChange::Remote(path, None) => delete_one(tx, "remote", path).await?,
        StateChange::Synced(path, None) => delete_one(tx, "synced", path).await?,
        StateChange::RemoveSubtree(which, path) => delete_subtree(tx, table(*which), path).await?,
        StateChange::MoveSubtree(which, from, to) => {
            if from != to {
                let t = table(*which);
                delete_subtree(tx, t, to).await?;
                // Paths compare as bytes in both SQLite and Rust, so the subtree of
                // `/a` is `/a` plus the keys in [`/a/`, `/a0`); `substr` and `length`
                // count characters, consistently with each other.
                let sql = format!(
                    "UPDATE {t} SET path = ?2 || substr(path, length(?1) + 1) \
                     WHERE path = ?1 OR (path >= ?1 || '/' AND path < ?1 || '0')"
                );
                sqlx::query(&sql)
                    .bind(from.as_str())
                    .bind(to.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        StateChange::ClearRemote => {
            sqlx::query("DELETE FROM remote").execute(&mut **tx).await?;
        }
        StateChange::Cursor(cursor) => match cursor {
            Some(c) => {
                sqlx::query("INSERT OR REPLACE INTO settings (key, value) VALUES ('cursor', ?1)")
                    .bind(c)
                    .execute(&mut **tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM settings WHERE key = 'cursor'")
                    .execute(&mut **tx)
                    .await?;
            }
        },
    }
    Ok(())
}

async fn delete_one(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    path: &ServerPath,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DELETE FROM {table} WHERE path = ?1"))
        .bind(path.as_str())
        .execute(&mut **tx)
        .await
        .map(drop)
}

async fn delete_subtree(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    path: &ServerPath,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "DELETE FROM {table} WHERE path = ?1 OR (path >= ?1 || '/' AND path < ?1 || '0')"
    ))
    .bind(path.as_str())
    .execute(&mut **tx)
    .await
    .map(drop)
}

#[async_trait]
impl Persist for StateDb {
    async fn save(&self, changes: &[StateChange]) -> Result<(), EnvError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        for change in changes {
            apply(&mut tx, change).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::p;

    #[tokio::test]
    async fn saved_changes_load_back_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.db")).await.unwrap();
        let file = LocalNode {
            kind: Kind::File,
            id: u64::MAX - 3,
            size: 5,
            mtime_ns: -7,
            hash: Some(ContentHash([7; 32])),
        };
        let folder = SyncedNode {
            kind: Kind::Folder,
            local_id: 1,
            remote_id: 2,
            rev: None,
            hash: None,
        };
        let changes = vec![
            StateChange::Local(p("/a"), Some(file.clone())),
            StateChange::Local(p("/a b"), Some(file.clone())),
            StateChange::Local(p("/a/x"), Some(file.clone())),
            StateChange::Local(p("/a/y/z"), Some(file.clone())),
            StateChange::Synced(p("/d"), Some(folder.clone())),
            StateChange::Synced(p("/d/é"), Some(folder.clone())),
            StateChange::MoveSubtree(Which::Local, p("/a"), p("/c")),
            StateChange::MoveSubtree(Which::Synced, p("/d"), p("/ü")),
            StateChange::RemoveSubtree(Which::Local, p("/c/y")),
            StateChange::Cursor(Some("v1.1-9".into())),
        ];
        let mut expected = State::default();
        for c in &changes {
            expected.apply(c);
        }
        db.save(&changes).await.unwrap();
        let loaded = db.load().await.unwrap();
        let paths = |t: &crate::tree::Tree<LocalNode>| {
            t.paths().map(|p| p.as_str().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(paths(&loaded.local), paths(&expected.local));
        assert_eq!(paths(&loaded.local), ["/a b", "/c", "/c/x"]);
        assert_eq!(loaded.local.get(&p("/c/x")), Some(&file));
        assert_eq!(loaded.synced.get(&p("/ü/é")), Some(&folder));
        assert_eq!(loaded.cursor.as_deref(), Some("v1.1-9"));
    }
}
