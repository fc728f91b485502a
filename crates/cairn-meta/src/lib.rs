//! Cairn's metadata store: users, devices, tokens, the tree of entries per namespace,
//! file versions with their block lists, block reference counts and the per-namespace
//! journal, over SQLite (embedded, the default) or PostgreSQL.
//!
//! Callers hold one concrete handle, [`MetaStore`]; which database is behind it is
//! decided by the URL given to [`MetaStore::connect`]. Both backends run the same SQL
//! through sqlx's `Any` driver; only the DDL in `migrations/sqlite` and
//! `migrations/postgres` differs. This is the only crate that contains SQL.
//!
//! Invariants every write keeps, in one transaction with the change itself:
//! * every change to a namespace appends one journal row per changed entry, numbered
//!   consecutively from the namespace's head (`namespaces.journal_seq`);
//! * a block's `refcount` equals the number of `version_blocks` rows naming it;
//! * live paths are unique per namespace by [`cairn_core::ServerPath::key`]
//!   (case-insensitively), and every live entry's parent is a live folder whose stored
//!   path is a prefix of the entry's stored path (a child keeps its parent's case);
//! * the root folder `/` of a namespace is implicit: it has no row.
//!
//! [`MetaStore::check_consistency`] verifies these over the whole database.

// `MetaError::RevConflict` carries the current entry, which makes the error larger than
// clippy likes. It is only built on the error path, and boxing it would make every
// caller that reads `current` unbox it; the size is not worth that.
#![allow(clippy::result_large_err)]

mod blocks;
mod check;
mod commit;
mod db;
mod error;
pub mod gc;
mod integrity;
mod journal;
mod retention;
mod trash;
mod tree;
mod types;
mod users;
mod versions;

use std::sync::Arc;

use sqlx::AnyPool;

pub use blocks::{EnsureStored, UploadedBlock};
pub use check::Inconsistency;
pub use error::MetaError;
pub use gc::{DeletedBlock, GcDeleteError, GcStats};
pub use integrity::{DamagedFile, ReferencedBlock, ReferencedTotals};
pub use types::{
    Actor, BatchItem, BlockInfo, BlockRef, ChangeKind, CommitFile, CommitOutcome, Device, Entry,
    EntryKind, FileCommit, JournalEntry, MetaStats, TrashItem, User, VersionInfo,
};

/// The handle to the metadata database. Cheap to clone; clones share one pool.
#[derive(Clone, Debug)]
pub struct MetaStore {
    pool: AnyPool,
    backend: db::Backend,
    /// On SQLite, the lock that queues writers in this process (see `db::connect`).
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Block upload records waiting to be written together (see `record_block_upload`).
    upload_queue: Arc<std::sync::Mutex<blocks::UploadQueue>>,
}

impl MetaStore {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// Accepted URLs: `sqlite://PATH?mode=rwc` (the file is created if missing),
    /// `sqlite::memory:` (for tests; one connection), and `postgres://USER@HOST/DB`.
    /// A PostgreSQL URL may choose a schema with `?options[search_path]=NAME`.
    pub async fn connect(url: &str) -> Result<Self, MetaError> {
        db::connect(url).await
    }

    /// Whether the database is PostgreSQL (otherwise it is SQLite).
    pub fn is_postgres(&self) -> bool {
        self.backend == db::Backend::Postgres
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
