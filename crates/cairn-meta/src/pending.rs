//! Uploads announced for streaming sync: a device says which blocks a file it is about
//! to commit is made of, so that the devices and members reading the namespace fetch
//! each block as soon as it is stored (see `cairn-server/src/pending.rs`).
//!
//! A row holds no block against garbage collection and changes no tree, journal or
//! quota: until the commit the uploader's possession keeps its blocks, as for any
//! upload, and the commit is an ordinary one. Rows go at the commit, when the uploader
//! gives up, or when they expire; an expired row is treated as gone before it is
//! deleted.

use cairn_core::{BlockHash, ContentHash, DeviceId, NamespaceId, ServerPath, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{corrupt, parse_path, WriteTx};
use crate::{BlockRef, MetaError, MetaStore};

/// Bytes a block takes in a row's `blocks`: its hash, then its size (4 bytes, LE).
const BLOCK_BYTES: usize = 36;

/// An upload in progress, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUploadRow {
    /// Random and unguessable, chosen by the caller.
    pub id: String,
    /// Who uploads it: the blocks are stored in this account's possession.
    pub user_id: UserId,
    /// The uploading device, if the upload came from one: it does not fetch its own.
    pub device: Option<DeviceId>,
    /// Where it will be committed: the namespace and the path inside it.
    pub ns: NamespaceId,
    pub path: ServerPath,
    pub size: u64,
    pub content_hash: ContentHash,
    pub blocks: Vec<BlockRef>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; each block stored for it moves this on.
    pub expires_at: i64,
}

fn encode_blocks(blocks: &[BlockRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks.len() * BLOCK_BYTES);
    for block in blocks {
        out.extend_from_slice(block.hash.as_bytes());
        out.extend_from_slice(&block.size.to_le_bytes());
    }
    out
}

fn decode_blocks(bytes: &[u8]) -> Result<Vec<BlockRef>, MetaError> {
    if !bytes.len().is_multiple_of(BLOCK_BYTES) {
        return Err(corrupt("pending upload block list of wrong length"));
    }
    Ok(bytes
        .chunks_exact(BLOCK_BYTES)
        .map(|b| BlockRef {
            hash: BlockHash::from_slice(&b[..32]).expect("32 bytes make a hash"),
            size: u32::from_le_bytes(b[32..].try_into().expect("4 bytes make a size")),
        })
        .collect())
}

fn from_row(row: &AnyRow) -> Result<PendingUploadRow, MetaError> {
    let hash: Vec<u8> = row.try_get("content_hash")?;
    let blocks: Vec<u8> = row.try_get("blocks")?;
    let size: i64 = row.try_get("size")?;
    Ok(PendingUploadRow {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        device: row.try_get::<Option<i64>, _>("device_id")?.map(DeviceId),
        ns: NamespaceId(row.try_get("ns_id")?),
        path: parse_path(&row.try_get::<String, _>("path")?)?,
        size: u64::try_from(size).map_err(|_| corrupt("pending upload size"))?,
        content_hash: ContentHash::from_slice(&hash)
            .ok_or_else(|| corrupt("pending upload content hash"))?,
        blocks: decode_blocks(&blocks)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

const COLUMNS: &str =
    "id, user_id, device_id, ns_id, path, size, content_hash, blocks, created_at, expires_at";

impl MetaStore {
    /// Records an announced upload, unless its account already has `max_per_user`
    /// unexpired ones (then `false`, and nothing changes).
    pub async fn create_pending_upload(
        &self,
        row: &PendingUploadRow,
        max_per_user: u32,
    ) -> Result<bool, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pending_uploads WHERE user_id = $1 AND expires_at > $2",
        )
        .bind(row.user_id.0)
        .bind(row.created_at)
        .fetch_one(tx.conn())
        .await?;
        if open >= i64::from(max_per_user) {
            return Ok(false);
        }
        sqlx::query(&format!(
            "INSERT INTO pending_uploads ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(row.id.as_str())
        .bind(row.user_id.0)
        .bind(row.device.map(|d| d.0))
        .bind(row.ns.0)
        .bind(row.path.as_str())
        .bind(i64::try_from(row.size).map_err(|_| corrupt("pending upload size"))?)
        .bind(row.content_hash.as_bytes().to_vec())
        .bind(encode_blocks(&row.blocks))
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The upload `id` if it has not expired by `now` (Unix ms).
    pub async fn pending_upload(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<PendingUploadRow>, MetaError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM pending_uploads WHERE id = $1 AND expires_at > $2"
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| from_row(&row))
        .transpose()
    }

    /// The unexpired uploads into any of `namespaces`, oldest first.
    pub async fn pending_uploads_in(
        &self,
        namespaces: &[NamespaceId],
        now: i64,
    ) -> Result<Vec<PendingUploadRow>, MetaError> {
        let mut out = Vec::new();
        for ns in namespaces {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM pending_uploads WHERE ns_id = $1 AND expires_at > $2 \
                 ORDER BY created_at, id"
            ))
            .bind(ns.0)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                out.push(from_row(row)?);
            }
        }
        Ok(out)
    }

    /// Moves the expiry of `user`'s unexpired upload `id` to `expires_at`; its
    /// namespace, or `None` when there is no such upload.
    pub async fn extend_pending_upload(
        &self,
        id: &str,
        user: UserId,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<NamespaceId>, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let ns: Option<i64> = sqlx::query_scalar(
            "SELECT ns_id FROM pending_uploads WHERE id = $1 AND user_id = $2 AND expires_at > $3",
        )
        .bind(id)
        .bind(user.0)
        .bind(now)
        .fetch_optional(tx.conn())
        .await?;
        if ns.is_some() {
            sqlx::query("UPDATE pending_uploads SET expires_at = $1 WHERE id = $2")
                .bind(expires_at)
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(ns.map(NamespaceId))
    }

    /// Deletes `user`'s upload `id`; its namespace, or `None` when there was none.
    pub async fn delete_pending_upload(
        &self,
        id: &str,
        user: UserId,
    ) -> Result<Option<NamespaceId>, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let ns: Option<i64> =
            sqlx::query_scalar("SELECT ns_id FROM pending_uploads WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user.0)
                .fetch_optional(tx.conn())
                .await?;
        if ns.is_some() {
            sqlx::query("DELETE FROM pending_uploads WHERE id = $1")
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(ns.map(NamespaceId))
    }

    /// Deletes the uploads that expired by `now`; how many there were.
    pub async fn expire_pending_uploads(&self, now: i64) -> Result<u64, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let expired = sqlx::query("DELETE FROM pending_uploads WHERE expires_at <= $1")
            .bind(now)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_round_trip() {
        let blocks = vec![
            BlockRef {
                hash: BlockHash::of(b"a"),
                size: 7,
            },
            BlockRef {
                hash: BlockHash::of(b"b"),
                size: u32::MAX,
            },
        ];
        let bytes = encode_blocks(&blocks);
        assert_eq!(bytes.len(), 72);
        assert_eq!(decode_blocks(&bytes).unwrap(), blocks);
        assert!(decode_blocks(&bytes[..71]).is_err());
    }
}
