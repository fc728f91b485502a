//! The one error type of the metadata store.

use cairn_core::{BlockHash, NamespaceId, PathError, ServerPath, TrashId, VersionId};

use crate::Entry;

/// Why a metadata operation was refused or failed.
///
/// The variants down to [`MetaError::InvalidPath`] are the caller's to fix, and their
/// messages are written for the person who made the request. The rest are internal:
/// their messages are for the server log, not for a response body.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Nothing lives at the path.
    #[error("{0}: no such file or folder")]
    NotFound(ServerPath),
    /// The path is taken (for example by a mkdir, move or copy target).
    #[error("{0} already exists")]
    AlreadyExists(ServerPath),
    /// The path, or one of the folders above it, is a file.
    #[error("{0} is a file, not a folder")]
    NotAFolder(ServerPath),
    /// A file was to be stored where a folder is.
    #[error("{0} is a folder; a file cannot be stored in its place")]
    IsAFolder(ServerPath),
    /// The commit's base revision is not the file's current revision. `current` is the
    /// file as it is now, or `None` when it no longer exists.
    #[error("{}", rev_conflict_message(path, current.as_ref()))]
    RevConflict {
        /// The path committed to.
        path: ServerPath,
        /// The file as it is now.
        current: Option<Entry>,
    },
    /// The commit names blocks the account has not uploaded (or does not possess).
    #[error("{}", missing_blocks_message(.0))]
    MissingBlocks(Vec<BlockHash>),
    /// The commit gives a block a different size from the one it was uploaded with.
    #[error("block {hash} is {stored} bytes long, but the commit says {claimed}")]
    BlockSizeMismatch {
        /// The block.
        hash: BlockHash,
        /// The size the commit gave.
        claimed: u32,
        /// The size recorded at upload.
        stored: i64,
    },
    /// A move or copy of the root, or of a folder into itself.
    #[error("{}", invalid_move_message(from, to))]
    InvalidMove {
        /// The source.
        from: ServerPath,
        /// The refused target.
        to: ServerPath,
    },
    /// The root folder cannot be deleted.
    #[error("the root folder '/' cannot be deleted")]
    RootFolder,
    /// A sharing request that cannot be done as asked (a nested folder, a file, the
    /// owner as a member, …); the message says why and what to do instead.
    #[error("{0}")]
    NotShareable(String),
    /// A user of that name exists.
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    /// No (live) account has this name.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// The change would leave the server without an enabled administrator.
    #[error("{0:?} is the last enabled administrator; make another user an administrator first")]
    LastAdmin(String),
    /// The account has an app password of that name.
    #[error("an app password named {0:?} already exists; revoke it first or choose another name")]
    AppPasswordExists(String),
    /// The account has no app password of that name.
    #[error("no app password named {0:?}")]
    NoSuchAppPassword(String),
    /// A user name the store cannot take; the message says what a name may hold.
    #[error("{0}")]
    InvalidUserName(String),
    /// A path built by the store (a conflict-copy name) is not valid, usually too long.
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    /// The namespace id names no namespace.
    #[error("namespace {0} does not exist")]
    NoSuchNamespace(NamespaceId),
    /// The version id names no version.
    #[error("version {0} does not exist")]
    NoSuchVersion(VersionId),
    /// The trash item id names no item of this namespace (it may have been restored or
    /// purged already).
    #[error("trash item {0} does not exist; it may have been restored or purged already")]
    NoSuchTrashItem(TrashId),
    /// The database URL is neither SQLite nor PostgreSQL.
    #[error("unsupported database URL {0:?}: use sqlite://PATH?mode=rwc, sqlite::memory: or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// The operation needs the other database backend; the message says which.
    #[error("{0}")]
    Unsupported(String),
    /// The database failed.
    #[error("metadata database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed at start.
    #[error("metadata schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The change would take the account past its storage quota.
    #[error(
        "storage quota exceeded: {used} of {quota} bytes are used and this needs {needed} more; \
         delete files or ask the administrator for a larger quota"
    )]
    QuotaExceeded { quota: i64, used: i64, needed: i64 },
    /// The block store could not confirm or rewrite an uploaded block while its upload
    /// was being recorded.
    #[error("block store: {0}")]
    BlockStore(String),
    /// A write batched with others failed; this is the batch's error.
    #[error("{0}")]
    Batch(std::sync::Arc<MetaError>),
    /// The database holds a value the store cannot have written.
    #[error("metadata database holds an invalid value: {0}")]
    Corrupt(String),
}

impl MetaError {
    /// Whether the request was refused for something the caller can fix (a conflict,
    /// a missing block, a path in the way, the quota), as opposed to the store failing.
    /// A batch reports the former per item and aborts on the latter.
    pub fn is_callers(&self) -> bool {
        match self {
            MetaError::NotFound(_)
            | MetaError::AlreadyExists(_)
            | MetaError::NotAFolder(_)
            | MetaError::IsAFolder(_)
            | MetaError::RevConflict { .. }
            | MetaError::MissingBlocks(_)
            | MetaError::BlockSizeMismatch { .. }
            | MetaError::InvalidMove { .. }
            | MetaError::RootFolder
            | MetaError::InvalidPath(_)
            | MetaError::QuotaExceeded { .. }
            | MetaError::NotShareable(_)
            | MetaError::NoSuchVersion(_) => true,
            MetaError::Batch(inner) => inner.is_callers(),
            _ => false,
        }
    }
}

fn rev_conflict_message(path: &ServerPath, current: Option<&Entry>) -> String {
    match current {
        Some(entry) => match entry.rev {
            Some(rev) => format!(
                "{path} has changed: its current revision is {rev}, not the one this change \
                 was based on; fetch it and try again"
            ),
            None => format!("{path} has changed since this change was based on it"),
        },
        None => format!(
            "{path} no longer exists: it was moved or deleted after the revision this change \
             was based on"
        ),
    }
}

fn missing_blocks_message(hashes: &[BlockHash]) -> String {
    match hashes {
        [] => "the commit names blocks that are not on the server; upload them first".into(),
        [one] => format!("block {one} is not on the server for this account; upload it first"),
        [first, rest @ ..] => format!(
            "{} blocks are not on the server for this account (the first is {first}); \
             upload them first",
            rest.len() + 1
        ),
    }
}

fn invalid_move_message(from: &ServerPath, to: &ServerPath) -> String {
    if from.is_root() || to.is_root() {
        "the root folder '/' cannot be moved, copied or replaced".into()
    } else {
        format!("cannot move or copy {from} to {to}: a folder cannot go inside itself")
    }
}
