//! Blocks: which ones exist, how often versions reference them, and which accounts
//! possess them.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_core::{BlockHash, UserId};
use sqlx::AnyConnection;
use sqlx::Row;

use crate::db::{
    corrupt, now_ms, placeholders, row_placeholders, rows_per_statement, WriteTx, CHUNK,
};
use crate::{BlockInfo, MetaError, MetaStore};

impl MetaStore {
    /// Which of `hashes` the account possesses (uploaded, referenced by one of its
    /// versions, or by a version in a shared folder it reads). Only these may be
    /// reported to the client as already present, or sent to it.
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
    ///
    /// A block that garbage collection has claimed (see [`crate::gc`]) is revived: the
    /// claim is dropped, so the collector will not delete the row. It may already have
    /// deleted the *file*, though, after the caller's `put` found it present; a server
    /// therefore records uploads with [`MetaStore::record_block_upload_checked`], which
    /// makes sure the file is there before anyone is told they possess the block.
    ///
    /// Concurrent calls are written together, in one transaction (group commit): on
    /// SQLite every write transaction costs a WAL fsync, and one per 4 MiB block made
    /// this the bottleneck of parallel uploads. The call returns once its record is
    /// committed.
    pub async fn record_block_upload(
        &self,
        user: UserId,
        hash: BlockHash,
        size: u32,
        stored_size: i64,
    ) -> Result<(), MetaError> {
        let block = UploadedBlock {
            hash,
            size,
            stored_size,
        };
        self.record_upload(user, vec![block], None).await
    }

    /// [`MetaStore::record_block_upload`], running `ensure_stored` inside the recording
    /// transaction, after the block's row is written and before the account is granted
    /// possession. `ensure_stored` must make sure the block store holds the block
    /// (writing it again if not).
    ///
    /// Why inside: garbage collection may have deleted the block's file after the
    /// caller's `put` found it present (the collector claims an unreferenced row, then
    /// deletes row and file in one transaction), and the record then creates the row
    /// anew or revives the claim. Once the row is written in this transaction the
    /// collector cannot touch it (it would need the row claimed, and the row is locked
    /// until commit), so a check now is final. Had the check come after the commit,
    /// another device of the same account could commit a file naming the block in
    /// between, and a crash before the rewrite would lose that acknowledged commit.
    pub async fn record_block_upload_checked(
        &self,
        user: UserId,
        hash: BlockHash,
        size: u32,
        stored_size: i64,
        ensure_stored: EnsureStored,
    ) -> Result<(), MetaError> {
        let block = UploadedBlock {
            hash,
            size,
            stored_size,
        };
        self.record_upload(user, vec![block], Some(ensure_stored))
            .await
    }

    /// [`MetaStore::record_block_upload_checked`] for many blocks uploaded together:
    /// one record, granted all or nothing, and one `ensure_stored` call, which must make
    /// sure the store holds every one of them. It joins the same group commit as single
    /// records.
    pub async fn record_block_uploads_checked(
        &self,
        user: UserId,
        blocks: Vec<UploadedBlock>,
        ensure_stored: EnsureStored,
    ) -> Result<(), MetaError> {
        if blocks.is_empty() {
            return Ok(());
        }
        self.record_upload(user, blocks, Some(ensure_stored)).await
    }

    async fn record_upload(
        &self,
        user: UserId,
        blocks: Vec<UploadedBlock>,
        ensure_stored: Option<EnsureStored>,
    ) -> Result<(), MetaError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let lead = {
            let mut queue = self.upload_queue.lock().expect("upload queue lock");
            queue.pending.push(PendingUpload {
                user,
                blocks,
                ensure_stored,
                done,
            });
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            // The writer runs as its own task, so a caller that goes away (a client
            // hanging up mid-request) cannot strand the callers waiting on its batch.
            tokio::spawn(self.clone().write_upload_batches());
        }
        match result.await {
            Ok(outcome) => outcome.map_err(MetaError::Batch),
            Err(_) => Err(MetaError::Batch(std::sync::Arc::new(MetaError::Corrupt(
                "the block record writer stopped".into(),
            )))),
        }
    }

    /// Writes queued upload records, a batch per transaction, until the queue is empty.
    async fn write_upload_batches(self) {
        loop {
            let mut batch = {
                let mut queue = self.upload_queue.lock().expect("upload queue lock");
                if queue.pending.is_empty() {
                    queue.writing = false;
                    return;
                }
                std::mem::take(&mut queue.pending)
            };
            let outcomes = match self.write_upload_batch(&mut batch).await {
                Ok(each) => each
                    .into_iter()
                    .map(|r| r.map_err(std::sync::Arc::new))
                    .collect(),
                Err(err) => vec![Err(std::sync::Arc::new(err)); batch.len()],
            };
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                // A caller that stopped waiting no longer needs the answer.
                let _ = pending.done.send(outcome);
            }
        }
    }

    /// Writes one batch in one transaction; the inner results are each upload's own (a
    /// failed `ensure_stored` fails only its upload, which is then granted nothing).
    async fn write_upload_batch(
        &self,
        batch: &mut [PendingUpload],
    ) -> Result<Vec<Result<(), MetaError>>, MetaError> {
        let now = now_ms();
        // Hash order, like every other writer of `blocks`, so two PostgreSQL
        // transactions never wait on each other's rows in a cycle.
        let mut blocks: Vec<&UploadedBlock> = batch.iter().flat_map(|p| &p.blocks).collect();
        blocks.sort_by_key(|b| b.hash);
        blocks.dedup_by_key(|b| b.hash);
        let mut tx = WriteTx::begin(self).await?;
        // Size and stored size are taken from the upload too: nothing references the
        // row (refcount 0), and a row that garbage collection made for a stray file
        // (`gc_adopt_orphans`) does not know them. The upload's size is right, its
        // hash having been checked; a stored size of 0 means the uploader could not
        // tell, and the old value stays.
        for p in &blocks {
            sqlx::query(
                "INSERT INTO blocks (hash, size, stored_size, refcount, zero_since, created_at) \
                 VALUES ($1, $2, $3, 0, $4, $4) \
                 ON CONFLICT (hash) DO UPDATE SET zero_since = $4, gc_started = NULL, \
                   size = excluded.size, \
                   stored_size = CASE WHEN excluded.stored_size > 0 \
                     THEN excluded.stored_size ELSE blocks.stored_size END \
                 WHERE blocks.refcount = 0",
            )
            .bind(p.hash.0.to_vec())
            .bind(i64::from(p.size))
            .bind(p.stored_size)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        let mut results = Vec::with_capacity(batch.len());
        for p in batch.iter_mut() {
            let result = match p.ensure_stored.take() {
                Some(ensure) => ensure().await.map_err(MetaError::BlockStore),
                None => Ok(()),
            };
            results.push(result);
        }
        let mut by_user: BTreeMap<UserId, Vec<BlockHash>> = BTreeMap::new();
        for (p, result) in batch.iter().zip(&results) {
            if result.is_ok() {
                by_user
                    .entry(p.user)
                    .or_default()
                    .extend(p.blocks.iter().map(|b| b.hash));
            }
        }
        for (user, mut hashes) in by_user {
            hashes.sort();
            hashes.dedup();
            grant_blocks(tx.conn(), user, &hashes, now).await?;
        }
        tx.commit().await?;
        Ok(results)
    }

    /// A block's bookkeeping row, if the block is known.
    pub async fn block_info(&self, hash: BlockHash) -> Result<Option<BlockInfo>, MetaError> {
        let row = sqlx::query(
            "SELECT size, stored_size, refcount, zero_since, gc_started, created_at \
             FROM blocks WHERE hash = $1",
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
                gc_started: r.try_get("gc_started")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }
}

/// Upload records waiting for the next group commit.
#[derive(Default)]
pub(crate) struct UploadQueue {
    pending: Vec<PendingUpload>,
    /// Whether a writer task is draining the queue.
    writing: bool,
}

impl std::fmt::Debug for UploadQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadQueue")
            .field("pending", &self.pending.len())
            .field("writing", &self.writing)
            .finish()
    }
}

/// Makes sure the block store holds an uploaded block (see
/// [`MetaStore::record_block_upload_checked`]); the error says what went wrong.
pub type EnsureStored =
    Box<dyn FnOnce() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// One block an account uploaded, for [`MetaStore::record_block_uploads_checked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadedBlock {
    /// The block's hash, checked against its content.
    pub hash: BlockHash,
    /// Its length in bytes.
    pub size: u32,
    /// Bytes it takes in the store; 0 when the uploader cannot tell.
    pub stored_size: i64,
}

struct PendingUpload {
    user: UserId,
    blocks: Vec<UploadedBlock>,
    ensure_stored: Option<EnsureStored>,
    done: tokio::sync::oneshot::Sender<Result<(), std::sync::Arc<MetaError>>>,
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
        // means the block exists too. A block garbage collection has claimed counts as
        // absent: its file may be deleted any moment, so the client must upload it
        // again (which revives it).
        //
        // An account also possesses every block of every version in a shared folder it
        // reads: it may download them anyway, so nothing leaks, and a member's edit of
        // a large shared file uploads only the blocks that changed.
        let sql = format!(
            "SELECT b.hash, b.size FROM blocks b \
             WHERE b.gc_started IS NULL AND b.hash IN ({}) AND ( \
               EXISTS (SELECT 1 FROM user_blocks ub \
                       WHERE ub.user_id = $1 AND ub.block_hash = b.hash) \
               OR EXISTS (SELECT 1 FROM version_blocks vb \
                          JOIN versions v ON v.id = vb.version_id \
                          JOIN memberships m ON m.ns_id = v.ns_id \
                          WHERE vb.block_hash = b.hash AND m.user_id = $1))",
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

/// Adds `count` references to each block and returns the blocks that do not exist (a
/// garbage collection may have removed an unreferenced block since it was checked) or
/// that a garbage collection has claimed. A claimed block must never gain a reference:
/// its file is about to be deleted.
///
/// A few statements per [`CHUNK`] blocks, not one per block: a batch of a thousand
/// small files names a thousand blocks. On PostgreSQL the rows are first locked in hash
/// order: two transactions that lock the same block rows in different orders could
/// deadlock, and one of them would fail, and a multi-row UPDATE locks in whatever order
/// its plan visits the rows. (SQLite has one writer at a time.)
pub(crate) async fn add_references(
    conn: &mut AnyConnection,
    counts: &BTreeMap<BlockHash, i64>,
) -> Result<Vec<BlockHash>, MetaError> {
    let hashes: Vec<&BlockHash> = counts.keys().collect();
    if conn.backend_name() == "PostgreSQL" {
        for chunk in hashes.chunks(CHUNK) {
            let sql = format!(
                "SELECT hash FROM blocks WHERE hash IN ({}) ORDER BY hash FOR UPDATE",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.0.to_vec());
            }
            q.execute(&mut *conn).await?;
        }
    }
    // Nearly every block is named once; group the blocks by how many references they
    // gain, so each group is one UPDATE per chunk.
    let mut by_count: BTreeMap<i64, Vec<&BlockHash>> = BTreeMap::new();
    for (hash, count) in counts {
        by_count.entry(*count).or_default().push(hash);
    }
    let mut updated = HashSet::with_capacity(counts.len());
    for (count, group) in by_count {
        for chunk in group.chunks(CHUNK) {
            let sql = format!(
                "UPDATE blocks SET refcount = refcount + $1, zero_since = NULL \
                 WHERE gc_started IS NULL AND hash IN ({}) RETURNING hash",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(count);
            for h in chunk {
                q = q.bind(h.0.to_vec());
            }
            for row in q.fetch_all(&mut *conn).await? {
                let hash: Vec<u8> = row.try_get("hash")?;
                updated.insert(
                    BlockHash::from_slice(&hash).ok_or_else(|| corrupt("block hash length"))?,
                );
            }
        }
    }
    Ok(counts
        .keys()
        .filter(|h| !updated.contains(*h))
        .copied()
        .collect())
}

/// Removes `count` references from each block, in hash order (see [`add_references`]).
/// A block whose count reaches zero starts its grace period now: garbage collection may
/// delete it once that has passed and nothing referenced it again.
pub(crate) async fn remove_references(
    conn: &mut AnyConnection,
    counts: &BTreeMap<BlockHash, i64>,
    now: i64,
) -> Result<(), MetaError> {
    for (hash, count) in counts {
        // Both backends evaluate `refcount` on the right-hand side as the old value.
        let done = sqlx::query(
            "UPDATE blocks SET refcount = refcount - $1, \
             zero_since = CASE WHEN refcount - $1 = 0 THEN $2 ELSE zero_since END \
             WHERE hash = $3 AND refcount >= $1",
        )
        .bind(*count)
        .bind(now)
        .bind(hash.0.to_vec())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            return Err(corrupt(format!(
                "block {hash} has fewer than the {count} references being removed"
            )));
        }
    }
    Ok(())
}

/// Records that `user` possesses these blocks. `hashes` should be sorted, for the same
/// lock-order reason as [`add_references`].
pub(crate) async fn grant_blocks(
    conn: &mut AnyConnection,
    user: UserId,
    hashes: &[BlockHash],
    now: i64,
) -> Result<(), MetaError> {
    for chunk in hashes.chunks(rows_per_statement(3)) {
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
