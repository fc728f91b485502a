//! A PATCH body (or a creation's) into an upload: cut by the server's chunker as it
//! streams in, each block stored through the block manager, progress saved durably.
//!
//! Memory stays bounded whatever the body's length: the bytes since the last cut (less
//! than a maximal chunk, plus one frame of the body), and the chunks being stored (at
//! most [`STORES_IN_FLIGHT`] + 1): at most about 48 MiB with the default chunker, half
//! that on average.
//! An upload's state always ends at a cut point followed by its `tail`, the bytes not
//! cut yet; the next request's bytes continue the tail, and since a cut point depends
//! only on the bytes since the previous one, the blocks are those a single stream would
//! have been cut into.

use std::collections::VecDeque;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use cairn_core::chunk::{find_cut, ChunkerConfig};
use cairn_core::BlockHash;
use cairn_meta::{BlockRef, MetaError, Upload, UploadProgress, User};
use futures::StreamExt;

use super::metadata::Checksum;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Received {
    /// All of it was received and kept; the upload is at this offset.
    Kept(i64),
    /// It broke off (the connection was cut, or it stalled); what arrived before is
    /// kept, and the upload is at this offset.
    Interrupted(i64),
    /// It would have gone past the upload's length: nothing of it was kept.
    TooLong,
    /// Its checksum did not match: nothing of it was kept.
    ChecksumMismatch,
    /// It broke off, and it had a checksum, so none of it could be checked: nothing of
    /// it was kept.
    InterruptedUnchecked,
}

/// Blocks being stored at once: their writes and fsyncs overlap, as a client's parallel
/// block uploads do.
const STORES_IN_FLIGHT: usize = 4;
/// While a request's bytes are saved as they go, how many bytes of blocks wait for a
/// save at most: what a crash can make the client send again.
const SAVE_EVERY_BYTES: usize = 32 << 20;

/// A block being stored.
type Storing = (
    BlockRef,
    tokio::task::JoinHandle<Result<(), crate::block_manager::BlockError>>,
);

/// One request's bytes being added to an upload.
pub(super) struct Receiver {
    state: AppState,
    user: User,
    chunker: ChunkerConfig,
    id: String,
    length: i64,
    /// The saved state: its offset and its number of blocks.
    saved_offset: i64,
    saved_blocks: usize,
    /// Blocks cut and stored since the last save.
    pending: Vec<BlockRef>,
    /// Blocks cut and being stored, in order; they join `pending` once stored.
    storing: VecDeque<Storing>,
    /// The bytes after the last cut.
    buf: BytesMut,
    /// Whether to save as the bytes come (every [`SAVE_EVERY_BYTES`] of blocks): only
    /// when nothing of the request may have to be discarded later (no checksum to check
    /// at its end, a declared length that fits).
    save_each_block: bool,
    expires_at: i64,
    /// Whether the upload is a part of a file ([`Upload::is_partial`]).
    partial: bool,
    /// The save running while the bytes keep coming: its offset and how many blocks
    /// it saved.
    saving: Option<tokio::task::JoinHandle<ApiResult<(i64, usize)>>>,
}

impl Receiver {
    pub(super) fn new(
        state: &AppState,
        user: &User,
        upload: &Upload,
        save_each_block: bool,
        expires_at: i64,
    ) -> Self {
        Self {
            chunker: *state.blocks.chunker(),
            state: state.clone(),
            user: user.clone(),
            id: upload.id.clone(),
            length: upload.length,
            saved_offset: upload.offset,
            saved_blocks: upload.blocks.len(),
            pending: Vec::new(),
            storing: VecDeque::new(),
            buf: BytesMut::from(&upload.tail[..]),
            save_each_block,
            expires_at,
            partial: upload.is_partial(),
            saving: None,
        }
    }

    /// Reads `body` to its end, cutting, storing and saving as it goes.
    pub(super) async fn receive(
        mut self,
        body: Body,
        declared: Option<i64>,
        mut checksum: Option<Checksum>,
    ) -> ApiResult<Received> {
        let start = self.saved_offset;
        let room = self.length - start;
        let mut received: i64 = 0;
        let mut broken = false;
        let mut stream = body.into_data_stream();
        while let Some(frame) = stream.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(err) => {
                    tracing::debug!(upload = %self.id, error = %err, "upload body broke off");
                    broken = true;
                    break;
                }
            };
            received += frame.len() as i64;
            if received > room {
                // Blocks stored for this request stay unreferenced; the collector
                // frees them.
                return Ok(Received::TooLong);
            }
            if let Some(sum) = &mut checksum {
                sum.update(&frame);
            }
            if self.buf.capacity() - self.buf.len() < frame.len() {
                // Room for a whole block at once: grown a frame at a time, the buffer
                // would be copied again at each doubling.
                self.buf.reserve(frame.len().max(self.chunker.max_size));
            }
            self.buf.extend_from_slice(&frame);
            while self.buf.len() >= self.chunker.max_size {
                self.cut_one(false).await?;
                let waiting: usize = self.pending.iter().map(|b| b.size as usize).sum();
                if self.save_each_block && waiting >= SAVE_EVERY_BYTES {
                    self.save_in_background().await?;
                }
            }
        }
        if declared.is_some_and(|n| received < n) {
            broken = true;
        }
        if let Some(sum) = checksum {
            if broken {
                return Ok(Received::InterruptedUnchecked);
            }
            if !sum.matches() {
                return Ok(Received::ChecksumMismatch);
            }
        }
        // A part of a file is never cut at its end: the file goes on after it.
        let complete = start + received == self.length && !self.partial;
        // The cut points that are certain already; at the end of the file, the rest is
        // its last block.
        while !self.buf.is_empty() && self.cut_one(complete).await? {}
        let offset = self.save().await?;
        Ok(match broken {
            true => Received::Interrupted(offset),
            false => Received::Kept(offset),
        })
    }

    /// Cuts the next block off the buffer if its cut point is certain (or `last`: the
    /// file ends here), stores it and queues it for the next save; whether it did.
    async fn cut_one(&mut self, last: bool) -> ApiResult<bool> {
        let Some((hash, chunk)) = cut_next(&mut self.buf, self.chunker, last).await? else {
            return Ok(false);
        };
        let block = BlockRef {
            hash,
            size: chunk.len() as u32,
        };
        let (blocks, user) = (self.state.blocks.clone(), self.user.clone());
        let task = tokio::spawn(async move { blocks.store_chunk(&user, hash, chunk).await });
        self.storing.push_back((block, task));
        if self.storing.len() > STORES_IN_FLIGHT {
            self.stored_one().await?;
        }
        Ok(true)
    }

    /// Waits for the oldest block being stored, and queues it for the next save.
    async fn stored_one(&mut self) -> ApiResult<()> {
        if let Some((block, task)) = self.storing.pop_front() {
            task.await.map_err(ApiError::internal)??;
            self.pending.push(block);
        }
        Ok(())
    }

    /// Starts saving the blocks stored since the last save, in a task of its own, so
    /// that the bytes keep coming meanwhile (the metadata store's commits are slow next
    /// to a body's bytes); the saved state then ends at the last of those blocks, and
    /// what came after is not acknowledged yet. One such save runs at a time.
    async fn save_in_background(&mut self) -> ApiResult<()> {
        if self.saving.as_ref().is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        self.saved().await?;
        let pending = std::mem::take(&mut self.pending);
        let progress = self.progress(&pending, Vec::new());
        let (state, id) = (self.state.clone(), self.id.clone());
        self.saving = Some(tokio::spawn(async move {
            let offset = save_progress(&state, &id, &progress).await?;
            Ok((offset, pending.len()))
        }));
        Ok(())
    }

    /// Waits for the save running in the background, if one is.
    async fn saved(&mut self) -> ApiResult<()> {
        if let Some(task) = self.saving.take() {
            let (offset, blocks) = task.await.map_err(ApiError::internal)??;
            self.saved_offset = offset;
            self.saved_blocks += blocks;
        }
        Ok(())
    }

    /// Saves every block cut, and the tail; returns the saved offset.
    async fn save(&mut self) -> ApiResult<i64> {
        self.saved().await?;
        while !self.storing.is_empty() {
            self.stored_one().await?;
        }
        let pending = std::mem::take(&mut self.pending);
        let progress = self.progress(&pending, self.buf.to_vec());
        let offset = save_progress(&self.state, &self.id, &progress).await?;
        self.saved_offset = offset;
        self.saved_blocks += pending.len();
        Ok(offset)
    }

    /// The saved state followed by `blocks` and `tail`.
    fn progress(&self, blocks: &[BlockRef], tail: Vec<u8>) -> UploadProgress {
        UploadProgress {
            from_offset: self.saved_offset,
            from_blocks: self.saved_blocks,
            new_blocks: blocks.to_vec(),
            tail,
            expires_at: self.expires_at,
        }
    }
}

/// Saves `progress` of upload `id`; returns the saved offset.
///
/// A block that garbage collection claimed between its store and this save (only
/// possible with a grace period shorter than that moment, an hour by default) fails the
/// request: nothing of it after the last save is kept, and the client sends that part
/// again.
async fn save_progress(state: &AppState, id: &str, progress: &UploadProgress) -> ApiResult<i64> {
    match state.meta.save_upload_progress(id, progress).await {
        Ok(Some(offset)) => Ok(offset),
        Ok(None) => Err(ApiError::not_found(
            "the upload was removed or changed by another request meanwhile",
        )),
        Err(MetaError::MissingBlocks(_)) => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "blocks_collected",
            "part of this request's data was collected before it was saved; nothing of \
             it was kept, send it again",
        )),
        Err(err) => Err(err.into()),
    }
}

/// Cuts the next block off `buf` if its cut point is certain, or if `last` (the file
/// ends with these bytes): the block's hash and bytes. The search and the hash run on
/// the blocking pool.
pub(super) async fn cut_next(
    buf: &mut BytesMut,
    config: ChunkerConfig,
    last: bool,
) -> ApiResult<Option<(BlockHash, Bytes)>> {
    let taken = std::mem::take(buf);
    let (rest, chunk) = tokio::task::spawn_blocking(move || {
        let mut buf = taken;
        let len = find_cut(&buf, &config);
        // A cut before the end is a matched position; at `max_size` it is forced. A
        // result equal to what is buffered (short of the maximum) may only mean that no
        // position matched yet.
        if len < buf.len() || len == config.max_size || last {
            let chunk = buf.split_to(len).freeze();
            let hash = BlockHash::of(&chunk);
            (buf, Some((hash, chunk)))
        } else {
            (buf, None)
        }
    })
    .await
    .map_err(ApiError::internal)?;
    *buf = rest;
    Ok(chunk)
}
