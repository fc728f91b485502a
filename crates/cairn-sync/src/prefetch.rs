//! Streaming sync, the receiving side: while another device uploads a large file into
//! the synced folder, this one fetches each block as soon as the server holds it, into
//! a hidden temp file in the sync folder laid out as the file will be. When the commit
//! arrives, the engine's download of that file claims the temp file
//! ([`Prefetcher::claim`]) and fetches only what is still missing, so the file is in
//! place moments after the uploader finished instead of a whole download later.
//!
//! Nothing becomes visible early: the temp file is ignored by the scan like every
//! download's, and it becomes the file only through the engine's download, with the
//! usual checks (the block list must be the one announced, each block was checked
//! against its hash before it was written, the destination must still be what the
//! planner saw). An upload that is given up (it leaves the server's list) or expires
//! (its uploader vanished) takes its temp file with it.
//!
//! The daemon wakes the prefetcher on [`cairn_client::proto::Notification::Uploads`];
//! it reads the list of uploads in progress, starts fetching blocks newly stored, and
//! otherwise sleeps: no upload in progress, no work and no request. What to fetch, what
//! a download may take and when an upload is over is decided by a [`Book`], without
//! I/O, which the simulation drives too.

mod book;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_client::proto::PendingUpload;
use cairn_client::{temp_beside, Client, Staged, ANNOUNCE_MIN_SIZE};
use cairn_core::{BlockHash, ContentHash, ServerPath};
use tempfile::NamedTempFile;
use tokio::sync::{Notify, RwLock, Semaphore};
use tokio_util::sync::CancellationToken;

pub use book::{Book, Claimed, Listed, Work, LINGER_MS};

/// Marks the prefetcher's temp files (`.NAME.cairn-stream.cairn-tmp-RANDOM` in the sync
/// folder's top) apart from downloads', so that a daemon starting removes those a killed
/// one left.
const STAGING_SUFFIX: &str = ".cairn-stream";

/// The list of uploads is read at most this often: an upload tells of every block it
/// stores (a 1 GiB file, some 220 times in 5 s), and a reading costs the server a
/// query over the whole block list. Fetching runs ahead of the uploader all the same.
const REREAD_AFTER: Duration = Duration::from_millis(50);

/// Blocks fetched at once, over every upload.
const PARALLEL_FETCHES: usize = 4;

/// Fetches the blocks of other devices' uploads into the sync folder ahead of their
/// commits. Cheap to clone.
#[derive(Clone)]
pub struct Prefetcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// The block list of this device's copy of the file at a path of the sync folder, if it
/// has one (empty if not).
pub type LocalBlocks = Arc<dyn Fn(&ServerPath) -> Vec<(BlockHash, u32)> + Send + Sync>;

struct Inner {
    client: Client,
    root: PathBuf,
    remote_root: ServerPath,
    local_blocks: Option<LocalBlocks>,
    book: Mutex<Book>,
    /// The temp file of each upload the book tracks, by id.
    files: Mutex<HashMap<String, Arc<StagingFile>>>,
    poke: Notify,
    fetches: Semaphore,
}

/// An upload's temp file, laid out as the file will be.
struct StagingFile {
    /// `None` once claimed or dropped.
    temp: Mutex<Option<NamedTempFile>>,
    file: Arc<File>,
    /// Each distinct block's size and offsets.
    layout: BTreeMap<BlockHash, (u32, Vec<u64>)>,
    /// Held (shared) while a block is written, taken (exclusive) by a claim, so that
    /// a claimed file is not written by a fetch afterwards.
    writes: RwLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Prefetcher {
    /// For the sync folder `root`, which is `remote_root` on the server.
    pub fn new(client: Client, root: PathBuf, remote_root: ServerPath) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                root,
                remote_root,
                local_blocks: None,
                book: Mutex::default(),
                files: Mutex::default(),
                poke: Notify::new(),
                fetches: Semaphore::new(PARALLEL_FETCHES),
            }),
        }
    }

    /// Leaves alone, of a new version of a file this device has (`local` says which
    /// blocks its copy has), what the download will read from the copy or fetch as a
    /// patch against it (see [`fetch_ahead`]).
    pub fn with_local_blocks(self, local: LocalBlocks) -> Self {
        let mut inner = Arc::into_inner(self.inner).expect("not shared yet");
        inner.local_blocks = Some(local);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Says that the uploads in progress changed: the list is read again.
    pub fn poke(&self) {
        self.inner.poke.notify_one();
    }

    /// Reads the list when poked, fetches what is new, and drops what is over, until
    /// `stop` is cancelled; then drops every temp file.
    pub async fn run(self, stop: CancellationToken) {
        self.remove_leftovers();
        let mut last_read = tokio::time::Instant::now() - REREAD_AFTER;
        loop {
            let wait = lock(&self.inner.book)
                .next_over()
                .map_or(Duration::from_secs(60), |at| {
                    Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)
                });
            tokio::select! {
                () = self.inner.poke.notified() => {
                    // Pokes that come meanwhile make one more reading, not one each.
                    tokio::select! {
                        () = tokio::time::sleep_until(last_read + REREAD_AFTER) => {}
                        () = stop.cancelled() => break,
                    }
                    last_read = tokio::time::Instant::now();
                    self.refresh().await;
                }
                () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
                () = stop.cancelled() => break,
            }
            let over = lock(&self.inner.book).over(now_ms());
            for id in over {
                tracing::debug!(
                    id,
                    "dropping the blocks of an upload that ended without its commit"
                );
                self.drop_file(&id);
            }
        }
        let ids: Vec<String> = lock(&self.inner.files).keys().cloned().collect();
        for id in ids {
            self.drop_file(&id);
        }
    }

    /// Removes the temp files a daemon that was killed left behind.
    fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.inner.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let ours = name
                .to_string_lossy()
                .contains(&format!("{STAGING_SUFFIX}.cairn-tmp-"));
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn drop_file(&self, id: &str) {
        if let Some(staging) = lock(&self.inner.files).remove(id) {
            lock(&staging.temp).take();
        }
    }

    /// The download of `path` with content `hash` takes the temp file fetched for it,
    /// if there is one; no fetch writes to it afterwards.
    pub async fn claim(&self, path: &ServerPath, hash: &ContentHash) -> Option<Staged> {
        let claimed = lock(&self.inner.book).claim(path, hash)?;
        let staging = lock(&self.inner.files).remove(&claimed.id)?;
        let _writes = staging.writes.write().await;
        let temp = lock(&staging.temp).take()?;
        tracing::debug!(
            path = %path,
            held = claimed.held.len(),
            blocks = staging.layout.len(),
            "download takes the blocks fetched ahead"
        );
        Some(Staged {
            temp,
            blocks: claimed.blocks,
            held: claimed.held.into_iter().collect(),
        })
    }

    /// Reads the uploads in progress, starts on new ones and fetches newly stored
    /// blocks. A failure waits for the next poke.
    async fn refresh(&self) {
        let uploads = match self.inner.client.pending_uploads().await {
            Ok(uploads) => uploads,
            Err(err) => {
                tracing::debug!(error = %err, "cannot read the uploads in progress");
                return;
            }
        };
        let listed: Vec<Listed> = uploads.iter().filter_map(|u| self.in_folder(u)).collect();
        let paths: HashMap<String, (ServerPath, u64)> = listed
            .iter()
            .map(|l| {
                let size = l.blocks.iter().map(|(_, s)| u64::from(*s)).sum();
                (l.id.clone(), (l.path.clone(), size))
            })
            .collect();
        let work = lock(&self.inner.book).listed(listed, ANNOUNCE_MIN_SIZE, now_ms());
        for id in work.started {
            let (path, size) = &paths[&id];
            if let Err(err) = self.start(&id, path, *size) {
                tracing::debug!(error = %err, %path, "cannot make a temp file for an upload in progress");
                lock(&self.inner.book).forget(&id);
            }
        }
        for (id, hash) in work.fetch {
            tokio::spawn(self.clone().fetch(id, hash));
        }
    }

    /// An upload of the server's list as the book takes it; `None` for one outside the
    /// sync folder or malformed.
    fn in_folder(&self, upload: &PendingUpload) -> Option<Listed> {
        let path = ServerPath::parse(&upload.path)
            .ok()?
            .rebase(&self.inner.remote_root, &ServerPath::root())?;
        let mut blocks = Vec::with_capacity(upload.blocks.len());
        let mut stored = BTreeSet::new();
        for block in &upload.blocks {
            let hash = BlockHash::from_hex(&block.hash).ok()?;
            blocks.push((hash, block.size));
            if block.stored {
                stored.insert(hash);
            }
        }
        if let Some(local) = &self.inner.local_blocks {
            stored = fetch_ahead(&local(&path), &blocks, stored);
        }
        let total: u64 = blocks.iter().map(|(_, s)| u64::from(*s)).sum();
        (total == upload.size).then_some(())?;
        Some(Listed {
            id: upload.id.clone(),
            path,
            content_hash: ContentHash::from_hex(&upload.content_hash).ok()?,
            blocks,
            stored,
            expires_at: upload.expires_at,
        })
    }

    /// Makes the temp file of a new upload: in the sync folder's top, which is always
    /// there, inside the folder, and on the file system of every destination in it.
    fn start(&self, id: &str, path: &ServerPath, size: u64) -> std::io::Result<()> {
        let layout = lock(&self.inner.book)
            .layout(id)
            .ok_or_else(|| std::io::Error::other("not in the book"))?;
        let name = format!("{}{STAGING_SUFFIX}", path.name().unwrap_or("upload"));
        let temp = temp_beside(&self.inner.root.join(name)).map_err(std::io::Error::other)?;
        let file = temp.as_file().try_clone()?;
        file.set_len(size)?;
        tracing::debug!(%path, size, "fetching an upload in progress");
        lock(&self.inner.files).insert(
            id.to_owned(),
            Arc::new(StagingFile {
                temp: Mutex::new(Some(temp)),
                file: Arc::new(file),
                layout,
                writes: RwLock::new(()),
            }),
        );
        Ok(())
    }

    /// Fetches one stored block and writes it at its offsets, unless the upload was
    /// claimed or dropped meanwhile.
    async fn fetch(self, id: String, hash: BlockHash) {
        let written = self.fetch_once(&id, hash).await;
        lock(&self.inner.book).fetched(&id, hash, written);
    }

    async fn fetch_once(&self, id: &str, hash: BlockHash) -> bool {
        let Ok(_permit) = self.inner.fetches.acquire().await else {
            return false;
        };
        let Some(staging) = lock(&self.inner.files).get(id).cloned() else {
            return false;
        };
        let Some((size, offsets)) = staging.layout.get(&hash).cloned() else {
            return false;
        };
        let data = match self.inner.client.get_pending_block(id, &hash).await {
            // Checked against its hash already; the size listed must agree too.
            Ok(data) if data.len() == size as usize => data,
            Ok(_) => return false,
            Err(err) => {
                tracing::debug!(error = %err, %hash, "cannot fetch a block of an upload in progress");
                return false;
            }
        };
        let _writing = staging.writes.read().await;
        if !lock(&self.inner.book).tracks(id) {
            return false;
        }
        let file = Arc::clone(&staging.file);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            offsets
                .iter()
                .try_for_each(|offset| file.write_all_at(&data, *offset))?;
            // Made durable now, while the uploader is still sending, so that the
            // download's fsync at the commit finds little left to write.
            file.sync_data()
        })
        .await
        .is_ok_and(|written| written.is_ok())
    }
}

/// Of the `stored` blocks of a new version `new` of a file this device has as `old`
/// (its block list), those worth fetching ahead: not those the copy has (the download
/// reads them from it), nor those with a base in it (the download fetches them as
/// patches against their base, a few KiB for a small edit, where fetching ahead would
/// move them whole: every block of a delta's size has one, so a new version of a file
/// this device has fetches ahead only blocks too small for a delta). For a new file
/// (`old` empty), all of them.
pub fn fetch_ahead(
    old: &[(BlockHash, u32)],
    new: &[(BlockHash, u32)],
    stored: BTreeSet<BlockHash>,
) -> BTreeSet<BlockHash> {
    if old.is_empty() {
        return stored;
    }
    let have: BTreeSet<BlockHash> = old.iter().map(|(hash, _)| *hash).collect();
    let bases = cairn_core::delta::pick_bases(old, new);
    let patched: BTreeSet<BlockHash> = new
        .iter()
        .zip(bases)
        .filter(|(_, base)| base.is_some())
        .map(|((hash, _), _)| *hash)
        .collect();
    stored
        .into_iter()
        .filter(|hash| !have.contains(hash) && !patched.contains(hash))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(parts: &[&str]) -> Vec<(BlockHash, u32)> {
        parts
            .iter()
            .map(|p| {
                (
                    BlockHash::of(p.as_bytes()),
                    cairn_core::delta::DELTA_MIN_BLOCK,
                )
            })
            .collect()
    }

    #[test]
    fn of_a_new_version_only_blocks_without_a_copy_or_a_base_are_fetched_ahead() {
        let new = list(&["a", "b2", "c", "d"]);
        let stored: BTreeSet<BlockHash> = new.iter().map(|(h, _)| *h).collect();
        // A new file: everything stored.
        assert_eq!(fetch_ahead(&[], &new, stored.clone()), stored);
        // An edit of "b" and a block appended: "a" and "c" are in the copy, "b2" goes
        // as a patch against "b", "d" against the copy's last block.
        let old = list(&["a", "b", "c"]);
        assert!(fetch_ahead(&old, &new, stored.clone()).is_empty());
        // A block too small for a delta has no base: fetched ahead unless in the copy.
        let mut new = new;
        new.push((BlockHash::of(b"tail"), 100));
        let mut stored = stored;
        stored.insert(BlockHash::of(b"tail"));
        assert_eq!(
            fetch_ahead(&old, &new, stored),
            BTreeSet::from([BlockHash::of(b"tail")])
        );
    }
}
