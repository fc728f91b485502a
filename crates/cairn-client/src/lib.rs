//! A typed HTTP client for a Cairn server's API (`/api/v1`).
//!
//! [`Client`] has one method per endpoint, taking and returning the wire types of
//! `cairn-proto`, plus the transfers that do real work:
//!
//! - [`Client::upload_file`] chunks and hashes a local file with the server's chunker,
//!   asks in batches which blocks the server lacks, uploads only those in parallel, and
//!   commits the block list against a base revision. Memory stays bounded by a few chunks
//!   whatever the file's size.
//! - [`Client::download_file`] fetches a file's blocks in parallel, verifies each against
//!   its hash and the list against the content hash, and renames a fsynced temp file into
//!   place; [`Client::content_stream`] yields the same verified blocks in order, for a
//!   destination that cannot be renamed into (standard output).
//! - [`Client::upload_reader`] uploads a stream (standard input) chunked as it arrives.
//! - [`Client::upload_small_files`] and [`Client::download_small_files`] move trees of
//!   small files in batches; [`Client::list_tree`] lists a folder's whole tree.
//!
//! [`Client::subscribe`] keeps a push-notification connection open (WebSocket, else
//! server-sent events, else long-poll), reconnecting with backoff, and yields
//! "namespace N advanced to S" so the caller reads the delta at once.
//!
//! Idempotent requests (reads, block uploads, block checks) are retried with backoff on
//! connection errors, 5xx and 429; commits and other changes are retried only when the
//! connection could not be opened at all. Every failure is a [`ClientError`] that prints
//! as one line.

mod app_passwords;
mod client;
mod delta;
mod download;
mod error;
mod fsx;
mod links;
mod mapped;
mod notify;
mod pending;
mod small;
mod small_fetch;
mod tree;
mod trust;
mod upload;

pub use cairn_proto::{MAX_BATCH_ITEMS, MAX_CHECK_HASHES};
pub use client::Client;
pub use download::{
    temp_beside, ContentStream, DownloadOptions, DownloadOutcome, DownloadStats, LocalCopy,
    ReplaceCheck, Staged,
};
pub use error::ClientError;
pub use notify::{SubscribeOptions, Subscription, Transport};
pub use pending::ANNOUNCE_MIN_SIZE;
pub use small::{SmallFile, SmallSource};
pub use small_fetch::SmallDownload;
pub use upload::{
    chunk_file, chunker_config, ProgressFn, UploadOptions, UploadOutcome, UploadStats,
};

/// Re-exported so that callers need not depend on `cairn-proto` for the common types.
pub use cairn_proto as proto;
