//! The metadata side of block integrity checks (`cairn admin fsck` and the background
//! scrub): which blocks metadata demands, which files a damaged block breaks, and
//! forgetting that accounts possess a block the store lost.
//!
//! A block is *demanded* while some version references it (`refcount > 0`) and garbage
//! collection has not claimed it (`gc_started IS NULL`). Unreferenced blocks may be
//! deleted at any moment after their grace period, so their absence is not damage.

use std::collections::BTreeMap;

use cairn_core::{BlockHash, NamespaceId, ServerPath, VersionId};
use sqlx::Row;

use crate::db::{corrupt, parse_path, placeholders, WriteTx, CHUNK};
use crate::{MetaError, MetaStore};

/// A block that metadata demands, as [`MetaStore::referenced_blocks`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferencedBlock {
    /// The block's hash.
    pub hash: BlockHash,
    /// Its plaintext size as recorded when it was uploaded.
    pub size: i64,
}

/// One version of a file that names a damaged block: what an operator must restore or
/// ask its owner to upload again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedFile {
    /// The namespace holding the file.
    pub ns: NamespaceId,
    /// The name of the user who owns that namespace.
    pub owner: String,
    /// The file's path (where it was when deleted, for a file in the trash).
    pub path: ServerPath,
    /// The damaged version.
    pub version: VersionId,
    /// Whether it is the file's current content (otherwise it is an older version).
    pub is_current: bool,
    /// Whether the file is deleted (in the trash).
    pub in_trash: bool,
    /// The damaged blocks among those the version names, sorted.
    pub blocks: Vec<BlockHash>,
}

/// How many blocks metadata demands and their total plaintext size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReferencedTotals {
    /// Demanded blocks.
    pub blocks: i64,
    /// Their plaintext bytes.
    pub bytes: i64,
}

fn hash_of(bytes: Vec<u8>) -> Result<BlockHash, MetaError> {
    BlockHash::from_slice(&bytes).ok_or_else(|| corrupt("block hash length"))
}

impl MetaStore {
    /// Up to `limit` demanded blocks with hashes greater than `after` (from the first
    /// when `None`), in hash order: a checker pages through all of them without ever
    /// holding the whole list, and can resume where it stopped.
    pub async fn referenced_blocks(
        &self,
        after: Option<BlockHash>,
        limit: u32,
    ) -> Result<Vec<ReferencedBlock>, MetaError> {
        // Hashes compare bytewise on both backends (BLOB memcmp, bytea), and an empty
        // value sorts before every hash, so it stands for "from the start".
        let after = after.map(|h| h.0.to_vec()).unwrap_or_default();
        let rows = sqlx::query(
            "SELECT hash, size FROM blocks \
             WHERE refcount > 0 AND gc_started IS NULL AND hash > $1 \
             ORDER BY hash LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReferencedBlock {
                    hash: hash_of(r.try_get("hash")?)?,
                    size: r.try_get("size")?,
                })
            })
            .collect()
    }

    /// How many blocks metadata demands and how many bytes they hold, for progress
    /// reports.
    pub async fn referenced_totals(&self) -> Result<ReferencedTotals, MetaError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes \
             FROM blocks WHERE refcount > 0 AND gc_started IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ReferencedTotals {
            blocks: row.try_get("n")?,
            bytes: row.try_get("bytes")?,
        })
    }

    /// Whether metadata still demands this block. A checker asks again before calling
    /// a missing block damage: the last version naming it may have been purged and the
    /// block collected since the checker's page was read.
    pub async fn block_is_referenced(&self, hash: BlockHash) -> Result<bool, MetaError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM blocks \
             WHERE hash = $1 AND refcount > 0 AND gc_started IS NULL",
        )
        .bind(hash.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Every file version that names one of `hashes`, live, older or in the trash,
    /// sorted by owner, path and version. Each lists which of `hashes` it names.
    pub async fn files_referencing(
        &self,
        hashes: &[BlockHash],
    ) -> Result<Vec<DamagedFile>, MetaError> {
        let mut hashes = hashes.to_vec();
        hashes.sort_unstable();
        hashes.dedup();
        let mut by_version: BTreeMap<VersionId, DamagedFile> = BTreeMap::new();
        for chunk in hashes.chunks(CHUNK) {
            let sql = format!(
                "SELECT DISTINCT vb.block_hash, v.id AS version_id, v.ns_id, e.path, \
                        e.current_version_id, e.deleted_at, u.name AS owner \
                 FROM version_blocks vb \
                 JOIN versions v ON v.id = vb.version_id \
                 JOIN entries e ON e.id = v.entry_id \
                 JOIN namespaces n ON n.id = v.ns_id \
                 JOIN users u ON u.id = n.owner_user_id \
                 WHERE vb.block_hash IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.0.to_vec());
            }
            for row in q.fetch_all(&self.pool).await? {
                let hash = hash_of(row.try_get("block_hash")?)?;
                let version = VersionId(row.try_get("version_id")?);
                let current: Option<i64> = row.try_get("current_version_id")?;
                let deleted_at: Option<i64> = row.try_get("deleted_at")?;
                let file = match by_version.entry(version) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => e.insert(DamagedFile {
                        ns: NamespaceId(row.try_get("ns_id")?),
                        owner: row.try_get("owner")?,
                        path: parse_path(&row.try_get::<String, _>("path")?)?,
                        version,
                        is_current: current == Some(version.0),
                        in_trash: deleted_at.is_some(),
                        blocks: Vec::new(),
                    }),
                };
                file.blocks.push(hash);
            }
        }
        let mut files: Vec<DamagedFile> = by_version.into_values().collect();
        for f in &mut files {
            f.blocks.sort_unstable();
            f.blocks.dedup();
        }
        files.sort_by(|a, b| {
            (&a.owner, a.path.key(), a.version).cmp(&(&b.owner, b.path.key(), b.version))
        });
        Ok(files)
    }

    /// Forgets that any account possesses `hash`, after the block store lost it or it
    /// was quarantined: `blocks/check` then reports it missing to every client, so the
    /// next upload of a file containing it sends it again and the store writes a fresh
    /// copy. Returns how many accounts held it. The block's row and references stay;
    /// the files naming it are damaged until then, not gone.
    pub async fn forget_block_possession(&self, hash: BlockHash) -> Result<u64, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let done = sqlx::query("DELETE FROM user_blocks WHERE block_hash = $1")
            .bind(hash.0.to_vec())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// How many finished fsck runs are kept.
const FSCK_RUNS_KEPT: i64 = 10;

impl MetaStore {
    /// Records a finished `cairn admin fsck`: when it finished (Unix ms) and its report
    /// (the JSON it prints). Older runs beyond the newest few are dropped.
    pub async fn record_fsck(&self, finished_at: i64, report_json: &str) -> Result<(), MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query("INSERT INTO fsck_runs (finished_at, report) VALUES ($1, $2)")
            .bind(finished_at)
            .bind(report_json.to_owned())
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "DELETE FROM fsck_runs WHERE id NOT IN \
             (SELECT id FROM fsck_runs ORDER BY id DESC LIMIT $1)",
        )
        .bind(FSCK_RUNS_KEPT)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest finished fsck: when it finished and its report, if one ever ran.
    pub async fn last_fsck(&self) -> Result<Option<(i64, String)>, MetaError> {
        let row = sqlx::query("SELECT finished_at, report FROM fsck_runs ORDER BY id DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("finished_at")?, r.try_get("report")?)))
            .transpose()
    }
}
