//! The one cloneable handle every handler receives.

use std::sync::Arc;

use cairn_meta::MetaStore;

use crate::block_manager::BlockManager;
use crate::config::Config;
use crate::notify::Notifier;

/// Handles to the stores and settings; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub meta: MetaStore,
    /// Every use of the block store goes through it.
    pub blocks: BlockManager,
    pub config: Arc<Config>,
    /// Verified against when a login names an unknown user, so both cases cost the same.
    pub dummy_password_hash: String,
    /// The event bus and the open notification connections.
    pub notify: Notifier,
    /// Signs the cookies that prove a visitor gave a public link's password.
    pub link_key: crate::links::LinkKey,
    /// One request at a time per resumable upload, across every node: a lease in the
    /// metadata store, behind a local lock per upload (see [`crate::tus::UploadLocks`]).
    pub tus_locks: crate::tus::UploadLocks,
    /// Thumbnails of pictures, cached under the data directory.
    pub thumbnails: crate::thumbnails::Thumbnails,
}
