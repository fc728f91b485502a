//! Verification failures are counted in `cairn_block_verify_failures_total`.
//!
//! A test binary of its own, because it installs a global metrics recorder.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cairn_core::BlockHash;
use cairn_store::{BlockStore, StoreError, VERIFY_FAILURES_METRIC};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Records the verify-failure counter and ignores every other metric.
#[derive(Debug, Default)]
struct VerifyFailures(Arc<AtomicU64>);

impl Recorder for VerifyFailures {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() == VERIFY_FAILURES_METRIC {
            Counter::from_arc(self.0.clone())
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn every_verify_failure_is_counted() {
    let count = Arc::new(AtomicU64::new(0));
    metrics::set_global_recorder(VerifyFailures(count.clone())).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    let good = Bytes::from_static(b"a healthy block");
    let bad = Bytes::from_static(b"a block about to rot");
    let (good_hash, bad_hash) = (BlockHash::of(&good), BlockHash::of(&bad));
    store.put(good_hash, good).await.unwrap();
    store.put(bad_hash, bad).await.unwrap();

    let hex = bad_hash.to_hex();
    let path = dir
        .path()
        .join("blocks")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(&hex);
    let mut bytes = fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x20;
    fs::write(&path, bytes).unwrap();

    store.get(good_hash).await.unwrap();
    let missing = BlockHash::of(b"missing");
    assert!(matches!(
        store.get(missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(count.load(Ordering::Relaxed), 0);

    for _ in 0..3 {
        assert!(matches!(
            store.get(bad_hash).await,
            Err(StoreError::Corrupt(_))
        ));
    }
    assert_eq!(count.load(Ordering::Relaxed), 3);

    // A block the caller knows must exist counts when it is missing, too.
    assert!(matches!(
        store.get_required(missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_required(bad_hash).await,
        Err(StoreError::Corrupt(_))
    ));
    store.get_required(good_hash).await.unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 5);
}
