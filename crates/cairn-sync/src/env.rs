//! What the engine needs from the world: a disk and a server. The real implementation
//! ([`crate::real`]) uses the file system and `cairn-client`; the simulation test uses
//! in-memory ones with injected faults. Every operation states what it expects to find,
//! so a change that raced it is refused rather than overwritten.

use async_trait::async_trait;
use cairn_core::{ContentHash, ServerPath};

use crate::tree::{LocalNode, RemoteNode};

/// Why an operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The server holds something other than the operation was based on (a change
    /// from another device raced it). The engine reads the delta and plans again.
    #[error("the server changed under this operation: {0}")]
    RemoteChanged(String),
    /// The disk holds something other than the operation was based on (the user
    /// changed it meanwhile). The engine looks at the disk again and plans again.
    #[error("the folder changed under this operation: {0}")]
    LocalChanged(String),
    /// The server cannot be reached, or failed; try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The server refused this device's login (401): trying again will not help until
    /// the user logs in again.
    #[error("{0}")]
    Unauthorized(String),
    /// The delta cursor cannot be continued; the whole tree must be listed again.
    #[error("the server asked for a full listing")]
    CursorReset,
    /// The operation cannot succeed as asked (a name the server refuses, no space
    /// left, no permission): it is reported and not retried in this pass.
    #[error("{0}")]
    Refused(String),
}

/// One change read from the server's delta, already mapped into the sync folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteChange {
    /// `path` now holds `node` (created, a new version, restored or copied there).
    Upsert { path: ServerPath, node: RemoteNode },
    /// The entry `id` moved from `from` to `to`, with everything below it.
    Move {
        from: ServerPath,
        to: ServerPath,
        id: i64,
    },
    /// The entry `id` at `path`, and everything below it, is gone.
    Delete { path: ServerPath, id: i64 },
}

/// A page of the server's changes.
#[derive(Debug, Clone)]
pub struct RemoteDelta {
    pub changes: Vec<RemoteChange>,
    pub cursor: String,
    pub has_more: bool,
}

/// One file of an [`Env::upload_many`].
#[derive(Debug, Clone)]
pub struct UploadItem {
    pub path: ServerPath,
    /// The file as last seen on disk.
    pub local: LocalNode,
    /// The revision its content was based on; `None` for a new file.
    pub base_rev: Option<String>,
}

/// One file of an [`Env::download_many`].
#[derive(Debug, Clone)]
pub struct DownloadItem {
    pub path: ServerPath,
    /// The server's file as the remote tree has it.
    pub remote: RemoteNode,
    /// What the disk must still hold at `path` for the download to replace it.
    pub expect_local: Option<LocalNode>,
    /// Whether `expect_local`'s content must be checked too (see `Env::remove_local`).
    pub check_content: bool,
}

/// The disk and the server, as the engine sees them. Paths are inside the sync folder.
#[async_trait]
pub trait Env: Send + Sync {
    /// Every entry in the sync folder, files not hashed; `None` when the sync folder
    /// itself is missing.
    async fn scan_local(&self) -> Result<Option<Vec<(ServerPath, LocalNode)>>, EnvError>;

    /// The content hash of the local file at `path`, provided it still has `node`'s
    /// stat; `None` when it changed or went away meanwhile.
    async fn hash_local(
        &self,
        path: &ServerPath,
        node: &LocalNode,
    ) -> Result<Option<ContentHash>, EnvError>;

    /// [`hash_local`](Self::hash_local) for each of `files`, in order. The engine hands
    /// small files over in runs, so that an environment can hash a run on one thread
    /// instead of paying a task and two thread wake-ups per file (on a first sync of
    /// thousands of small files that overhead was most of the time before the first
    /// upload).
    async fn hash_local_many(
        &self,
        files: Vec<(ServerPath, LocalNode)>,
    ) -> Vec<Result<Option<ContentHash>, EnvError>> {
        let mut hashes = Vec::with_capacity(files.len());
        for (path, node) in &files {
            hashes.push(self.hash_local(path, node).await);
        }
        hashes
    }

    /// Creates a folder on disk (succeeds if one is already there).
    async fn mkdir_local(&self, path: &ServerPath) -> Result<LocalNode, EnvError>;

    /// Renames on disk; refuses when `to` exists.
    async fn move_local(&self, from: &ServerPath, to: &ServerPath) -> Result<(), EnvError>;

    /// Removes a file whose stat still matches `expect`, or an empty folder. With
    /// `check_content`, the file's content must still hash to `expect`'s hash as well:
    /// the engine asks for it when that hash was read so soon after the file's last
    /// write that another write could have left the stat as it was.
    async fn remove_local(
        &self,
        path: &ServerPath,
        expect: &LocalNode,
        check_content: bool,
    ) -> Result<(), EnvError>;

    /// The whole tree on the server, with a cursor to read changes after it.
    async fn list_remote(&self) -> Result<(Vec<(ServerPath, RemoteNode)>, String), EnvError>;

    /// The server's changes after `cursor`.
    async fn remote_delta(&self, cursor: &str) -> Result<RemoteDelta, EnvError>;

    /// Sends the local file at `path` (last seen as `local`) as a new version based on
    /// `base_rev` (`None`: a new file).
    async fn upload(
        &self,
        path: &ServerPath,
        local: &LocalNode,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError>;

    /// Uploads several small files, each as [`Env::upload`] would, returning a result per
    /// item in order. The real environment sends them in a few batched requests.
    async fn upload_many(&self, items: &[UploadItem]) -> Vec<Result<RemoteNode, EnvError>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(
                self.upload(&item.path, &item.local, item.base_rev.as_deref())
                    .await,
            );
        }
        out
    }

    /// Fetches the server's file into a temp file, then renames it into place provided
    /// the disk still holds `expect_local` there (`None`: nothing; `check_content` as
    /// for [`Env::remove_local`]). Returns the new local node, hashed.
    async fn download(
        &self,
        path: &ServerPath,
        remote: &RemoteNode,
        expect_local: Option<&LocalNode>,
        check_content: bool,
    ) -> Result<LocalNode, EnvError>;

    /// Downloads several small files, each as [`Env::download`] would, returning a result
    /// per item in order. The real environment fetches them in a few batched requests.
    async fn download_many(&self, items: &[DownloadItem]) -> Vec<Result<LocalNode, EnvError>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(
                self.download(
                    &item.path,
                    &item.remote,
                    item.expect_local.as_ref(),
                    item.check_content,
                )
                .await,
            );
        }
        out
    }

    /// Creates a folder on the server; `RemoteChanged` if something is in the way.
    async fn mkdir_remote(&self, path: &ServerPath) -> Result<RemoteNode, EnvError>;

    /// Moves on the server; a file only if its revision is still `base_rev`.
    async fn move_remote(
        &self,
        from: &ServerPath,
        to: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError>;

    /// Deletes on the server (to its trash); a file only if its revision is still
    /// `base_rev`.
    async fn delete_remote(
        &self,
        path: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<(), EnvError>;

    /// The time as `YYYY-MM-DD HHMMSS`, for conflict copy names.
    fn stamp(&self) -> String;

    /// Which modification times are too recent to trust, read now, before looking at
    /// the disk: a file with such an mtime may be written again within the same
    /// timestamp granule, and with the same size its stat would not change. `None`:
    /// every write changes the stat.
    fn racy_from(&self) -> Option<RacyFrom> {
        None
    }
}

/// From when a modification time is too recent to vouch for a file's content (see
/// [`Env::racy_from`]), in `LocalNode::mtime_ns` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RacyFrom {
    /// For mtimes with a fraction of a second: file systems with fine timestamps,
    /// whose granule is a clock tick (ext4, XFS, Btrfs, APFS, NTFS).
    pub fine: i64,
    /// For mtimes on a whole second: file systems with 1- or 2-second timestamps (FAT,
    /// HFS+, some network shares).
    pub whole_seconds: i64,
}

impl RacyFrom {
    /// Whether a file last written at `mtime_ns` could be written again without its
    /// mtime changing.
    pub fn covers(&self, mtime_ns: i64) -> bool {
        let from = if mtime_ns % 1_000_000_000 == 0 {
            self.whole_seconds
        } else {
            self.fine
        };
        mtime_ns >= from
    }
}
