//! Uploading many small files with a handful of requests per thousand files.
//!
//! ```text
//! per group of 1000 files: read + chunk + hash (blocking pool)
//!     ──▶ POST /blocks/check ──▶ POST /blocks/batch (≤ 8 MiB each) ──▶ POST /files/commit_batch
//! ```
//!
//! Two groups are in flight at once, so the server commits one group while it stores
//! the next one's blocks.

use std::path::PathBuf;

use bytes::Bytes;
use cairn_core::chunk::{chunk_and_hash, Chunk, ChunkError};
use cairn_core::BlockHash;
use cairn_proto::block_batch::frame_len;
use cairn_proto::{
    BlockRef, CommitBatchItem, CommitBatchRequest, CommitRequest, CommitResponse,
    MAX_BLOCK_BATCH_BODY, MAX_BLOCK_BATCH_FRAMES,
};
use futures::{StreamExt, TryStreamExt};

use crate::error::ClientError;
use crate::upload::chunker_config;
use crate::{Client, MAX_BATCH_ITEMS};

/// Bytes of frames per `POST /blocks/batch` request: well under what the server takes
/// ([`MAX_BLOCK_BATCH_BODY`]), so a group's blocks go in several requests and the server
/// verifies and stores one while the next is on the wire.
const UPLOAD_BATCH_BYTES: usize = 8 << 20;
const _: () = assert!(UPLOAD_BATCH_BYTES <= MAX_BLOCK_BATCH_BODY);
/// Groups of files in flight at once.
const GROUPS_IN_FLIGHT: usize = 2;

/// Where a small file's content comes from.
#[derive(Debug, Clone)]
pub enum SmallSource {
    /// A local file, read whole (so meant for small ones).
    Path(PathBuf),
    /// Content already in memory.
    Bytes(Bytes),
}

/// One file for [`Client::upload_small_files`].
#[derive(Debug, Clone)]
pub struct SmallFile {
    pub source: SmallSource,
    /// Where it goes on the server; missing folders are created.
    pub remote: String,
    /// The revision it replaces; `None` for a new file (a stale one is a conflict).
    pub base_rev: Option<String>,
    /// Its modification time, Unix milliseconds.
    pub mtime: Option<i64>,
}

impl Client {
    /// Uploads many small files with few requests: groups of up to a thousand files are
    /// chunked and hashed, their missing blocks found with batched checks and sent in
    /// batched uploads, and each group is committed in one transaction. Returns a
    /// result per file, in order: the commit, or why that file was refused (a conflict
    /// carries the current entry) or could not be read. An error of the whole call
    /// (the server unreachable, say) leaves earlier groups committed.
    ///
    /// Remote paths should be distinct: two groups may commit in either order.
    pub async fn upload_small_files(
        &self,
        files: Vec<SmallFile>,
    ) -> Result<Vec<Result<CommitResponse, ClientError>>, ClientError> {
        let config = chunker_config(&self.server_info().await?)?;
        let groups: Vec<Vec<SmallFile>> = files
            .chunks(MAX_BATCH_ITEMS)
            .map(<[SmallFile]>::to_vec)
            .collect();
        let results: Vec<Vec<Result<CommitResponse, ClientError>>> = futures::stream::iter(groups)
            .map(|group| self.upload_group(group, config))
            .buffered(GROUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(results.into_iter().flatten().collect())
    }

    async fn upload_group(
        &self,
        group: Vec<SmallFile>,
        config: cairn_core::ChunkerConfig,
    ) -> Result<Vec<Result<CommitResponse, ClientError>>, ClientError> {
        let chunked = tokio::task::spawn_blocking(move || {
            group
                .into_iter()
                .map(|file| {
                    let blocks = read_and_chunk(&file.source, &config);
                    (file, blocks)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|err| ClientError::Protocol(format!("chunking task failed: {err}")))?;

        let mut seen = std::collections::HashSet::new();
        let mut distinct: Vec<(BlockHash, Bytes)> = Vec::new();
        for (_, blocks) in &chunked {
            for (hash, data) in blocks.iter().flatten() {
                if seen.insert(*hash) {
                    distinct.push((*hash, data.clone()));
                }
            }
        }
        let hashes: Vec<String> = distinct.iter().map(|(h, _)| h.to_hex()).collect();
        let missing: std::collections::HashSet<String> =
            self.check_blocks(&hashes).await?.into_iter().collect();
        let mut batch: Vec<(BlockHash, Bytes)> = Vec::new();
        let mut batch_bytes = 0;
        for (hash, data) in distinct {
            if !missing.contains(&hash.to_hex()) {
                continue;
            }
            let full = batch.len() == MAX_BLOCK_BATCH_FRAMES
                || batch_bytes + frame_len(data.len()) > UPLOAD_BATCH_BYTES;
            if full && !batch.is_empty() {
                self.put_blocks_batch(&batch).await?;
                batch.clear();
                batch_bytes = 0;
            }
            batch_bytes += frame_len(data.len());
            batch.push((hash, data));
        }
        if !batch.is_empty() {
            self.put_blocks_batch(&batch).await?;
        }

        let mut items = Vec::new();
        let mut outcomes: Vec<Option<Result<CommitResponse, ClientError>>> = Vec::new();
        for (file, blocks) in chunked {
            match blocks {
                Ok(blocks) => {
                    items.push(CommitBatchItem::Commit(CommitRequest {
                        path: file.remote,
                        blocks: blocks
                            .iter()
                            .map(|(hash, data)| BlockRef {
                                hash: hash.to_hex(),
                                size: data.len() as u32,
                            })
                            .collect(),
                        base_rev: file.base_rev,
                        autorename: false,
                        mtime: file.mtime,
                    }));
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(Err(err))),
            }
        }
        let response = self.commit_batch(&CommitBatchRequest { items }).await?;
        let mut results = response.results.into_iter();
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Some(failed) => Ok(failed),
                None => {
                    let result = results.next().ok_or_else(|| {
                        ClientError::Protocol("commit_batch answered too few results".into())
                    })?;
                    Ok(match (result.entry, result.error) {
                        (Some(entry), _) => Ok(CommitResponse {
                            entry,
                            renamed: result.renamed,
                        }),
                        (None, Some(error)) => Err(item_error(error)),
                        (None, None) => Err(ClientError::Protocol(
                            "a commit_batch result with neither entry nor error".into(),
                        )),
                    })
                }
            })
            .collect()
    }
}

/// A file's blocks: the whole file when it is no longer than the chunker's minimum
/// (content-defined chunking never cuts inside it), else the chunker's cuts.
fn read_and_chunk(
    source: &SmallSource,
    config: &cairn_core::ChunkerConfig,
) -> Result<Vec<(BlockHash, Bytes)>, ClientError> {
    let data = match source {
        SmallSource::Bytes(data) => data.clone(),
        SmallSource::Path(path) => {
            Bytes::from(std::fs::read(path).map_err(|error| ClientError::Io {
                path: path.clone(),
                error,
            })?)
        }
    };
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if data.len() <= config.min_size {
        return Ok(vec![(BlockHash::of(&data), data)]);
    }
    let mut blocks = Vec::new();
    chunk_and_hash(&data[..], config, |chunk: Chunk| {
        blocks.push((chunk.hash, Bytes::from(chunk.data)));
        Ok::<(), std::convert::Infallible>(())
    })
    .map_err(|err| match err {
        ChunkError::Read(error) => ClientError::Protocol(format!("chunking failed: {error}")),
        other => ClientError::Protocol(format!("chunking failed: {other:?}")),
    })?;
    Ok(blocks)
}

/// One refused item as the error a single request would have given.
pub(crate) fn item_error(error: cairn_proto::ErrorDetail) -> ClientError {
    let status = match error.code.as_str() {
        "conflict" | "already_exists" | "not_a_folder" | "is_a_folder" | "missing_blocks" => 409,
        "quota_exceeded" => 403,
        "not_found" => 404,
        "internal" => 500,
        _ => 400,
    };
    ClientError::Api {
        status,
        code: error.code,
        message: error.message,
        current: error.current,
        missing: error.missing_blocks.unwrap_or_default(),
    }
}
