//! Pack files: small blocks stored many to a pack, for every backend.
//!
//! ```text
//! packs/<32 hex>.pack   immutable once in place; format in `pack.rs`
//! ```
//!
//! A batch of small blocks (a first sync of thousands of small files) costs one pack
//! this way. On the local disk that is one file and two fsyncs instead of a file, a
//! directory entry and their fsyncs per block (profiling a 10,000-file first sync put
//! most of the server's time in the kernel creating those files); in S3 it is one PUT
//! instead of one per block. Where packs are kept is a [`PackFiles`]: a folder
//! (`local.rs`) or a key prefix in a bucket (`s3.rs`); everything else, the index,
//! rewrites and how processes see each other's packs, is here once.
//!
//! A pack's name starts with the time it was made (milliseconds, then 64 random
//! bits), so names sort by age and a process can ask for the packs made since it last
//! looked instead of listing them all, which matters where a listing is a paid request
//! returning a thousand names at a time.
//!
//! Each process keeps an index (block → pack, offset, length) in memory, read from the
//! packs' trailers at open: about 100 bytes per packed block, so a million small files
//! cost about 100 MB (an on-disk index is the way out if that ever matters).
//!
//! Packs never change in place. Deleting blocks rewrites their pack without them (a new pack is written and
//! made durable, then the old one removed), so a deletion is immediate and visible to
//! every process: another process (`cairn admin gc` beside `cairn serve`) that looks for
//! a block in a pack that is gone re-reads the directory and finds the block's new
//! place, or learns that it was deleted. That is the guarantee garbage collection needs
//! (see `cairn-server`'s `gc.rs`): once a delete returns, no process finds the block.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_core::BlockHash;
use tracing::{debug, warn};

use crate::backend::EncodedBlock;
use crate::pack::{self, IndexSource, PackEntry};
use crate::StoreError;

/// Stored blocks up to this size go into packs when they arrive in a batch; larger ones
/// get a file each, where the file's cost is small next to writing the block.
pub(crate) const PACK_BLOCK_MAX: u64 = 1 << 20;

/// A listing of new packs also asks for those named up to this long before the previous
/// listing began: a pack is named when its writer starts, and becomes visible when its
/// write ends, and nodes' clocks differ a little.
const LISTING_OVERLAP: Duration = Duration::from_secs(120);

/// How often a read or a delete looks again after finding a pack gone (rewritten by
/// another process meanwhile) before giving up (a delete then fails, and the next
/// collection retries).
const LOOK_AGAIN: usize = 4;

pub(crate) type PackId = u128;

/// Where a packed block is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    pack: PackId,
    offset: u64,
    len: u32,
}

impl Loc {
    fn entry(&self, hash: BlockHash) -> PackEntry {
        PackEntry {
            hash,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// What this process knows of the packs.
#[derive(Default)]
struct Index {
    /// Where each packed block is read from.
    blocks: HashMap<BlockHash, Loc>,
    /// Further copies of a block in other packs (rare: two batches racing with the same
    /// new block, a block uploaded again by another account, a crash in the middle of a
    /// rewrite). Kept so that a delete removes every copy.
    copies: HashMap<BlockHash, Vec<Loc>>,
    packs: HashSet<PackId>,
}

impl Index {
    /// Records pack `id`'s entries. Returns, per entry, whether it is the block's first
    /// copy (or already recorded from this same pack).
    fn add(&mut self, id: PackId, entries: &[PackEntry]) -> Vec<bool> {
        self.packs.insert(id);
        entries
            .iter()
            .map(|e| {
                let loc = Loc {
                    pack: id,
                    offset: e.offset,
                    len: e.len,
                };
                match self.blocks.entry(e.hash) {
                    Entry::Vacant(slot) => {
                        slot.insert(loc);
                        true
                    }
                    Entry::Occupied(slot) if slot.get().pack == id => true,
                    Entry::Occupied(_) => {
                        let copies = self.copies.entry(e.hash).or_default();
                        if !copies.iter().any(|c| c.pack == id) {
                            copies.push(loc);
                        }
                        false
                    }
                }
            })
            .collect()
    }

    /// Forgets the packs for which `gone` holds and every copy in them, promoting a
    /// surviving copy where a block's main one went.
    fn drop_packs(&mut self, gone: impl Fn(PackId) -> bool) {
        self.packs.retain(|&id| !gone(id));
        self.copies.retain(|_, copies| {
            copies.retain(|loc| !gone(loc.pack));
            !copies.is_empty()
        });
        let mut orphaned = Vec::new();
        self.blocks.retain(|hash, loc| {
            let keep = !gone(loc.pack);
            if !keep && self.copies.contains_key(hash) {
                orphaned.push(*hash);
            }
            keep
        });
        for hash in orphaned {
            if let Some(mut copies) = self.copies.remove(&hash) {
                let first = copies.remove(0);
                self.blocks.insert(hash, first);
                if !copies.is_empty() {
                    self.copies.insert(hash, copies);
                }
            }
        }
    }

    /// Every pack holding a copy of `hash`.
    fn packs_holding(&self, hash: &BlockHash) -> impl Iterator<Item = PackId> + '_ {
        let main = self.blocks.get(hash).map(|loc| loc.pack);
        let copies = self
            .copies
            .get(hash)
            .into_iter()
            .flatten()
            .map(|loc| loc.pack);
        main.into_iter().chain(copies)
    }
}

/// Where packs are kept: a folder, or a key prefix in a bucket. The calls block (the
/// local folder's IO, or an S3 request waited for on a blocking thread); callers run
/// them on the blocking pool.
pub(crate) trait PackFiles: Send + Sync + 'static {
    /// The pack's path or address, or the folder's with `None`, for messages.
    fn location(&self, id: Option<PackId>) -> PathBuf;

    /// The packs there now. With `since`, only those whose names are at or after that
    /// time (Unix milliseconds) need be listed. Returns whether the listing holds every
    /// pack, which it may do whatever `since` says.
    fn list(&self, since: Option<u64>) -> io::Result<(Vec<PackId>, bool)>;

    /// A pack's entries, or `None` if it is gone.
    fn index(&self, id: PackId) -> io::Result<Option<(Vec<PackEntry>, IndexSource)>>;

    /// One stored block, `entry.len` bytes at `entry.offset`; `None` if the pack is
    /// gone, [`io::ErrorKind::UnexpectedEof`] if it is shorter than that.
    fn read(&self, id: PackId, entry: &PackEntry) -> io::Result<Option<Vec<u8>>>;

    /// The whole pack, or `None` if it is gone.
    fn read_whole(&self, id: PackId) -> io::Result<Option<Vec<u8>>>;

    /// Whether the pack is there.
    fn exists(&self, id: PackId) -> io::Result<bool>;

    /// Stores a new pack under `id`; on `Ok` it is durable and visible to every
    /// process.
    fn write(&self, id: PackId, bytes: &[u8]) -> io::Result<()>;

    /// Removes a pack, durably; one already gone is not an error.
    fn remove(&self, id: PackId) -> io::Result<()>;

    /// Called when a listing found packs this process did not know: their writer may
    /// have died after placing them but before making their names durable.
    fn settle(&self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) struct PackSet<F> {
    files: F,
    index: RwLock<Index>,
    /// Listings of new packs start here (Unix milliseconds): a little before the
    /// previous listing began.
    listed_since: AtomicU64,
    /// This process's deletions rewrite packs one at a time.
    rewriting: Mutex<()>,
}

pub(crate) fn pack_name(id: PackId) -> String {
    format!("{id:032x}.pack")
}

pub(crate) fn parse_name(name: &str) -> Option<PackId> {
    let hex = name.strip_suffix(".pack")?;
    let lower = hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    lower
        .then(|| PackId::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The name of the first pack made at `ms` (Unix milliseconds) or later: listings
/// start from it.
pub(crate) fn first_name_at(ms: u64) -> String {
    pack_name(PackId::from(ms) << 64)
}

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// A new pack's id: the time now, then 64 random bits.
fn new_id() -> PackId {
    (PackId::from(now_ms()) << 64) | PackId::from(rand::random::<u64>())
}

/// Which packs a reload asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reload {
    /// Those made since the last listing (and every pack where listing them all is as
    /// cheap): finds what other processes wrote.
    New,
    /// Every pack: also finds what other processes removed.
    All,
}

impl<F: PackFiles> PackSet<F> {
    /// Reads the index of every pack there. Does blocking IO.
    pub(crate) fn open(files: F) -> Result<Self, StoreError> {
        let set = Self {
            files,
            index: RwLock::new(Index::default()),
            listed_since: AtomicU64::new(0),
            rewriting: Mutex::new(()),
        };
        set.reload(Reload::All)?;
        Ok(set)
    }

    fn err(&self, id: Option<PackId>) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::from_io(self.files.location(id), source)
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lookup(&self, hash: &BlockHash) -> Option<Loc> {
        self.read_index().blocks.get(hash).copied()
    }

    /// A pack's entries, or `None` if it is gone.
    fn load(&self, id: PackId) -> Result<Option<Vec<PackEntry>>, StoreError> {
        let Some((entries, source)) = self.files.index(id).map_err(self.err(Some(id)))? else {
            return Ok(None);
        };
        if let IndexSource::Scan { reason } = source {
            warn!(
                path = %self.files.location(Some(id)).display(),
                %reason,
                blocks = entries.len(),
                "pack index damaged; its records were read one by one instead"
            );
        }
        Ok(Some(entries))
    }

    /// Brings the index up to date: packs written by another process are added and,
    /// when the listing holds every pack, packs another process removed are dropped.
    /// Returns whether anything changed.
    pub(crate) fn reload(&self, scope: Reload) -> Result<bool, StoreError> {
        let started = now_ms();
        let since = match scope {
            Reload::New => Some(self.listed_since.load(Ordering::Acquire)),
            Reload::All => None,
        };
        let (listed, complete) = self.files.list(since).map_err(self.err(None))?;
        let listed: HashSet<PackId> = listed.into_iter().collect();
        let overlap = u64::try_from(LISTING_OVERLAP.as_millis()).unwrap_or(u64::MAX);
        self.listed_since
            .fetch_max(started.saturating_sub(overlap), Ordering::AcqRel);
        let known = self.read_index().packs.clone();
        let gone: HashSet<PackId> = if complete {
            known.difference(&listed).copied().collect()
        } else {
            HashSet::new()
        };
        let mut added = Vec::new();
        for &id in listed.difference(&known) {
            if let Some(entries) = self.load(id)? {
                added.push((id, entries));
            }
        }
        if added.is_empty() && gone.is_empty() {
            return Ok(false);
        }
        if !added.is_empty() {
            self.files.settle().map_err(self.err(None))?;
        }
        let mut index = self.write_index();
        if !gone.is_empty() {
            index.drop_packs(|id| gone.contains(&id));
        }
        for (id, entries) in added {
            index.add(id, &entries);
        }
        Ok(true)
    }

    /// Forgets a pack found gone and looks for what replaced it. Returns whether
    /// anything changed.
    fn lost(&self, id: PackId) -> Result<bool, StoreError> {
        let dropped = {
            let mut index = self.write_index();
            let known = index.packs.contains(&id);
            index.drop_packs(|pack| pack == id);
            known
        };
        Ok(self.reload(Reload::New)? || dropped)
    }

    /// Reads one block from `loc`, or `None` if its pack is gone.
    fn read_at(&self, hash: BlockHash, loc: Loc) -> Result<Option<Bytes>, StoreError> {
        match self.files.read(loc.pack, &loc.entry(hash)) {
            Ok(bytes) => Ok(bytes.map(Bytes::from)),
            // Packs never shrink, and the index was checked against the pack's length:
            // a pack shorter than its index says was damaged under us.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                warn!(
                    %hash,
                    path = %self.files.location(Some(loc.pack)).display(),
                    "pack is shorter than its index says"
                );
                Err(StoreError::Corrupt(hash))
            }
            Err(e) => Err(self.err(Some(loc.pack))(e)),
        }
    }

    /// The stored form of a packed block, or `None` if no pack holds it. Looks for
    /// where it went if the pack the index names is gone.
    pub(crate) fn get(&self, hash: BlockHash) -> Result<Option<Bytes>, StoreError> {
        for _ in 0..LOOK_AGAIN {
            let Some(loc) = self.lookup(&hash) else {
                return Ok(None);
            };
            if let Some(bytes) = self.read_at(hash, loc)? {
                return Ok(Some(bytes));
            }
            if !self.lost(loc.pack)? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Whether a pack holds the block, checking that the pack is still there once per
    /// call for each pack in `checked`.
    pub(crate) fn contains(
        &self,
        hash: &BlockHash,
        checked: &mut HashSet<PackId>,
    ) -> Result<bool, StoreError> {
        for _ in 0..LOOK_AGAIN {
            let Some(loc) = self.lookup(hash) else {
                return Ok(false);
            };
            if checked.contains(&loc.pack)
                || self
                    .files
                    .exists(loc.pack)
                    .map_err(self.err(Some(loc.pack)))?
            {
                checked.insert(loc.pack);
                return Ok(true);
            }
            if !self.lost(loc.pack)? {
                return Ok(false);
            }
        }
        Ok(false)
    }

    pub(crate) fn stored_size(&self, hash: &BlockHash) -> Option<u64> {
        self.lookup(hash).map(|loc| u64::from(loc.len))
    }

    /// Every packed block's hash, after catching up with other processes' packs.
    pub(crate) fn hashes(&self) -> Result<Vec<BlockHash>, StoreError> {
        self.reload(Reload::All)?;
        Ok(self.read_index().blocks.keys().copied().collect())
    }

    /// Writes `blocks` as a new pack, durably.
    fn write_pack(
        &self,
        blocks: &[(BlockHash, &EncodedBlock)],
    ) -> Result<(PackId, Vec<PackEntry>), StoreError> {
        let id = new_id();
        let (bytes, entries) = pack::encode(blocks);
        self.files.write(id, &bytes).map_err(self.err(Some(id)))?;
        Ok((id, entries))
    }

    /// Stores `blocks` in one new pack. Returns, for each, whether it is the block's
    /// first packed copy (`false` if another pack already held it).
    pub(crate) fn put(
        &self,
        blocks: &[(BlockHash, &EncodedBlock)],
    ) -> Result<Vec<bool>, StoreError> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let (id, entries) = self.write_pack(blocks)?;
        Ok(self.write_index().add(id, &entries))
    }

    /// Removes every packed copy of the blocks, durably: each pack holding one is
    /// rewritten without them, or removed if nothing else is in it.
    pub(crate) fn delete(&self, hashes: &[BlockHash]) -> Result<(), StoreError> {
        let _one_at_a_time = self.rewriting.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..LOOK_AGAIN {
            let mut by_pack: HashMap<PackId, HashSet<BlockHash>> = HashMap::new();
            {
                let index = self.read_index();
                for hash in hashes {
                    for pack in index.packs_holding(hash) {
                        by_pack.entry(pack).or_default().insert(*hash);
                    }
                }
            }
            if by_pack.is_empty() {
                return Ok(());
            }
            let mut vanished = Vec::new();
            for (id, dead) in by_pack {
                if !self.rewrite_without(id, &dead)? {
                    vanished.push(id);
                }
            }
            if vanished.is_empty() {
                return Ok(());
            }
            // Another process rewrote a pack meanwhile: find where the blocks are now.
            for id in vanished {
                self.lost(id)?;
            }
        }
        Err(StoreError::Io {
            path: self.files.location(None),
            source: io::Error::other(
                "packs kept changing under a delete (another process rewriting them); \
                 run the collection again",
            ),
        })
    }

    /// Replaces pack `id` by one without `dead`, or removes it if nothing else is in
    /// it. Returns `false` if the pack is gone.
    fn rewrite_without(&self, id: PackId, dead: &HashSet<BlockHash>) -> Result<bool, StoreError> {
        let err = || self.err(Some(id));
        let Some(bytes) = self.files.read_whole(id).map_err(err())? else {
            return Ok(false);
        };
        // The pack's own index, not ours: it lists everything the pack holds.
        let (entries, _) = pack::read_index(&bytes[..]).map_err(err())?;
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for e in entries {
            if !dead.contains(&e.hash) && seen.insert(e.hash) {
                let stored = pack::read_block(&bytes[..], &e).map_err(err())?;
                let block = EncodedBlock {
                    header: Bytes::new(),
                    payload: Bytes::from(stored),
                };
                kept.push((e.hash, block));
            }
        }
        drop(bytes);
        let replacement = if kept.is_empty() {
            None
        } else {
            let refs: Vec<(BlockHash, &EncodedBlock)> = kept.iter().map(|(h, b)| (*h, b)).collect();
            Some(self.write_pack(&refs)?)
        };
        // The old pack goes before our index changes, so that no reload (ours or
        // another thread's) can find it again and bring the deleted blocks back.
        // Readers that took the old place meanwhile find the pack gone, look again
        // and find the new one.
        self.files.remove(id).map_err(err())?;
        // The new pack goes in before the old one's entries go out, so that a kept
        // block whose main copy was in the old pack is promoted to the new one.
        let mut index = self.write_index();
        if let Some((new_id, entries)) = &replacement {
            index.add(*new_id, entries);
        }
        index.drop_packs(|pack| pack == id);
        drop(index);
        debug!(
            pack = %pack_name(id),
            deleted = dead.len(),
            kept = kept.len(),
            "pack rewritten without deleted blocks"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pack_names_sort_by_time_and_listings_start_at_a_time() {
        let a = new_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_id();
        assert!(pack_name(a) < pack_name(b));
        let ms = u64::try_from(a >> 64).unwrap();
        assert!(first_name_at(ms) <= pack_name(a));
        assert!(first_name_at(ms + 1) > pack_name(a));
    }

    #[test]
    fn pack_names_round_trip_and_strays_are_not_packs() {
        let id: PackId = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
        assert_eq!(parse_name(&pack_name(id)), Some(id));
        for stray in [
            "0123.pack",
            "0123456789ABCDEF0011223344556677.pack",
            "0123456789abcdef0011223344556677.pack.tmp",
            "notes.txt",
        ] {
            assert_eq!(parse_name(stray), None, "{stray}");
        }
    }
}
