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
//! otherwise sleeps: no upload in progress, no work and no request.

use std::collections::{HashMap, HashSet};
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

/// How long the blocks of an upload that left the server's list are kept: its commit
/// may still be on its way (the uploader ends the upload right after committing).
pub const LINGER: Duration = Duration::from_secs(10);

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

struct Inner {
    client: Client,
    root: PathBuf,
    remote_root: ServerPath,
    /// By upload id.
    uploads: Mutex<HashMap<String, Arc<Staging>>>,
    poke: Notify,
    fetches: Semaphore,
}

/// One upload being fetched.
struct Staging {
    id: String,
    /// Where it will be, in the sync folder.
    path: ServerPath,
    content_hash: ContentHash,
    blocks: Vec<(BlockHash, u32)>,
    /// Every offset of each distinct block.
    offsets: HashMap<BlockHash, Vec<u64>>,
    file: Arc<File>,
    state: Mutex<StagingState>,
    /// Held (shared) while a block is written, taken (exclusive) by a claim, so that
    /// a claimed file is never written by a fetch again.
    writes: RwLock<()>,
}

struct StagingState {
    /// `None` once claimed or dropped.
    temp: Option<NamedTempFile>,
    held: HashSet<BlockHash>,
    fetching: HashSet<BlockHash>,
    /// The server's expiry, Unix ms.
    expires_at: i64,
    /// When it was first missing from the server's list.
    gone_since: Option<tokio::time::Instant>,
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
                uploads: Mutex::default(),
                poke: Notify::new(),
                fetches: Semaphore::new(PARALLEL_FETCHES),
            }),
        }
    }

    /// Says that the uploads in progress changed: the list is read again.
    pub fn poke(&self) {
        self.inner.poke.notify_one();
    }

    /// Uploads being fetched now (for tests and status).
    pub fn staged(&self) -> usize {
        lock(&self.inner.uploads).len()
    }

    /// Reads the list when poked, fetches what is new, and drops what is over, until
    /// `stop` is cancelled; then drops every temp file.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let wait = self.next_deadline();
            tokio::select! {
                () = self.inner.poke.notified() => self.refresh().await,
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => break,
            }
            self.drop_finished();
        }
        let all: Vec<Arc<Staging>> = lock(&self.inner.uploads).drain().map(|(_, s)| s).collect();
        for staging in all {
            lock(&staging.state).temp.take();
        }
    }

    /// The download of `path` with content `hash` takes the temp file fetched for it,
    /// if there is one; the fetches of it still in flight are waited for, and none
    /// writes to it afterwards.
    pub async fn claim(&self, path: &ServerPath, hash: &ContentHash) -> Option<Staged> {
        let staging = {
            let mut uploads = lock(&self.inner.uploads);
            let id = uploads
                .values()
                .find(|s| s.path == *path && s.content_hash == *hash)?
                .id
                .clone();
            uploads.remove(&id)?
        };
        let _writes = staging.writes.write().await;
        let mut state = lock(&staging.state);
        let temp = state.temp.take()?;
        tracing::debug!(
            path = %path,
            held = state.held.len(),
            blocks = staging.offsets.len(),
            "download takes the blocks fetched ahead"
        );
        Some(Staged {
            temp,
            blocks: staging.blocks.clone(),
            held: state.held.clone(),
        })
    }

    /// When the next upload is due to be dropped (at most a minute from now).
    fn next_deadline(&self) -> Duration {
        let uploads = lock(&self.inner.uploads);
        let now = tokio::time::Instant::now();
        let now_ms = now_ms();
        uploads
            .values()
            .map(|s| {
                let state = lock(&s.state);
                let expiry =
                    Duration::from_millis(state.expires_at.saturating_sub(now_ms).max(0) as u64);
                match state.gone_since {
                    Some(gone) => (gone + LINGER).saturating_duration_since(now).min(expiry),
                    None => expiry,
                }
            })
            .min()
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_millis(10), Duration::from_secs(60))
    }

    /// Drops the uploads that expired, or left the list more than [`LINGER`] ago.
    fn drop_finished(&self) {
        let now = tokio::time::Instant::now();
        let now_ms = now_ms();
        let mut uploads = lock(&self.inner.uploads);
        uploads.retain(|_, staging| {
            let mut state = lock(&staging.state);
            let over = state.expires_at <= now_ms
                || state.gone_since.is_some_and(|gone| now >= gone + LINGER);
            if over {
                tracing::debug!(path = %staging.path, "dropping the blocks of an upload that ended without its commit");
                state.temp.take();
            }
            !over
        });
    }

    /// Reads the uploads in progress, starts on new ones and fetches newly stored
    /// blocks. A failure waits for the next poke.
    async fn refresh(&self) {
        let listed = match self.inner.client.pending_uploads().await {
            Ok(listed) => listed,
            Err(err) => {
                tracing::debug!(error = %err, "cannot read the uploads in progress");
                return;
            }
        };
        let now = tokio::time::Instant::now();
        let mut seen = HashSet::new();
        for upload in listed {
            let Some(staging) = self.staging_for(&upload) else {
                continue;
            };
            seen.insert(upload.id.clone());
            let todo: Vec<BlockHash> = {
                let mut state = lock(&staging.state);
                state.expires_at = upload.expires_at;
                state.gone_since = None;
                let stored = upload
                    .blocks
                    .iter()
                    .filter(|b| b.stored)
                    .filter_map(|b| BlockHash::from_hex(&b.hash).ok());
                let mut todo = Vec::new();
                for hash in stored {
                    if !state.held.contains(&hash) && state.fetching.insert(hash) {
                        todo.push(hash);
                    }
                }
                todo
            };
            for hash in todo {
                tokio::spawn(self.clone().fetch(Arc::clone(&staging), hash));
            }
        }
        for (id, staging) in lock(&self.inner.uploads).iter() {
            if !seen.contains(id) {
                lock(&staging.state).gone_since.get_or_insert(now);
            }
        }
    }

    /// The staging of `upload`, made now if it is new and worth it; `None` for an
    /// upload outside the sync folder, too small to stream, or malformed.
    fn staging_for(&self, upload: &PendingUpload) -> Option<Arc<Staging>> {
        if let Some(known) = lock(&self.inner.uploads).get(&upload.id) {
            return Some(Arc::clone(known));
        }
        if upload.size < ANNOUNCE_MIN_SIZE {
            return None;
        }
        let path = ServerPath::parse(&upload.path)
            .ok()?
            .rebase(&self.inner.remote_root, &ServerPath::root())?;
        let name = path.name()?;
        let content_hash = ContentHash::from_hex(&upload.content_hash).ok()?;
        let mut blocks = Vec::with_capacity(upload.blocks.len());
        let mut offsets: HashMap<BlockHash, Vec<u64>> = HashMap::new();
        let mut offset = 0u64;
        for block in &upload.blocks {
            let hash = BlockHash::from_hex(&block.hash).ok()?;
            blocks.push((hash, block.size));
            offsets.entry(hash).or_default().push(offset);
            offset += u64::from(block.size);
        }
        if offset != upload.size {
            return None;
        }
        // In the sync folder's top: always there, inside the folder, and on the file
        // system of every destination in it.
        let temp = temp_beside(&self.inner.root.join(name)).ok()?;
        let file = temp.as_file().try_clone().ok()?;
        file.set_len(upload.size).ok()?;
        let staging = Arc::new(Staging {
            id: upload.id.clone(),
            path,
            content_hash,
            blocks,
            offsets,
            file: Arc::new(file),
            state: Mutex::new(StagingState {
                temp: Some(temp),
                held: HashSet::new(),
                fetching: HashSet::new(),
                expires_at: upload.expires_at,
                gone_since: None,
            }),
            writes: RwLock::new(()),
        });
        tracing::debug!(path = %staging.path, size = upload.size, "fetching an upload in progress");
        lock(&self.inner.uploads).insert(upload.id.clone(), Arc::clone(&staging));
        Some(staging)
    }

    /// Fetches one stored block and writes it at its offsets, unless the upload was
    /// claimed or dropped meanwhile. A failure leaves it for the next refresh.
    async fn fetch(self, staging: Arc<Staging>, hash: BlockHash) {
        let written = self.fetch_once(&staging, hash).await;
        let mut state = lock(&staging.state);
        state.fetching.remove(&hash);
        if written {
            state.held.insert(hash);
        }
    }

    async fn fetch_once(&self, staging: &Staging, hash: BlockHash) -> bool {
        let Ok(_permit) = self.inner.fetches.acquire().await else {
            return false;
        };
        if lock(&staging.state).temp.is_none() {
            return false;
        }
        let data = match self
            .inner
            .client
            .get_pending_block(&staging.id, &hash)
            .await
        {
            Ok(data) => data,
            Err(err) => {
                tracing::debug!(error = %err, %hash, "cannot fetch a block of an upload in progress");
                return false;
            }
        };
        let Some(offsets) = staging.offsets.get(&hash).cloned() else {
            return false;
        };
        // Checked against its hash already; the size the list gives must agree too.
        let listed = staging.blocks.iter().find(|(h, _)| *h == hash);
        if listed.is_none_or(|(_, size)| *size as usize != data.len()) {
            return false;
        }
        let _writing = staging.writes.read().await;
        if lock(&staging.state).temp.is_none() {
            return false;
        }
        let file = Arc::clone(&staging.file);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            offsets
                .iter()
                .try_for_each(|offset| file.write_all_at(&data, *offset))
        })
        .await
        .is_ok_and(|written| written.is_ok())
    }
}
