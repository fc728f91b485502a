//! Cairn's block store: immutable blocks named by the BLAKE3 hash of their plaintext.
//!
//! Callers hold one concrete handle, [`BlockStore`], whatever the backend (a local
//! directory today, an S3-compatible object store later). The handle does what must not
//! differ between backends:
//!
//! - **Compression.** A block is stored zstd-compressed when that saves space, raw
//!   otherwise; a sample decides cheaply, so incompressible data costs almost no CPU.
//! - **Verification on read.** Every [`BlockStore::get`] decompresses and hashes the
//!   block and compares it with its name. A block that does not match is never returned:
//!   the caller gets [`StoreError::Corrupt`] and the counter
//!   `cairn_block_verify_failures_total` goes up.
//! - **No blocking on the executor.** File IO, compression and hashing run on tokio's
//!   blocking pool.
//!
//! Backends only move opaque bytes; see [`BlockBackend`].

mod backend;
mod codec;
mod local;
mod pack;
mod packed;
mod s3;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cairn_core::BlockHash;
use tracing::warn;

pub use backend::{BlockBackend, BoxFuture, EncodedBlock};
pub use codec::{HEADER_LEN, MAX_BLOCK_SIZE};
pub use s3::{S3Config, S3_REQUESTS_METRIC};

/// The name of the counter bumped on every block that fails verification.
pub const VERIFY_FAILURES_METRIC: &str = "cairn_block_verify_failures_total";

/// What went wrong in the block store, and on which block or file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No block with this hash is stored.
    #[error("block {0} not found")]
    NotFound(BlockHash),
    /// The stored block is damaged: bad header, broken compression, wrong length or
    /// content that hashes to something else. Its bytes are never handed out.
    #[error("block {0} is corrupt: its content does not match its hash")]
    Corrupt(BlockHash),
    /// A filesystem operation failed.
    #[error("block store I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The block is larger than the store accepts ([`MAX_BLOCK_SIZE`]); readers would
    /// refuse to decompress it, so it is refused up front.
    #[error("block {hash} is {size} bytes, more than the maximum of {max}")]
    TooLarge {
        /// The block's hash.
        hash: BlockHash,
        /// Its length in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The store did not answer as it should (a network error, a timeout, an error
    /// status from S3 after the retries). The request may succeed later; nothing was
    /// acknowledged.
    #[error("block store at {path} is unavailable: {reason}")]
    Unavailable {
        /// The object or folder the request was for.
        path: PathBuf,
        /// What the store or the network said.
        reason: String,
    },
    /// A background task doing the store's blocking work panicked or was cancelled
    /// (the runtime shutting down). A bug or a shutdown, never the block's fault.
    #[error("block store background task failed")]
    Worker(#[from] tokio::task::JoinError),
}

impl StoreError {
    /// An IO error on `path`: [`StoreError::Unavailable`] when it is a remote store's
    /// failed request (see `s3.rs`), [`StoreError::Io`] otherwise.
    pub(crate) fn from_io(path: PathBuf, source: std::io::Error) -> Self {
        match s3::unavailable_reason(&source) {
            Some(reason) => StoreError::Unavailable { path, reason },
            None => StoreError::Io { path, source },
        }
    }
}

/// The result of a successful [`BlockStore::put`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// Whether this call stored the block; `false` when it was already present. When
    /// several puts of one block race, one of them reports `true` (on filesystems
    /// without hard links, possibly more than one).
    pub newly_stored: bool,
    /// Bytes the block takes in storage after compression, header included; 0 when the
    /// block was already present, so that summing it counts each block once.
    pub stored_bytes: u64,
}

/// A handle to the block store. Cheap to clone; clones share the backend.
#[derive(Clone, Debug)]
pub struct BlockStore {
    backend: Arc<dyn BlockBackend>,
}

/// Runs blocking work (file IO, compression, hashing) on tokio's blocking pool, so that
/// it never stalls the executor threads serving other requests.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

impl BlockStore {
    /// Opens the local-directory store at `root`, creating `root/blocks` and `root/tmp`
    /// if needed, and removes temp files left behind by a crash (those untouched for ten
    /// minutes; younger ones may belong to another process writing right now).
    ///
    /// Does blocking IO: call it at startup, not from a request handler.
    pub fn local(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let backend = local::LocalBackend::open(root.into())?;
        Ok(Self::from_backend(Arc::new(backend)))
    }

    /// Whether `root` holds a local-directory store already (its `blocks` folder),
    /// without creating anything: tools that must not start a new, empty store in the
    /// wrong folder check this first.
    pub fn local_exists(root: &std::path::Path) -> bool {
        root.join("blocks").is_dir()
    }

    /// Opens the S3 store `config` names: checks that the bucket answers and reads the
    /// index of every pack in it.
    pub async fn s3(config: &S3Config) -> Result<Self, StoreError> {
        let backend = s3::S3Backend::open(config).await?;
        Ok(Self::from_backend(Arc::new(backend)))
    }

    /// How many blocks a reader of one file should fetch at once (see
    /// [`BlockBackend::read_parallelism`]).
    pub fn read_parallelism(&self) -> usize {
        self.backend.read_parallelism()
    }

    /// Wraps any backend, for example a test double that fails on purpose.
    pub fn from_backend(backend: Arc<dyn BlockBackend>) -> Self {
        Self { backend }
    }

    /// Stores a block durably, compressing it when that saves space.
    ///
    /// The caller must already have checked that `hash` is the BLAKE3 hash of `data`
    /// (the server does so as the upload arrives). Idempotent: a block already present is
    /// not replaced. On `Ok` the block survives a crash.
    ///
    /// There is deliberately no "already here?" shortcut: the block is encoded and
    /// written durably either way, and the backend's final step finds the name taken.
    /// Deduplication must not be observable, and skipping the work would make an upload
    /// of a block that another account stored answer measurably faster than one of a new
    /// block. Clients never upload blocks their own account holds, so the extra write is
    /// paid only on the rare cross-account upload.
    pub async fn put(&self, hash: BlockHash, data: Bytes) -> Result<PutOutcome, StoreError> {
        if data.len() > MAX_BLOCK_SIZE {
            return Err(StoreError::TooLarge {
                hash,
                size: data.len(),
                max: MAX_BLOCK_SIZE,
            });
        }
        let encoded = blocking(move || {
            debug_assert_eq!(BlockHash::of(&data), hash, "put called with a wrong hash");
            Ok(codec::encode(&data))
        })
        .await?;
        let len = encoded.len();
        let newly_stored = self.backend.put(hash, encoded).await?;
        Ok(PutOutcome {
            newly_stored,
            stored_bytes: if newly_stored { len } else { 0 },
        })
    }

    /// Stores many blocks durably, like [`BlockStore::put`] on each but paying for
    /// durability once for the whole call where the backend can (the local directory
    /// keeps all the batch's fsyncs in flight together, so the filesystem commits them
    /// in a few journal commits instead of two per block).
    /// Meant for batches of small blocks. Outcomes are in the order given; a hash given
    /// twice is stored once and reported as already present the second time.
    ///
    /// The caller must have checked every hash, as for `put`.
    pub async fn put_many(
        &self,
        blocks: Vec<(BlockHash, Bytes)>,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        if let Some((hash, data)) = blocks.iter().find(|(_, d)| d.len() > MAX_BLOCK_SIZE) {
            return Err(StoreError::TooLarge {
                hash: *hash,
                size: data.len(),
                max: MAX_BLOCK_SIZE,
            });
        }
        let encoded = blocking(move || {
            Ok(blocks
                .into_iter()
                .map(|(hash, data)| {
                    debug_assert_eq!(BlockHash::of(&data), hash, "put called with a wrong hash");
                    (hash, codec::encode(&data))
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let lens: Vec<u64> = encoded.iter().map(|(_, b)| b.len()).collect();
        let created = self.backend.put_many(encoded).await?;
        Ok(created
            .into_iter()
            .zip(lens)
            .map(|(newly_stored, len)| PutOutcome {
                newly_stored,
                stored_bytes: if newly_stored { len } else { 0 },
            })
            .collect())
    }

    /// Which of `hashes` are stored, in order; see [`BlockStore::contains`].
    pub async fn contains_many(&self, hashes: Vec<BlockHash>) -> Result<Vec<bool>, StoreError> {
        self.backend.contains_many(hashes).await
    }

    /// Reads a block, decompresses it and checks it against its hash.
    ///
    /// Returns [`StoreError::NotFound`] if it is absent, and [`StoreError::Corrupt`] (and
    /// counts the failure in `cairn_block_verify_failures_total`) if what is stored is not
    /// that block: wrong content, truncated, or not in our format at all.
    pub async fn get(&self, hash: BlockHash) -> Result<Bytes, StoreError> {
        let result = match self.backend.get(hash).await {
            Ok(stored) => {
                blocking(move || {
                    codec::decode_and_verify(&hash, stored).map_err(|reason| {
                        warn!(%hash, %reason, "stored block failed verification");
                        StoreError::Corrupt(hash)
                    })
                })
                .await
            }
            Err(e) => Err(e),
        };
        if let Err(StoreError::Corrupt(_)) = result {
            metrics::counter!(VERIFY_FAILURES_METRIC).increment(1);
        }
        result
    }

    /// Reads a block that metadata says must exist: like [`BlockStore::get`], but a
    /// missing block is a verification failure too (counted in
    /// `cairn_block_verify_failures_total`), because for a referenced block absence is
    /// damage, not an answer. Downloads, fsck and the scrub read through this.
    pub async fn get_required(&self, hash: BlockHash) -> Result<Bytes, StoreError> {
        let result = self.get(hash).await;
        if let Err(StoreError::NotFound(_)) = result {
            warn!(%hash, "a referenced block is missing from the store");
            metrics::counter!(VERIFY_FAILURES_METRIC).increment(1);
        }
        result
    }

    /// Moves a damaged block aside (the local backend: to `quarantine/<hash>` next to
    /// `blocks/`), so it is never served again and the next upload of the same block
    /// stores a fresh copy instead of finding the name taken. Returns whether there was
    /// a block to move. Durable on `Ok`.
    pub async fn quarantine(&self, hash: BlockHash) -> Result<bool, StoreError> {
        self.backend.quarantine(hash).await
    }

    /// Whether the block is stored. A `true` answer means it is durably stored, but says
    /// nothing about whether it is intact; only [`BlockStore::get`] checks that.
    pub async fn contains(&self, hash: BlockHash) -> Result<bool, StoreError> {
        self.backend.contains(hash).await
    }

    /// Deletes a block; deleting a missing block succeeds. Callers decide when a block is
    /// unreferenced (after the grace period); the store does not check.
    pub async fn delete(&self, hash: BlockHash) -> Result<(), StoreError> {
        self.backend.delete(hash).await
    }

    /// Deletes blocks, like [`BlockStore::delete`] on each, but in one go where the
    /// backend can (the local directory rewrites each pack file holding any of them
    /// once).
    pub async fn delete_many(&self, hashes: Vec<BlockHash>) -> Result<(), StoreError> {
        self.backend.delete_many(hashes).await
    }

    /// Every stored block, sorted by hash and each once, for fsck and garbage
    /// collection. Files that are not blocks (temp files, stray names) are left out.
    pub async fn list(&self) -> Result<Vec<BlockHash>, StoreError> {
        let mut hashes = self.backend.list().await?;
        hashes.sort_unstable();
        hashes.dedup();
        Ok(hashes)
    }

    /// The block's size in storage (header included, after compression), or `None` if it
    /// is not stored.
    pub async fn stored_size(&self, hash: BlockHash) -> Result<Option<u64>, StoreError> {
        self.backend.stored_size(hash).await
    }
}
