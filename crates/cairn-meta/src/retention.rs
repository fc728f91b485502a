//! Version retention: dropping old versions of files, and with them their block
//! references, so garbage collection can reclaim blocks nothing else holds.

use cairn_core::VersionId;
use sqlx::Row;

use crate::db::WriteTx;
use crate::versions::delete_versions;
use crate::{MetaError, MetaStore};

/// Versions dropped per transaction: small enough that one batch never holds the write
/// lock (SQLite) or many block rows (PostgreSQL) for long.
const PRUNE_BATCH: usize = 200;

impl MetaStore {
    /// Deletes, for every file (live or in the trash), each version that is
    /// * not the file's current version, and
    /// * older than `max_age_ms` at `now` (created before `now - max_age_ms`), and
    /// * not among the file's `keep_newest` newest versions,
    ///
    /// with its block list, dropping the block references it held in the same
    /// transaction (a block left with none starts its grace period). Works in batches
    /// of a few hundred versions, one transaction each. Returns how many versions went.
    ///
    /// Safe to run while files are being committed: a version that qualifies keeps
    /// qualifying (it only grows older, newer versions only push it further down, and
    /// nothing makes an old version current again; a restore makes a new one).
    pub async fn prune_versions(
        &self,
        now: i64,
        max_age_ms: i64,
        keep_newest: u32,
    ) -> Result<u64, MetaError> {
        let cutoff = now.saturating_sub(max_age_ms);
        let mut pruned = 0u64;
        loop {
            // ROW_NUMBER counts every version of the entry, so "the newest N" means the
            // same whether or not older ones were pruned already.
            let rows = sqlx::query(
                "SELECT id FROM ( \
                   SELECT v.id, v.created_at, e.current_version_id, \
                          ROW_NUMBER() OVER (PARTITION BY v.entry_id ORDER BY v.id DESC) AS rn \
                   FROM versions v JOIN entries e ON e.id = v.entry_id \
                   WHERE e.kind = 'file') ranked \
                 WHERE rn > $1 AND created_at < $2 \
                   AND (current_version_id IS NULL OR id <> current_version_id) \
                 ORDER BY id LIMIT $3",
            )
            .bind(i64::from(keep_newest))
            .bind(cutoff)
            .bind(PRUNE_BATCH as i64)
            .fetch_all(&self.pool)
            .await?;
            let batch: Vec<VersionId> = rows
                .iter()
                .map(|r| Ok(VersionId(r.try_get("id")?)))
                .collect::<Result<_, MetaError>>()?;
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == PRUNE_BATCH;

            let mut tx = WriteTx::begin(self).await?;
            // delete_versions skips versions another pruner deleted since the read.
            let now = crate::db::now_ms();
            let deleted = delete_versions(tx.conn(), &batch, now).await?;
            tx.commit().await?;
            pruned += deleted;
            if !full {
                break;
            }
        }
        if pruned > 0 {
            tracing::debug!(pruned, "pruned old versions");
        }
        Ok(pruned)
    }
}
