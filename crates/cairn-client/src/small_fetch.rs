//! Downloading many small files with one request per thousand files.
//!
//! ```text
//! per group of up to 1000 files: POST /files/content_batch (entries and contents)
//!     ──▶ verify each against its content hash, write temp files beside their targets
//!     ──▶ fsync them all at once ──▶ rename each into place ──▶ fsync each folder once
//! ```
//!
//! Downloading a file alone costs two requests, a file fsync and a folder fsync; for a
//! tree of 4 KiB files those, not the bytes, are the whole cost. Here the fsyncs of a
//! group are in flight together (the disk's journal commits them in a few writes) and a
//! folder is synced once per group however many files landed in it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use cairn_core::chunk::chunk_and_hash_slice;
use cairn_core::{BlockHash, ChunkerConfig};
use cairn_proto::content_batch::decode_records;
use cairn_proto::{ContentBatchHeader, ContentBatchRequest, EntryInfo, EntryKind};

use crate::download::{parent_dir, temp_beside, ReplaceCheck};
use crate::error::ClientError;
use crate::small::item_error;
use crate::upload::chunker_config;
use crate::{fsx, Client, DownloadOptions, DownloadOutcome, DownloadStats, MAX_BATCH_ITEMS};

/// Threads fsyncing a group's files at once: they wait on the disk, not the CPU.
const SYNC_THREADS: usize = 16;

/// One file for [`Client::download_small_files`].
#[derive(Clone)]
pub struct SmallDownload {
    /// The file on the server.
    pub remote: String,
    /// Where it goes; its folder must exist.
    pub local: PathBuf,
    /// As [`crate::DownloadOptions::may_replace`]: asked just before the file replaces
    /// whatever is at `local`.
    pub may_replace: Option<ReplaceCheck>,
}

impl std::fmt::Debug for SmallDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmallDownload")
            .field("remote", &self.remote)
            .field("local", &self.local)
            .field("may_replace", &self.may_replace.is_some())
            .finish()
    }
}

/// A file whose content arrived, on its way to disk.
struct Arrived {
    index: usize,
    entry: EntryInfo,
    content: Bytes,
    local: PathBuf,
    may_replace: Option<ReplaceCheck>,
}

type Outcome = Result<DownloadOutcome, ClientError>;

impl Client {
    /// Downloads many small files with few requests, each as [`Client::download_file`]
    /// would: verified against its content hash, written to a temp file, made durable,
    /// then renamed into place. A file too large for a batch (it grew since the caller
    /// looked) is downloaded alone. Returns a result per file, in order; a file refused
    /// by the server (gone, a folder) or whose destination changed gets its own error.
    /// An error of the whole call (the server unreachable) may leave earlier groups
    /// written.
    pub async fn download_small_files(
        &self,
        files: Vec<SmallDownload>,
    ) -> Result<Vec<Outcome>, ClientError> {
        let config = chunker_config(&self.server_info().await?)?;
        let mut results: Vec<Option<Outcome>> = files.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..files.len()).collect();
        // Files that grew past what a batch carries since the caller looked: fetched
        // the usual way, at the end.
        let mut alone = Vec::new();
        while !pending.is_empty() {
            let take = pending.len().min(MAX_BATCH_ITEMS);
            let group: Vec<usize> = pending.drain(..take).collect();
            let request = ContentBatchRequest {
                paths: group.iter().map(|&i| files[i].remote.clone()).collect(),
            };
            let body = self.post_for_bytes("files/content_batch", &request).await?;
            let records = parse_records(&body, group.len())?;
            let mut again = Vec::new();
            let mut arrived = Vec::new();
            for (&index, (header, content)) in group.iter().zip(records) {
                match (header.entry, header.error) {
                    (_, Some(error)) if error.code == "batch_full" => again.push(index),
                    (_, Some(error)) if error.code == "too_large_for_batch" => alone.push(index),
                    (_, Some(error)) => results[index] = Some(Err(item_error(error))),
                    (Some(entry), None) => arrived.push(Arrived {
                        index,
                        entry,
                        content,
                        local: files[index].local.clone(),
                        may_replace: files[index].may_replace.clone(),
                    }),
                    (None, None) => {
                        return Err(ClientError::Protocol(
                            "a content_batch record with neither entry nor error".into(),
                        ))
                    }
                }
            }
            if again.len() == group.len() {
                return Err(ClientError::Protocol(
                    "content_batch sent no file of a batch".into(),
                ));
            }
            pending.splice(0..0, again);
            let placed = tokio::task::spawn_blocking(move || place_all(arrived, &config))
                .await
                .map_err(|err| ClientError::Protocol(format!("writing task failed: {err}")))?;
            for (index, outcome) in placed {
                results[index] = Some(outcome);
            }
        }
        for index in alone {
            let file = &files[index];
            let options = DownloadOptions {
                may_replace: file.may_replace.clone(),
                ..DownloadOptions::default()
            };
            results[index] = Some(self.download_file(&file.remote, &file.local, options).await);
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| ClientError::Protocol("a file was left out".into())))
            .collect()
    }
}

/// Splits a `content_batch` body into `expected` records: header and content (see
/// [`cairn_proto::content_batch`], which checks every length against its limit).
fn parse_records(
    body: &Bytes,
    expected: usize,
) -> Result<Vec<(ContentBatchHeader, Bytes)>, ClientError> {
    let records = decode_records(body, expected)
        .map_err(|err| ClientError::Protocol(format!("content_batch: {err}")))?;
    Ok(records
        .into_iter()
        .map(|record| (record.header, body.slice(record.content)))
        .collect())
}

/// Verifies and writes each file, fsyncs them together, renames each into place and
/// fsyncs each folder that gained one.
fn place_all(arrived: Vec<Arrived>, config: &ChunkerConfig) -> Vec<(usize, Outcome)> {
    let mut out = Vec::with_capacity(arrived.len());
    let mut written = Vec::with_capacity(arrived.len());
    for file in arrived {
        match write_temp(&file, config) {
            Ok((temp, handle, blocks)) => written.push((file, temp, handle, blocks)),
            Err(err) => out.push((file.index, Err(err))),
        }
    }
    // Each file's metadata is read once it is durable and before its rename (see
    // `DownloadOutcome::placed`).
    let synced = fsx::for_each_parallel(&written, SYNC_THREADS, |(_, temp, handle, _)| {
        handle
            .sync_all()
            .and_then(|()| handle.metadata())
            .map_err(|err| (temp.path().to_owned(), err))
    });
    // Renamed files, by folder: their renames are durable once the folder is synced.
    let mut placed: Vec<(usize, PathBuf, DownloadOutcome)> = Vec::new();
    for ((file, temp, _, blocks), synced) in written.into_iter().zip(synced) {
        let result = synced
            .map_err(|(path, err)| ClientError::io(&path, err))
            .and_then(|meta| {
                if file
                    .may_replace
                    .as_ref()
                    .is_some_and(|check| !check(&file.local))
                {
                    return Err(ClientError::DestinationChanged {
                        path: file.local.clone(),
                    });
                }
                temp.persist(&file.local)
                    .map_err(|err| ClientError::io(&file.local, err.error))?;
                Ok(meta)
            });
        match result {
            Ok(meta) => {
                let size = file.content.len() as u64;
                let outcome = DownloadOutcome {
                    entry: file.entry,
                    stats: DownloadStats {
                        bytes_total: size,
                        bytes_received_payload: size,
                        blocks_downloaded: blocks.len() as u64,
                        blocks_total: blocks.len() as u64,
                    },
                    blocks,
                    placed: meta,
                };
                placed.push((file.index, parent_dir(&file.local).to_owned(), outcome));
            }
            Err(err) => out.push((file.index, Err(err))),
        }
    }
    let folders: Vec<PathBuf> = placed
        .iter()
        .map(|(_, dir, _)| dir.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let folder_results = fsx::for_each_parallel(&folders, SYNC_THREADS, |dir| fsx::sync_dir(dir));
    let failed: Vec<(&PathBuf, std::io::Error)> = folders
        .iter()
        .zip(folder_results)
        .filter_map(|(dir, result)| result.err().map(|err| (dir, err)))
        .collect();
    for (index, dir, outcome) in placed {
        // A folder that cannot be synced leaves the renames into it not durable: each
        // file there reports it.
        match failed.iter().find(|(d, _)| **d == dir) {
            Some((_, err)) => out.push((
                index,
                Err(ClientError::io(
                    &dir,
                    std::io::Error::new(err.kind(), err.to_string()),
                )),
            )),
            None => out.push((index, Ok(outcome))),
        }
    }
    out
}

/// A file written to its temp file: the temp file, a handle to sync it by, its blocks.
type Written = (tempfile::NamedTempFile, File, Vec<(BlockHash, u32)>);

/// Checks a file's content against its entry and writes it to a temp file beside its
/// target.
fn write_temp(file: &Arrived, config: &ChunkerConfig) -> Result<Written, ClientError> {
    if file.entry.kind != EntryKind::File {
        return Err(ClientError::NotAFile {
            path: file.entry.path.clone(),
        });
    }
    let chunked = chunk_and_hash_slice(&file.content, config);
    let actual = chunked.content_hash.to_hex();
    if file
        .entry
        .content_hash
        .as_deref()
        .is_some_and(|h| h != actual)
        || chunked.size != file.entry.size
    {
        return Err(ClientError::ContentMismatch {
            path: file.entry.path.clone(),
        });
    }
    let mut temp = temp_beside(&file.local)?;
    temp.write_all(&file.content)
        .map_err(|err| ClientError::io(temp.path(), err))?;
    let handle = temp
        .as_file()
        .try_clone()
        .map_err(|err| ClientError::io(temp.path(), err))?;
    Ok((temp, handle, chunked.blocks))
}
