//! The local backend's pack files: small blocks stored many to a file.
//!
//! ```text
//! <root>/packs/<32 hex>.pack   immutable once in place; format in `pack.rs`
//! ```
//!
//! A batch of small blocks (a first sync of thousands of small files) costs one file
//! and two fsyncs this way, instead of a file, a directory entry and their fsyncs per
//! block. Profiling a 10,000-file first sync put most of the server's time in the
//! kernel creating those files.
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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use bytes::Bytes;
use cairn_core::BlockHash;
use tracing::{debug, warn};

use crate::backend::EncodedBlock;
use crate::local::{create_dir_if_missing, io_err, sync_dir};
use crate::pack::{self, IndexSource, PackEntry};
use crate::StoreError;

/// Stored blocks up to this size go into packs when they arrive in a batch; larger ones
/// get a file each, where the file's cost is small next to writing the block.
pub(crate) const PACK_BLOCK_MAX: u64 = 1 << 20;

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

pub(crate) struct PackSet {
    root: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    /// Whether `packs/` exists durably.
    dir_ready: AtomicBool,
    index: RwLock<Index>,
    /// This process's deletions rewrite packs one at a time.
    rewriting: Mutex<()>,
}

fn pack_name(id: PackId) -> String {
    format!("{id:032x}.pack")
}

fn parse_name(name: &str) -> Option<PackId> {
    let hex = name.strip_suffix(".pack")?;
    let lower = hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    lower
        .then(|| PackId::from_str_radix(hex, 16).ok())
        .flatten()
}

/// Opens a pack, or `None` if it is gone (rewritten or deleted by someone else).
fn open_if_there(path: &Path) -> Result<Option<File>, StoreError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl PackSet {
    /// Reads the index of every pack under `root/packs`. Does blocking IO.
    pub(crate) fn open(root: &Path, tmp: &Path) -> Result<Self, StoreError> {
        let set = Self {
            root: root.to_owned(),
            dir: root.join("packs"),
            tmp: tmp.to_owned(),
            dir_ready: AtomicBool::new(false),
            index: RwLock::new(Index::default()),
            rewriting: Mutex::new(()),
        };
        if crate::local::exists(&set.dir)? {
            set.dir_ready.store(true, Ordering::Release);
            // Fsyncs the folder if it finds packs: a previous process may have renamed
            // one into place and died before the folder's fsync.
            set.reload()?;
        }
        Ok(set)
    }

    fn path(&self, id: PackId) -> PathBuf {
        self.dir.join(pack_name(id))
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

    /// The packs in the directory now.
    fn list_ids(&self) -> Result<HashSet<PackId>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut ids = HashSet::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            match entry.file_name().to_str().and_then(parse_name) {
                Some(id) => {
                    ids.insert(id);
                }
                None => debug!(path = %entry.path().display(), "not a pack file, skipped"),
            }
        }
        Ok(ids)
    }

    /// A pack's entries, or `None` if it is gone.
    fn load(&self, id: PackId) -> Result<Option<Vec<PackEntry>>, StoreError> {
        let path = self.path(id);
        let Some(file) = open_if_there(&path)? else {
            return Ok(None);
        };
        let (entries, source) = pack::read_index(&file).map_err(io_err(&path))?;
        if let IndexSource::Scan { reason } = source {
            warn!(
                path = %path.display(),
                %reason,
                blocks = entries.len(),
                "pack index damaged; its records were read one by one instead"
            );
        }
        Ok(Some(entries))
    }

    /// Brings the index up to date with the directory: packs written by another process
    /// are added, packs another process removed are dropped. Returns whether anything
    /// changed.
    pub(crate) fn reload(&self) -> Result<bool, StoreError> {
        let listed = self.list_ids()?;
        let known = self.read_index().packs.clone();
        let gone: HashSet<PackId> = known.difference(&listed).copied().collect();
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
            // Their writer may have died between renaming and fsyncing the directory.
            sync_dir(&self.dir)?;
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

    /// Reads one block from `loc`, or `None` if its pack is gone.
    fn read_at(&self, hash: BlockHash, loc: Loc) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(loc.pack);
        let Some(file) = open_if_there(&path)? else {
            return Ok(None);
        };
        match pack::read_block(&file, &loc.entry(hash)) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            // Packs never shrink, and the index was checked against the file's length:
            // a pack shorter than its index says was damaged under us.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                warn!(%hash, path = %path.display(), "pack is shorter than its index says");
                Err(StoreError::Corrupt(hash))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The stored form of a packed block, or `None` if no pack holds it. Looks at the
    /// directory again if the pack the index names is gone.
    pub(crate) fn get(&self, hash: BlockHash) -> Result<Option<Bytes>, StoreError> {
        for _ in 0..LOOK_AGAIN {
            let Some(loc) = self.lookup(&hash) else {
                return Ok(None);
            };
            if let Some(bytes) = self.read_at(hash, loc)? {
                return Ok(Some(bytes));
            }
            if !self.reload()? {
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
            if checked.contains(&loc.pack) || crate::local::exists(&self.path(loc.pack))? {
                checked.insert(loc.pack);
                return Ok(true);
            }
            if !self.reload()? {
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
        self.reload()?;
        Ok(self.read_index().blocks.keys().copied().collect())
    }

    fn ensure_dir(&self) -> Result<(), StoreError> {
        if self.dir_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        create_dir_if_missing(&self.dir)?;
        sync_dir(&self.root)?;
        self.dir_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes `blocks` as a new pack and makes it durable: temp file, fsync, rename into
    /// `packs/`, fsync the directory.
    fn write_pack(
        &self,
        blocks: &[(BlockHash, &EncodedBlock)],
    ) -> Result<(PackId, Vec<PackEntry>), StoreError> {
        self.ensure_dir()?;
        let id: PackId = rand::random();
        let (bytes, entries) = pack::encode(blocks);
        let tmp = self.tmp.join(format!("{}.tmp", pack_name(id)));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            });
        let dest = self.path(id);
        let placed = written.and_then(|()| fs::rename(&tmp, &dest));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        sync_dir(&self.dir)?;
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
            let mut vanished = false;
            for (id, dead) in by_pack {
                vanished |= !self.rewrite_without(id, &dead)?;
            }
            if !vanished {
                return Ok(());
            }
            // Another process rewrote a pack meanwhile: find where the blocks are now.
            self.reload()?;
        }
        Err(StoreError::Io {
            path: self.dir.clone(),
            source: io::Error::other(
                "packs kept changing under a delete (another process rewriting them); \
                 run the collection again",
            ),
        })
    }

    /// Replaces pack `id` by one without `dead`, or removes it if nothing else is in
    /// it. Returns `false` if the pack is gone.
    fn rewrite_without(&self, id: PackId, dead: &HashSet<BlockHash>) -> Result<bool, StoreError> {
        let path = self.path(id);
        let Some(file) = open_if_there(&path)? else {
            return Ok(false);
        };
        // The file's own index, not ours: it lists everything the pack holds.
        let (entries, _) = pack::read_index(&file).map_err(io_err(&path))?;
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for e in entries {
            if !dead.contains(&e.hash) && seen.insert(e.hash) {
                let stored = pack::read_block(&file, &e).map_err(io_err(&path))?;
                let block = EncodedBlock {
                    header: Bytes::new(),
                    payload: Bytes::from(stored),
                };
                kept.push((e.hash, block));
            }
        }
        drop(file);
        let replacement = if kept.is_empty() {
            None
        } else {
            let refs: Vec<(BlockHash, &EncodedBlock)> = kept.iter().map(|(h, b)| (*h, b)).collect();
            Some(self.write_pack(&refs)?)
        };
        // The old file goes before our index changes, so that no reload (ours or
        // another thread's) can find it again and bring the deleted blocks back.
        // Readers that took the old place meanwhile find the file gone, read the
        // folder again and find the new pack.
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        sync_dir(&self.dir)?;
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
