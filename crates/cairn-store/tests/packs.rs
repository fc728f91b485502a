//! Small blocks stored in batches go into pack files: they must behave exactly like
//! loose blocks through the public API, across reopenings and across two handles on one
//! directory (as `cairn serve` and `cairn admin gc` are two processes).

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cairn_core::BlockHash;
use cairn_store::{BlockStore, StoreError};
use common::{batch, random};

fn packs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root.join("packs")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

async fn sorted(mut hashes: Vec<BlockHash>) -> Vec<BlockHash> {
    hashes.sort_unstable();
    hashes
}

#[tokio::test]
async fn packed_blocks_survive_a_reopen_and_list_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    let small = batch(50, 1);
    // A block too big for a pack, in the same batch, gets a file of its own.
    let big = random(2 << 20, 2);
    let mut all = small.clone();
    all.push((BlockHash::of(&big), big.clone()));
    let outcomes = store.put_many(all.clone()).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|o| o.newly_stored && o.stored_bytes > 0));
    assert_eq!(packs(dir.path()).len(), 1);
    // The same blocks again: nothing new, though the batch costs the same write (a
    // second pack of copies), so that deduplication cannot be timed.
    let again = store.put_many(small.clone()).await.unwrap();
    assert!(again.iter().all(|o| !o.newly_stored && o.stored_bytes == 0));
    assert_eq!(packs(dir.path()).len(), 2);
    // A delete removes every copy: none comes back when the packs are read again.
    let doomed: Vec<BlockHash> = small[..5].iter().map(|(h, _)| *h).collect();
    store.delete_many(doomed.clone()).await.unwrap();
    drop(store);
    let store = BlockStore::local(dir.path()).unwrap();
    for hash in &doomed {
        assert!(!store.contains(*hash).await.unwrap());
    }
    let all: Vec<(BlockHash, Bytes)> = all.into_iter().skip(5).collect();
    drop(store);

    let store = BlockStore::local(dir.path()).unwrap();
    for (hash, data) in &all {
        assert_eq!(&store.get(*hash).await.unwrap(), data);
        assert!(store.stored_size(*hash).await.unwrap().unwrap() > 0);
    }
    let expected = sorted(all.iter().map(|(h, _)| *h).collect()).await;
    assert_eq!(store.list().await.unwrap(), expected);
    let present = store
        .contains_many(vec![small[7].0, BlockHash::of(b"absent")])
        .await
        .unwrap();
    assert_eq!(present, vec![true, false]);
}

#[tokio::test]
async fn a_second_handle_sees_new_packs_and_deletions_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockStore::local(dir.path()).unwrap();
    let admin = BlockStore::local(dir.path()).unwrap();
    let blocks = batch(40, 3);
    server.put_many(blocks.clone()).await.unwrap();

    // The other handle opened before the pack existed, and still finds every block.
    assert!(admin.contains(blocks[0].0).await.unwrap());
    assert_eq!(admin.get(blocks[1].0).await.unwrap(), blocks[1].1);
    assert_eq!(admin.list().await.unwrap().len(), 40);

    // It deletes some: the pack is rewritten, and the first handle no longer finds them,
    // while the others are still there for both.
    let doomed: Vec<BlockHash> = blocks[..10].iter().map(|(h, _)| *h).collect();
    admin.delete_many(doomed.clone()).await.unwrap();
    assert_eq!(packs(dir.path()).len(), 1);
    for hash in &doomed {
        assert!(!server.contains(*hash).await.unwrap());
        assert!(matches!(
            server.get(*hash).await,
            Err(StoreError::NotFound(_))
        ));
    }
    for (hash, data) in &blocks[10..] {
        assert_eq!(&server.get(*hash).await.unwrap(), data);
        assert_eq!(&admin.get(*hash).await.unwrap(), data);
    }
    assert_eq!(server.list().await.unwrap().len(), 30);

    // A deleted block uploaded again is stored afresh.
    let outcomes = server.put_many(blocks[..2].to_vec()).await.unwrap();
    assert!(outcomes.iter().all(|o| o.newly_stored));
    assert_eq!(admin.get(blocks[0].0).await.unwrap(), blocks[0].1);

    // Deleting everything leaves no pack behind.
    let every: Vec<BlockHash> = blocks.iter().map(|(h, _)| *h).collect();
    server.delete(every[12]).await.unwrap();
    admin.delete_many(every.clone()).await.unwrap();
    assert!(packs(dir.path()).is_empty(), "{:?}", packs(dir.path()));
    assert!(server.list().await.unwrap().is_empty());
    for hash in every {
        assert!(!server.contains(hash).await.unwrap());
    }
}

#[tokio::test]
async fn a_damaged_packed_block_is_refused_and_quarantined_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    let blocks = batch(5, 4);
    store.put_many(blocks.clone()).await.unwrap();
    let pack = packs(dir.path()).remove(0);
    // Flip a byte in the middle of the third block's record.
    let bytes = fs::read(&pack).unwrap();
    let data = &blocks[2].1;
    let at = bytes
        .windows(64)
        .position(|w| w == &data[1000..1064])
        .expect("the block is stored raw");
    let file = fs::OpenOptions::new().write(true).open(&pack).unwrap();
    file.write_all_at(&[bytes[at] ^ 0xff], at as u64).unwrap();
    drop(file);

    let damaged = blocks[2].0;
    assert!(matches!(
        store.get(damaged).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store.quarantine(damaged).await.unwrap());
    assert!(dir
        .path()
        .join("quarantine")
        .join(damaged.to_hex())
        .is_file());
    assert!(!store.contains(damaged).await.unwrap());
    for (i, (hash, data)) in blocks.iter().enumerate() {
        if i != 2 {
            assert_eq!(&store.get(*hash).await.unwrap(), data);
        }
    }
    // An upload of it stores a good copy.
    let outcome = store.put_many(vec![blocks[2].clone()]).await.unwrap();
    assert!(outcome[0].newly_stored);
    assert_eq!(store.get(damaged).await.unwrap(), blocks[2].1);

    // And a reopened store agrees.
    drop(store);
    let store = BlockStore::local(dir.path()).unwrap();
    assert_eq!(store.list().await.unwrap().len(), 5);
    assert_eq!(store.get(damaged).await.unwrap(), blocks[2].1);
}

#[tokio::test]
async fn a_pack_with_a_damaged_index_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    let blocks = batch(8, 5);
    store.put_many(blocks.clone()).await.unwrap();
    drop(store);
    let pack = packs(dir.path()).remove(0);
    let len = fs::metadata(&pack).unwrap().len();
    // The last bytes are the trailer's magic.
    let file = fs::OpenOptions::new().write(true).open(&pack).unwrap();
    file.write_all_at(b"XXXX", len - 4).unwrap();
    drop(file);

    let store = BlockStore::local(dir.path()).unwrap();
    for (hash, data) in &blocks {
        assert_eq!(&store.get(*hash).await.unwrap(), data);
    }
}
