//! The real environment: a folder on this machine's disk and a folder on a Cairn server.
//!
//! Safety on the disk side:
//! - every write checks, just before it happens, that the folder it writes into is
//!   inside the sync folder once symlinks are resolved, so a symlink swapped in during
//!   sync cannot redirect a write elsewhere;
//! - symlinks and special files in the sync folder are not followed or synced;
//! - a local name that is not valid on the server (or not NFC, so that it would come
//!   back under another name) is skipped and reported;
//! - downloads land in a temp file beside their destination and replace it only if it
//!   still is what the planner saw.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cairn_client::proto::{Change, ChangeKind, EntryInfo, EntryKind};
use cairn_client::{
    chunk_file, Client, ClientError, DownloadOptions, DownloadOutcome, LocalCopy, ReplaceCheck,
    SmallDownload, SmallFile, SmallSource, UploadOptions,
};
use cairn_core::chunk::ChunkedFile;
use cairn_core::conflict::format_stamp;
use cairn_core::BlockHash;
use cairn_core::{ChunkerConfig, ContentHash, ServerPath};

use crate::env::{DownloadItem, Env, EnvError, RacyFrom, RemoteChange, RemoteDelta, UploadItem};
use crate::prefetch::Prefetcher;
use crate::tree::{Kind, LocalNode, RemoteNode};

/// Changes per delta page.
const DELTA_PAGE: u32 = 1000;

/// Files larger than this are transferred one by one (smaller ones in batches, which
/// send their content whole), so their block lists are worth keeping.
const KNOWN_BLOCKS_MIN: u64 = 1 << 20;
/// The most block lists kept.
const KNOWN_BLOCKS_FILES: usize = 1024;

/// A file's stat when it was hashed or downloaded, and its block list.
type KnownBlocks = (LocalNode, Vec<(BlockHash, u32)>);

/// The block list kept in `known` for the file at `path`, if the file still has the
/// stat it had then.
fn known_blocks_at(
    known: &Mutex<HashMap<PathBuf, KnownBlocks>>,
    path: &Path,
) -> Option<Vec<(BlockHash, u32)>> {
    let (node, blocks) = known.lock().ok()?.get(path)?.clone();
    let now = fs::symlink_metadata(path).ok()?;
    local_node(&now).same_stat(&node).then_some(blocks)
}

/// A sync folder on disk joined to a folder on the server.
#[derive(Debug, Clone)]
pub struct RealEnv {
    root: PathBuf,
    client: Client,
    remote_root: ServerPath,
    chunker: ChunkerConfig,
    /// Block lists of large files hashed or downloaded, with the stat they had (see
    /// [`RealEnv::remember_blocks`]).
    known_blocks: Arc<Mutex<HashMap<PathBuf, KnownBlocks>>>,
    /// Local entries skipped by the last scan, with why, for `cairn status`.
    skipped: Arc<Mutex<Vec<(PathBuf, String)>>>,
    /// Other devices' uploads fetched ahead of their commits (streaming sync).
    prefetch: Prefetcher,
}

impl RealEnv {
    /// Syncs `root` on disk with `remote_root` on the server `client` talks to, cutting
    /// files with the server's `chunker` settings.
    pub fn new(
        root: PathBuf,
        client: Client,
        remote_root: ServerPath,
        chunker: ChunkerConfig,
    ) -> Self {
        let known_blocks: Arc<Mutex<HashMap<PathBuf, KnownBlocks>>> = Arc::default();
        // A new version of a file this device has: only the blocks its copy neither has
        // nor has a base for are worth fetching ahead.
        let (known, top) = (Arc::clone(&known_blocks), root.clone());
        let local_blocks = Arc::new(move |path: &ServerPath| {
            let mut local = top.clone();
            local.extend(path.segments());
            known_blocks_at(&known, &local).unwrap_or_default()
        });
        let prefetch = Prefetcher::new(client.clone(), root.clone(), remote_root.clone())
            .with_local_blocks(local_blocks);
        RealEnv {
            root,
            client,
            remote_root,
            chunker,
            known_blocks,
            skipped: Arc::default(),
            prefetch,
        }
    }

    /// What fetches other devices' uploads ahead of their commits; the daemon runs it.
    pub fn prefetcher(&self) -> &Prefetcher {
        &self.prefetch
    }

    /// Keeps the block list of a large file (over [`KNOWN_BLOCKS_MIN`]) with the stat it
    /// was made for: the scan's, for the upload, so the file is not chunked a second
    /// time; a download's, so the next download of the file reads the blocks the two
    /// versions share from it. At most [`KNOWN_BLOCKS_FILES`] lists (a few kilobytes
    /// per GiB each).
    fn remember_blocks(&self, path: PathBuf, node: &LocalNode, blocks: Vec<(BlockHash, u32)>) {
        if node.size <= KNOWN_BLOCKS_MIN {
            return;
        }
        if let Ok(mut known) = self.known_blocks.lock() {
            if known.len() >= KNOWN_BLOCKS_FILES && !known.contains_key(&path) {
                // Lists of files never uploaded or downloaded again pile up in a long
                // run; forgetting them costs at most a second chunking, or a download
                // that fetches every block.
                known.clear();
            }
            known.insert(path, (node.clone(), blocks));
        }
    }

    /// The block list kept for the file at `path`, if the file still has the stat it
    /// had then.
    fn known_blocks(&self, path: &Path) -> Option<Vec<(BlockHash, u32)>> {
        known_blocks_at(&self.known_blocks, path)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Local entries the last scan left out, and why.
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.skipped.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Where a path of the sync folder is on disk.
    pub fn local_path(&self, path: &ServerPath) -> PathBuf {
        let mut out = self.root.clone();
        out.extend(path.segments());
        out
    }

    /// Where a path of the sync folder is on the server.
    fn remote_path(&self, path: &ServerPath) -> String {
        path.rebase(&ServerPath::root(), &self.remote_root)
            .unwrap_or_else(|| self.remote_root.clone())
            .as_str()
            .to_owned()
    }

    /// The sync folder's path for a server path, if it lies inside the synced folder.
    fn sync_path(&self, server: &str) -> Option<ServerPath> {
        let server = ServerPath::parse(server).ok()?;
        server.rebase(&self.remote_root, &ServerPath::root())
    }

    /// Where a download of `path` lands, once checked to be inside the sync folder and
    /// still holding `expect` (`None`: nothing), and the check that must still hold just
    /// before the downloaded file replaces it.
    fn prepare_download(
        &self,
        path: &ServerPath,
        expect: Option<&LocalNode>,
        check_content: bool,
    ) -> Result<(PathBuf, ReplaceCheck), EnvError> {
        let local = self.local_path(path);
        self.check_inside(&local)?;
        // The stat alone here, to refuse early; the content, if asked, only in the check
        // just before the rename, which is the one that counts.
        if !disk_matches(&local, expect, None) {
            return Err(EnvError::LocalChanged(format!(
                "{} changed",
                local.display()
            )));
        }
        let expect = expect.cloned();
        let content = check_content.then_some(self.chunker);
        let check: ReplaceCheck =
            Arc::new(move |target: &Path| disk_matches(target, expect.as_ref(), content.as_ref()));
        Ok((local, check))
    }

    /// Refuses to write into `target`'s folder unless it resolves to a place inside the
    /// sync folder.
    fn check_inside(&self, target: &Path) -> Result<(), EnvError> {
        let parent = target.parent().unwrap_or(&self.root);
        let (Ok(root), Ok(parent)) = (fs::canonicalize(&self.root), fs::canonicalize(parent))
        else {
            return Err(EnvError::LocalChanged(format!(
                "{} is gone",
                parent.display()
            )));
        };
        if parent.starts_with(&root) {
            Ok(())
        } else {
            Err(EnvError::Refused(format!(
                "{} leads outside the sync folder (a symlink?); not writing there",
                target.display()
            )))
        }
    }

    fn remote_node(entry: &EntryInfo) -> Result<RemoteNode, EnvError> {
        let hash = match &entry.content_hash {
            Some(hex) => Some(ContentHash::from_hex(hex).map_err(|err| {
                EnvError::Unavailable(format!("the server sent a bad hash: {err}"))
            })?),
            None => None,
        };
        Ok(RemoteNode {
            kind: kind_of(entry.kind),
            id: entry.id,
            rev: entry.rev.clone(),
            hash,
            size: entry.size,
        })
    }

    /// The node a delta row describes. The server journals every file change with its
    /// version, so a file row always carries its content hash.
    fn change_node(change: &Change) -> Result<RemoteNode, EnvError> {
        if change.entry_kind == EntryKind::Folder {
            return Ok(RemoteNode {
                kind: Kind::Folder,
                id: change.entry_id,
                rev: None,
                hash: None,
                size: 0,
            });
        }
        let hex = change.content_hash.as_deref().ok_or_else(|| {
            EnvError::Unavailable(format!(
                "the server sent a change of {} without its content hash",
                change.path
            ))
        })?;
        let hash = ContentHash::from_hex(hex)
            .map_err(|err| EnvError::Unavailable(format!("the server sent a bad hash: {err}")))?;
        Ok(RemoteNode {
            kind: Kind::File,
            id: change.entry_id,
            rev: change.rev.clone(),
            hash: Some(hash),
            size: change.size.unwrap_or(0),
        })
    }
}

fn kind_of(kind: EntryKind) -> Kind {
    match kind {
        EntryKind::File => Kind::File,
        EntryKind::Folder => Kind::Folder,
    }
}

fn local_node(meta: &fs::Metadata) -> LocalNode {
    LocalNode {
        kind: if meta.is_dir() {
            Kind::Folder
        } else {
            Kind::File
        },
        id: meta.ino(),
        size: if meta.is_dir() { 0 } else { meta.len() },
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        hash: None,
    }
}

/// The local node of a file just downloaded, hashed as the server said. Its stat is
/// the one the file had before it was renamed into place: a stat read now could include
/// an edit made since, which would then pass for the downloaded content and never be
/// uploaded.
fn downloaded_node(outcome: &DownloadOutcome) -> Result<LocalNode, EnvError> {
    let mut node = local_node(&outcome.placed);
    node.hash = RealEnv::remote_node(&outcome.entry)?.hash;
    Ok(node)
}

/// Whether what is at `path` on disk is `expect` (`None`: nothing is there); the
/// content is compared only if `content` gives the chunker to hash it with.
fn disk_matches(path: &Path, expect: Option<&LocalNode>, content: Option<&ChunkerConfig>) -> bool {
    match (fs::symlink_metadata(path), expect) {
        (Err(err), None) => err.kind() == io::ErrorKind::NotFound,
        (Ok(meta), Some(expect)) => {
            !meta.file_type().is_symlink() && still_holds(path, &meta, expect, content)
        }
        _ => false,
    }
}

/// Whether the entry at `path`, whose metadata is `meta`, is still what `expect`
/// recorded: the same stat, and if `content` gives the chunker, the same content hash.
fn still_holds(
    path: &Path,
    meta: &fs::Metadata,
    expect: &LocalNode,
    content: Option<&ChunkerConfig>,
) -> bool {
    if !local_node(meta).same_stat(expect) {
        return false;
    }
    match content {
        None => true,
        Some(chunker) => matches!(hash_file(path, expect, chunker),
            Ok(Some(chunked)) if Some(chunked.content_hash) == expect.hash),
    }
}

/// Maps a server error to what the engine should do about it.
fn remote_error(err: ClientError) -> EnvError {
    match err.status() {
        Some(401) => EnvError::Unauthorized(err.to_string()),
        Some(404 | 409 | 412) => EnvError::RemoteChanged(err.to_string()),
        Some(410) => EnvError::CursorReset,
        Some(400 | 403 | 413 | 422) => EnvError::Refused(err.to_string()),
        _ => match err {
            ClientError::ChangedDuringUpload { .. } | ClientError::DestinationChanged { .. } => {
                EnvError::LocalChanged(err.to_string())
            }
            ClientError::Io { .. } => EnvError::LocalChanged(err.to_string()),
            other => EnvError::Unavailable(other.to_string()),
        },
    }
}

fn local_error(path: &Path, err: io::Error) -> EnvError {
    match err.kind() {
        io::ErrorKind::PermissionDenied => EnvError::Refused(format!("{}: {err}", path.display())),
        _ => EnvError::LocalChanged(format!("{}: {err}", path.display())),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EnvError> + Send + 'static,
) -> Result<T, EnvError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| EnvError::Unavailable(format!("a disk task failed: {err}")))?
}

/// What a scan found (`None`: the folder is missing), and what it left out and why.
type ScanResult = (Option<Vec<(ServerPath, LocalNode)>>, Vec<(PathBuf, String)>);

/// Walks the sync folder, breadth first, without following symlinks.
fn scan(root: &Path) -> ScanResult {
    match fs::symlink_metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        _ => return (None, Vec::new()),
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut queue = VecDeque::from([(root.to_owned(), ServerPath::root())]);
    while let Some((dir, at)) = queue.pop_front() {
        let Ok(entries) = fs::read_dir(&dir) else {
            skipped.push((dir, "cannot be read".to_owned()));
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                skipped.push((entry.path(), "the name is not valid UTF-8".to_owned()));
                continue;
            };
            let path = match at.join(name) {
                Ok(path) if path.name() == Some(name) => path,
                Ok(_) => {
                    skipped.push((
                        entry.path(),
                        "the name is not in Unicode normal form C".to_owned(),
                    ));
                    continue;
                }
                Err(err) => {
                    skipped.push((entry.path(), err.to_string()));
                    continue;
                }
            };
            let Ok(meta) = entry.metadata() else {
                continue; // gone since it was listed
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                queue.push_back((entry.path(), path.clone()));
            } else if !kind.is_file() {
                skipped.push((
                    entry.path(),
                    "symlinks and special files are not synced".to_owned(),
                ));
                continue;
            }
            out.push((path, local_node(&meta)));
        }
    }
    (Some(out), skipped)
}

/// The content hash and blocks of the file at `path`, if it still has `expect`'s stat
/// before and after reading.
fn hash_file(
    path: &Path,
    expect: &LocalNode,
    chunker: &ChunkerConfig,
) -> Result<Option<ChunkedFile>, EnvError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(local_error(path, err)),
    };
    let before = file.metadata().map_err(|err| local_error(path, err))?;
    if !local_node(&before).same_stat(expect) {
        return Ok(None);
    }
    let chunked = chunk_file(&file, chunker)
        .map_err(|_| EnvError::LocalChanged(format!("{} could not be read", path.display())))?;
    let after = fs::metadata(path).map_err(|err| local_error(path, err))?;
    Ok(local_node(&after).same_stat(expect).then_some(chunked))
}

/// How far back a modification time counts as too recent to trust (see
/// `Env::racy_from`): for fine timestamps, many clock ticks (a tick is 1 to 10 ms); for
/// whole-second ones, FAT's 2-second granule.
const RACY_FINE_NS: i64 = 100_000_000;
const RACY_WHOLE_SECONDS_NS: i64 = 2_000_000_000;

#[async_trait]
impl Env for RealEnv {
    async fn scan_local(&self) -> Result<Option<Vec<(ServerPath, LocalNode)>>, EnvError> {
        let root = self.root.clone();
        let (found, skipped) = blocking(move || Ok(scan(&root))).await?;
        if let Ok(mut s) = self.skipped.lock() {
            *s = skipped;
        }
        Ok(found)
    }

    async fn hash_local(
        &self,
        path: &ServerPath,
        node: &LocalNode,
    ) -> Result<Option<ContentHash>, EnvError> {
        let one = vec![(path.clone(), node.clone())];
        self.hash_local_many(one)
            .await
            .pop()
            .unwrap_or_else(|| Err(EnvError::Unavailable("hashing returned nothing".to_owned())))
    }

    async fn hash_local_many(
        &self,
        files: Vec<(ServerPath, LocalNode)>,
    ) -> Vec<Result<Option<ContentHash>, EnvError>> {
        let count = files.len();
        let local: Vec<(PathBuf, LocalNode)> = files
            .into_iter()
            .map(|(path, node)| (self.local_path(&path), node))
            .collect();
        let chunker = self.chunker;
        let hashed = blocking(move || {
            let hashed: Vec<_> = local
                .iter()
                .map(|(path, node)| hash_file(path, node, &chunker))
                .collect();
            Ok((local, hashed))
        })
        .await;
        match hashed {
            Ok((local, hashes)) => local
                .into_iter()
                .zip(hashes)
                .map(|((path, node), chunked)| {
                    chunked.map(|c| {
                        c.map(|c| {
                            self.remember_blocks(path, &node, c.blocks);
                            c.content_hash
                        })
                    })
                })
                .collect(),
            Err(err) => (0..count)
                .map(|_| Err(EnvError::Unavailable(err.to_string())))
                .collect(),
        }
    }

    async fn mkdir_local(&self, path: &ServerPath) -> Result<LocalNode, EnvError> {
        let local = self.local_path(path);
        self.check_inside(&local)?;
        blocking(move || {
            match fs::create_dir(&local) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(local_error(&local, err)),
            }
            let meta = fs::symlink_metadata(&local).map_err(|err| local_error(&local, err))?;
            if !meta.is_dir() {
                return Err(EnvError::LocalChanged(format!(
                    "{} is not a folder",
                    local.display()
                )));
            }
            Ok(local_node(&meta))
        })
        .await
    }

    async fn move_local(&self, from: &ServerPath, to: &ServerPath) -> Result<(), EnvError> {
        let (from, to) = (self.local_path(from), self.local_path(to));
        self.check_inside(&from)?;
        self.check_inside(&to)?;
        blocking(move || {
            if fs::symlink_metadata(&to).is_ok() {
                return Err(EnvError::LocalChanged(format!(
                    "{} exists already",
                    to.display()
                )));
            }
            fs::rename(&from, &to).map_err(|err| local_error(&from, err))
        })
        .await
    }

    async fn remove_local(
        &self,
        path: &ServerPath,
        expect: &LocalNode,
        check_content: bool,
    ) -> Result<(), EnvError> {
        let local = self.local_path(path);
        self.check_inside(&local)?;
        let expect = expect.clone();
        let content = check_content.then_some(self.chunker);
        blocking(move || {
            let meta = match fs::symlink_metadata(&local) {
                Ok(meta) => meta,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(local_error(&local, err)),
            };
            let result = match expect.kind {
                Kind::Folder if meta.is_dir() => fs::remove_dir(&local),
                Kind::File
                    if meta.is_file() && still_holds(&local, &meta, &expect, content.as_ref()) =>
                {
                    fs::remove_file(&local)
                }
                _ => {
                    return Err(EnvError::LocalChanged(format!(
                        "{} changed",
                        local.display()
                    )))
                }
            };
            result.map_err(|err| local_error(&local, err))
        })
        .await
    }

    async fn list_remote(&self) -> Result<(Vec<(ServerPath, RemoteNode)>, String), EnvError> {
        // The cursor first: changes made while listing are then read again from the
        // delta, and applying a change twice does no harm.
        let cursor = self.client.latest_cursor().await.map_err(remote_error)?;
        let mut out = Vec::new();
        let mut queue = VecDeque::from([self.remote_root.as_str().to_owned()]);
        while let Some(folder) = queue.pop_front() {
            let entries = match self.client.list(&folder).await {
                Ok(entries) => entries,
                // A folder removed while listing: the delta will say so.
                Err(err) if err.is_not_found() => continue,
                Err(err) => return Err(remote_error(err)),
            };
            for entry in entries {
                let Some(path) = self.sync_path(&entry.path) else {
                    continue;
                };
                if entry.kind == EntryKind::Folder {
                    queue.push_back(entry.path.clone());
                }
                out.push((path, Self::remote_node(&entry)?));
            }
        }
        Ok((out, cursor))
    }

    async fn remote_delta(&self, cursor: &str) -> Result<RemoteDelta, EnvError> {
        let delta = match self.client.delta(Some(cursor), Some(DELTA_PAGE)).await {
            Ok(delta) => delta,
            Err(err) if err.status() == Some(400) || err.status() == Some(410) => {
                return Err(EnvError::CursorReset)
            }
            Err(err) => return Err(remote_error(err)),
        };
        let mut changes = Vec::with_capacity(delta.changes.len());
        for change in &delta.changes {
            let to = self.sync_path(&change.path);
            let from = change.from_path.as_deref().and_then(|p| self.sync_path(p));
            match (change.kind, from, to) {
                (ChangeKind::Purge, _, _) => {}
                (ChangeKind::Move, Some(from), Some(to)) => changes.push(RemoteChange::Move {
                    from,
                    to,
                    id: change.entry_id,
                }),
                // Moved out of the synced folder: gone, as far as this sync goes.
                (ChangeKind::Move, Some(from), None) => changes.push(RemoteChange::Delete {
                    path: from,
                    id: change.entry_id,
                }),
                (ChangeKind::Delete, _, Some(path)) => changes.push(RemoteChange::Delete {
                    path,
                    id: change.entry_id,
                }),
                // Created, changed, copied, restored, or moved in from outside.
                (_, _, Some(path)) => changes.push(RemoteChange::Upsert {
                    path,
                    node: Self::change_node(change)?,
                }),
                (_, _, None) => {}
            }
        }
        Ok(RemoteDelta {
            changes,
            cursor: delta.cursor,
            has_more: delta.has_more,
        })
    }

    async fn upload(
        &self,
        path: &ServerPath,
        _local: &LocalNode,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError> {
        let local = self.local_path(path);
        let options = UploadOptions {
            base_rev: base_rev.map(str::to_owned),
            announce: true,
            ..UploadOptions::default()
        };
        let remote = self.remote_path(path);
        let outcome = match self.known_blocks(&local) {
            Some(blocks) => {
                self.client
                    .upload_file_with_blocks(&local, &remote, &blocks, options)
                    .await
            }
            None => self.client.upload_file(&local, &remote, options).await,
        }
        .map_err(remote_error)?;
        Self::remote_node(&outcome.commit.entry)
    }

    async fn upload_many(&self, items: &[UploadItem]) -> Vec<Result<RemoteNode, EnvError>> {
        let files = items
            .iter()
            .map(|item| SmallFile {
                source: SmallSource::Path(self.local_path(&item.path)),
                remote: self.remote_path(&item.path),
                base_rev: item.base_rev.clone(),
                mtime: Some(item.local.mtime_ns.div_euclid(1_000_000)),
            })
            .collect();
        match self.client.upload_small_files(files).await {
            Ok(results) => results
                .into_iter()
                .map(|r| {
                    r.map_err(remote_error)
                        .and_then(|c| Self::remote_node(&c.entry))
                })
                .collect(),
            Err(err) => {
                let err = remote_error(err);
                items.iter().map(|_| Err(err.clone())).collect()
            }
        }
    }

    async fn download(
        &self,
        path: &ServerPath,
        remote: &RemoteNode,
        expect_local: Option<&LocalNode>,
        check_content: bool,
    ) -> Result<LocalNode, EnvError> {
        let (local, may_replace) = self.prepare_download(path, expect_local, check_content)?;
        let staged = match &remote.hash {
            Some(hash) => self.prefetch.claim(path, hash).await,
            None => None,
        };
        // The version being replaced: the blocks it shares with the new one are read
        // from it rather than fetched.
        let reuse = expect_local
            .and_then(|_| self.known_blocks(&local))
            .map(|blocks| LocalCopy {
                path: local.clone(),
                blocks,
            });
        let options = DownloadOptions {
            may_replace: Some(may_replace),
            reuse,
            staged,
            ..DownloadOptions::default()
        };
        let outcome = self
            .client
            .download_file(&self.remote_path(path), &local, options)
            .await
            .map_err(remote_error)?;
        let node = downloaded_node(&outcome)?;
        self.remember_blocks(local, &node, outcome.blocks);
        Ok(node)
    }

    async fn download_many(&self, items: &[DownloadItem]) -> Vec<Result<LocalNode, EnvError>> {
        let mut out: Vec<Result<LocalNode, EnvError>> = Vec::with_capacity(items.len());
        let mut files = Vec::with_capacity(items.len());
        // Which items went into the batch.
        let mut sent: Vec<usize> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.prepare_download(&item.path, item.expect_local.as_ref(), item.check_content)
            {
                Ok((local, may_replace)) => {
                    sent.push(i);
                    files.push(SmallDownload {
                        remote: self.remote_path(&item.path),
                        local,
                        may_replace: Some(may_replace),
                    });
                    // Replaced below by the batch's result for this item.
                    out.push(Err(EnvError::Unavailable("not downloaded".into())));
                }
                Err(err) => out.push(Err(err)),
            }
        }
        match self.client.download_small_files(files).await {
            Ok(results) => {
                for (i, result) in sent.into_iter().zip(results) {
                    out[i] = result
                        .map_err(remote_error)
                        .and_then(|outcome| downloaded_node(&outcome));
                }
            }
            Err(err) => {
                let err = remote_error(err);
                for i in sent {
                    out[i] = Err(err.clone());
                }
            }
        }
        out
    }

    async fn mkdir_remote(&self, path: &ServerPath) -> Result<RemoteNode, EnvError> {
        let remote = self.remote_path(path);
        match self.client.mkdir(&remote).await {
            Ok(entry) => Self::remote_node(&entry),
            Err(err) if err.code() == Some("already_exists") => {
                let entry = self.client.stat(&remote).await.map_err(remote_error)?;
                if entry.kind == EntryKind::Folder {
                    Self::remote_node(&entry)
                } else {
                    Err(EnvError::RemoteChanged(format!("{remote} is a file")))
                }
            }
            Err(err) => Err(remote_error(err)),
        }
    }

    async fn move_remote(
        &self,
        from: &ServerPath,
        to: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError> {
        let entry = self
            .client
            .move_entry_at(&self.remote_path(from), &self.remote_path(to), base_rev)
            .await
            .map_err(remote_error)?;
        Self::remote_node(&entry)
    }

    async fn delete_remote(
        &self,
        path: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<(), EnvError> {
        match self
            .client
            .delete_at(&self.remote_path(path), base_rev)
            .await
        {
            Ok(()) => Ok(()),
            // Already gone: what the delete wanted.
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) => Err(remote_error(err)),
        }
    }

    fn racy_from(&self) -> Option<RacyFrom> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let now = now.as_nanos() as i64;
        Some(RacyFrom {
            fine: now - RACY_FINE_NS,
            whole_seconds: now - RACY_WHOLE_SECONDS_NS,
        })
    }

    fn stamp(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        format_stamp(secs)
    }
}
