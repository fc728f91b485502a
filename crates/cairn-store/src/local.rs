//! The local-directory backend.
//!
//! ```text
//! <root>/blocks/ab/cd/abcd…(64 hex)   one file per block, fanned out on its first two bytes
//! <root>/packs/<32 hex>.pack           small blocks that arrived in a batch, many per file
//!                                      (see `packed.rs`)
//! <root>/tmp/<hash prefix>-<random>.tmp   writes in progress (same filesystem as blocks/)
//! <root>/quarantine/abcd…(64 hex)     damaged blocks moved aside by fsck or the scrub
//! ```
//!
//! A block becomes visible only once it is complete and durable: it is written to a temp
//! file, fsynced, linked into place under its final name, and the directory holding it is
//! fsynced before `put` returns. A pack is written the same way, once for its whole batch.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cairn_core::BlockHash;
use tracing::{debug, info, warn};

use crate::backend::{BlockBackend, BoxFuture, EncodedBlock};
use crate::codec::{HEADER_LEN, MAX_BLOCK_SIZE};
use crate::pack::{self, IndexSource, PackEntry};
use crate::packed::{pack_name, parse_name, PackFiles, PackId, PackSet, Reload, PACK_BLOCK_MAX};
use crate::{blocking, StoreError};

/// Temp files older than this are taken for leftovers of a crash and removed on open.
///
/// Younger ones are kept because another process may be writing them right now: an
/// `admin fsck` or `admin gc` run opens the store while `cairn serve` is uploading into
/// it, and deleting a live temp file would fail that upload. A write takes seconds at
/// most, so ten minutes leaves a wide margin; leftovers younger than that are removed by
/// the next open.
const STALE_TEMP_AGE: Duration = Duration::from_secs(10 * 60);

/// Number of second-level fan-out directories (`ab/cd`): one per value of a hash's first
/// two bytes.
const LEAF_DIRS: usize = 1 << 16;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes a directory's entries (names created, renamed or removed in it) durable.
#[cfg(unix)]
pub(crate) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err(path))
}

/// Windows cannot open a directory as a `File`, and NTFS journals its metadata, so there
/// is nothing to do. (Cairn's server is only tested on Linux.)
#[cfg(not(unix))]
pub(crate) fn sync_dir(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// How many fsyncs a batch put keeps in flight. The filesystem commits concurrent
/// fsyncs together (ext4 joins them to one journal commit and one device flush), so a
/// batch of small blocks costs a few flushes rather than two per block. Threads that
/// wait on the disk cost no CPU.
const BATCH_SYNC_THREADS: usize = 32;

/// Runs `f` on every item, from up to [`BATCH_SYNC_THREADS`] threads at once; the first
/// error wins.
fn for_each_parallel<T: Sync>(
    items: &[T],
    f: impl Fn(&T) -> Result<(), StoreError> + Sync,
) -> Result<(), StoreError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = BATCH_SYNC_THREADS.min(items.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        return Ok(());
                    };
                    if let Err(e) = f(item) {
                        // Stop the others early; they finish the item in hand.
                        next.store(items.len(), Ordering::Relaxed);
                        return Err(e);
                    }
                })
            })
            .collect();
        // Join every worker before reporting, so none outlives the batch's error.
        let results: Vec<Result<(), StoreError>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        results.into_iter().collect::<Result<(), StoreError>>()
    })
}

pub(crate) fn create_dir_if_missing(path: &Path) -> Result<(), StoreError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

pub(crate) fn exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn leaf_index(hash: &BlockHash) -> usize {
    (usize::from(hash.0[0]) << 8) | usize::from(hash.0[1])
}

/// Blocks in a local directory. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub(crate) struct LocalBackend {
    inner: Arc<Local>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

struct Local {
    root: PathBuf,
    blocks: PathBuf,
    tmp: PathBuf,
    /// Where damaged blocks are moved; created on first use, since most stores never
    /// need it.
    quarantine: PathBuf,
    /// Top-level fan-out directories (`ab`) this process knows to exist durably: those
    /// present at open (their names were fsynced then) and those it made since.
    top_ready: Box<[AtomicBool]>,
    /// Leaf directories (`ab/cd`) this process knows to exist durably, and whose entries
    /// from earlier processes it has fsynced once (see [`Local::ensure_leaf`]). Implies
    /// that the leaf's top-level directory is ready too.
    leaf_ready: Box<[AtomicBool]>,
    /// Per leaf directory, how many puts are between linking a block into it and
    /// fsyncing it. While non-zero, a block seen there may not be durable yet.
    leaf_linking: Box<[AtomicU32]>,
    /// Small blocks stored in batches.
    packs: PackSet<LocalPacks>,
}

impl LocalBackend {
    /// Opens (creating if needed) a block directory and removes stale temp files.
    ///
    /// Does blocking IO; meant to be called once at startup.
    pub(crate) fn open(root: PathBuf) -> Result<Self, StoreError> {
        let root_existed = exists(&root)?;
        let blocks = root.join("blocks");
        let tmp = root.join("tmp");
        for dir in [&blocks, &tmp] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        // Every top-level directory that exists now is durable after this. (Creating all
        // 256 up front would save a flush on the first block under each prefix, but
        // removing them costs ~0.6 s on the test machines' disks, which every test that
        // makes a temp store would pay.)
        sync_dir(&blocks)?;
        let top_ready: Box<[AtomicBool]> = (0..256).map(|_| AtomicBool::new(false)).collect();
        for top in read_subdirs(&blocks)? {
            top_ready[usize::from(top.byte)].store(true, Ordering::Relaxed);
        }
        sync_dir(&root)?;
        if !root_existed {
            // The root's own name must survive a crash too, or the blocks under it
            // vanish with it. Only checked when we made it: an existing parent may not
            // be ours to open.
            if let Some(parent) = root.parent() {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                sync_dir(parent)?;
            }
        }
        remove_stale_temp_files(&tmp, STALE_TEMP_AGE)?;
        let packs = PackSet::open(LocalPacks::new(&root, &tmp))?;
        let local = Local {
            packs,
            quarantine: root.join("quarantine"),
            root,
            blocks,
            tmp,
            top_ready,
            leaf_ready: (0..LEAF_DIRS).map(|_| AtomicBool::new(false)).collect(),
            leaf_linking: (0..LEAF_DIRS).map(|_| AtomicU32::new(0)).collect(),
        };
        Ok(Self {
            inner: Arc::new(local),
        })
    }
}

fn remove_stale_temp_files(tmp: &Path, max_age: Duration) -> Result<(), StoreError> {
    let now = SystemTime::now();
    let mut removed = 0usize;
    for entry in fs::read_dir(tmp).map_err(io_err(tmp))? {
        let entry = entry.map_err(io_err(tmp))?;
        let path = entry.path();
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Removed by someone else between listing and stat: nothing to do.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if !meta.is_file() {
            continue;
        }
        // A modification time in the future means the clock went back since the file
        // was written, so the file is old, not young.
        let stale = match meta.modified() {
            Ok(modified) => now
                .duration_since(modified)
                .map_or(true, |age| age >= max_age),
            Err(_) => true,
        };
        if !stale {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // A leftover we cannot remove wastes space but harms nothing else; refusing
            // to start the server over it would be worse.
            Err(e) => warn!(path = %path.display(), error = %e, "cannot remove stale temp file"),
        }
    }
    if removed > 0 {
        info!(removed, dir = %tmp.display(), "removed stale block temp files");
    }
    Ok(())
}

/// Decrements a leaf's in-flight link counter when a put leaves the critical section,
/// whether it succeeded or not.
struct Linking<'a>(&'a AtomicU32);

impl<'a> Linking<'a> {
    fn enter(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Linking<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Local {
    fn top_dir(&self, hex: &str) -> PathBuf {
        self.blocks.join(&hex[..2])
    }

    fn leaf_dir(&self, hex: &str) -> PathBuf {
        self.blocks.join(&hex[..2]).join(&hex[2..4])
    }

    fn block_path(&self, hex: &str) -> PathBuf {
        self.leaf_dir(hex).join(hex)
    }

    /// Makes sure the block's leaf directory exists durably, the first time this process
    /// touches it, for callers that found a block there.
    ///
    /// It fsyncs the leaf directory too: a previous process may have linked blocks into
    /// it and died (without the machine crashing) before its own directory fsync. Those
    /// names are visible but not yet durable, and must not be acknowledged on sight.
    fn ensure_leaf(&self, hash: &BlockHash, hex: &str) -> Result<(), StoreError> {
        let leaf = leaf_index(hash);
        if self.leaf_ready[leaf].load(Ordering::Acquire) {
            return Ok(());
        }
        let top = usize::from(hash.0[0]);
        let top_dir = self.top_dir(hex);
        if !self.top_ready[top].load(Ordering::Acquire) {
            create_dir_if_missing(&top_dir)?;
            sync_dir(&self.blocks)?;
            self.top_ready[top].store(true, Ordering::Release);
        }
        let leaf_dir = self.leaf_dir(hex);
        create_dir_if_missing(&leaf_dir)?;
        sync_dir(&top_dir)?;
        sync_dir(&leaf_dir)?;
        self.leaf_ready[leaf].store(true, Ordering::Release);
        Ok(())
    }

    /// Called when a block's file exists: makes sure its name is durable before anyone
    /// relies on it. Costs an fsync only while another put is linking into the same
    /// directory.
    fn settle_existing(&self, hash: &BlockHash, hex: &str) -> Result<(), StoreError> {
        self.ensure_leaf(hash, hex)?;
        if self.leaf_linking[leaf_index(hash)].load(Ordering::SeqCst) > 0 {
            sync_dir(&self.leaf_dir(hex))?;
        }
        Ok(())
    }

    /// Stores a block: temp file, fsync, link into place, fsync the directory.
    ///
    /// Every fsync costs a device cache flush (3-5 ms on the VMs Cairn is measured on, as
    /// much as writing a 4 MiB block), so the steps are arranged to need two in the
    /// common case, the minimum for this protocol: the file's and its directory's. The
    /// first put into a leaf directory in this process's life needs a third, of the
    /// parent, and the first into a new top-level directory a fourth. Directories are
    /// created before the temp file is written, so those extra fsyncs find their
    /// changes already in the journal.
    fn put(&self, hash: &BlockHash, block: &EncodedBlock) -> Result<bool, StoreError> {
        let hex = hash.to_hex();
        let dest = self.block_path(&hex);
        // No shortcut when the block is already here: see `BlockStore::put` for why the
        // write happens anyway. The link below finds the name taken.
        let leaf = leaf_index(hash);
        let top = usize::from(hash.0[0]);
        let leaf_ready = self.leaf_ready[leaf].load(Ordering::Acquire);
        let top_ready = leaf_ready || self.top_ready[top].load(Ordering::Acquire);
        if !top_ready {
            create_dir_if_missing(&self.top_dir(&hex))?;
        }
        if !leaf_ready {
            create_dir_if_missing(&self.leaf_dir(&hex))?;
        }
        let tmp = self.write_temp(&hex, block)?;
        let result = self.link_into_place(hash, &hex, &tmp, &dest);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            // Renamed into place, or never written.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // The block is safe; the leftover goes at a later open.
            Err(e) => warn!(path = %tmp.display(), error = %e, "cannot remove temp file"),
        }
        let created = result?;
        if !leaf_ready {
            // The leaf directory's own name, whether we just made it or a previous process
            // did and died before its fsync. Its entries, older blocks included, were
            // covered by the fsync in `link_into_place`.
            sync_dir(&self.top_dir(&hex))?;
            if !top_ready {
                sync_dir(&self.blocks)?;
                self.top_ready[top].store(true, Ordering::Release);
            }
            self.leaf_ready[leaf].store(true, Ordering::Release);
        }
        Ok(created)
    }

    /// Stores a batch of blocks with the same protocol as [`Local::put`] (each block's
    /// bytes fsynced before its name appears, each name's directory fsynced before we
    /// return), but with the fsyncs of the whole batch in flight together: write and
    /// fsync every temp file in parallel, link them all into place, then fsync every
    /// directory that gained a name, each once, in parallel.
    ///
    /// (A single `syncfs` per phase was tried first: it flushes whatever else is dirty
    /// on the filesystem too, and with another process writing it was slower than
    /// one put at a time.)
    fn put_many_loose(
        &self,
        blocks: &[(BlockHash, &EncodedBlock)],
    ) -> Result<Vec<bool>, StoreError> {
        /// Removes the batch's temp files however the batch ends. Once a block is
        /// linked into place its temp name is only a second link; removing it is not
        /// made durable, and a leftover goes at a later open.
        struct Temps(Vec<Option<PathBuf>>);
        impl Drop for Temps {
            fn drop(&mut self) {
                for tmp in self.0.iter().flatten() {
                    match fs::remove_file(tmp) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            warn!(path = %tmp.display(), error = %e, "cannot remove temp file")
                        }
                    }
                }
            }
        }
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let hexes: Vec<String> = blocks.iter().map(|(hash, _)| hash.to_hex()).collect();
        // Directories first, so their fsyncs below find them in the journal already.
        let mut new_tops = Vec::new();
        let mut new_leaves = Vec::new();
        for ((hash, _), hex) in blocks.iter().zip(&hexes) {
            let leaf = leaf_index(hash);
            let top = usize::from(hash.0[0]);
            if self.leaf_ready[leaf].load(Ordering::Acquire) {
                continue;
            }
            if !self.top_ready[top].load(Ordering::Acquire) {
                create_dir_if_missing(&self.top_dir(hex))?;
                new_tops.push(top);
            }
            create_dir_if_missing(&self.leaf_dir(hex))?;
            new_leaves.push(leaf);
        }
        let slots: Vec<std::sync::Mutex<Option<PathBuf>>> =
            blocks.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let indices: Vec<usize> = (0..blocks.len()).collect();
        let written = for_each_parallel(&indices, |&i| {
            let tmp = self.write_temp(&hexes[i], blocks[i].1)?;
            *slots[i].lock().expect("temp slot lock") = Some(tmp);
            Ok(())
        });
        let temps = Temps(
            slots
                .into_iter()
                .map(|slot| slot.into_inner().expect("temp slot lock"))
                .collect(),
        );
        written?;
        let mut leaves: Vec<usize> = blocks.iter().map(|(h, _)| leaf_index(h)).collect();
        leaves.sort_unstable();
        leaves.dedup();
        // Until the directories are fsynced, a name linked here is visible but not
        // durable; a concurrent `contains` that finds it fsyncs the directory itself.
        let _linking: Vec<Linking<'_>> = leaves
            .iter()
            .map(|&leaf| Linking::enter(&self.leaf_linking[leaf]))
            .collect();
        let mut created = Vec::with_capacity(blocks.len());
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (tmp, hex) in temps.0.iter().zip(&hexes) {
            let tmp = tmp.as_deref().ok_or_else(|| StoreError::Io {
                path: self.tmp.clone(),
                source: io::Error::other("a temp file of the batch is missing"),
            })?;
            let dest = self.block_path(hex);
            created.push(match fs::hard_link(tmp, &dest) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => {
                    debug!(error = %e, "hard link failed, renaming instead");
                    fs::rename(tmp, &dest).map_err(io_err(&dest))?;
                    true
                }
            });
        }
        // Every leaf that gained a name (also when another put won the race: its link
        // may not be durable yet), and the parents of directories made above.
        let mut seen_leaf = std::collections::HashSet::new();
        for ((hash, _), hex) in blocks.iter().zip(&hexes) {
            if seen_leaf.insert(leaf_index(hash)) {
                dirs.push(self.leaf_dir(hex));
            }
        }
        new_leaves.sort_unstable();
        new_leaves.dedup();
        for leaf in &new_leaves {
            dirs.push(self.blocks.join(format!("{:02x}", leaf >> 8)));
        }
        new_tops.sort_unstable();
        new_tops.dedup();
        if !new_tops.is_empty() {
            dirs.push(self.blocks.clone());
        }
        dirs.sort();
        dirs.dedup();
        for_each_parallel(&dirs, |dir| sync_dir(dir))?;
        for top in new_tops {
            self.top_ready[top].store(true, Ordering::Release);
        }
        for leaf in new_leaves {
            self.leaf_ready[leaf].store(true, Ordering::Release);
        }
        Ok(created)
    }

    fn link_into_place(
        &self,
        hash: &BlockHash,
        hex: &str,
        tmp: &Path,
        dest: &Path,
    ) -> Result<bool, StoreError> {
        let _linking = Linking::enter(&self.leaf_linking[leaf_index(hash)]);
        // A hard link, unlike a rename, fails when the name is taken, so exactly one of
        // several racing puts learns that it stored the block.
        let created = match fs::hard_link(tmp, dest) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                // Some filesystems have no hard links. A rename is just as atomic; it
                // replaces a block that appeared meanwhile with identical bytes, so the
                // only loss is that two racing puts may both report a new block.
                debug!(error = %e, "hard link failed, renaming instead");
                fs::rename(tmp, dest).map_err(io_err(dest))?;
                true
            }
        };
        // Also needed when another put won the race: its link may not be durable yet.
        sync_dir(&self.leaf_dir(hex))?;
        Ok(created)
    }

    fn write_temp(&self, hex: &str, block: &EncodedBlock) -> Result<PathBuf, StoreError> {
        // The hash prefix is only for whoever looks into tmp/ during an incident.
        let path = self
            .tmp
            .join(format!("{}-{:016x}.tmp", &hex[..16], rand::random::<u64>()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let written = file
            .write_all(&block.header)
            .and_then(|()| file.write_all(&block.payload))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(io_err(&path)(e));
        }
        Ok(path)
    }

    fn get_loose(&self, hash: &BlockHash) -> Result<Bytes, StoreError> {
        let path = self.block_path(&hash.to_hex());
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(*hash))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let len = file.metadata().map_err(io_err(&path))?.len();
        // Raw blocks are at most this long and compressed ones are stored only when
        // smaller, so anything longer is not something we wrote. Checking first keeps a
        // garbage file from costing us its size in memory.
        let limit = (MAX_BLOCK_SIZE + HEADER_LEN) as u64;
        if len > limit {
            warn!(%hash, len, "stored block is larger than any block we write");
            return Err(StoreError::Corrupt(*hash));
        }
        let mut buf = Vec::with_capacity(len as usize);
        // `take` guards against the file growing between stat and read.
        (&mut file)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;
        Ok(Bytes::from(buf))
    }

    fn contains_loose(&self, hash: &BlockHash) -> Result<bool, StoreError> {
        let hex = hash.to_hex();
        if !exists(&self.block_path(&hex))? {
            return Ok(false);
        }
        self.settle_existing(hash, &hex)?;
        Ok(true)
    }

    /// Removes a block. The directory is not fsynced: a deletion undone by a crash leaves
    /// an unreferenced block, which the next garbage collection finds again.
    fn delete_loose(&self, hash: &BlockHash) -> Result<(), StoreError> {
        let path = self.block_path(&hash.to_hex());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Renames the block's file to `quarantine/<hash>` and fsyncs both directories, so
    /// that after a crash the block is either still in place (and found damaged again)
    /// or in quarantine, never lost from both. A block quarantined before is replaced:
    /// the newest damaged copy is the one worth looking at.
    fn quarantine_loose(&self, hash: &BlockHash) -> Result<bool, StoreError> {
        let hex = hash.to_hex();
        let path = self.block_path(&hex);
        if !exists(&path)? {
            return Ok(false);
        }
        self.ensure_quarantine_dir()?;
        let dest = self.quarantine.join(&hex);
        match fs::rename(&path, &dest) {
            Ok(()) => {}
            // Someone else (a concurrent fsck or scrub) moved it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        }
        sync_dir(&self.quarantine)?;
        sync_dir(&self.leaf_dir(&hex))?;
        warn!(%hash, path = %dest.display(), "damaged block moved to quarantine");
        Ok(true)
    }

    fn stored_size_loose(&self, hash: &BlockHash) -> Result<Option<u64>, StoreError> {
        let path = self.block_path(&hash.to_hex());
        match fs::symlink_metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Walks `blocks/ab/cd/` and returns every well-named block file.
    ///
    /// Names that are not where their hash says they belong are skipped (and logged): the
    /// store could never find them through `get`, so reporting them as present would
    /// mislead fsck.
    fn list_loose(&self) -> Result<Vec<BlockHash>, StoreError> {
        let mut out = Vec::new();
        for top in read_subdirs(&self.blocks)? {
            for leaf in read_subdirs(&top.path)? {
                for entry in fs::read_dir(&leaf.path).map_err(io_err(&leaf.path))? {
                    let entry = entry.map_err(io_err(&leaf.path))?;
                    let name = entry.file_name();
                    let parsed = name.to_str().and_then(|n| BlockHash::from_hex(n).ok());
                    match parsed {
                        Some(hash) if hash.0[0..2] == [top.byte, leaf.byte] => out.push(hash),
                        _ => debug!(path = %entry.path().display(), "not a block file, skipped"),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// What the backend does: each operation looks in the packs and among the loose files.
impl Local {
    /// Stores a batch: the small blocks in one new pack (see `packed.rs`), larger ones a
    /// file each ([`Local::put_many_loose`]).
    ///
    /// Small blocks already stored go into the pack too, as a further copy: as for a
    /// lone put (see `BlockStore::put`), a batch of blocks the store holds must cost the
    /// same durable write as one of new blocks. Such uploads are rare (clients send only
    /// blocks their account lacks), and a delete removes every copy.
    fn put_many(&self, blocks: &[(BlockHash, EncodedBlock)]) -> Result<Vec<bool>, StoreError> {
        let mut created = vec![false; blocks.len()];
        let mut held_before = vec![false; blocks.len()];
        let mut seen = HashSet::new();
        let mut checked = HashSet::new();
        let (mut packed, mut loose) = (Vec::new(), Vec::new());
        for (i, (hash, block)) in blocks.iter().enumerate() {
            if !seen.insert(*hash) {
                continue; // given twice: the first copy counts
            }
            if block.len() > PACK_BLOCK_MAX {
                loose.push(i);
            } else {
                held_before[i] =
                    self.packs.contains(hash, &mut checked)? || self.contains_loose(hash)?;
                packed.push(i);
            }
        }
        let refs = |at: &[usize]| -> Vec<(BlockHash, &EncodedBlock)> {
            at.iter().map(|&i| (blocks[i].0, &blocks[i].1)).collect()
        };
        for (&i, first) in packed.iter().zip(self.packs.put(&refs(&packed))?) {
            created[i] = first && !held_before[i];
        }
        for (&i, new) in loose.iter().zip(self.put_many_loose(&refs(&loose))?) {
            created[i] = new;
        }
        Ok(created)
    }

    fn get(&self, hash: &BlockHash) -> Result<Bytes, StoreError> {
        if let Some(stored) = self.packs.get(*hash)? {
            return Ok(stored);
        }
        match self.get_loose(hash) {
            // Another process may have packed it since this one last looked.
            Err(StoreError::NotFound(_)) if self.packs.reload(Reload::New)? => {
                self.packs.get(*hash)?.ok_or(StoreError::NotFound(*hash))
            }
            other => other,
        }
    }

    /// Which of `hashes` are stored. Looks at other processes' new packs at most once.
    fn contains_many(&self, hashes: &[BlockHash]) -> Result<Vec<bool>, StoreError> {
        let mut checked = HashSet::new();
        let mut present = Vec::with_capacity(hashes.len());
        for hash in hashes {
            present.push(self.packs.contains(hash, &mut checked)? || self.contains_loose(hash)?);
        }
        if present.iter().any(|p| !p) && self.packs.reload(Reload::New)? {
            for (hash, present) in hashes.iter().zip(&mut present) {
                *present = *present || self.packs.contains(hash, &mut checked)?;
            }
        }
        Ok(present)
    }

    /// Deletes loose files and rewrites the packs holding any of `hashes`, each once.
    fn delete_many(&self, hashes: &[BlockHash]) -> Result<(), StoreError> {
        for hash in hashes {
            self.delete_loose(hash)?;
        }
        // Packs another process wrote since we last looked may hold some of them.
        self.packs.reload(Reload::New)?;
        self.packs.delete(hashes)
    }

    fn stored_size(&self, hash: &BlockHash) -> Result<Option<u64>, StoreError> {
        match self.packs.stored_size(hash) {
            Some(size) => Ok(Some(size)),
            None => self.stored_size_loose(hash),
        }
    }

    /// Every stored block; one held both loose and packed appears twice.
    fn list(&self) -> Result<Vec<BlockHash>, StoreError> {
        let mut hashes = self.list_loose()?;
        hashes.extend(self.packs.hashes()?);
        Ok(hashes)
    }

    /// Moves a damaged block aside: a loose file is renamed into `quarantine/`, a packed
    /// block is copied there and its pack rewritten without it.
    fn quarantine(&self, hash: &BlockHash) -> Result<bool, StoreError> {
        let mut moved = self.quarantine_loose(hash)?;
        if let Some(stored) = self.packs.get(*hash)? {
            self.ensure_quarantine_dir()?;
            let hex = hash.to_hex();
            let tmp = self.write_temp(
                &hex,
                &EncodedBlock {
                    header: Bytes::new(),
                    payload: stored,
                },
            )?;
            let dest = self.quarantine.join(&hex);
            if let Err(e) = fs::rename(&tmp, &dest) {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(&dest)(e));
            }
            sync_dir(&self.quarantine)?;
            self.packs.delete(&[*hash])?;
            warn!(%hash, path = %dest.display(), "damaged packed block copied to quarantine");
            moved = true;
        }
        Ok(moved)
    }

    fn ensure_quarantine_dir(&self) -> Result<(), StoreError> {
        if !exists(&self.quarantine)? {
            create_dir_if_missing(&self.quarantine)?;
            sync_dir(&self.root)?;
        }
        Ok(())
    }
}

/// The local backend's packs: files in `<root>/packs`, written through `<root>/tmp`.
pub(crate) struct LocalPacks {
    root: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    /// Whether `packs/` exists durably.
    dir_ready: AtomicBool,
}

impl LocalPacks {
    fn new(root: &Path, tmp: &Path) -> Self {
        Self {
            root: root.to_owned(),
            dir: root.join("packs"),
            tmp: tmp.to_owned(),
            dir_ready: AtomicBool::new(false),
        }
    }

    fn path(&self, id: PackId) -> PathBuf {
        self.dir.join(pack_name(id))
    }

    /// Opens a pack, or `None` if it is gone (rewritten or deleted by someone else).
    fn open(&self, id: PackId) -> io::Result<Option<File>> {
        match File::open(self.path(id)) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn ensure_dir(&self) -> io::Result<()> {
        if self.dir_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        match fs::create_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        File::open(&self.root)?.sync_all()?;
        self.dir_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl PackFiles for LocalPacks {
    fn location(&self, id: Option<PackId>) -> PathBuf {
        match id {
            Some(id) => self.path(id),
            None => self.dir.clone(),
        }
    }

    /// Always every pack: a folder is read whole at little cost.
    fn list(&self, _since: Option<u64>) -> io::Result<(Vec<PackId>, bool)> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
            Err(e) => return Err(e),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            match entry.file_name().to_str().and_then(parse_name) {
                Some(id) => ids.push(id),
                None => debug!(path = %entry.path().display(), "not a pack file, skipped"),
            }
        }
        Ok((ids, true))
    }

    fn index(&self, id: PackId) -> io::Result<Option<(Vec<PackEntry>, IndexSource)>> {
        self.open(id)?
            .map(|file| pack::read_index(&file))
            .transpose()
    }

    fn read(&self, id: PackId, entry: &PackEntry) -> io::Result<Option<Vec<u8>>> {
        self.open(id)?
            .map(|file| pack::read_block(&file, entry))
            .transpose()
    }

    fn read_whole(&self, id: PackId) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(id)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, id: PackId) -> io::Result<bool> {
        match fs::symlink_metadata(self.path(id)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Temp file, fsync, rename into `packs/`, fsync the folder.
    fn write(&self, id: PackId, bytes: &[u8]) -> io::Result<()> {
        self.ensure_dir()?;
        let tmp = self.tmp.join(format!("{}.tmp", pack_name(id)));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(bytes)?;
                file.sync_all()
            });
        let placed = written.and_then(|()| fs::rename(&tmp, self.path(id)));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.sync_dir()
    }

    fn remove(&self, id: PackId) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.sync_dir()
    }

    /// Fsyncs the folder: a previous process may have renamed a pack into place and
    /// died before the folder's fsync.
    fn settle(&self) -> io::Result<()> {
        self.sync_dir()
    }
}

/// A fan-out directory: its path and the hash byte its two-hex-digit name stands for.
struct FanOut {
    path: PathBuf,
    byte: u8,
}

fn read_subdirs(dir: &Path) -> Result<Vec<FanOut>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let byte = entry.file_name().to_str().and_then(|n| {
            let lower = n.len() == 2 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            lower.then(|| u8::from_str_radix(n, 16).ok()).flatten()
        });
        let is_dir = entry.file_type().map_err(io_err(&path))?.is_dir();
        match byte {
            Some(byte) if is_dir => out.push(FanOut { path, byte }),
            _ => debug!(path = %path.display(), "not a fan-out directory, skipped"),
        }
    }
    Ok(out)
}

impl BlockBackend for LocalBackend {
    fn put(&self, hash: BlockHash, block: EncodedBlock) -> BoxFuture<'_, Result<bool, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.put(&hash, &block)))
    }

    fn get(&self, hash: BlockHash) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.get(&hash)))
    }

    fn contains(&self, hash: BlockHash) -> BoxFuture<'_, Result<bool, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || Ok(inner.contains_many(&[hash])?[0])))
    }

    fn delete(&self, hash: BlockHash) -> BoxFuture<'_, Result<(), StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.delete_many(&[hash])))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<BlockHash>, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.list()))
    }

    fn quarantine(&self, hash: BlockHash) -> BoxFuture<'_, Result<bool, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.quarantine(&hash)))
    }

    fn stored_size(&self, hash: BlockHash) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.stored_size(&hash)))
    }

    fn put_many(
        &self,
        blocks: Vec<(BlockHash, EncodedBlock)>,
    ) -> BoxFuture<'_, Result<Vec<bool>, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.put_many(&blocks)))
    }

    fn delete_many(&self, hashes: Vec<BlockHash>) -> BoxFuture<'_, Result<(), StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.delete_many(&hashes)))
    }

    fn contains_many(
        &self,
        hashes: Vec<BlockHash>,
    ) -> BoxFuture<'_, Result<Vec<bool>, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.contains_many(&hashes)))
    }
}
