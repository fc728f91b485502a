//! The block manager: everything the server does with blocks, below HTTP. Handlers
//! parse a request, check the caller, call it, and answer; `cairn admin gc` and
//! `cairn admin fsck` call it on a data directory.
//!
//! - Accepting blocks ([`BlockManager::accept`], [`BlockManager::accept_one`]): one path
//!   for a batch, a single block being a batch of one that is written as a file of its
//!   own rather than packed. Every block is checked (size, hash) before any is stored;
//!   then *store, then record*: the block files are written durably, and only then is
//!   the upload recorded in metadata, with a last check inside the recording
//!   transaction that garbage collection did not remove a file meanwhile
//!   ([`MetaStore::record_block_uploads_checked`]).
//! - A streamed body chunked on the server ([`BlockManager::store_stream`]): the
//!   whole-file upload and public links' file drops.
//! - Reading blocks, always verified ([`BlockManager::read`]), and who may
//!   ([`BlockManager::read_held`], [`BlockManager::missing_for`]).
//! - Garbage collection (`gc.rs`), fsck (`fsck.rs`) and the background scrub
//!   (`scrub.rs`).
//!
//! Rights to blocks are possession, decided here and not through `Access`: a block
//! lives in no namespace, so there is no path to resolve. An account holds a block it
//! uploaded in full, or one that a version of a shared folder it belongs to references
//! ([`MetaStore::blocks_owned_by`]); only those are reported present and sent.
//!
//! Deduplication never leaks: a block counts as present only when the caller's own
//! account holds it. Any other block must be uploaded in full, which proves possession;
//! if the store already has it, it costs the same durable write.

mod fsck;
mod gc;
mod scrub;

use std::collections::HashSet;

use bytes::Bytes;
use cairn_core::chunk::{chunk_and_hash, ChunkError, ChunkerConfig};
use cairn_core::{BlockHash, ServerPath, UserId};
use cairn_meta::{BlockRef, MetaError, MetaStore, UploadedBlock, User};
use cairn_store::{BlockStore, PutOutcome, StoreError};
use futures::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::metrics::{BLOCKS_DEDUPLICATED, BLOCKS_STORED, BLOCK_BYTES_RECEIVED, BLOCK_BYTES_SENT};

pub use fsck::{Damage, FsckError, FsckOptions, FsckProgress, FsckReport, SizeMismatch};
pub use gc::{GcError, GcReport};

/// Blocks at least this large are hashed on several cores: below it, blake3's
/// multi-threaded hashing costs more than it saves.
const PARALLEL_HASH_MIN: usize = 128 << 10;

/// The server's blocks: the block store, the metadata recording who holds which, and
/// the largest block accepted. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlockManager {
    meta: MetaStore,
    store: BlockStore,
    chunker: ChunkerConfig,
}

/// Why the block manager refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A block is larger than the server's largest chunk.
    #[error("block is {size} bytes; the limit is {max}")]
    TooLarge {
        /// The block's length.
        size: usize,
        /// The server's `chunker.max_size`.
        max: usize,
    },
    /// A block's bytes hash to something else than the hash it was sent with; nothing
    /// of its batch was stored.
    #[error("{}", mismatch_message(.claimed, .actual, *.alone))]
    HashMismatch {
        /// The hash it was sent with.
        claimed: BlockHash,
        /// The hash of its bytes.
        actual: BlockHash,
        /// Whether it was sent alone (rather than in a batch).
        alone: bool,
    },
    /// The account does not hold the block, or it does not exist: the two look the same.
    #[error("block {0} not found")]
    NotHeld(BlockHash),
    /// A block metadata references is missing from the store or fails verification.
    #[error("block {hash} is damaged (missing or corrupt)")]
    Damaged {
        /// The block.
        hash: BlockHash,
        /// The file being read, when there is one.
        file: Option<ServerPath>,
    },
    /// A delta did not rebuild the block it was sent for (malformed, too large, or
    /// rebuilding other bytes); nothing was stored, and the block must be sent whole.
    #[error("the delta does not rebuild block {hash}: {reason}; send the block whole")]
    BadDelta {
        /// The block the delta was sent for.
        hash: BlockHash,
        /// What went wrong.
        reason: String,
    },
    /// A streamed body could not be read to its end; nothing was committed.
    #[error("reading the upload failed: {0}; nothing was committed")]
    Interrupted(#[source] std::io::Error),
    /// The metadata store refused or failed (quota included). Boxed: it is by far the
    /// largest variant, and every result of the upload path carries this type.
    #[error(transparent)]
    Meta(Box<MetaError>),
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task hashing or chunking off the async threads failed.
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn mismatch_message(claimed: &BlockHash, actual: &BlockHash, alone: bool) -> String {
    match alone {
        true => format!("block content hashes to {actual}, not {claimed}; nothing was stored"),
        false => {
            format!("a block of the batch hashes to {actual}, not {claimed}; nothing was stored")
        }
    }
}

impl From<MetaError> for BlockError {
    fn from(err: MetaError) -> Self {
        BlockError::Meta(Box::new(err))
    }
}

impl BlockError {
    /// Names `file` in a damaged block's error, for the file's download.
    pub fn in_file(self, file: &ServerPath) -> Self {
        match self {
            BlockError::Damaged { hash, file: None } => BlockError::Damaged {
                hash,
                file: Some(file.clone()),
            },
            other => other,
        }
    }
}

impl BlockManager {
    /// The manager of `store`'s blocks, recorded in `meta`, accepting blocks up to
    /// `chunker.max_size` and chunking streamed bodies with `chunker`.
    pub fn new(meta: MetaStore, store: BlockStore, chunker: ChunkerConfig) -> Self {
        Self {
            meta,
            store,
            chunker,
        }
    }

    /// The block store, for callers that inspect it (tests, tools).
    pub fn store(&self) -> &BlockStore {
        &self.store
    }

    /// Which of `hashes` the account must upload: those it does not hold, each once, in
    /// the order given.
    pub async fn missing_for(
        &self,
        user: UserId,
        hashes: Vec<BlockHash>,
    ) -> Result<Vec<BlockHash>, BlockError> {
        let owned = self.meta.blocks_owned_by(user, &hashes).await?;
        let mut seen = HashSet::new();
        Ok(hashes
            .into_iter()
            .filter(|h| !owned.contains(h) && seen.insert(*h))
            .collect())
    }

    /// Checks, stores and records a batch of blocks uploaded by `user`: every size and
    /// hash is checked before anything is stored, then the blocks are written with one
    /// durable write (`BlockStore::put_many`: a batch's small blocks go into one pack
    /// file) and recorded with one record, the store check inside it.
    pub async fn accept(
        &self,
        user: &User,
        blocks: Vec<(BlockHash, Bytes)>,
    ) -> Result<(), BlockError> {
        self.accept_as(user, blocks, Write::Together).await
    }

    /// [`BlockManager::accept`] for one block sent alone: a batch of one, written as a
    /// file of its own (`BlockStore::put`).
    pub async fn accept_one(
        &self,
        user: &User,
        hash: BlockHash,
        data: Bytes,
    ) -> Result<(), BlockError> {
        self.accept_as(user, vec![(hash, data)], Write::Alone).await
    }

    async fn accept_as(
        &self,
        user: &User,
        blocks: Vec<(BlockHash, Bytes)>,
        write: Write,
    ) -> Result<(), BlockError> {
        self.check_sizes(&blocks)?;
        let checked = blocks.clone();
        let forged = tokio::task::spawn_blocking(move || {
            checked.iter().find_map(|(hash, data)| {
                let actual = hash_of(data);
                (actual != *hash).then_some((*hash, actual))
            })
        })
        .await?;
        if let Some((claimed, actual)) = forged {
            return Err(BlockError::HashMismatch {
                claimed,
                actual,
                alone: write == Write::Alone,
            });
        }
        let received = payload(&blocks);
        self.store_and_record(user, blocks, write, received).await
    }

    /// The rsync signature of block `base` (see [`cairn_core::delta`]), for a client
    /// that sends a changed block as its delta from `base`; counted as sent. Only for an
    /// account that holds `base`, as a read of it would be.
    pub async fn signature(&self, user: UserId, base: BlockHash) -> Result<Bytes, BlockError> {
        let data = self.read_owned(user, base).await?;
        let signature =
            tokio::task::spawn_blocking(move || cairn_core::delta::signature(&data)).await?;
        metrics::counter!(BLOCK_BYTES_SENT).increment(signature.len() as u64);
        Ok(Bytes::from(signature))
    }

    /// Accepts block `hash` sent as an rsync `delta` from `base`, a block the account
    /// holds: rebuilds it, checks its hash, then stores and records it exactly as if it
    /// had been sent whole. Counts the delta's bytes as received; returns the block's
    /// size.
    pub async fn accept_delta(
        &self,
        user: &User,
        hash: BlockHash,
        base: BlockHash,
        delta: Bytes,
    ) -> Result<u64, BlockError> {
        let data = self.read_owned(user.id, base).await?;
        let max = self.chunker.max_size;
        let received = delta.len();
        let rebuilt = tokio::task::spawn_blocking(move || {
            use cairn_core::delta::{rebuild, Form};
            rebuild(Form::Rsync, &data, &delta, hash, max)
        })
        .await?
        .map_err(|err| BlockError::BadDelta {
            hash,
            reason: err.to_string(),
        })?;
        let size = rebuilt.len() as u64;
        let block = vec![(hash, Bytes::from(rebuilt))];
        self.store_and_record(user, block, Write::Alone, received)
            .await?;
        Ok(size)
    }

    /// Block `hash` for an account that holds it and says it has `base`: a zstd patch
    /// against `base` when the account holds that too and the patch is worth it
    /// (`true`), else the block itself (`false`). Counts what is sent.
    pub async fn read_from(
        &self,
        user: UserId,
        hash: BlockHash,
        base: BlockHash,
    ) -> Result<(Bytes, bool), BlockError> {
        let owned = self.meta.blocks_owned_by(user, &[hash, base]).await?;
        if !owned.contains(&hash) {
            return Err(BlockError::NotHeld(hash));
        }
        let data = self.read(hash).await?;
        let base = match owned.contains(&base) && base != hash {
            // A base that went missing only costs the patch: the block is sent whole.
            true => self.read(base).await.ok(),
            false => None,
        };
        let (body, patched) = match base {
            Some(base) => {
                tokio::task::spawn_blocking(move || {
                    match cairn_core::delta::patch_encode(&base, &data) {
                        Some(patch)
                            if cairn_core::delta::worth_sending(patch.len(), data.len()) =>
                        {
                            (Bytes::from(patch), true)
                        }
                        _ => (data, false),
                    }
                })
                .await?
            }
            None => (data, false),
        };
        metrics::counter!(BLOCK_BYTES_SENT).increment(body.len() as u64);
        Ok((body, patched))
    }

    /// Reads a block the account holds, verified, without counting it as sent.
    async fn read_owned(&self, user: UserId, hash: BlockHash) -> Result<Bytes, BlockError> {
        let owned = self.meta.blocks_owned_by(user, &[hash]).await?;
        if !owned.contains(&hash) {
            return Err(BlockError::NotHeld(hash));
        }
        self.read(hash).await
    }

    /// Chunks a streamed body and stores its blocks for `user`, holding only a few
    /// chunks in memory however large the body is; returns the block list to commit.
    /// Each chunk is accepted as it is cut, with the hash the chunker computed.
    pub async fn store_stream<S>(&self, user: &User, stream: S) -> Result<Vec<BlockRef>, BlockError>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let reader = SyncIoBridge::new(StreamReader::new(Box::pin(stream)));
        let runtime = tokio::runtime::Handle::current();
        let (manager, user) = (self.clone(), user.clone());
        let chunked = tokio::task::spawn_blocking(move || {
            chunk_and_hash(reader, &manager.chunker, |chunk| {
                let block = vec![(chunk.hash, Bytes::from(chunk.data))];
                manager.check_sizes(&block)?;
                let received = payload(&block);
                runtime.block_on(manager.store_and_record(&user, block, Write::Alone, received))
            })
        })
        .await?
        .map_err(|err| match err {
            ChunkError::Read(err) => BlockError::Interrupted(err),
            ChunkError::Sink(err) => err,
        })?;
        Ok(chunked
            .blocks
            .iter()
            .map(|(hash, size)| BlockRef {
                hash: *hash,
                size: *size,
            })
            .collect())
    }

    /// Stores and records one chunk that the server cut and hashed itself (a resumable
    /// upload's, `tus/`): the hash is the one computed from `data`, so it is not
    /// checked again.
    pub async fn store_chunk(
        &self,
        user: &User,
        hash: BlockHash,
        data: Bytes,
    ) -> Result<(), BlockError> {
        let block = vec![(hash, data)];
        self.check_sizes(&block)?;
        let received = payload(&block);
        self.store_and_record(user, block, Write::Alone, received)
            .await
    }

    /// The chunker configuration streamed bodies are cut with.
    pub fn chunker(&self) -> &ChunkerConfig {
        &self.chunker
    }

    fn check_sizes(&self, blocks: &[(BlockHash, Bytes)]) -> Result<(), BlockError> {
        let max = self.chunker.max_size;
        match blocks.iter().find(|(_, data)| data.len() > max) {
            Some((_, data)) => Err(BlockError::TooLarge {
                size: data.len(),
                max,
            }),
            None => Ok(()),
        }
    }

    /// Stores and records blocks whose sizes and hashes are checked, counting
    /// `received` bytes of payload as received (a delta's size when they came as one).
    async fn store_and_record(
        &self,
        user: &User,
        blocks: Vec<(BlockHash, Bytes)>,
        write: Write,
        received: usize,
    ) -> Result<(), BlockError> {
        if blocks.is_empty() {
            return Ok(());
        }
        // An account with no room anywhere it may write (its home, the shared folders
        // it edits, each charged to its owner) cannot store a further byte. The exact
        // check, with the file's whole size and its folder's owner, happens at commit;
        // this stops blocks piling up before it.
        self.meta.check_room_for_blocks(user).await?;
        metrics::counter!(BLOCK_BYTES_RECEIVED).increment(received as u64);
        let started = std::time::Instant::now();
        let outcomes = put_all(&self.store, blocks.clone(), write).await?;
        let stored_at = started.elapsed();
        let mut uploaded = Vec::with_capacity(blocks.len());
        for ((hash, data), outcome) in blocks.iter().zip(&outcomes) {
            let stored_size = if outcome.newly_stored {
                metrics::counter!(BLOCKS_STORED).increment(1);
                outcome.stored_bytes as i64
            } else {
                metrics::counter!(BLOCKS_DEDUPLICATED).increment(1);
                self.store
                    .stored_size(*hash)
                    .await?
                    .map(|s| s as i64)
                    .unwrap_or(0)
            };
            uploaded.push(UploadedBlock {
                hash: *hash,
                size: data.len() as u32,
                stored_size,
            });
        }
        // The store check runs inside the recording transaction, before the account is
        // told it possesses the blocks (see `record_block_uploads_checked`).
        let store = self.store.clone();
        let ensure: cairn_meta::EnsureStored = Box::new(move || {
            Box::pin(async move {
                ensure_stored(&store, blocks, write)
                    .await
                    .map_err(|err| err.to_string())
            })
        });
        let count = uploaded.len();
        self.meta
            .record_block_uploads_checked(user.id, uploaded, ensure)
            .await?;
        tracing::debug!(
            blocks = count,
            received,
            store_ms = stored_at.as_secs_f64() * 1e3,
            meta_ms = (started.elapsed() - stored_at).as_secs_f64() * 1e3,
            "blocks accepted"
        );
        Ok(())
    }

    /// Reads a block metadata references, verified: a missing or corrupt block is
    /// [`BlockError::Damaged`], never bytes.
    pub async fn read(&self, hash: BlockHash) -> Result<Bytes, BlockError> {
        self.store
            .get_required(hash)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(hash) | StoreError::Corrupt(hash) => {
                    BlockError::Damaged { hash, file: None }
                }
                other => BlockError::Store(other),
            })
    }

    /// Reads a block for an account that asks for it by hash: one it does not hold
    /// looks exactly like one that does not exist ([`BlockError::NotHeld`]); one it
    /// holds must exist, so its absence is damage.
    pub async fn read_held(&self, user: UserId, hash: BlockHash) -> Result<Bytes, BlockError> {
        let data = self.read_owned(user, hash).await?;
        metrics::counter!(BLOCK_BYTES_SENT).increment(data.len() as u64);
        Ok(data)
    }

    /// The bytes of a download: `(block, from, to)` slices of `file`'s blocks, in
    /// order, counted as sent as they are read.
    ///
    /// The first block is read before this returns, so a damaged file whose first
    /// block is bad gets a clean error. Later blocks are fetched ahead of the one being
    /// sent, as many at once as the store serves best (two from a disk, eight from
    /// S3); one that fails verification ends the stream with an error, so the reader
    /// sees a short body, never wrong bytes.
    pub async fn read_pieces(
        &self,
        file: &ServerPath,
        pieces: Vec<(BlockHash, usize, usize)>,
    ) -> Result<impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static, BlockError>
    {
        let mut pieces = pieces.into_iter();
        let head = match pieces.next() {
            Some((hash, from, to)) => {
                let data = self.read(hash).await.map_err(|err| err.in_file(file))?;
                metrics::counter!(BLOCK_BYTES_SENT).increment((to - from) as u64);
                Some(Ok::<_, std::io::Error>(data.slice(from..to)))
            }
            None => None,
        };
        let store = self.store.clone();
        let ahead = store.read_parallelism();
        let rest = futures::stream::iter(pieces)
            .map(move |(hash, from, to)| {
                let store = store.clone();
                async move {
                    let data = store.get_required(hash).await.map_err(|err| {
                        tracing::error!(
                            "download of block {hash} failed, response cut short: {err}"
                        );
                        std::io::Error::other(err.to_string())
                    })?;
                    metrics::counter!(BLOCK_BYTES_SENT).increment((to - from) as u64);
                    Ok::<_, std::io::Error>(data.slice(from..to))
                }
            })
            .buffered(ahead);
        Ok(futures::stream::iter(head).chain(rest))
    }
}

/// The bytes of blocks as they arrived whole.
fn payload(blocks: &[(BlockHash, Bytes)]) -> usize {
    blocks.iter().map(|(_, data)| data.len()).sum()
}

/// The BLAKE3 hash of a block, on several cores when it is large.
fn hash_of(data: &[u8]) -> BlockHash {
    if data.len() < PARALLEL_HASH_MIN {
        return BlockHash::of(data);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(data);
    BlockHash(*hasher.finalize().as_bytes())
}

/// How an upload's blocks are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// One block sent alone (`PUT /blocks/{hash}`, a chunk of a streamed body): a file
    /// of its own.
    Alone,
    /// A batch (`POST /blocks/batch`, of any length): one batched write, the small
    /// blocks in one pack file.
    Together,
}

/// Writes blocks durably, as `write` says.
async fn put_all(
    store: &BlockStore,
    blocks: Vec<(BlockHash, Bytes)>,
    write: Write,
) -> Result<Vec<PutOutcome>, StoreError> {
    match write {
        Write::Alone => {
            let mut outcomes = Vec::with_capacity(blocks.len());
            for (hash, data) in blocks {
                outcomes.push(store.put(hash, data).await?);
            }
            Ok(outcomes)
        }
        Write::Together => store.put_many(blocks).await,
    }
}

/// Writes again whichever blocks are no longer in the store. Run it where no garbage
/// collection can delete them any more: inside the transaction that records the upload
/// (`MetaStore::record_block_uploads_checked`), once the blocks' rows are written.
///
/// Garbage collection may have deleted a file between our put (which found it
/// present, or wrote it) and our record: the collector had claimed the unreferenced
/// row, and deleted the row and the file in one transaction before our record could
/// revive the row (see `cairn_meta::gc`).
async fn ensure_stored(
    store: &BlockStore,
    blocks: Vec<(BlockHash, Bytes)>,
    write: Write,
) -> Result<(), StoreError> {
    let present = store
        .contains_many(blocks.iter().map(|(hash, _)| *hash).collect())
        .await?;
    let gone: Vec<(BlockHash, Bytes)> = blocks
        .into_iter()
        .zip(present)
        .filter(|(_, present)| !present)
        .map(|(block, _)| block)
        .collect();
    if !gone.is_empty() {
        tracing::debug!(
            count = gone.len(),
            "blocks collected during their upload; storing them again"
        );
        put_all(store, gone, write).await?;
    }
    Ok(())
}
