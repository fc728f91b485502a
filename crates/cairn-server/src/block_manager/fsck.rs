//! `cairn admin fsck`: checks that every block metadata references exists and verifies,
//! and that the metadata keeps its own invariants; lists the files damaged blocks break.
//!
//! Damage is also contained, unless the caller asks for a read-only check: a corrupt
//! block is moved to quarantine (so it is never served and a re-upload writes a fresh
//! copy), and possession of every damaged block is forgotten (so `blocks/check` tells
//! every client to upload it again). The background scrub (`scrub.rs`) repairs a
//! damaged block through the same `contain_damage`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_core::BlockHash;
use cairn_meta::{DamagedFile, Inconsistency, MetaStore, ReferencedBlock};
use cairn_store::{BlockStore, StoreError};
use futures::{StreamExt, TryStreamExt};

use super::BlockManager;

/// Blocks read per metadata page.
const PAGE: u32 = 256;

/// Progress reports: blocks and plaintext bytes checked so far.
pub type FsckProgress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How [`BlockManager::fsck`] works.
#[derive(Clone)]
pub struct FsckOptions {
    /// Contain the damage found: quarantine corrupt blocks and forget possession of
    /// every damaged block. `false` makes fsck read-only.
    pub quarantine: bool,
    /// Blocks read and verified at once (at least 1). Each holds up to a block (8 MiB)
    /// in memory.
    pub parallelism: usize,
    /// Called after each block.
    pub progress: Option<FsckProgress>,
}

impl Default for FsckOptions {
    fn default() -> Self {
        Self {
            quarantine: true,
            parallelism: 3,
            progress: None,
        }
    }
}

impl fmt::Debug for FsckOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsckOptions")
            .field("quarantine", &self.quarantine)
            .field("parallelism", &self.parallelism)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What is wrong with one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Metadata references it but the block store does not have it.
    Missing,
    /// The stored bytes do not match the block's hash.
    Corrupt,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::Missing => "missing",
            Damage::Corrupt => "corrupt",
        })
    }
}

/// A referenced block whose content verifies but whose recorded size is different:
/// the metadata row is wrong, not the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeMismatch {
    /// The block.
    pub hash: BlockHash,
    /// The size its row records.
    pub recorded: i64,
    /// The size of its verified content.
    pub actual: u64,
}

/// What [`BlockManager::fsck`] found.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    /// Referenced blocks read and verified (or found missing).
    pub blocks_checked: u64,
    /// Plaintext bytes of the blocks that verified.
    pub bytes_verified: u64,
    /// Referenced blocks the store does not have, sorted.
    pub missing: Vec<BlockHash>,
    /// Referenced blocks whose stored bytes do not match their hash, sorted.
    pub corrupt: Vec<BlockHash>,
    /// Corrupt blocks moved to quarantine by this run.
    pub quarantined: Vec<BlockHash>,
    /// Blocks whose row records a size other than their content's.
    pub size_mismatches: Vec<SizeMismatch>,
    /// Broken metadata invariants.
    pub inconsistencies: Vec<Inconsistency>,
    /// Every file version naming a missing or corrupt block.
    pub damaged_files: Vec<DamagedFile>,
}

impl FsckReport {
    /// The report as `cairn admin fsck --json` prints it and administrators see it.
    pub fn to_info(&self, quarantine: bool, finished_at: i64) -> cairn_proto::FsckReportInfo {
        let hexes =
            |hashes: &[BlockHash]| -> Vec<String> { hashes.iter().map(|h| h.to_hex()).collect() };
        cairn_proto::FsckReportInfo {
            clean: self.is_clean(),
            finished_at,
            blocks_checked: self.blocks_checked,
            bytes_verified: self.bytes_verified,
            missing_blocks: hexes(&self.missing),
            corrupt_blocks: hexes(&self.corrupt),
            quarantine,
            quarantined_blocks: hexes(&self.quarantined),
            size_mismatches: self
                .size_mismatches
                .iter()
                .map(|m| cairn_proto::FsckSizeMismatch {
                    hash: m.hash.to_hex(),
                    recorded: m.recorded,
                    actual: m.actual,
                })
                .collect(),
            inconsistencies: self.inconsistencies.iter().map(|i| i.to_string()).collect(),
            damaged_files: self
                .damaged_files
                .iter()
                .map(|f| cairn_proto::FsckDamagedFile {
                    namespace: f.ns.0,
                    user: f.owner.clone(),
                    path: f.path.as_str().to_owned(),
                    version: f.version.0.to_string(),
                    is_current: f.is_current,
                    in_trash: f.in_trash,
                    blocks: hexes(&f.blocks),
                })
                .collect(),
        }
    }

    /// Whether nothing at all is wrong.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.size_mismatches.is_empty()
            && self.inconsistencies.is_empty()
    }
}

/// Why fsck could not finish (as opposed to what it found).
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Meta(#[from] cairn_meta::MetaError),
    /// The block store failed for a reason other than a damaged block (an I/O error).
    #[error("block store: {0}")]
    Store(#[from] StoreError),
}

/// The outcome of reading one referenced block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockCheck {
    /// Present and verified; its plaintext length.
    Intact(u64),
    /// Missing or corrupt.
    Damaged(Damage),
}

/// Reads and verifies one referenced block. A missing block is asked about again
/// before it counts as damage: garbage collection may have taken it after its last
/// reference went, between the caller's page of hashes and this read.
pub(super) async fn check_block(
    meta: &MetaStore,
    store: &BlockStore,
    hash: BlockHash,
) -> Result<Option<BlockCheck>, FsckError> {
    match store.get_required(hash).await {
        Ok(data) => Ok(Some(BlockCheck::Intact(data.len() as u64))),
        Err(StoreError::Corrupt(_)) => Ok(Some(BlockCheck::Damaged(Damage::Corrupt))),
        Err(StoreError::NotFound(_)) => Ok(meta
            .block_is_referenced(hash)
            .await?
            .then_some(BlockCheck::Damaged(Damage::Missing))),
        Err(other) => Err(other.into()),
    }
}

/// Contains one damaged block: moves it to quarantine when it is corrupt, then forgets
/// every account's possession of it, so the next upload of a file holding it sends the
/// block and the store writes a fresh copy. Returns whether a file was quarantined.
///
/// Quarantine comes first: were possession forgotten first, an upload racing in
/// between would find the damaged file's name taken and keep it.
pub(super) async fn contain_damage(
    meta: &MetaStore,
    store: &BlockStore,
    hash: BlockHash,
    damage: Damage,
) -> Result<bool, FsckError> {
    let quarantined = match damage {
        Damage::Corrupt => store.quarantine(hash).await?,
        Damage::Missing => false,
    };
    meta.forget_block_possession(hash).await?;
    Ok(quarantined)
}

impl BlockManager {
    /// Checks the metadata invariants, then every referenced block,
    /// `options.parallelism` at a time and page by page (never the whole list, nor more
    /// than a few blocks, in memory), and lists the files the damaged blocks break.
    ///
    /// Safe to run while the server runs: blocks garbage-collected meanwhile are not
    /// reported. The metadata invariants are only reliable with no writes in flight.
    pub async fn fsck(&self, options: &FsckOptions) -> Result<FsckReport, FsckError> {
        fsck(&self.meta, &self.store, options).await
    }
}

async fn fsck(
    meta: &MetaStore,
    store: &BlockStore,
    options: &FsckOptions,
) -> Result<FsckReport, FsckError> {
    let mut report = FsckReport {
        inconsistencies: meta.check_consistency().await?,
        ..FsckReport::default()
    };
    let checked = AtomicU64::new(0);
    let verified = AtomicU64::new(0);
    let mut after = None;
    loop {
        let page = meta.referenced_blocks(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.hash);
        let results: Vec<(ReferencedBlock, Option<BlockCheck>)> = futures::stream::iter(page)
            .map(|block| {
                let (checked, verified) = (&checked, &verified);
                async move {
                    let outcome = check_block(meta, store, block.hash).await?;
                    let done = checked.fetch_add(1, Ordering::Relaxed) + 1;
                    let bytes = match outcome {
                        Some(BlockCheck::Intact(len)) => {
                            verified.fetch_add(len, Ordering::Relaxed) + len
                        }
                        _ => verified.load(Ordering::Relaxed),
                    };
                    if let Some(progress) = &options.progress {
                        progress(done, bytes);
                    }
                    Ok::<_, FsckError>((block, outcome))
                }
            })
            .buffered(options.parallelism.max(1))
            .try_collect()
            .await?;
        for (block, outcome) in results {
            match outcome {
                None => {}
                Some(BlockCheck::Intact(len)) if i64::try_from(len).ok() != Some(block.size) => {
                    report.size_mismatches.push(SizeMismatch {
                        hash: block.hash,
                        recorded: block.size,
                        actual: len,
                    });
                }
                Some(BlockCheck::Intact(_)) => {}
                Some(BlockCheck::Damaged(damage)) => {
                    match damage {
                        Damage::Missing => report.missing.push(block.hash),
                        Damage::Corrupt => report.corrupt.push(block.hash),
                    }
                    if options.quarantine && contain_damage(meta, store, block.hash, damage).await?
                    {
                        report.quarantined.push(block.hash);
                    }
                }
            }
        }
    }
    report.blocks_checked = checked.into_inner();
    report.bytes_verified = verified.into_inner();
    let damaged: Vec<BlockHash> = report
        .missing
        .iter()
        .chain(&report.corrupt)
        .copied()
        .collect();
    report.damaged_files = meta.files_referencing(&damaged).await?;
    Ok(report)
}
