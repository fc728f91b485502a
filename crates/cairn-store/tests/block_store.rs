//! The block store through its public API, on the local-directory backend.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cairn_core::BlockHash;
use cairn_store::{BlockStore, PutOutcome, StoreError, HEADER_LEN, MAX_BLOCK_SIZE};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use tempfile::TempDir;

fn open() -> (TempDir, BlockStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    (dir, store)
}

fn random(len: usize, seed: u64) -> Bytes {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    Bytes::from(data)
}

fn block_file(root: &Path, hash: &BlockHash) -> PathBuf {
    let hex = hash.to_hex();
    root.join("blocks")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(&hex)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn put(store: &BlockStore, data: &Bytes) -> (BlockHash, PutOutcome) {
    let hash = BlockHash::of(data);
    let outcome = store.put(hash, data.clone()).await.unwrap();
    (hash, outcome)
}

/// How a block of a given kind must come back, and roughly what it may cost on disk.
struct Case {
    name: &'static str,
    data: Bytes,
    /// Upper bound on stored bytes, header included.
    max_stored: u64,
}

#[tokio::test]
async fn round_trips_and_compresses_only_what_shrinks() {
    let four_mib = 4 << 20;
    let cases = [
        Case {
            name: "empty",
            data: Bytes::new(),
            max_stored: HEADER_LEN as u64,
        },
        Case {
            name: "small",
            data: Bytes::from_static(b"hello, cairn"),
            max_stored: HEADER_LEN as u64 + 12,
        },
        Case {
            name: "4 MiB random",
            data: random(four_mib, 1),
            max_stored: (HEADER_LEN + four_mib) as u64,
        },
        Case {
            name: "4 MiB zeros",
            data: Bytes::from(vec![0u8; four_mib]),
            max_stored: 64 << 10,
        },
        Case {
            name: "text",
            data: Bytes::from("the quick brown fox jumps over the lazy dog\n".repeat(50_000)),
            max_stored: 200_000,
        },
    ];
    let (dir, store) = open();
    for case in cases {
        let (hash, outcome) = put(&store, &case.data).await;
        assert!(outcome.newly_stored, "{}", case.name);
        assert!(
            outcome.stored_bytes <= case.max_stored,
            "{}: stored {} > {}",
            case.name,
            outcome.stored_bytes,
            case.max_stored
        );
        let on_disk = fs::metadata(block_file(dir.path(), &hash)).unwrap().len();
        assert_eq!(on_disk, outcome.stored_bytes, "{}", case.name);
        assert_eq!(store.stored_size(hash).await.unwrap(), Some(on_disk));
        assert!(store.contains(hash).await.unwrap(), "{}", case.name);
        assert_eq!(store.get(hash).await.unwrap(), case.data, "{}", case.name);
    }
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn put_twice_is_idempotent_and_does_not_rewrite() {
    let (dir, store) = open();
    let data = random(100_000, 2);
    let (hash, first) = put(&store, &data).await;
    assert!(first.newly_stored);
    let path = block_file(dir.path(), &hash);
    let inode_before = file_id(&path);

    let (_, second) = put(&store, &data).await;
    assert_eq!(
        second,
        PutOutcome {
            newly_stored: false,
            stored_bytes: 0
        }
    );
    assert_eq!(file_id(&path), inode_before, "the block was rewritten");
    assert_eq!(store.get(hash).await.unwrap(), data);
}

#[cfg(unix)]
fn file_id(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().ino()
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn missing_block_is_not_found_everywhere() {
    let (_dir, store) = open();
    let hash = BlockHash::of(b"never stored");
    assert!(matches!(store.get(hash).await, Err(StoreError::NotFound(h)) if h == hash));
    assert!(!store.contains(hash).await.unwrap());
    assert_eq!(store.stored_size(hash).await.unwrap(), None);
    store.delete(hash).await.unwrap();
}

/// Damages a stored block in some way and expects `get` to refuse it.
async fn check_corrupt(data: Bytes, compressed: bool, damage: impl Fn(&Path)) {
    let (dir, store) = open();
    let (hash, outcome) = put(&store, &data).await;
    let raw_size = (HEADER_LEN + data.len()) as u64;
    assert_eq!(
        outcome.stored_bytes < raw_size,
        compressed,
        "expected compressed={compressed}"
    );
    damage(&block_file(dir.path(), &hash));
    match store.get(hash).await {
        Err(StoreError::Corrupt(h)) => assert_eq!(h, hash),
        other => panic!("expected Corrupt, got {:?}", other.map(|b| b.len())),
    }
    // The damage is reported, not repaired or hidden: the block is still listed.
    assert_eq!(store.list().await.unwrap(), vec![hash]);
}

fn flip_byte_at(offset_from_end: u64) -> impl Fn(&Path) {
    move |path| {
        let mut bytes = fs::read(path).unwrap();
        let i = bytes.len() - offset_from_end as usize;
        bytes[i] ^= 0x01;
        fs::write(path, bytes).unwrap();
    }
}

fn truncate_to(len: impl Fn(u64) -> u64) -> impl Fn(&Path) {
    move |path| {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        let old = file.metadata().unwrap().len();
        file.set_len(len(old)).unwrap();
    }
}

fn compressible() -> Bytes {
    Bytes::from("all work and no play makes jack a dull boy ".repeat(20_000))
}

#[tokio::test]
async fn flipped_byte_in_raw_block_is_corrupt() {
    check_corrupt(random(1 << 20, 3), false, flip_byte_at(1000)).await;
    check_corrupt(random(1 << 20, 3), false, flip_byte_at(1)).await;
}

/// The bug quarantine fixes: without it, a re-upload of a damaged block finds its name
/// taken and keeps the damaged file.
#[tokio::test]
async fn quarantine_moves_a_damaged_block_aside_so_a_reupload_repairs_it() {
    let (dir, store) = open();
    let data = random(300_000, 11);
    let (hash, _) = put(&store, &data).await;
    let (other, _) = put(&store, &random(1000, 12)).await;
    flip_byte_at(10)(&block_file(dir.path(), &hash));
    let damaged = fs::read(block_file(dir.path(), &hash)).unwrap();

    // Re-uploading in place does not help: the damaged file stays.
    assert!(!store.put(hash, data.clone()).await.unwrap().newly_stored);
    assert!(matches!(store.get(hash).await, Err(StoreError::Corrupt(_))));

    assert!(store.quarantine(hash).await.unwrap());
    assert!(!store.contains(hash).await.unwrap());
    assert!(matches!(
        store.get(hash).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list().await.unwrap(), vec![other]);
    let aside = dir.path().join("quarantine").join(hash.to_hex());
    assert_eq!(fs::read(&aside).unwrap(), damaged, "kept for inspection");
    // Quarantining again, or a block that is not there, is a no-op.
    assert!(!store.quarantine(hash).await.unwrap());
    assert!(!store.quarantine(BlockHash::of(b"absent")).await.unwrap());

    let outcome = store.put(hash, data.clone()).await.unwrap();
    assert!(outcome.newly_stored, "a fresh copy is written");
    assert_eq!(store.get(hash).await.unwrap(), data);
    assert!(store.get(other).await.is_ok());
}

#[tokio::test]
async fn flipped_byte_in_compressed_block_is_corrupt() {
    check_corrupt(compressible(), true, flip_byte_at(10)).await;
    check_corrupt(compressible(), true, flip_byte_at(100)).await;
}

#[tokio::test]
async fn damaged_header_is_corrupt() {
    for data in [random(10_000, 4), compressible()] {
        let compressed = data.len() > 10_000;
        // Magic, codec, reserved and length bytes.
        for i in [0u64, 4, 6, 8, 15] {
            check_corrupt(data.clone(), compressed, move |path: &Path| {
                let mut bytes = fs::read(path).unwrap();
                bytes[i as usize] ^= 0x80;
                fs::write(path, bytes).unwrap();
            })
            .await;
        }
    }
}

#[tokio::test]
async fn truncated_or_garbage_file_is_corrupt() {
    for data in [random(1 << 20, 5), compressible()] {
        let compressed = data.len() != 1 << 20;
        check_corrupt(data.clone(), compressed, truncate_to(|n| n / 2)).await;
        check_corrupt(data.clone(), compressed, truncate_to(|n| n - 1)).await;
        check_corrupt(data.clone(), compressed, truncate_to(|_| 3)).await;
        check_corrupt(data.clone(), compressed, truncate_to(|_| 0)).await;
        check_corrupt(data.clone(), compressed, |path: &Path| {
            fs::write(path, b"not a block at all, just some text").unwrap();
        })
        .await;
        // Longer than any block we write: refused before it is read into memory.
        check_corrupt(
            data,
            compressed,
            truncate_to(|_| (MAX_BLOCK_SIZE + 1000) as u64),
        )
        .await;
    }
}

#[tokio::test]
async fn list_returns_blocks_and_skips_everything_else() {
    let (dir, store) = open();
    let mut hashes = Vec::new();
    for seed in 0..20 {
        hashes.push(put(&store, &random(1000, seed)).await.0);
    }
    hashes.sort();

    let root = dir.path();
    fs::write(root.join("tmp").join("0123-abcd.tmp"), b"half a block").unwrap();
    let first = hashes[0].to_hex();
    let leaf = root.join("blocks").join(&first[..2]).join(&first[2..4]);
    fs::write(leaf.join("README"), b"stray").unwrap();
    fs::write(leaf.join(first.to_uppercase()), b"wrong case").unwrap();
    // A valid hash in the wrong fan-out directory can never be found by `get`.
    let misplaced = if first.starts_with("ff") { "00" } else { "ff" };
    fs::create_dir_all(root.join("blocks").join(misplaced).join("00")).unwrap();
    fs::write(
        root.join("blocks").join(misplaced).join("00").join(&first),
        b"x",
    )
    .unwrap();
    fs::write(root.join("blocks").join("not-hex"), b"stray").unwrap();

    assert_eq!(store.list().await.unwrap(), hashes);

    store.delete(hashes[3]).await.unwrap();
    store.delete(hashes[3]).await.unwrap();
    assert!(matches!(
        store.get(hashes[3]).await,
        Err(StoreError::NotFound(_))
    ));
    hashes.remove(3);
    assert_eq!(store.list().await.unwrap(), hashes);
}

#[tokio::test]
async fn empty_store_lists_nothing() {
    let (_dir, store) = open();
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn open_removes_stale_temp_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    let (hash, _) = put(&store, &random(5000, 6)).await;
    drop(store);

    let tmp = dir.path().join("tmp");
    let stale = tmp.join("aaaa-stale.tmp");
    let fresh = tmp.join("bbbb-fresh.tmp");
    fs::write(&stale, b"left by a crash").unwrap();
    fs::write(&fresh, b"another process is writing this").unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    OpenOptions::new()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    let store = BlockStore::local(dir.path()).unwrap();
    assert_eq!(files_in(&tmp), vec!["bbbb-fresh.tmp".to_owned()]);
    assert_eq!(store.list().await.unwrap(), vec![hash]);
    assert!(store.get(hash).await.is_ok());
}

#[tokio::test]
async fn open_creates_a_missing_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data").join("store");
    let store = BlockStore::local(&root).unwrap();
    assert!(root.join("blocks").is_dir() && root.join("tmp").is_dir());
    let (hash, _) = put(&store, &Bytes::from_static(b"x")).await;
    assert_eq!(store.get(hash).await.unwrap(), Bytes::from_static(b"x"));
}

#[tokio::test]
async fn too_large_block_is_refused() {
    let (_dir, store) = open();
    let data = Bytes::from(vec![1u8; MAX_BLOCK_SIZE + 1]);
    let hash = BlockHash::of(&data);
    assert!(matches!(
        store.put(hash, data).await,
        Err(StoreError::TooLarge { size, .. }) if size == MAX_BLOCK_SIZE + 1
    ));
    assert!(!store.contains(hash).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_of_one_block_all_succeed_once() {
    let (dir, store) = open();
    for data in [random(4 << 20, 7), compressible()] {
        let hash = BlockHash::of(&data);
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                let data = data.clone();
                tokio::spawn(async move { store.put(hash, data).await })
            })
            .collect();
        let mut newly = 0;
        for task in tasks {
            let outcome = task.await.unwrap().unwrap();
            newly += usize::from(outcome.newly_stored);
        }
        // Hard links make the race exact on the filesystems tests run on.
        assert_eq!(newly, 1);
        assert_eq!(store.get(hash).await.unwrap(), data);
        let hex = hash.to_hex();
        let leaf = dir.path().join("blocks").join(&hex[..2]).join(&hex[2..4]);
        assert_eq!(files_in(&leaf), vec![hex]);
    }
    assert_eq!(store.list().await.unwrap().len(), 2);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_many_blocks() {
    let (_dir, store) = open();
    let blocks: Vec<Bytes> = (0..64).map(|seed| random(50_000, 100 + seed)).collect();
    let tasks: Vec<_> = blocks
        .iter()
        .cloned()
        .map(|data| {
            let store = store.clone();
            tokio::spawn(async move { put(&store, &data).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().1.newly_stored);
    }
    for data in &blocks {
        assert_eq!(&store.get(BlockHash::of(data)).await.unwrap(), data);
    }
}

#[tokio::test]
async fn put_many_stores_each_block_once_and_leaves_no_temp_files() {
    let (dir, store) = open();
    let blocks: Vec<(BlockHash, Bytes)> = (0..300)
        .map(|i| {
            let data = random(4096 + i, i as u64);
            (BlockHash::of(&data), data)
        })
        .collect();
    // One block already stored, and one given twice.
    store.put(blocks[0].0, blocks[0].1.clone()).await.unwrap();
    let mut batch = blocks.clone();
    batch.push(blocks[7].clone());
    let outcomes = store.put_many(batch).await.unwrap();
    assert_eq!(outcomes.len(), 301);
    assert!(!outcomes[0].newly_stored, "stored before the batch");
    assert_eq!(outcomes[0].stored_bytes, 0);
    assert!(outcomes[1..300].iter().all(|o| o.newly_stored));
    assert!(
        !outcomes[300].newly_stored,
        "the repeat finds the first copy"
    );
    for (hash, data) in &blocks {
        assert_eq!(&store.get(*hash).await.unwrap(), data);
    }
    // Small blocks of a batch go into one pack file; the one stored before stays loose.
    assert!(block_file(dir.path(), &blocks[0].0).exists());
    assert!(!block_file(dir.path(), &blocks[1].0).exists());
    assert_eq!(files_in(&dir.path().join("packs")).len(), 1);
    let present = store
        .contains_many(vec![blocks[3].0, BlockHash::of(b"not stored")])
        .await
        .unwrap();
    assert_eq!(present, vec![true, false]);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert!(store.put_many(Vec::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn put_many_refuses_an_oversized_block_before_writing_anything() {
    let (dir, store) = open();
    let small = random(100, 1);
    let big = Bytes::from(vec![0u8; MAX_BLOCK_SIZE + 1]);
    let err = store
        .put_many(vec![
            (BlockHash::of(&small), small.clone()),
            (BlockHash::of(&big), big.clone()),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert!(!store.contains(BlockHash::of(&small)).await.unwrap());
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}
