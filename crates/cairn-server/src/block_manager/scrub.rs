//! The background scrub: re-reads and verifies every referenced block, in hash order and
//! round and round, at most `maintenance.scrub_bytes_per_sec`, so that a block that
//! rotted on disk is found before a download or a restore needs it.
//!
//! A damaged block is contained as `cairn admin fsck` would (`contain_damage`): moved
//! to quarantine if corrupt, possession forgotten so the next upload repairs it. The
//! files it breaks are logged at error level and `cairn_scrub_damaged_blocks_total`
//! goes up. Errors of the stores are logged and retried later; the scrub never stops
//! the server.

use std::time::Duration;

use cairn_core::BlockHash;
use cairn_meta::MetaStore;
use cairn_store::BlockStore;
use tokio::time::Instant;

use super::fsck::{check_block, contain_damage, BlockCheck, Damage, FsckError};
use super::BlockManager;
use crate::metrics::SCRUB_DAMAGED_BLOCKS;

/// Blocks fetched from metadata per page.
const PAGE: u32 = 64;

/// Each block is paced as if it were at least this large, so a store of tiny blocks is
/// not read at thousands of files a second (the cost there is per file, not per byte).
const MIN_BLOCK_COST: u64 = 64 << 10;

/// Most time the pacer lets the scrub run ahead of its rate after idling: one second's
/// worth of bytes may be read in a burst, no more.
const MAX_BURST: Duration = Duration::from_secs(1);

/// Pause between two passes over the whole store, so that a small store is not read
/// over and over without rest.
const PASS_PAUSE: Duration = Duration::from_secs(1);

/// Wait after a store error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(10);

/// A token bucket measured in time: every byte read moves the earliest moment of the
/// next read forward by `1 / rate` seconds.
#[derive(Debug)]
struct Pacer {
    bytes_per_sec: u64,
    next: Instant,
}

impl Pacer {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            next: Instant::now(),
        }
    }

    /// Waits until `bytes` more may be read.
    async fn take(&mut self, bytes: u64) {
        let now = Instant::now();
        if self.next + MAX_BURST < now {
            self.next = now - MAX_BURST;
        }
        let cost = bytes.max(MIN_BLOCK_COST) as f64 / self.bytes_per_sec as f64;
        self.next += Duration::from_secs_f64(cost);
        tokio::time::sleep_until(self.next).await;
    }
}

impl BlockManager {
    /// Runs the background scrub until the task is dropped. `bytes_per_sec` of 0
    /// returns at once.
    pub async fn scrub(self, bytes_per_sec: u64) {
        run(self.meta, self.store, bytes_per_sec).await
    }
}

async fn run(meta: MetaStore, store: BlockStore, bytes_per_sec: u64) {
    if bytes_per_sec == 0 {
        return;
    }
    tracing::info!(bytes_per_sec, "background scrub started");
    let mut pacer = Pacer::new(bytes_per_sec);
    let mut after: Option<BlockHash> = None;
    loop {
        let page = match meta.referenced_blocks(after, PAGE).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!("scrub cannot list blocks, retrying later: {err}");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(last) = page.last() else {
            // A pass is complete; wrap around.
            after = None;
            tokio::time::sleep(PASS_PAUSE).await;
            continue;
        };
        let last = last.hash;
        for block in page {
            pacer.take(block.size.max(0) as u64).await;
            if let Err(err) = scrub_block(&meta, &store, block.hash).await {
                tracing::warn!(hash = %block.hash, "scrub of a block failed, retrying later: {err}");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        after = Some(last);
    }
}

/// Verifies one block and contains it if it is damaged.
async fn scrub_block(
    meta: &MetaStore,
    store: &BlockStore,
    hash: BlockHash,
) -> Result<(), FsckError> {
    let Some(BlockCheck::Damaged(damage)) = check_block(meta, store, hash).await? else {
        return Ok(());
    };
    metrics::counter!(SCRUB_DAMAGED_BLOCKS).increment(1);
    let quarantined = contain_damage(meta, store, hash, damage).await?;
    let files = meta.files_referencing(&[hash]).await?;
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            let state = match (f.in_trash, f.is_current) {
                (true, _) => ", in trash",
                (false, false) => ", older version",
                (false, true) => "",
            };
            format!(
                "{} (version {}, user {}{state})",
                f.path, f.version, f.owner
            )
        })
        .collect();
    let what = match damage {
        Damage::Corrupt if quarantined => "corrupt; moved to quarantine",
        Damage::Corrupt => "corrupt",
        Damage::Missing => "missing",
    };
    tracing::error!(
        %hash,
        files = %names.join("; "),
        "scrub found a damaged block ({what}); these files cannot be read until it is \
         uploaded again (putting an original copy of one of them repairs it)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pacer_holds_reads_to_the_rate() {
        // Five minimum-cost blocks at 1 MiB/s: 5 × 64 KiB is 0.3125 s of budget.
        let mut pacer = Pacer::new(1 << 20);
        let started = Instant::now();
        for _ in 0..5 {
            pacer.take(10).await;
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn idling_earns_at_most_one_second_of_burst() {
        let mut pacer = Pacer::new(MIN_BLOCK_COST);
        pacer.next = Instant::now() - Duration::from_secs(3600);
        // A second's worth is free after an idle hour…
        let started = Instant::now();
        pacer.take(MIN_BLOCK_COST).await;
        assert!(started.elapsed() < Duration::from_millis(500));
        // …and no more: the budget is spent up to now, so the next block will wait its
        // full second.
        assert!(pacer.next + Duration::from_millis(100) >= started);
    }
}
