//! Block garbage collection, the metadata half: which blocks may go, and removing their
//! rows in the same transaction as the caller deletes their files.
//!
//! # The protocol
//!
//! A block has a row in `blocks` (with `refcount`, `zero_since` and `gc_started`) and a
//! file in the block store. Reference counts change in the same transaction as the
//! versions that hold them, so `refcount = 0` means no version, live or in the trash,
//! names the block. The collector deletes such a block in three steps, each safe to
//! interrupt and safe to run in several processes at once (a server and `cairn admin
//! gc` on the same data):
//!
//! 1. **Candidates** (a read): rows with `refcount = 0 AND zero_since < cutoff AND
//!    gc_started IS NULL`, where `cutoff` is now minus the grace period, a few hundred
//!    at a time ([`MetaStore::gc_claim`]); and rows already claimed by a run that did
//!    not finish ([`MetaStore::gc_claimed`]).
//! 2. **Claim** (a write transaction): `UPDATE blocks SET gc_started = now` on the
//!    candidates, re-checking the three conditions, then commit. From here on a claimed
//!    block counts as absent to everyone: `blocks/check` and commits do not see it as
//!    possessed (the client is told to upload it again), and `add_references` will not
//!    increment it (a commit racing the claim fails with `MissingBlocks` and the client
//!    uploads again). So a claimed block can never gain a reference.
//! 3. **Delete** (a write transaction per batch, [`MetaStore::gc_delete`]):
//!    `DELETE … WHERE hash IN (claimed) AND gc_started IS NOT NULL AND refcount = 0
//!    RETURNING hash`, then — still inside that transaction — the caller deletes those
//!    blocks' files, then commit. Holding the transaction open while files go means no
//!    upload record can interleave: on SQLite the transaction holds the write lock, on
//!    PostgreSQL the deleted rows stay locked, and an upload's upsert of the same hash
//!    waits for the outcome. If the commit fails after files were deleted, the rows
//!    stay claimed (absent to everyone) and the next run finishes them; deleting a file
//!    that is already gone succeeds.
//!
//! The upload side ([`MetaStore::record_block_upload_checked`]) revives a claimed row
//! (clears `gc_started`, restarts `zero_since`), so the delete step no longer matches
//! it. An upload whose `put` found the file present just before the collector deleted
//! it writes it again inside its recording transaction, after the row is written and
//! before the account is granted possession: from then on the row is locked, and after
//! the commit no collection can take the block for a grace period.
//!
//! Blocks an unfinished resumable upload holds (`tus_upload_blocks`, see
//! [`crate::uploads`]) are referenced by no version yet, so their `refcount` may be 0;
//! they are never claimed: the candidates' query leaves them out, and the claim, once
//! it has locked a row, looks again in a statement of its own (on PostgreSQL a new
//! snapshot, which sees an upload's save that committed while the claim waited for the
//! lock) and releases the row if an upload holds it. An upload's save, for its part,
//! adds a block only if its row is not claimed, after locking it; so either the save
//! comes first and the claim sees it, or the claim comes first and the save is refused
//! (the upload then stores the block again, which revives the row).
//!
//! A file in the block store with no row at all (a crash between writing a block and
//! recording it) is adopted by [`MetaStore::gc_adopt_orphans`] as an already-claimed
//! row, and then deleted like any other claimed block; an upload of it in flight revives
//! it exactly as above.

use std::future::Future;

use cairn_core::BlockHash;
use sqlx::Row;

use crate::db::{corrupt, now_ms, placeholders, WriteTx, CHUNK};
use crate::{MetaError, MetaStore};

/// A block whose row [`MetaStore::gc_delete`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedBlock {
    /// The block.
    pub hash: BlockHash,
    /// Bytes the block store held for it, as recorded at upload.
    pub stored_size: i64,
}

/// Why [`MetaStore::gc_delete`] failed. Either way nothing was committed: the rows stay
/// claimed and the next collection finishes them.
#[derive(Debug, thiserror::Error)]
pub enum GcDeleteError<E: std::error::Error + 'static> {
    /// The database failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The caller's deletion of the blocks' files failed.
    #[error("deleting block files failed: {0}")]
    Files(#[source] E),
}

/// Where garbage collection stands, for the admin view and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcStats {
    /// Blocks nothing references (claimed or not).
    pub unreferenced_blocks: i64,
    /// Their stored bytes.
    pub unreferenced_bytes: i64,
    /// Unreferenced, unclaimed blocks whose grace period ended before the cutoff, and
    /// that no unfinished upload holds.
    pub collectable_blocks: i64,
    /// Blocks claimed by a collection that has not deleted them yet.
    pub claimed_blocks: i64,
}

fn hash_of(bytes: Vec<u8>) -> Result<BlockHash, MetaError> {
    BlockHash::from_slice(&bytes).ok_or_else(|| corrupt("block hash length"))
}

impl MetaStore {
    /// Claims up to `limit` blocks that have had no references since before `cutoff`
    /// (Unix ms) and are not claimed yet, and returns them, sorted. From the claim's
    /// commit on they count as absent to everyone; pass them to
    /// [`MetaStore::gc_delete`]. A block referenced or re-uploaded between the read and
    /// the claim is not claimed.
    pub async fn gc_claim(&self, cutoff: i64, limit: usize) -> Result<Vec<BlockHash>, MetaError> {
        // The read runs outside the write transaction, so the write lock is held only
        // for the claim itself; the claim re-checks every condition.
        let rows = sqlx::query(
            "SELECT hash FROM blocks \
             WHERE refcount = 0 AND zero_since < $1 AND gc_started IS NULL \
             AND NOT EXISTS (SELECT 1 FROM tus_upload_blocks u WHERE u.hash = blocks.hash) \
             ORDER BY zero_since LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut candidates = rows
            .into_iter()
            .map(|r| hash_of(r.try_get("hash")?))
            .collect::<Result<Vec<_>, MetaError>>()?;
        if candidates.is_empty() {
            return Ok(candidates);
        }
        // Hash order, like every writer of `blocks` (see `add_references`).
        candidates.sort_unstable();
        let now = now_ms();
        let mut claimed = Vec::with_capacity(candidates.len());
        let mut tx = WriteTx::begin(self).await?;
        // One statement per block, in hash order: the order in which a single
        // `… WHERE hash IN (…)` locks its rows is the query plan's choice, and a
        // different order from other writers could deadlock on PostgreSQL.
        for h in &candidates {
            let row = sqlx::query(
                "UPDATE blocks SET gc_started = $1 \
                 WHERE hash = $2 AND refcount = 0 AND zero_since < $3 AND gc_started IS NULL \
                 RETURNING hash",
            )
            .bind(now)
            .bind(h.0.to_vec())
            .bind(cutoff)
            .fetch_optional(tx.conn())
            .await?;
            if row.is_none() {
                continue;
            }
            // A resumable upload holds it (saved since the candidates were read): give
            // it back. The row is locked, so no save can add it after this look.
            let held = sqlx::query("SELECT 1 AS held FROM tus_upload_blocks WHERE hash = $1")
                .bind(h.0.to_vec())
                .fetch_optional(tx.conn())
                .await?;
            if held.is_some() {
                sqlx::query("UPDATE blocks SET gc_started = NULL WHERE hash = $1")
                    .bind(h.0.to_vec())
                    .execute(tx.conn())
                    .await?;
                continue;
            }
            claimed.push(*h);
        }
        tx.commit().await?;
        claimed.sort_unstable();
        Ok(claimed)
    }

    /// Up to `limit` claimed blocks with hashes above `after`, sorted: those a
    /// collection claimed and did not get to delete (it was interrupted, or its commit
    /// failed), or that another collection running right now has claimed. Either way
    /// they may be passed to [`MetaStore::gc_delete`].
    pub async fn gc_claimed(
        &self,
        after: Option<BlockHash>,
        limit: usize,
    ) -> Result<Vec<BlockHash>, MetaError> {
        // 32 zero bytes sort first, so they stand for "from the start"; the hash of
        // real content is never all zeros.
        let after = after.map(|h| h.0).unwrap_or([0; 32]);
        let rows = sqlx::query(
            "SELECT hash FROM blocks WHERE gc_started IS NOT NULL AND hash > $1 \
             ORDER BY hash LIMIT $2",
        )
        .bind(after.to_vec())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| hash_of(r.try_get("hash")?))
            .collect()
    }

    /// Gives every block among `stored` (hashes the block store lists) that has no row
    /// a claimed row, and returns those, sorted. Such a file was written by an upload
    /// that never recorded it (a crash in between), or by one recording it right now;
    /// once claimed it is deleted like any other claimed block, and an upload in flight
    /// revives it (see the module doc). Adopted rows record a stored size of 0: the
    /// collector learns the real one from the file when it deletes it.
    pub async fn gc_adopt_orphans(
        &self,
        stored: &[BlockHash],
    ) -> Result<Vec<BlockHash>, MetaError> {
        let mut orphans: Vec<BlockHash> = Vec::new();
        for chunk in stored.chunks(CHUNK) {
            let sql = format!(
                "SELECT hash FROM blocks WHERE hash IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.0.to_vec());
            }
            let known = q
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| hash_of(r.try_get("hash")?))
                .collect::<Result<std::collections::HashSet<_>, MetaError>>()?;
            orphans.extend(chunk.iter().filter(|h| !known.contains(h)));
        }
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        orphans.sort_unstable();
        orphans.dedup();
        let now = now_ms();
        let mut adopted = Vec::new();
        let mut tx = WriteTx::begin(self).await?;
        for chunk in orphans.chunks(CHUNK) {
            // The plaintext size is unknown without reading the block; nothing can
            // reference the row while it is claimed, and an upload that revives it
            // sets the real size.
            let rows = (0..chunk.len())
                .map(|i| format!("(${}, 0, 0, 0, $1, $1, $1)", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO blocks \
                 (hash, size, stored_size, refcount, zero_since, gc_started, created_at) \
                 VALUES {rows} ON CONFLICT (hash) DO NOTHING RETURNING hash"
            );
            let mut q = sqlx::query(&sql).bind(now);
            for h in chunk {
                q = q.bind(h.0.to_vec());
            }
            for row in q.fetch_all(tx.conn()).await? {
                adopted.push(hash_of(row.try_get("hash")?)?);
            }
        }
        tx.commit().await?;
        adopted.sort_unstable();
        Ok(adopted)
    }

    /// Deletes the rows of those of `hashes` that are still claimed and unreferenced,
    /// calls `delete_files` with them inside the same transaction, and commits only if
    /// it succeeded. Returns the blocks deleted. `delete_files` must treat a file that
    /// is already gone as deleted.
    ///
    /// Keeping the transaction open while the files go is what makes the protocol safe
    /// (see the module doc), so `delete_files` should do nothing but delete: on SQLite
    /// every other writer waits for it.
    pub async fn gc_delete<F, Fut, E>(
        &self,
        hashes: &[BlockHash],
        delete_files: F,
    ) -> Result<Vec<DeletedBlock>, GcDeleteError<E>>
    where
        F: FnOnce(Vec<DeletedBlock>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::error::Error + 'static,
    {
        let mut sorted = hashes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut deleted = Vec::with_capacity(sorted.len());
        let mut tx = WriteTx::begin(self).await?;
        // One block at a time, in hash order, as in `gc_claim`.
        for h in &sorted {
            // user_blocks rows go with their block (ON DELETE CASCADE); version_blocks
            // has no cascade, so a block that is referenced after all could not be
            // deleted even if its refcount were wrong.
            let row = sqlx::query(
                "DELETE FROM blocks \
                 WHERE hash = $1 AND gc_started IS NOT NULL AND refcount = 0 \
                 RETURNING stored_size",
            )
            .bind(h.0.to_vec())
            .fetch_optional(tx.conn())
            .await
            .map_err(MetaError::from)?;
            if let Some(row) = row {
                deleted.push(DeletedBlock {
                    hash: *h,
                    stored_size: row.try_get("stored_size").map_err(MetaError::from)?,
                });
            }
        }
        if deleted.is_empty() {
            return Ok(deleted);
        }
        delete_files(deleted.clone())
            .await
            .map_err(GcDeleteError::Files)?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// How many blocks are unreferenced, collectable before `cutoff` (Unix ms), and
    /// claimed.
    pub async fn gc_stats(&self, cutoff: i64) -> Result<GcStats, MetaError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM blocks WHERE refcount = 0) AS unreferenced, \
               (SELECT CAST(COALESCE(SUM(stored_size), 0) AS BIGINT) FROM blocks \
                WHERE refcount = 0) AS unreferenced_bytes, \
               (SELECT COUNT(*) FROM blocks WHERE refcount = 0 AND zero_since < $1 \
                AND gc_started IS NULL AND NOT EXISTS \
                (SELECT 1 FROM tus_upload_blocks u WHERE u.hash = blocks.hash)) AS collectable, \
               (SELECT COUNT(*) FROM blocks WHERE gc_started IS NOT NULL) AS claimed",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await?;
        Ok(GcStats {
            unreferenced_blocks: row.try_get("unreferenced")?,
            unreferenced_bytes: row.try_get("unreferenced_bytes")?,
            collectable_blocks: row.try_get("collectable")?,
            claimed_blocks: row.try_get("claimed")?,
        })
    }
}
