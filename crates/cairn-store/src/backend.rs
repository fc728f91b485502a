//! The trait every block backend implements (local directory today, S3 later).
//!
//! Backends store opaque, already-encoded objects named by block hash. Compression and
//! verification live in [`BlockStore`](crate::BlockStore), above the trait, so a new
//! backend gets them for free and cannot forget to check what it returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use cairn_core::BlockHash;

use crate::StoreError;

/// A boxed, sendable future, so that [`BlockBackend`] stays object-safe (we hold it as
/// `Arc<dyn BlockBackend>`) without a macro crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A block in its stored form: a short header followed by the payload.
///
/// The two parts are kept apart so that a raw block's payload can be the caller's own
/// buffer, with no 4 MiB copy just to put 16 bytes in front of it. A backend writes
/// `header` then `payload`, and must hand the concatenation back from
/// [`BlockBackend::get`].
#[derive(Clone, Debug)]
pub struct EncodedBlock {
    /// The fixed-size header (magic, codec, plaintext length).
    pub header: Bytes,
    /// The raw or compressed content.
    pub payload: Bytes,
}

impl EncodedBlock {
    /// Total stored size in bytes.
    pub fn len(&self) -> u64 {
        (self.header.len() + self.payload.len()) as u64
    }

    /// Whether the stored form is empty (never true for blocks made by this crate, which
    /// always carry a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where blocks live. Implementations must be safe to call concurrently from many tasks.
///
/// All methods return futures so that network backends can be async; a backend that does
/// blocking IO (the local directory) must move it to a blocking thread itself.
pub trait BlockBackend: fmt::Debug + Send + Sync + 'static {
    /// Stores `block` under `hash` unless an object with that name already exists, which
    /// is left untouched. Returns whether this call created the object.
    ///
    /// On `Ok`, whether it returned `true` or `false`, the object is durable: a later
    /// crash does not lose it. When several calls race on the same hash they all succeed;
    /// backends should make exactly one of them return `true` where they can.
    fn put(&self, hash: BlockHash, block: EncodedBlock) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Returns the stored form of the block exactly as written, or
    /// [`StoreError::NotFound`]. No verification happens here.
    fn get(&self, hash: BlockHash) -> BoxFuture<'_, Result<Bytes, StoreError>>;

    /// Whether an object exists under `hash`. When `true`, the object is durable, so a
    /// caller may acknowledge an upload on this answer alone.
    fn contains(&self, hash: BlockHash) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Removes the object; a missing object is not an error.
    fn delete(&self, hash: BlockHash) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every stored object's hash, in any order, skipping anything that is not a block
    /// (temporary files, stray names).
    fn list(&self) -> BoxFuture<'_, Result<Vec<BlockHash>, StoreError>>;

    /// Moves the object out of the store's namespace into a quarantine area, so that it
    /// is no longer found by [`get`](Self::get) or [`contains`](Self::contains) and a
    /// later [`put`](Self::put) of the same hash writes a fresh copy, while the damaged
    /// bytes stay available to whoever investigates. Returns whether an object was
    /// there to move. On `Ok` the move is durable.
    fn quarantine(&self, hash: BlockHash) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// The stored size of the object in bytes, or `None` if it does not exist.
    fn stored_size(&self, hash: BlockHash) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;

    /// Stores many objects, as [`put`](Self::put) does each, and returns for each
    /// whether this call created it (a hash given twice is created at most once). On
    /// `Ok` every object is durable. Backends override it to pay for durability once
    /// per call rather than once per object; this default puts them one by one.
    fn put_many(
        &self,
        blocks: Vec<(BlockHash, EncodedBlock)>,
    ) -> BoxFuture<'_, Result<Vec<bool>, StoreError>> {
        Box::pin(async move {
            let mut created = Vec::with_capacity(blocks.len());
            for (hash, block) in blocks {
                created.push(self.put(hash, block).await?);
            }
            Ok(created)
        })
    }

    /// [`delete`](Self::delete) for each of `hashes`; backends that store blocks
    /// together override it to rewrite each container once.
    fn delete_many(&self, hashes: Vec<BlockHash>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for hash in hashes {
                self.delete(hash).await?;
            }
            Ok(())
        })
    }

    /// How many blocks a reader of one file should fetch at once: a local disk serves
    /// two well, an object store wants more requests in flight to hide its latency.
    fn read_parallelism(&self) -> usize {
        2
    }

    /// [`contains`](Self::contains) for each of `hashes`, in order.
    fn contains_many(
        &self,
        hashes: Vec<BlockHash>,
    ) -> BoxFuture<'_, Result<Vec<bool>, StoreError>> {
        Box::pin(async move {
            let mut present = Vec::with_capacity(hashes.len());
            for hash in hashes {
                present.push(self.contains(hash).await?);
            }
            Ok(present)
        })
    }
}
