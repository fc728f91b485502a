//! The S3 backend against a real S3 server (SeaweedFS, started by `.ci/s3-up.sh` on
//! 127.0.0.1:8333; see `S3Config::for_tests`): the same promises as the local folder,
//! through the public API. Each test works under a prefix of its own.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use cairn_core::BlockHash;
use cairn_store::{BlockStore, S3Config, StoreError};
use common::{batch, random};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;

/// A store under a fresh prefix, and a raw client on the same bucket to look at and
/// damage what it wrote.
struct Fixture {
    config: S3Config,
    raw: Arc<dyn ObjectStore>,
}

impl Fixture {
    fn new(test: &str) -> Self {
        let prefix = format!("store-tests/{test}-{:016x}", rand::random::<u64>());
        let config = S3Config::for_tests(&prefix);
        let raw = config.raw_client();
        Self { config, raw }
    }

    async fn open(&self) -> BlockStore {
        BlockStore::s3(&self.config).await.unwrap_or_else(|e| {
            panic!("cannot reach the test S3 server ({e}); start it with .ci/s3-up.sh")
        })
    }

    fn key(&self, dir: &str, name: &str) -> Path {
        Path::from(format!("{}/{dir}/{name}", self.config.prefix))
    }

    /// The names under `dir`, sorted.
    async fn names(&self, dir: &str) -> Vec<String> {
        let prefix = Path::from(format!("{}/{dir}", self.config.prefix));
        let metas: Vec<_> = self.raw.list(Some(&prefix)).try_collect().await.unwrap();
        let mut names: Vec<String> = metas
            .into_iter()
            .map(|m| m.location.filename().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Flips one byte of an object, `at` bytes from its end.
    async fn damage(&self, key: &Path, at_from_end: usize) {
        let mut bytes = self
            .raw
            .get(key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let at = bytes.len() - at_from_end;
        bytes[at] ^= 0xff;
        self.raw.put(key, Bytes::from(bytes).into()).await.unwrap();
    }
}

#[tokio::test]
async fn blocks_round_trip_once_and_missing_ones_are_not_found() {
    let s3 = Fixture::new("round-trip");
    let store = s3.open().await;
    let incompressible = random(300 << 10, 1);
    let compressible = Bytes::from(b"cairn ".repeat(50_000));
    for data in [incompressible, compressible.clone(), Bytes::new()] {
        let hash = BlockHash::of(&data);
        let first = store.put(hash, data.clone()).await.unwrap();
        assert!(first.newly_stored);
        assert!(!store.put(hash, data.clone()).await.unwrap().newly_stored);
        assert_eq!(store.get(hash).await.unwrap(), data);
        assert!(store.contains(hash).await.unwrap());
    }
    // Compressed where it pays.
    let stored = store
        .stored_size(BlockHash::of(&compressible))
        .await
        .unwrap()
        .unwrap();
    assert!(stored < compressible.len() as u64 / 10, "{stored}");
    let missing = BlockHash::of(b"never stored");
    assert!(!store.contains(missing).await.unwrap());
    assert!(matches!(
        store.get(missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_required(missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.stored_size(missing).await.unwrap(), None);
    assert_eq!(store.list().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_damaged_block_is_never_served_and_quarantine_lets_an_upload_repair_it() {
    let s3 = Fixture::new("damage");
    let store = s3.open().await;
    let data = random(200 << 10, 2);
    let hash = BlockHash::of(&data);
    store.put(hash, data.clone()).await.unwrap();
    s3.damage(&s3.key("blocks", &hash.to_hex()), 1000).await;
    assert!(matches!(store.get(hash).await, Err(StoreError::Corrupt(_))));

    assert!(store.quarantine(hash).await.unwrap());
    assert_eq!(s3.names("quarantine").await, vec![hash.to_hex()]);
    assert!(!store.contains(hash).await.unwrap());
    assert!(store.put(hash, data.clone()).await.unwrap().newly_stored);
    assert_eq!(store.get(hash).await.unwrap(), data);
}

#[tokio::test]
async fn a_batch_of_small_blocks_is_one_object() {
    let s3 = Fixture::new("batch");
    let store = s3.open().await;
    let small = batch(500, 3);
    let big = random(2 << 20, 4);
    let mut all = small.clone();
    all.push((BlockHash::of(&big), big.clone()));
    let outcomes = store.put_many(all.clone()).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|o| o.newly_stored && o.stored_bytes > 0));
    // 500 small blocks in one pack, the big one alone.
    assert_eq!(s3.names("packs").await.len(), 1);
    assert_eq!(s3.names("blocks").await, vec![BlockHash::of(&big).to_hex()]);
    let again = store.put_many(small.clone()).await.unwrap();
    assert!(again.iter().all(|o| !o.newly_stored && o.stored_bytes == 0));
    for (hash, data) in all.iter().step_by(37) {
        assert_eq!(&store.get(*hash).await.unwrap(), data);
    }
    let present = store
        .contains_many(all.iter().map(|(h, _)| *h).collect())
        .await
        .unwrap();
    assert!(present.iter().all(|p| *p));

    // A reopened store (a restarted or another node) finds them all.
    let reopened = s3.open().await;
    assert_eq!(reopened.list().await.unwrap().len(), 501);
    assert_eq!(reopened.get(small[7].0).await.unwrap(), small[7].1);
}

#[tokio::test]
async fn two_nodes_see_each_others_packs_and_deletions() {
    let s3 = Fixture::new("two-nodes");
    let node1 = s3.open().await;
    let node2 = s3.open().await;
    let blocks = batch(40, 5);
    node1.put_many(blocks.clone()).await.unwrap();

    // Node 2 opened before the pack existed, and still finds every block.
    assert!(node2.contains(blocks[0].0).await.unwrap());
    assert_eq!(node2.get(blocks[1].0).await.unwrap(), blocks[1].1);
    assert_eq!(node2.list().await.unwrap().len(), 40);

    // Node 2 deletes some: the pack is rewritten, and node 1 no longer finds them.
    let doomed: Vec<BlockHash> = blocks[..10].iter().map(|(h, _)| *h).collect();
    node2.delete_many(doomed.clone()).await.unwrap();
    assert_eq!(s3.names("packs").await.len(), 1);
    for hash in &doomed {
        assert!(!node1.contains(*hash).await.unwrap());
        assert!(matches!(
            node1.get(*hash).await,
            Err(StoreError::NotFound(_))
        ));
    }
    for (hash, data) in &blocks[10..] {
        assert_eq!(&node1.get(*hash).await.unwrap(), data);
    }
    assert_eq!(node1.list().await.unwrap().len(), 30);

    // Deleting everything leaves nothing behind.
    let every: Vec<BlockHash> = blocks.iter().map(|(h, _)| *h).collect();
    node1.delete_many(every.clone()).await.unwrap();
    assert!(s3.names("packs").await.is_empty());
    assert!(node2.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_damaged_packed_block_is_refused_and_quarantined_alone() {
    let s3 = Fixture::new("damaged-pack");
    let store = s3.open().await;
    let blocks = batch(5, 6);
    store.put_many(blocks.clone()).await.unwrap();
    let pack = s3.names("packs").await.remove(0);
    let key = s3.key("packs", &pack);
    let bytes = s3.raw.get(&key).await.unwrap().bytes().await.unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &blocks[2].1[1000..1064])
        .expect("the block is stored raw");
    s3.damage(&key, bytes.len() - at).await;

    let damaged = blocks[2].0;
    assert!(matches!(
        store.get(damaged).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store.quarantine(damaged).await.unwrap());
    assert_eq!(s3.names("quarantine").await, vec![damaged.to_hex()]);
    assert!(!store.contains(damaged).await.unwrap());
    for (i, (hash, data)) in blocks.iter().enumerate() {
        if i != 2 {
            assert_eq!(&store.get(*hash).await.unwrap(), data);
        }
    }
    let outcome = store.put_many(vec![blocks[2].clone()]).await.unwrap();
    assert!(outcome[0].newly_stored);
    let reopened = s3.open().await;
    assert_eq!(reopened.list().await.unwrap().len(), 5);
    assert_eq!(reopened.get(damaged).await.unwrap(), blocks[2].1);
}

#[tokio::test]
async fn a_pack_with_a_damaged_index_is_still_read() {
    let s3 = Fixture::new("damaged-index");
    let store = s3.open().await;
    let blocks = batch(8, 7);
    store.put_many(blocks.clone()).await.unwrap();
    let pack = s3.names("packs").await.remove(0);
    // The last bytes are the trailer's magic.
    s3.damage(&s3.key("packs", &pack), 2).await;
    let reopened = s3.open().await;
    for (hash, data) in &blocks {
        assert_eq!(&reopened.get(*hash).await.unwrap(), data);
    }
}

#[tokio::test]
async fn concurrent_puts_of_one_block_all_succeed() {
    let s3 = Fixture::new("concurrent");
    let store = s3.open().await;
    let data = random(1 << 20, 8);
    let hash = BlockHash::of(&data);
    let puts: Vec<_> = (0..8)
        .map(|_| {
            let (store, data) = (store.clone(), data.clone());
            tokio::spawn(async move { store.put(hash, data).await })
        })
        .collect();
    let mut created = 0;
    for put in puts {
        created += usize::from(put.await.unwrap().unwrap().newly_stored);
    }
    assert!(created >= 1);
    assert_eq!(store.get(hash).await.unwrap(), data);
    assert_eq!(s3.names("blocks").await, vec![hash.to_hex()]);
}

#[tokio::test]
async fn a_wrong_key_or_bucket_fails_at_open_with_the_address() {
    let mut config = S3Config::for_tests("store-tests/wrong");
    config.secret_access_key = Some("not the secret".into());
    let err = BlockStore::s3(&config).await.unwrap_err().to_string();
    assert!(err.contains("s3://"), "{err}");
    let mut config = S3Config::for_tests("x");
    config.bucket = "no-such-bucket-here".into();
    assert!(BlockStore::s3(&config).await.is_err());
}
