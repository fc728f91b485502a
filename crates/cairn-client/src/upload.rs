//! Uploading a local file block by block.
//!
//! The pipeline, with memory bounded by a byte budget however large the file:
//!
//! ```text
//! blocking thread: chunk_and_hash ──(budget permit, chunk)──▶ async side:
//!     batch ──▶ POST /blocks/check (≤ 2 in flight) ──▶ missing? ──▶ PUT /blocks/{hash} (≤ N)
//!                                                    └─ present: drop the bytes
//! then POST /files/commit with the whole block list and the base revision.
//! ```
//!
//! The chunker takes a permit for every chunk's bytes before it hands the chunk over and
//! the permit is released when the bytes are dropped (the block was present, or its upload
//! finished), so the chunker waits when the network is the bottleneck and never holds
//! more than the budget. Check calls are batched: a batch goes out once it holds a quarter
//! of the budget (two average chunks by default), or as soon as the chunker may be
//! waiting for memory, or at the end; up to two checks are in flight while the chunker
//! keeps going, so no chunk waits for a round trip of its own. Re-uploading an unchanged
//! file therefore runs at the chunker's speed with one small check call per ~8 MiB.
//!
//! The chunker is `chunk_and_hash_parallel_slice` over a memory map for files of at
//! least `PARALLEL_MIN_CHUNKS` maximal chunks (both cores chunk and hash, and blocks are
//! handed over as slices of the map: nothing is copied, and the budget counts mapped
//! bytes the pipeline holds on to), and `chunk_and_hash` through `Read` for smaller ones,
//! whose blocks are copied out of the read buffers.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use cairn_core::chunk::{
    chunk_and_hash, chunk_and_hash_parallel_slice, Chunk, ChunkError, ChunkRef, ChunkedFile,
    PARALLEL_MIN_CHUNKS,
};
use cairn_core::{BlockHash, ChunkerConfig};
use cairn_proto::{BlockRef, CommitRequest, CommitResponse, ServerInfo};
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::error::ClientError;
use crate::fsx;
use crate::mapped::MappedFile;
use crate::Client;

/// Called with the number of bytes of the file done so far (uploaded, or found already
/// on the server), growing up to the file's size.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// Most hashes in one check call from the upload pipeline.
const CHECK_BATCH: usize = 256;
/// Check calls in flight at once.
const MAX_CHECKS_IN_FLIGHT: usize = 2;

/// How [`Client::upload_file`] commits and how hard it works.
#[derive(Clone)]
pub struct UploadOptions {
    /// The revision the new content replaces; `None` for a new file. A stale revision
    /// makes the commit fail with a conflict (unless `autorename` is set).
    pub base_rev: Option<String>,
    /// On a conflict, store the content as a conflict copy beside the file.
    pub autorename: bool,
    /// Block uploads in flight at once (at least 1; default 4).
    pub parallelism: usize,
    /// Progress reports, called from the async side.
    pub progress: Option<ProgressFn>,
    /// Announce a file of [`crate::ANNOUNCE_MIN_SIZE`] or more before sending its
    /// blocks, so that other devices fetch them as they arrive (streaming sync; see
    /// [`Client::announce_upload`]). Only [`Client::upload_file_with_blocks`] does.
    pub announce: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            base_rev: None,
            autorename: false,
            parallelism: 4,
            progress: None,
            announce: false,
        }
    }
}

impl fmt::Debug for UploadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadOptions")
            .field("base_rev", &self.base_rev)
            .field("autorename", &self.autorename)
            .field("parallelism", &self.parallelism)
            .field("progress", &self.progress.is_some())
            .field("announce", &self.announce)
            .finish()
    }
}

/// What an upload transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// The file's size.
    pub bytes_total: u64,
    /// Block payload bytes sent (not counting HTTP and JSON overhead).
    pub bytes_sent_payload: u64,
    /// Blocks sent, each distinct block at most once (plus any the commit asked for again).
    pub blocks_uploaded: u64,
    /// Blocks in the file, repeats included.
    pub blocks_total: u64,
}

/// The result of [`Client::upload_file`].
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// The server's answer to the commit: the new entry, and whether it was renamed.
    pub commit: CommitResponse,
    /// What was transferred.
    pub stats: UploadStats,
}

/// Where the chunker takes a file's bytes from.
enum Source {
    /// Reading it: small files (and large ones if mapping fails), and streams.
    Read(Box<dyn Read + Send>),
    /// Its map, for large files.
    Mapped(MappedFile),
}

/// True if `local`'s size or modification time differ from `before`'s, or it cannot be
/// examined any more: what was chunked may then mix old and new content.
fn changed_since(local: &Path, before: &std::fs::Metadata) -> bool {
    match std::fs::metadata(local) {
        Ok(now) => now.len() != before.len() || now.modified().ok() != before.modified().ok(),
        Err(_) => true,
    }
}

/// Whether a file is large enough to map and chunk on both cores.
fn worth_mapping(len: u64, config: &ChunkerConfig) -> bool {
    len >= (PARALLEL_MIN_CHUNKS * config.max_size) as u64
}

/// Chunks and hashes an open file the way an upload does (a large file mapped and cut
/// on both cores), keeping only the block list: for callers that hash files first and
/// upload some of them later, such as the sync client's scan, which then hands the list
/// to [`Client::upload_file_with_blocks`] instead of chunking the file a second time.
pub fn chunk_file(file: &File, config: &ChunkerConfig) -> std::io::Result<ChunkedFile> {
    let len = file.metadata()?.len();
    if worth_mapping(len, config) {
        if let Ok(map) = MappedFile::map(file) {
            let chunked = chunk_and_hash_parallel_slice(map.bytes(), config, |_| {
                Ok::<(), std::convert::Infallible>(())
            });
            return Ok(chunked.unwrap_or_else(|never| match never {}));
        }
    }
    chunk_and_hash(file, config, |_| Ok::<(), std::convert::Infallible>(())).map_err(
        |err| match err {
            ChunkError::Read(err) => err,
            ChunkError::Sink(never) => match never {},
        },
    )
}

/// A chunk on its way to the server, holding its share of the memory budget.
struct PendingBlock {
    hash: BlockHash,
    data: Bytes,
    _permit: OwnedSemaphorePermit,
}

/// The chunker was told to stop because the async side gave up.
#[derive(Debug)]
struct Stopped;

impl Client {
    /// Uploads the local file `local` to the remote path `remote`, sending only the
    /// blocks the server does not already hold for this account, and commits it.
    pub async fn upload_file(
        &self,
        local: &Path,
        remote: &str,
        options: UploadOptions,
    ) -> Result<UploadOutcome, ClientError> {
        let info = self.server_info().await?;
        let config = chunker_config(&info)?;
        let parallelism = options.parallelism.max(1);

        let file = File::open(local).map_err(|err| ClientError::io(local, err))?;
        let metadata = file.metadata().map_err(|err| ClientError::io(local, err))?;
        if !metadata.is_file() {
            return Err(ClientError::NotAFile {
                path: local.display().to_string(),
            });
        }
        // Large files are mapped and chunked on both cores without copying (see
        // `mapped`); if the map fails, they are read like small ones.
        let source = if worth_mapping(metadata.len(), &config) {
            match MappedFile::map(&file) {
                Ok(map) => Source::Mapped(map),
                Err(_) => Source::Read(Box::new(file)),
            }
        } else {
            Source::Read(Box::new(file))
        };
        let (chunked, mut stats) = self
            .send_chunks(
                source,
                local,
                &config,
                parallelism,
                options.progress.as_ref(),
            )
            .await?;
        if changed_since(local, &metadata) {
            return Err(ClientError::ChangedDuringUpload {
                path: local.to_owned(),
            });
        }
        let commit = self
            .commit_blocks(
                local,
                remote,
                &chunked.blocks,
                &options,
                &metadata,
                &mut stats,
            )
            .await?;
        Ok(UploadOutcome { commit, stats })
    }

    /// Uploads whatever `reader` yields (standard input, a pipe) to the remote path
    /// `remote` and commits it, chunking it as it arrives: memory stays bounded by the
    /// same budget as [`Client::upload_file`], however long the stream. `source_name`
    /// names the stream in errors, such as `standard input`. A stream cannot be read
    /// twice, so if the server lost a block between its check and the commit (a
    /// garbage collection raced the upload), the upload fails and must be run again.
    /// The file's modification time is the time of the commit.
    pub async fn upload_reader<R: Read + Send + 'static>(
        &self,
        reader: R,
        source_name: &Path,
        remote: &str,
        options: UploadOptions,
    ) -> Result<UploadOutcome, ClientError> {
        let config = chunker_config(&self.server_info().await?)?;
        let parallelism = options.parallelism.max(1);
        let (chunked, stats) = self
            .send_chunks(
                Source::Read(Box::new(reader)),
                source_name,
                &config,
                parallelism,
                options.progress.as_ref(),
            )
            .await?;
        let mtime = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let request = commit_request(remote, &chunked.blocks, &options, mtime);
        let commit = self.commit(&request).await.map_err(|err| match err {
            ClientError::Api { code, .. } if code == "missing_blocks" => ClientError::Protocol(
                "the server lost blocks of the upload before its commit (a garbage \
                 collection raced it); send it again"
                    .to_owned(),
            ),
            other => other,
        })?;
        Ok(UploadOutcome { commit, stats })
    }

    /// The pipeline of the module's comment: chunks and hashes `source` on a blocking
    /// thread, checks the chunks in batches and uploads the missing ones, within the
    /// memory budget. Returns the block list and what was sent; commits nothing.
    async fn send_chunks(
        &self,
        source: Source,
        source_name: &Path,
        config: &ChunkerConfig,
        parallelism: usize,
        progress: Option<&ProgressFn>,
    ) -> Result<(ChunkedFile, UploadStats), ClientError> {
        let config = *config;
        let budget_bytes = memory_budget(&config, parallelism);
        let budget = Arc::new(Semaphore::new(budget_bytes as usize));
        let (tx, rx) = mpsc::channel::<PendingBlock>(64);
        let chunker = {
            let budget = Arc::clone(&budget);
            tokio::task::spawn_blocking(move || {
                let hand_over = |hash: BlockHash, data: Bytes| -> Result<(), Stopped> {
                    let units = u32::try_from(data.len())
                        .unwrap_or(u32::MAX)
                        .min(budget_bytes);
                    // The chunker runs on its own threads, outside the runtime, so it
                    // may block here until earlier blocks have been dealt with.
                    let permit =
                        futures::executor::block_on(Arc::clone(&budget).acquire_many_owned(units))
                            .map_err(|_| Stopped)?;
                    let block = PendingBlock {
                        hash,
                        data,
                        _permit: permit,
                    };
                    tx.blocking_send(block).map_err(|_| Stopped)
                };
                match source {
                    Source::Read(reader) => chunk_and_hash(reader, &config, |chunk: Chunk| {
                        hand_over(chunk.hash, Bytes::from(chunk.data))
                    }),
                    Source::Mapped(map) => {
                        chunk_and_hash_parallel_slice(map.bytes(), &config, |chunk: ChunkRef| {
                            let start = chunk.offset as usize;
                            hand_over(chunk.hash, map.slice(start..start + chunk.data.len()))
                        })
                        .map_err(ChunkError::Sink)
                    }
                }
            })
        };

        let memory = Memory {
            budget: &budget,
            budget_bytes,
            max_chunk: config.max_size,
        };
        let pumped = pump(self, rx, parallelism, progress, memory).await;
        // Wake the chunker if it waits for memory, so it stops instead of reading on.
        budget.close();
        let chunked = chunker.await;
        let stats = pumped?;
        let chunked = match chunked {
            Ok(Ok(chunked)) => chunked,
            Ok(Err(ChunkError::Read(err))) => return Err(ClientError::io(source_name, err)),
            Ok(Err(ChunkError::Sink(Stopped))) => {
                return Err(ClientError::Protocol(
                    "the upload pipeline stopped unexpectedly".to_owned(),
                ))
            }
            Err(err) => {
                return Err(ClientError::Protocol(format!(
                    "the chunking task failed: {err}"
                )))
            }
        };
        if chunked.blocks.len() as u64 != stats.blocks_total {
            return Err(ClientError::Protocol(format!(
                "the chunker listed {} blocks but handed over {}",
                chunked.blocks.len(),
                stats.blocks_total
            )));
        }
        Ok((chunked, stats))
    }

    /// Commits `blocks` as the new content of `remote`, with `local`'s modification
    /// time. If the server lost track of some blocks between our check and the commit
    /// (a garbage collection raced us, say), sends those again from `local` and commits
    /// once more.
    async fn commit_blocks(
        &self,
        local: &Path,
        remote: &str,
        blocks: &[(BlockHash, u32)],
        options: &UploadOptions,
        metadata: &std::fs::Metadata,
        stats: &mut UploadStats,
    ) -> Result<CommitResponse, ClientError> {
        let mtime = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let request = commit_request(remote, blocks, options, mtime);
        match self.commit(&request).await {
            Err(ClientError::Api { code, missing, .. })
                if code == "missing_blocks" && !missing.is_empty() =>
            {
                let parallelism = options.parallelism.max(1);
                let how = Sending {
                    previous: &[],
                    parallelism,
                    pending: None,
                };
                self.reupload(local, blocks, &missing, how, stats).await?;
                self.commit(&request).await
            }
            other => other,
        }
    }

    /// Uploads `local` given its block list, as [`chunk_file`] made it from the file's
    /// current content: asks which blocks the server lacks, reads and sends only those
    /// (each checked against its hash as it is read), and commits. The file is not read
    /// in full again, so an edit to a large file costs the changed blocks. Fails with
    /// [`ClientError::ChangedDuringUpload`] if a block read no longer matches or the
    /// file's size or modification time changed meanwhile.
    pub async fn upload_file_with_blocks(
        &self,
        local: &Path,
        remote: &str,
        blocks: &[(BlockHash, u32)],
        options: UploadOptions,
    ) -> Result<UploadOutcome, ClientError> {
        let metadata = std::fs::metadata(local).map_err(|err| ClientError::io(local, err))?;
        let size: u64 = blocks.iter().map(|(_, len)| u64::from(*len)).sum();
        if !metadata.is_file() || metadata.len() != size {
            return Err(ClientError::ChangedDuringUpload {
                path: local.to_owned(),
            });
        }
        let mut distinct = HashSet::new();
        let hashes: Vec<String> = blocks
            .iter()
            .filter(|(hash, _)| distinct.insert(*hash))
            .map(|(hash, _)| hash.to_hex())
            .collect();
        let missing = self.check_blocks(&hashes).await?;
        let mut stats = UploadStats {
            blocks_total: blocks.len() as u64,
            ..UploadStats::default()
        };
        let parallelism = options.parallelism.max(1);
        let mut pending = None;
        if !missing.is_empty() {
            // The version being replaced: a changed block goes as its delta from the
            // old block at its place, when the server still has that.
            let previous = match &options.base_rev {
                Some(_) => self.previous_blocks(remote).await,
                None => Vec::new(),
            };
            // Streaming sync is a head start for readers, never a reason to fail.
            if options.announce && size >= crate::ANNOUNCE_MIN_SIZE {
                pending = self
                    .announce_upload(remote, blocks)
                    .await
                    .ok()
                    .map(|p| p.id);
            }
            let sent = self
                .reupload(
                    local,
                    blocks,
                    &missing,
                    Sending {
                        previous: &previous,
                        parallelism,
                        pending: pending.as_deref(),
                    },
                    &mut stats,
                )
                .await;
            if let Err(err) = sent {
                self.end_pending(pending).await;
                return Err(err);
            }
        }
        let committed = match changed_since(local, &metadata) {
            true => Err(ClientError::ChangedDuringUpload {
                path: local.to_owned(),
            }),
            false => {
                self.commit_blocks(local, remote, blocks, &options, &metadata, &mut stats)
                    .await
            }
        };
        self.end_pending(pending).await;
        Ok(UploadOutcome {
            commit: committed?,
            stats,
        })
    }

    /// Ends an announced upload, committed or not; a failure only leaves it to expire.
    async fn end_pending(&self, pending: Option<String>) {
        if let Some(id) = pending {
            let _ = self.end_upload(&id).await;
        }
    }

    /// The block list of the file now at `remote`, or none if it cannot be read (it is
    /// only a source of delta bases).
    async fn previous_blocks(&self, remote: &str) -> Vec<(BlockHash, u32)> {
        let Ok(listing) = self.file_blocks(remote).await else {
            return Vec::new();
        };
        listing
            .blocks
            .iter()
            .map_while(|b| Some((BlockHash::from_hex(&b.hash).ok()?, b.size)))
            .collect()
    }

    /// Reads the named blocks back from the file at their offsets and uploads them as
    /// `how` says.
    async fn reupload(
        &self,
        local: &Path,
        blocks: &[(BlockHash, u32)],
        missing: &[String],
        how: Sending<'_>,
        stats: &mut UploadStats,
    ) -> Result<(), ClientError> {
        let Sending {
            previous,
            parallelism,
            pending,
        } = how;
        let wanted = parse_hashes(missing)?;
        let mut seen = HashSet::new();
        let mut todo = Vec::new();
        let mut offset = 0u64;
        let bases = cairn_core::delta::pick_bases(previous, blocks);
        for ((hash, size), base) in blocks.iter().zip(bases) {
            if wanted.contains(hash) && seen.insert(*hash) {
                let base = base.map(|at| previous[at].0);
                todo.push((*hash, offset, *size, base));
            }
            offset += u64::from(*size);
        }
        if seen.len() != wanted.len() {
            return Err(ClientError::Protocol(
                "the server asked for blocks that are not part of the file".to_owned(),
            ));
        }
        let file = Arc::new(File::open(local).map_err(|err| ClientError::io(local, err))?);
        let sent: Vec<u64> = futures::stream::iter(todo)
            .map(|(hash, offset, size, base)| {
                let file = Arc::clone(&file);
                async move {
                    let data = tokio::task::spawn_blocking(move || {
                        let mut data = vec![0u8; size as usize];
                        fsx::read_exact_at(&file, &mut data, offset)?;
                        Ok::<_, std::io::Error>((BlockHash::of(&data) == hash, data))
                    })
                    .await
                    .map_err(|err| ClientError::Protocol(format!("read task failed: {err}")))?;
                    let (matches, data) = data.map_err(|err| ClientError::io(local, err))?;
                    if !matches {
                        return Err(ClientError::ChangedDuringUpload {
                            path: local.to_owned(),
                        });
                    }
                    self.put_block_near(&hash, Bytes::from(data), base, pending)
                        .await
                }
            })
            .buffer_unordered(parallelism)
            .collect::<Vec<Result<u64, ClientError>>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        stats.blocks_uploaded += sent.len() as u64;
        stats.bytes_sent_payload += sent.iter().sum::<u64>();
        Ok(())
    }
}

/// How [`Client::reupload`] sends the blocks the server lacks.
struct Sending<'a> {
    /// The block list of the version the file replaces: each block goes as a delta
    /// from the block at its place there when that is worth it.
    previous: &'a [(BlockHash, u32)],
    /// Block uploads in flight at once.
    parallelism: usize,
    /// The announced upload to tag each block upload with (streaming sync).
    pending: Option<&'a str>,
}

/// A block list as the API writes it.
pub(crate) fn block_refs(blocks: &[(BlockHash, u32)]) -> Vec<BlockRef> {
    blocks
        .iter()
        .map(|(hash, size)| BlockRef {
            hash: hash.to_hex(),
            size: *size,
        })
        .collect()
}

/// The commit of `blocks` at `remote` as `options` ask.
fn commit_request(
    remote: &str,
    blocks: &[(BlockHash, u32)],
    options: &UploadOptions,
    mtime: Option<i64>,
) -> CommitRequest {
    CommitRequest {
        path: remote.to_owned(),
        blocks: block_refs(blocks),
        base_rev: options.base_rev.clone(),
        autorename: options.autorename,
        mtime,
    }
}

/// The memory budget as the pipeline sees it.
#[derive(Clone, Copy)]
struct Memory<'a> {
    budget: &'a Semaphore,
    budget_bytes: u32,
    max_chunk: usize,
}

impl Memory<'_> {
    /// True when the chunker may be waiting for memory that only a check can free.
    fn short(&self) -> bool {
        self.budget.available_permits() < self.max_chunk
    }
}

/// Receives chunks, checks them in batches, uploads the missing ones; returns when the
/// chunker has finished and every block is known to be on the server.
async fn pump(
    client: &Client,
    mut rx: mpsc::Receiver<PendingBlock>,
    parallelism: usize,
    progress: Option<&ProgressFn>,
    memory: Memory<'_>,
) -> Result<UploadStats, ClientError> {
    let mut stats = UploadStats::default();
    let mut done_bytes = 0u64;
    let report = |done: u64| {
        if let Some(progress) = progress {
            progress(done);
        }
    };
    let mut batch: Vec<PendingBlock> = Vec::new();
    let mut batch_bytes = 0u64;
    // A batch this large is worth a call even while another check is in flight.
    let full_batch_bytes = u64::from(memory.budget_bytes) / 4;
    let mut checks = FuturesOrdered::new();
    let mut queue: VecDeque<PendingBlock> = VecDeque::new();
    let mut uploads = FuturesUnordered::new();
    // Blocks already queued or sent in this upload: a file that repeats a block (runs of
    // zeros, say) sends it once.
    let mut scheduled: HashSet<BlockHash> = HashSet::new();
    let mut input_done = false;

    loop {
        let batch_ready = input_done
            || batch.len() >= CHECK_BATCH
            || batch_bytes >= full_batch_bytes
            || memory.short();
        if !batch.is_empty() && checks.len() < MAX_CHECKS_IN_FLIGHT && batch_ready {
            checks.push_back(check_batch(client, std::mem::take(&mut batch)));
            batch_bytes = 0;
        }
        while uploads.len() < parallelism {
            let Some(block) = queue.pop_front() else {
                break;
            };
            uploads.push(upload_block(client, block));
        }
        if input_done
            && batch.is_empty()
            && checks.is_empty()
            && queue.is_empty()
            && uploads.is_empty()
        {
            return Ok(stats);
        }

        tokio::select! {
            received = rx.recv(), if !input_done && batch.len() < CHECK_BATCH => match received {
                Some(block) => {
                    stats.blocks_total += 1;
                    stats.bytes_total += block.data.len() as u64;
                    batch_bytes += block.data.len() as u64;
                    batch.push(block);
                }
                None => input_done = true,
            },
            Some(checked) = checks.next(), if !checks.is_empty() => {
                let (blocks, missing) = checked?;
                for block in blocks {
                    if missing.contains(&block.hash) && scheduled.insert(block.hash) {
                        queue.push_back(block);
                    } else {
                        done_bytes += block.data.len() as u64;
                        report(done_bytes);
                    }
                }
            }
            Some(sent) = uploads.next(), if !uploads.is_empty() => {
                let size = sent?;
                stats.blocks_uploaded += 1;
                stats.bytes_sent_payload += size;
                done_bytes += size;
                report(done_bytes);
            }
            else => {
                return Err(ClientError::Protocol("the upload pipeline stalled".to_owned()));
            }
        }
    }
}

/// Asks the server which blocks of `blocks` it lacks.
async fn check_batch(
    client: &Client,
    blocks: Vec<PendingBlock>,
) -> Result<(Vec<PendingBlock>, HashSet<BlockHash>), ClientError> {
    let mut seen = HashSet::with_capacity(blocks.len());
    let hashes: Vec<String> = blocks
        .iter()
        .filter(|block| seen.insert(block.hash))
        .map(|block| block.hash.to_hex())
        .collect();
    let missing = client.check_blocks(&hashes).await?;
    Ok((blocks, parse_hashes(&missing)?))
}

/// Uploads one block; its memory is released when this returns.
async fn upload_block(client: &Client, block: PendingBlock) -> Result<u64, ClientError> {
    let size = block.data.len() as u64;
    client.put_block(&block.hash, block.data.clone()).await?;
    Ok(size)
}

fn parse_hashes(hashes: &[String]) -> Result<HashSet<BlockHash>, ClientError> {
    hashes
        .iter()
        .map(|h| {
            BlockHash::from_hex(h)
                .map_err(|err| ClientError::Protocol(format!("the server sent {err}")))
        })
        .collect()
}

/// The chunker configuration the server announces, checked against its block limit.
/// The chunker settings a server announces, checked: a client must cut files exactly as
/// the server does, or nothing deduplicates.
pub fn chunker_config(info: &ServerInfo) -> Result<ChunkerConfig, ClientError> {
    let c = info.chunker;
    let usable = |v: u64| usize::try_from(v).ok().filter(|v| *v > 0);
    let (Some(min_size), Some(avg_size), Some(max_size)) =
        (usable(c.min_size), usable(c.avg_size), usable(c.max_size))
    else {
        return Err(ClientError::Protocol(format!(
            "the server announces unusable chunk sizes {}/{}/{}",
            c.min_size, c.avg_size, c.max_size
        )));
    };
    if !(min_size <= avg_size && avg_size <= max_size) || c.max_size > info.max_block_size {
        return Err(ClientError::Protocol(format!(
            "the server announces chunk sizes {}/{}/{} that do not fit its block limit {}",
            c.min_size, c.avg_size, c.max_size, info.max_block_size
        )));
    }
    let config = ChunkerConfig {
        min_size,
        avg_size,
        max_size,
    };
    // The chunker panics on a configuration it cannot use; refuse it here instead.
    config
        .validate()
        .map_err(|err| ClientError::Protocol(format!("the server announces {err}")))?;
    Ok(config)
}

/// Bytes of chunk data the pipeline may hold at once: enough for every upload slot plus
/// a few chunks being checked, and always at least two of the largest chunks so that a
/// maximal chunk can never wait for itself.
fn memory_budget(config: &ChunkerConfig, parallelism: usize) -> u32 {
    let avg = config.avg_size as u64;
    let max = config.max_size as u64;
    let wanted = (avg * (parallelism as u64 + 4)).max(2 * max);
    // Tokio counts permits in u32 per acquisition; no chunker here is that large.
    u32::try_from(wanted).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::ChunkerInfo;

    fn info(min: u64, avg: u64, max: u64, limit: u64) -> ServerInfo {
        ServerInfo {
            version: "0".into(),
            api_version: "v1".into(),
            chunker: ChunkerInfo {
                min_size: min,
                avg_size: avg,
                max_size: max,
            },
            max_block_size: limit,
        }
    }

    #[test]
    fn chunker_config_is_checked() {
        let mib = 1 << 20;
        assert!(chunker_config(&info(mib, 4 * mib, 8 * mib, 8 * mib)).is_ok());
        assert!(chunker_config(&info(mib, 4 * mib, 16 * mib, 8 * mib)).is_err());
        assert!(chunker_config(&info(4 * mib, mib, 8 * mib, 8 * mib)).is_err());
        assert!(chunker_config(&info(0, mib, 8 * mib, 8 * mib)).is_err());
        // The average must be a power of two.
        assert!(chunker_config(&info(mib, 3 * mib, 8 * mib, 8 * mib)).is_err());
    }

    #[test]
    fn budget_is_bounded_and_fits_a_max_chunk() {
        let config = ChunkerConfig {
            min_size: 1 << 20,
            avg_size: 4 << 20,
            max_size: 8 << 20,
        };
        assert_eq!(memory_budget(&config, 4), 32 << 20);
        assert!(memory_budget(&config, 1) >= 16 << 20);
        let tiny = ChunkerConfig {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        };
        assert!(tiny.validate().is_ok());
        assert!(memory_budget(&tiny, 4) >= 2048);
    }
}
