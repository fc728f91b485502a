//! Cairn's pure core: the vocabulary every other crate shares.
//!
//! Nothing here does IO beyond reading from a caller-supplied [`std::io::Read`], and
//! nothing here can fail for outside reasons: hashes, identifiers, normalized server
//! paths, conflict names and content-defined chunking.

pub mod chunk;
pub mod conflict;
pub mod delta;
pub mod display;
pub mod hash;
pub mod ids;
pub mod path;

pub use chunk::{ChunkerConfig, ChunkerConfigError};
pub use hash::{content_hash, BlockHash, ContentHash, HashParseError};
pub use ids::{DeviceId, EntryId, JournalSeq, NamespaceId, TrashId, UserId, VersionId};
pub use path::{PathError, ServerPath};
