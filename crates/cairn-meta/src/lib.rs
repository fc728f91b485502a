//! Cairn's metadata store: users, devices, tokens, app passwords, the tree of entries
//! per namespace, file versions with their block lists, block reference counts and the
//! per-namespace journal, over SQLite (embedded, the default) or PostgreSQL.
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

mod accounts;
mod app_passwords;
mod blocks;
mod bulk;
mod check;
mod commit;
mod dav;
mod db;
mod error;
mod events;
pub mod gc;
mod integrity;
mod journal;
mod links;
mod pending;
mod quota;
mod retention;
mod search;
mod secrets;
mod sharing;
mod throttle;
mod trash;
mod tree;
mod types;
mod uploads;
mod users;
mod versions;

use std::sync::Arc;

use cairn_core::{JournalSeq, NamespaceId};
use sqlx::AnyPool;

pub use accounts::{DeletedUser, TransferredShare};
pub use app_passwords::{AppPassword, AppPasswordOwner};
pub use blocks::{EnsureStored, UploadedBlock};
pub use check::Inconsistency;
pub use dav::{DavLockRow, DeadProp};
pub use error::MetaError;
pub use events::{ChannelListener, Heard, LISTENER_APPLICATION_NAME, MAX_NOTIFY_PAYLOAD};
pub use gc::{DeletedBlock, GcDeleteError, GcStats};
pub use integrity::{DamagedFile, ReferencedBlock, ReferencedTotals};
pub use links::{Link, LinkId, NewLink};
pub use pending::PendingUploadRow;
pub use quota::Space;
pub use sharing::{Membership, Role};
pub use throttle::{Guess, ThrottleKey};
pub use types::{
    Actor, BatchItem, BlockInfo, BlockRef, ChangeKind, CommitFile, CommitOutcome, Device, Entry,
    EntryKind, FileCommit, JournalEntry, MetaStats, TrashItem, User, VersionInfo,
};
pub use uploads::{LeaseAttempt, NewUpload, OnConflict, Upload, UploadProgress};
pub use users::{check_user_name, TokenKind, TokenOwner, MAX_USER_NAME_LEN};

/// Called after every namespace write that advanced the journal has committed, with
/// the namespace and its new head. It runs on the writer's task, so it must return at
/// once (publish to a channel, never wait).
pub type CommitHook = Arc<dyn Fn(NamespaceId, JournalSeq) + Send + Sync>;

/// The handle to the metadata database. Cheap to clone; clones share one pool.
#[derive(Clone)]
pub struct MetaStore {
    pool: AnyPool,
    backend: db::Backend,
    /// The URL a PostgreSQL store was opened with, for connections outside the pool
    /// (the event listener's).
    url: Option<Arc<str>>,
    /// On SQLite, the lock that queues writers in this process (see `db::connect`).
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Block upload records waiting to be written together (see `record_block_upload`).
    upload_queue: Arc<std::sync::Mutex<blocks::UploadQueue>>,
    /// Told about every committed journal advance (see [`MetaStore::on_commit`]).
    commit_hook: Arc<std::sync::RwLock<Option<CommitHook>>>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("backend", &self.backend)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
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

    /// Sets the hook told about every namespace write after it commits, replacing any
    /// earlier one; every clone of this handle shares it.
    ///
    /// This is the one place where a change becomes an event: every write to a
    /// namespace goes through one journaled transaction, and the hook fires only after
    /// that transaction has committed, so a listener that reads the journal when told
    /// always finds the change. Writes made by another process on the same database
    /// (`cairn admin gc` beside a server) are not seen; a shared event bus would carry
    /// them.
    pub fn on_commit(&self, hook: CommitHook) {
        *self.commit_hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Tells the hook, if there is one, that `ns` advanced to `head`.
    pub(crate) fn committed(&self, ns: NamespaceId, head: JournalSeq) {
        let hook = self
            .commit_hook
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(ns, head);
        }
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
