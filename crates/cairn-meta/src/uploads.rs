//! Resumable uploads in progress (the tus protocol, served by `cairn-server/src/tus/`):
//! where each is going, how far it got, the blocks it holds so far and the bytes after
//! its last cut point.
//!
//! An upload's state is one row of `tus_uploads` and its blocks' rows in
//! `tus_upload_blocks`; it changes only through [`MetaStore::save_upload_progress`], a
//! compare-and-set on the offset, so two writers of one upload cannot both advance it.
//!
//! # Garbage collection
//!
//! No version references an unfinished upload's blocks, so their `refcount` may be 0. Two
//! rules keep the collector away from them (see [`crate::gc`]):
//! - [`MetaStore::gc_claim`] never claims a block that has a `tus_upload_blocks` row, and
//!   re-checks that inside its transaction after the row is locked;
//! - [`MetaStore::save_upload_progress`] adds a block to an upload only if its row exists
//!   and is not claimed, locking it first (one at a time, in hash order, like every
//!   writer of `blocks`); otherwise it changes nothing and answers
//!   [`MetaError::MissingBlocks`], and the caller stores the block again (which revives
//!   it) before it tries again.
//!
//! # Leases
//!
//! The request writing an upload holds its lease (`lease_holder`, `lease_until`; see
//! [`MetaStore::lease_upload`]), so that of several nodes on one database only one works
//! on an upload at a time, and a node that dies holding it blocks it only for seconds.
//!
//! Deleting an upload (finished, terminated or expired) deletes its block rows, so the
//! blocks are then referenced by whatever versions reference them, and otherwise
//! collected after the grace period like any other unreferenced block.

use cairn_core::{BlockHash, UserId};
use sqlx::Row;

use crate::db::{corrupt, now_ms, WriteTx};
use crate::{BlockRef, MetaError, MetaStore};

/// What an upload does when its file's name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Refuse (at creation, and at completion if the name was taken meanwhile).
    Fail,
    /// Keep both: the file gets a free name at completion.
    Rename,
    /// Make the upload the file's new version.
    Replace,
}

impl OnConflict {
    /// The word the metadata and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Fail => "fail",
            OnConflict::Rename => "rename",
            OnConflict::Replace => "replace",
        }
    }

    /// The value named by `word`, if it names one.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "fail" => Some(OnConflict::Fail),
            "rename" => Some(OnConflict::Rename),
            "replace" => Some(OnConflict::Replace),
            _ => None,
        }
    }
}

/// A new upload, as its creation describes it.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Its id: random, unguessable, chosen by the caller.
    pub id: String,
    /// The account that created it; nobody else may see or continue it.
    pub user_id: UserId,
    /// Where the file goes, as the creator's tree names it; empty for a part of a
    /// file (`Upload-Concat: partial`), whose destination the final upload names.
    pub path: String,
    /// The creation's `Upload-Metadata`, as sent.
    pub metadata: String,
    /// What to do when the name is taken.
    pub on_conflict: OnConflict,
    /// The file's modification time (Unix ms), if given.
    pub mtime: Option<i64>,
    /// The whole file's length in bytes.
    pub length: i64,
    /// When it expires unless continued (Unix ms).
    pub expires_at: i64,
}

/// An upload in progress.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Its id.
    pub id: String,
    /// Its creator.
    pub user_id: UserId,
    /// Where the file goes, as the creator's tree names it; empty for a part of a
    /// file (see [`Upload::is_partial`]).
    pub path: String,
    /// The creation's `Upload-Metadata`.
    pub metadata: String,
    /// What to do when the name is taken.
    pub on_conflict: OnConflict,
    /// The file's modification time (Unix ms), if given.
    pub mtime: Option<i64>,
    /// The whole file's length.
    pub length: i64,
    /// How many bytes were received and kept: the blocks' sizes plus the tail's.
    pub offset: i64,
    /// The blocks so far, in order.
    pub blocks: Vec<BlockRef>,
    /// The bytes after the last block, not cut yet.
    pub tail: Vec<u8>,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it expires (Unix ms).
    pub expires_at: i64,
}

/// What one request added to an upload, for [`MetaStore::save_upload_progress`].
#[derive(Debug, Clone)]
pub struct UploadProgress {
    /// The offset the saved state has now; the save changes nothing unless it still does.
    pub from_offset: i64,
    /// How many blocks the saved state has now (the new ones are numbered from there).
    pub from_blocks: usize,
    /// Blocks cut since, in order; each must be stored and recorded already.
    pub new_blocks: Vec<BlockRef>,
    /// The bytes after the last block.
    pub tail: Vec<u8>,
    /// The new expiry (Unix ms).
    pub expires_at: i64,
}

/// What [`MetaStore::lease_upload`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// The lease is the asker's.
    Taken,
    /// Another holds it, until this time (Unix ms) unless renewed or released.
    HeldUntil(i64),
    /// There is no such upload.
    NoUpload,
}

impl Upload {
    /// Whether this is a part of a file (tus `Upload-Concat: partial`): it never becomes
    /// a file by itself, and stays, complete, until a final upload joins it with the
    /// other parts or it expires. Its bytes after its last cut point stay its tail even
    /// when it is complete, since the file goes on after it.
    pub fn is_partial(&self) -> bool {
        self.path.is_empty()
    }
}

impl MetaStore {
    /// Records a new upload, with nothing received yet.
    pub async fn create_upload(&self, new: &NewUpload) -> Result<(), MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query(
            "INSERT INTO tus_uploads (id, user_id, path, metadata, on_conflict, mtime, \
             upload_length, upload_offset, tail, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10)",
        )
        .bind(new.id.as_str())
        .bind(new.user_id.0)
        .bind(new.path.as_str())
        .bind(new.metadata.as_str())
        .bind(new.on_conflict.as_str())
        .bind(new.mtime)
        .bind(new.length)
        .bind(Vec::<u8>::new())
        .bind(now_ms())
        .bind(new.expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// The upload `id`, with its blocks and tail, whoever made it and whether or not it
    /// expired: the caller decides who may see it.
    pub async fn upload(&self, id: &str) -> Result<Option<Upload>, MetaError> {
        let Some(row) = sqlx::query(
            "SELECT id, user_id, path, metadata, on_conflict, mtime, upload_length, \
             upload_offset, tail, created_at, expires_at FROM tus_uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let blocks = sqlx::query(
            "SELECT hash, size FROM tus_upload_blocks WHERE upload_id = $1 ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            let hash: Vec<u8> = r.try_get("hash")?;
            let size: i64 = r.try_get("size")?;
            Ok(BlockRef {
                hash: BlockHash::from_slice(&hash).ok_or_else(|| corrupt("block hash length"))?,
                size: u32::try_from(size).map_err(|_| corrupt("block size"))?,
            })
        })
        .collect::<Result<Vec<_>, MetaError>>()?;
        let on_conflict: String = row.try_get("on_conflict")?;
        Ok(Some(Upload {
            id: row.try_get("id")?,
            user_id: UserId(row.try_get("user_id")?),
            path: row.try_get("path")?,
            metadata: row.try_get("metadata")?,
            on_conflict: OnConflict::parse(&on_conflict)
                .ok_or_else(|| corrupt("upload on_conflict"))?,
            mtime: row.try_get("mtime")?,
            length: row.try_get("upload_length")?,
            offset: row.try_get("upload_offset")?,
            blocks,
            tail: row.try_get("tail")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Saves what a request added to upload `id`, in one transaction, if its saved
    /// state is still at `progress.from_offset` with `progress.from_blocks` blocks;
    /// returns the new offset, or `None` when the upload is gone or another request
    /// moved it (nothing changed then).
    ///
    /// Every new block must be in `blocks` and not claimed by garbage collection; each
    /// is locked first, in hash order. If one is not, nothing changes and the answer
    /// is [`MetaError::MissingBlocks`] with those blocks: store them again (which
    /// revives a claimed row) and retry.
    pub async fn save_upload_progress(
        &self,
        id: &str,
        progress: &UploadProgress,
    ) -> Result<Option<i64>, MetaError> {
        let added: i64 = progress.new_blocks.iter().map(|b| i64::from(b.size)).sum();
        let mut tx = WriteTx::begin(self).await?;
        let mut hashes: Vec<BlockHash> = progress.new_blocks.iter().map(|b| b.hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut gone = Vec::new();
        for h in &hashes {
            // A write that changes nothing, to lock the row (on PostgreSQL; SQLite's
            // transaction holds the write lock already) and see whether it is claimed.
            let row = sqlx::query(
                "UPDATE blocks SET refcount = refcount \
                 WHERE hash = $1 AND gc_started IS NULL RETURNING hash",
            )
            .bind(h.0.to_vec())
            .fetch_optional(tx.conn())
            .await?;
            if row.is_none() {
                gone.push(*h);
            }
        }
        if !gone.is_empty() {
            return Err(MetaError::MissingBlocks(gone));
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tus_upload_blocks WHERE upload_id = $1")
                .bind(id)
                .fetch_one(tx.conn())
                .await?;
        let tail_len = progress.tail.len() as i64;
        let blocks_end: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM tus_upload_blocks \
             WHERE upload_id = $1",
        )
        .bind(id)
        .fetch_one(tx.conn())
        .await?;
        let new_offset = blocks_end + added + tail_len;
        let updated = sqlx::query(
            "UPDATE tus_uploads SET upload_offset = $1, tail = $2, expires_at = $3 \
             WHERE id = $4 AND upload_offset = $5",
        )
        .bind(new_offset)
        .bind(progress.tail.clone())
        .bind(progress.expires_at)
        .bind(id)
        .bind(progress.from_offset)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if updated == 0 || count != progress.from_blocks as i64 {
            // Dropped without commit: nothing changed.
            return Ok(None);
        }
        for (i, block) in progress.new_blocks.iter().enumerate() {
            sqlx::query(
                "INSERT INTO tus_upload_blocks (upload_id, idx, hash, size) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(count + i as i64)
            .bind(block.hash.0.to_vec())
            .bind(i64::from(block.size))
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(Some(new_offset))
    }

    /// Takes the lease of upload `id` for `holder` (a token unique to the request that
    /// asks) until `until` (Unix ms), if nobody holds it or its holder's lease ran out
    /// by `now`; whether it did. A holder renews its lease with [`MetaStore::renew_upload_lease`]
    /// while it works and gives it back with [`MetaStore::release_upload_lease`]; one
    /// that dies holds the upload only until its lease runs out.
    ///
    /// The lease keeps requests on different nodes from working on one upload at once
    /// (and a `HEAD` from answering an offset a `PATCH` is still moving); it does not
    /// guard the upload's state, which [`MetaStore::save_upload_progress`] changes only
    /// by a compare-and-set whoever holds the lease.
    pub async fn lease_upload(
        &self,
        id: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<LeaseAttempt, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let taken = sqlx::query(
            "UPDATE tus_uploads SET lease_holder = $1, lease_until = $2 \
             WHERE id = $3 AND (lease_holder IS NULL OR lease_until <= $4)",
        )
        .bind(holder)
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(tx.conn())
        .await?
        .rows_affected();
        let attempt = match taken {
            0 => sqlx::query_scalar::<_, Option<i64>>(
                "SELECT lease_until FROM tus_uploads WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .map_or(LeaseAttempt::NoUpload, |until| {
                LeaseAttempt::HeldUntil(until.unwrap_or(now))
            }),
            _ => LeaseAttempt::Taken,
        };
        tx.commit().await?;
        Ok(attempt)
    }

    /// Extends `holder`'s lease of upload `id` to `until` (Unix ms); whether it still
    /// held it (it may have run out and been taken by another).
    pub async fn renew_upload_lease(
        &self,
        id: &str,
        holder: &str,
        until: i64,
    ) -> Result<bool, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let renewed = sqlx::query(
            "UPDATE tus_uploads SET lease_until = $1 WHERE id = $2 AND lease_holder = $3",
        )
        .bind(until)
        .bind(id)
        .bind(holder)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(renewed > 0)
    }

    /// Gives back `holder`'s lease of upload `id`, if it still holds it.
    pub async fn release_upload_lease(&self, id: &str, holder: &str) -> Result<(), MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query(
            "UPDATE tus_uploads SET lease_holder = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Deletes upload `id` and releases its blocks; whether there was one.
    pub async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query("DELETE FROM tus_upload_blocks WHERE upload_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        let deleted = sqlx::query("DELETE FROM tus_uploads WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Deletes every upload that expired before `now` (Unix ms), releasing their blocks;
    /// how many there were. Run by the maintenance pass before garbage collection.
    pub async fn expire_uploads(&self, now: i64) -> Result<u64, MetaError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM tus_uploads WHERE expires_at <= $1")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        let mut expired = 0;
        for id in ids {
            // One transaction each, re-checking the expiry: a request may have just
            // extended it.
            let mut tx = WriteTx::begin(self).await?;
            let gone = sqlx::query("DELETE FROM tus_uploads WHERE id = $1 AND expires_at <= $2")
                .bind(id.as_str())
                .bind(now)
                .execute(tx.conn())
                .await?
                .rows_affected();
            if gone > 0 {
                sqlx::query("DELETE FROM tus_upload_blocks WHERE upload_id = $1")
                    .bind(id.as_str())
                    .execute(tx.conn())
                    .await?;
                expired += 1;
            }
            tx.commit().await?;
        }
        Ok(expired)
    }

    /// How many uploads are in progress (expired or not), for tests and the admin view.
    pub async fn upload_count(&self) -> Result<i64, MetaError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tus_uploads")
            .fetch_one(&self.pool)
            .await?)
    }
}
