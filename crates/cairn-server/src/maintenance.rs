//! The background maintenance task: trash expiry, expired resumable uploads and
//! password-throttle failures, version retention, garbage collection, then the
//! thumbnails of versions that are gone, every `maintenance_interval_secs`. `cairn admin gc` runs the same pass once, on demand.
//!
//! A failed pass is logged and retried at the next interval; it never takes the server
//! down. Passes never overlap within a process, and the collection protocol is safe
//! against a pass running in another process at the same time.

use std::time::Duration;

use cairn_meta::{MetaError, MetaStore};

use crate::block_manager::{BlockManager, GcError, GcReport};
use crate::config::Maintenance;
use crate::metrics::VERSIONS_PRUNED;
use crate::now_ms;
use crate::thumbnails::{CollectError, Thumbnails};

/// How long after start the first pass runs (unless the interval is shorter): long
/// enough to stay out of the way of startup, short enough that a server restarted more
/// often than the interval still collects.
const FIRST_PASS_DELAY: Duration = Duration::from_secs(60);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Trash items purged because they were older than `trash_retention_days`.
    pub trash_expired: u64,
    /// Resumable uploads removed because they expired (`tus_upload_lifetime_secs`).
    pub uploads_expired: u64,
    /// Failed password guesses deleted because they left their throttle's window.
    pub throttle_pruned: u64,
    /// Old versions dropped by retention.
    pub versions_pruned: u64,
    /// What garbage collection deleted.
    pub gc: GcReport,
    /// Cached thumbnails deleted because their version is gone.
    pub thumbnails_deleted: u64,
}

/// Why a maintenance pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// Emptying old trash items failed (retention and collection did not run).
    #[error("trash expiry failed: {0}")]
    TrashExpiry(#[source] MetaError),
    /// Removing expired resumable uploads failed (collection did not run).
    #[error("upload expiry failed: {0}")]
    UploadExpiry(#[source] MetaError),
    /// Version retention failed (garbage collection did not run).
    #[error("version retention failed: {0}")]
    Retention(#[source] MetaError),
    /// Garbage collection failed.
    #[error("garbage collection failed: {0}")]
    Gc(#[from] GcError),
    /// Deleting the thumbnails of versions that are gone failed.
    #[error("collecting thumbnails failed: {0}")]
    Thumbnails(#[from] CollectError),
}

/// Runs one pass now: trash expiry and retention with the configured ages and count,
/// then garbage
/// collection with `grace` (normally `gc_grace_secs`; `cairn admin gc --grace` may
/// choose another), then the cached thumbnails of versions that no longer exist.
pub async fn run_once(
    meta: &MetaStore,
    blocks: &BlockManager,
    thumbnails: &Thumbnails,
    settings: &Maintenance,
    grace: Duration,
) -> Result<MaintenanceReport, MaintenanceError> {
    // First, so that the blocks of items purged for age are collected in this same pass
    // (once their grace period has passed).
    let trash_age_ms = i64::try_from(settings.trash_retention_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_MS);
    let trash_expired = meta
        .expire_trash(now_ms().saturating_sub(trash_age_ms))
        .await
        .map_err(MaintenanceError::TrashExpiry)?;
    if trash_expired > 0 {
        tracing::info!(
            items = trash_expired,
            "emptied trash items past their retention"
        );
    }

    // Expired resumable uploads release their blocks before the collection, so that
    // it frees them in this pass (once their grace period has passed).
    let uploads_expired = meta
        .expire_uploads(now_ms())
        .await
        .map_err(MaintenanceError::UploadExpiry)?;
    if uploads_expired > 0 {
        tracing::info!(
            uploads = uploads_expired,
            "removed expired resumable uploads"
        );
    }

    // Announced uploads never committed (streaming sync): their readers stop at the
    // expiry they were told, so only the rows are left to go. Dead weight too.
    if let Err(err) = meta.expire_pending_uploads(now_ms()).await {
        tracing::warn!(error = %err, "removing expired announced uploads failed");
    }

    // Only dead weight (guesses prune expired rows as they come, too), so a failure
    // here is no reason to skip the rest of the pass.
    let throttle_pruned = match meta.prune_throttle(now_ms()).await {
        Ok(n) => n,
        Err(err) => {
            tracing::warn!(error = %err, "pruning expired password failures failed");
            0
        }
    };

    let max_age_ms = i64::try_from(settings.version_retention_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_MS);
    let versions_pruned = meta
        .prune_versions(now_ms(), max_age_ms, settings.keep_versions)
        .await
        .map_err(MaintenanceError::Retention)?;
    metrics::counter!(VERSIONS_PRUNED).increment(versions_pruned);
    if versions_pruned > 0 {
        tracing::info!(versions = versions_pruned, "retention pruned old versions");
    }
    let gc = blocks.collect_garbage(grace).await?;
    // After the versions went (retention, expiry; purges and deleted accounts at any
    // time), so their thumbnails go in the same pass.
    let thumbnails_deleted = thumbnails.collect(meta).await?;
    Ok(MaintenanceReport {
        trash_expired,
        uploads_expired,
        throttle_pruned,
        versions_pruned,
        gc,
        thumbnails_deleted,
    })
}

/// The running background task; dropping the handle stops it.
#[derive(Debug)]
pub struct MaintenanceTask {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for MaintenanceTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Starts the background task: a pass shortly after start, then one every
/// `maintenance_interval_secs`.
pub fn spawn(
    meta: MetaStore,
    blocks: BlockManager,
    thumbnails: Thumbnails,
    settings: Maintenance,
) -> MaintenanceTask {
    let handle = tokio::spawn(async move {
        let interval = Duration::from_secs(settings.maintenance_interval_secs.max(1));
        let grace = Duration::from_secs(settings.gc_grace_secs);
        let mut next = tokio::time::Instant::now() + interval.min(FIRST_PASS_DELAY);
        loop {
            tokio::time::sleep_until(next).await;
            let started = std::time::Instant::now();
            // Its own task, so that even a panic in a pass only costs that pass.
            let pass = {
                let (meta, blocks, thumbnails, settings) = (
                    meta.clone(),
                    blocks.clone(),
                    thumbnails.clone(),
                    settings.clone(),
                );
                tokio::spawn(async move {
                    run_once(&meta, &blocks, &thumbnails, &settings, grace).await
                })
            };
            match pass.await {
                Err(panic) => tracing::error!(
                    error = %panic,
                    "maintenance pass panicked; retrying at the next interval"
                ),
                Ok(Ok(report)) => tracing::debug!(
                    trash_expired = report.trash_expired,
                    versions_pruned = report.versions_pruned,
                    blocks_deleted = report.gc.blocks_deleted,
                    bytes_freed = report.gc.bytes_freed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "maintenance pass done"
                ),
                Ok(Err(err)) => tracing::error!(
                    error = %err,
                    retry_in_secs = interval.as_secs(),
                    "maintenance pass failed; retrying at the next interval"
                ),
            }
            // Measured from the pass's end, so a pass longer than the interval does not
            // make the next start at once.
            next = tokio::time::Instant::now() + interval;
        }
    });
    MaintenanceTask { handle }
}
