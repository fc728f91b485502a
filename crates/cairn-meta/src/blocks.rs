//! Blocks: which ones exist, how often versions reference them, and which accounts
//! possess them.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_core::{BlockHash, UserId};
use sqlx::AnyConnection;
use sqlx::Row;

use crate::db::{corrupt, now_ms, placeholders, row_placeholders, WriteTx, CHUNK};
use crate::{BlockInfo, MetaError, MetaStore};

impl MetaStore {
    /// Which of `hashes` the account possesses (uploaded, or referenced by one of its
    /// versions). Only these may be reported to the client as already present.
    pub async fn blocks_owned_by(
        &self,
        user: UserId,
        hashes: &[BlockHash],
    ) -> Result<HashSet<BlockHash>, MetaError> {
        let mut conn = self.pool.acquire().await?;
        Ok(owned_block_sizes(&mut conn, user, hashes)
            .await?
            .into_keys()
            .collect())
    }

    /// Records that the account uploaded a block the block store now holds durably.
    /// A new block starts with no references and its grace period running from now;
    /// a known block that has no references gets its grace period restarted, so a
    /// garbage collection cannot take it before the uploader commits.
    pub async fn record_block_upload(
        &self,
        user: UserId,
        hash: BlockHash,
        size: u32,
        stored_size: i64,
    ) -> Result<(), MetaError> {
        let now = now_ms();
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query(
            "INSERT INTO blocks (hash, size, stored_size, refcount, zero_since, created_at) \
             VALUES ($1, $2, $3, 0, $4, $4) \
             ON CONFLICT (hash) DO UPDATE SET zero_since = $4 WHERE blocks.refcount = 0",
        )
        .bind(hash.0.to_vec())
        .bind(i64::from(size))
        .bind(stored_size)
        .bind(now)
        .execute(tx.conn())
        .await?;
        grant_blocks(tx.conn(), user, &[hash], now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A block's bookkeeping row, if the block is known.
    pub async fn block_info(&self, hash: BlockHash) -> Result<Option<BlockInfo>, MetaError> {
        let row = sqlx::query(
            "SELECT size, stored_size, refcount, zero_since, created_at FROM blocks \
             WHERE hash = $1",
        )
        .bind(hash.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(BlockInfo {
                hash,
                size: r.try_get("size")?,
                stored_size: r.try_get("stored_size")?,
                refcount: r.try_get("refcount")?,
                zero_since: r.try_get("zero_since")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }
}

/// The blocks among `hashes` that `user` possesses, with their recorded sizes.
pub(crate) async fn owned_block_sizes(
    conn: &mut AnyConnection,
    user: UserId,
    hashes: &[BlockHash],
) -> Result<HashMap<BlockHash, i64>, MetaError> {
    let mut out = HashMap::with_capacity(hashes.len());
    for chunk in hashes.chunks(CHUNK) {
        // user_blocks rows go when their block goes (ON DELETE CASCADE), so a row here
        // means the block exists too.
        let sql = format!(
            "SELECT b.hash, b.size FROM user_blocks ub JOIN blocks b ON b.hash = ub.block_hash \
             WHERE ub.user_id = $1 AND ub.block_hash IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(user.0);
        for h in chunk {
            q = q.bind(h.0.to_vec());
        }
        for row in q.fetch_all(&mut *conn).await? {
            let hash: Vec<u8> = row.try_get("hash")?;
            let hash = BlockHash::from_slice(&hash).ok_or_else(|| corrupt("block hash length"))?;
            out.insert(hash, row.try_get("size")?);
        }
    }
    Ok(out)
}

/// Adds `count` references to each block, in hash order, and returns the blocks that
/// do not exist (a garbage collection may have removed an unreferenced block since it
/// was checked).
///
/// The fixed order matters on PostgreSQL: two transactions that lock the same block
/// rows in different orders could deadlock, and one of them would fail.
pub(crate) async fn add_references(
    conn: &mut AnyConnection,
    counts: &BTreeMap<BlockHash, i64>,
) -> Result<Vec<BlockHash>, MetaError> {
    let mut missing = Vec::new();
    for (hash, count) in counts {
        let done = sqlx::query(
            "UPDATE blocks SET refcount = refcount + $1, zero_since = NULL WHERE hash = $2",
        )
        .bind(*count)
        .bind(hash.0.to_vec())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            missing.push(*hash);
        }
    }
    Ok(missing)
}

/// Records that `user` possesses these blocks. `hashes` should be sorted, for the same
/// lock-order reason as [`add_references`].
pub(crate) async fn grant_blocks(
    conn: &mut AnyConnection,
    user: UserId,
    hashes: &[BlockHash],
    now: i64,
) -> Result<(), MetaError> {
    for chunk in hashes.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO user_blocks (user_id, block_hash, created_at) VALUES {} \
             ON CONFLICT (user_id, block_hash) DO NOTHING",
            row_placeholders(1, chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for h in chunk {
            q = q.bind(user.0).bind(h.0.to_vec()).bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
