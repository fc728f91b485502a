//! Block garbage collection, the server half: it drives the metadata store's
//! claim-then-delete protocol (described in `cairn_meta::gc`) and deletes the blocks'
//! files inside the transaction that deletes their rows.
//!
//! The one invariant: a block any version (live or in the trash) references, or that
//! an upload recorded within the grace period, is never deleted. Collections may run in
//! several processes at once (the server's background task and `cairn admin gc`).

use std::time::Duration;

use cairn_core::BlockHash;
use cairn_meta::{DeletedBlock, GcDeleteError, MetaError, MetaStore};
use cairn_store::{BlockStore, StoreError};

use super::BlockManager;
use crate::metrics::{GC_BLOCKS_DELETED, GC_BYTES_FREED};
use crate::now_ms;

/// Blocks claimed and deleted per transaction. A delete transaction holds SQLite's
/// write lock while it removes the batch's files, so batches stay small.
const BATCH: usize = 256;

/// What one collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blocks whose rows and files were deleted.
    pub blocks_deleted: u64,
    /// Bytes those blocks took in the block store.
    pub bytes_freed: u64,
    /// Of those, blocks already claimed when the run reached them: by a collection that
    /// did not finish or is running elsewhere, or adopted strays (below).
    pub unfinished_deleted: u64,
    /// Files found in the block store with no metadata row, taken over for deletion.
    pub orphans_adopted: u64,
}

/// Why a collection stopped. What it deleted before stopping stays deleted; what it
/// had claimed stays claimed and the next collection finishes it.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The metadata database failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<GcDeleteError<StoreError>> for GcError {
    fn from(err: GcDeleteError<StoreError>) -> Self {
        match err {
            GcDeleteError::Meta(e) => GcError::Meta(e),
            GcDeleteError::Files(e) => GcError::Store(e),
        }
    }
}

impl BlockManager {
    /// Deletes every block nothing has referenced for at least `grace`, every block an
    /// earlier collection claimed and did not delete, and every file in the block store
    /// that has no metadata row. `grace` zero collects every unreferenced block now, at
    /// the price of making uploads in flight (blocks sent, commit not yet made) upload
    /// again.
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport, GcError> {
        collect_garbage(&self.meta, &self.store, grace).await
    }
}

async fn collect_garbage(
    meta: &MetaStore,
    store: &BlockStore,
    grace: Duration,
) -> Result<GcReport, GcError> {
    let mut report = GcReport::default();
    // The cutoff is fixed for the run: a block that loses its last reference during the
    // run is newer than it, so every row is claimed at most once and the run ends.
    // "Unreferenced for at least `grace`" is `zero_since <= now - grace`; the claim
    // compares with `<`, hence the + 1. So grace 0 also takes a block whose last
    // reference went this very millisecond (say, by the retention pass just before).
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(grace_ms).saturating_add(1);

    // Files without rows become claimed rows first, so the next step deletes them.
    let listed = store.list().await?;
    report.orphans_adopted = meta.gc_adopt_orphans(&listed).await?.len() as u64;
    drop(listed);

    // Claimed rows: an interrupted run's, the orphans just adopted, or those of a
    // collection running elsewhere right now (whichever deletes a row first wins).
    let mut after: Option<BlockHash> = None;
    loop {
        let page = meta.gc_claimed(after, BATCH).await?;
        let Some(last) = page.last().copied() else {
            break;
        };
        let before = report.blocks_deleted;
        delete_batch(meta, store, &page, &mut report).await?;
        report.unfinished_deleted += report.blocks_deleted - before;
        after = Some(last);
    }

    loop {
        let claimed = meta.gc_claim(cutoff, BATCH).await?;
        if claimed.is_empty() {
            break;
        }
        delete_batch(meta, store, &claimed, &mut report).await?;
    }

    if report.blocks_deleted > 0 {
        tracing::info!(
            blocks = report.blocks_deleted,
            bytes = report.bytes_freed,
            unfinished = report.unfinished_deleted,
            orphans = report.orphans_adopted,
            "garbage collection deleted blocks"
        );
    }
    Ok(report)
}

/// Deletes one batch of claimed blocks: rows and files in one transaction.
async fn delete_batch(
    meta: &MetaStore,
    store: &BlockStore,
    hashes: &[BlockHash],
    report: &mut GcReport,
) -> Result<(), GcError> {
    let mut measured = 0u64;
    let deleted = meta
        .gc_delete(hashes, |blocks: Vec<DeletedBlock>| {
            let measured = &mut measured;
            async move {
                for b in &blocks {
                    // An adopted stray file has no recorded size; measure it.
                    if b.stored_size <= 0 {
                        *measured += store.stored_size(b.hash).await?.unwrap_or(0);
                    }
                }
                // In one call, so that each pack file holding some of them is rewritten
                // once. The transaction stays open meanwhile; a batch is small.
                store
                    .delete_many(blocks.iter().map(|b| b.hash).collect())
                    .await?;
                Ok::<(), StoreError>(())
            }
        })
        .await?;
    let recorded: u64 = deleted
        .iter()
        .map(|b| u64::try_from(b.stored_size).unwrap_or(0))
        .sum();
    let freed = recorded + measured;
    report.blocks_deleted += deleted.len() as u64;
    report.bytes_freed += freed;
    metrics::counter!(GC_BLOCKS_DELETED).increment(deleted.len() as u64);
    metrics::counter!(GC_BYTES_FREED).increment(freed);
    Ok(())
}
