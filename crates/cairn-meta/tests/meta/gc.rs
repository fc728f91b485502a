//! Garbage collection's metadata half (claim, delete, adopt) and version retention.

use std::time::{SystemTime, UNIX_EPOCH};

use cairn_core::BlockHash;
use cairn_meta::{GcDeleteError, MetaError, MetaStore};

use crate::common::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A cutoff no recorded block is older than: every unreferenced block qualifies.
fn past_everything() -> i64 {
    now_ms() + 1000
}

/// Deletes claimed blocks, recording which ones the callback was handed.
async fn delete(store: &MetaStore, hashes: &[BlockHash]) -> Vec<BlockHash> {
    let mut seen = Vec::new();
    let deleted = store
        .gc_delete(hashes, |blocks| {
            seen = blocks.iter().map(|b| b.hash).collect();
            async { Ok::<(), std::io::Error>(()) }
        })
        .await
        .unwrap();
    let deleted: Vec<BlockHash> = deleted.iter().map(|b| b.hash).collect();
    assert_eq!(
        seen, deleted,
        "the callback gets exactly the deleted blocks"
    );
    deleted
}

backend_tests! {
    async fn an_unreferenced_block_is_collected_only_after_its_grace_period(store) {
        let (u, _) = user(&store, "u").await;
        let b = upload(&store, &u, &["lonely"]).await[0];
        let info = store.block_info(b.hash).await.unwrap().unwrap();
        assert_eq!((info.refcount, info.gc_started), (0, None));
        assert!(info.zero_since.is_some());

        // An hour's grace: the block was uploaded just now, so it stays.
        let cutoff = now_ms() - 3_600_000;
        assert_eq!(store.gc_claim(cutoff, 100).await.unwrap(), vec![]);
        assert_eq!(store.gc_stats(cutoff).await.unwrap().collectable_blocks, 0);

        let cutoff = past_everything();
        let stats = store.gc_stats(cutoff).await.unwrap();
        assert_eq!((stats.unreferenced_blocks, stats.collectable_blocks), (1, 1));
        assert_eq!(stats.unreferenced_bytes, 6);
        let claimed = store.gc_claim(cutoff, 100).await.unwrap();
        assert_eq!(claimed, vec![b.hash]);
        assert!(store.block_info(b.hash).await.unwrap().unwrap().gc_started.is_some());
        // Claiming again finds nothing new.
        assert_eq!(store.gc_claim(cutoff, 100).await.unwrap(), vec![]);
        assert_eq!(delete(&store, &claimed).await, vec![b.hash]);
        assert_eq!(store.block_info(b.hash).await.unwrap(), None);
        assert!(store.blocks_owned_by(u.id, &[b.hash]).await.unwrap().is_empty());
        assert_eq!(store.gc_stats(cutoff).await.unwrap(), cairn_meta::GcStats::default());
    }

    async fn a_referenced_block_is_never_collected(store) {
        let (u, actor) = user(&store, "u").await;
        let out = put(&store, &u, &actor, "/f", &["kept", "also kept"]).await;
        // In the trash it is still referenced.
        put(&store, &u, &actor, "/trashed", &["in the trash"]).await;
        store.delete_entry(u.home_ns, &p("/trashed"), &actor).await.unwrap();
        assert_eq!(store.gc_claim(past_everything(), 100).await.unwrap(), vec![]);
        // Asking to delete referenced, unclaimed blocks deletes nothing and never calls
        // the file deleter.
        let hashes: Vec<BlockHash> =
            ["kept", "also kept", "in the trash"].iter().map(|c| block(c).hash).collect();
        let mut called = false;
        let deleted = store
            .gc_delete(&hashes, |_| {
                called = true;
                async { Ok::<(), std::io::Error>(()) }
            })
            .await
            .unwrap();
        assert!(deleted.is_empty());
        assert!(!called, "no file may be deleted");
        for c in ["kept", "also kept", "in the trash"] {
            assert_eq!(refcount(&store, &block(c)).await, 1, "{c}");
        }
        assert_eq!(out.entry.size, 13);
    }

    async fn a_claimed_block_is_absent_until_uploaded_again(store) {
        let (u, actor) = user(&store, "u").await;
        let b = upload(&store, &u, &["racing"]).await[0];
        let claimed = store.gc_claim(past_everything(), 100).await.unwrap();
        assert_eq!(claimed, vec![b.hash]);

        // The check says "upload it", and a commit naming it is refused.
        assert!(store.blocks_owned_by(u.id, &[b.hash]).await.unwrap().is_empty());
        let err = store
            .commit_file(req(&u, &actor, "/f", vec![b], None))
            .await
            .unwrap_err();
        assert!(matches!(&err, MetaError::MissingBlocks(m) if m == &vec![b.hash]), "{err}");

        // An upload revives it: the claim is dropped and its grace period restarts.
        upload(&store, &u, &["racing"]).await;
        let info = store.block_info(b.hash).await.unwrap().unwrap();
        assert_eq!(info.gc_started, None);
        assert_eq!(info.size, 6);
        store.commit_file(req(&u, &actor, "/f", vec![b], None)).await.unwrap();
        // The collector that claimed it finds nothing to delete.
        assert_eq!(delete(&store, &claimed).await, vec![]);
        assert_eq!(refcount(&store, &b).await, 1);
    }

    async fn an_interrupted_collection_is_finished_by_the_next(store) {
        let (u, _) = user(&store, "u").await;
        let blocks = upload(&store, &u, &["one", "two"]).await;
        let claimed = store.gc_claim(past_everything(), 100).await.unwrap();
        assert_eq!(claimed.len(), 2);

        // Deleting the files fails: nothing is committed and the rows stay claimed.
        let err = store
            .gc_delete(&claimed, |_| async {
                Err(std::io::Error::other("disk on fire"))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, GcDeleteError::Files(_)), "{err}");
        for b in &blocks {
            let info = store.block_info(b.hash).await.unwrap().unwrap();
            assert!(info.gc_started.is_some());
        }
        assert_eq!(store.gc_stats(past_everything()).await.unwrap().claimed_blocks, 2);

        // The next run finds them, in pages, and deletes them.
        let mut sorted: Vec<BlockHash> = blocks.iter().map(|b| b.hash).collect();
        sorted.sort();
        let first = store.gc_claimed(None, 1).await.unwrap();
        assert_eq!(first, vec![sorted[0]]);
        let second = store.gc_claimed(Some(first[0]), 1).await.unwrap();
        assert_eq!(second, vec![sorted[1]]);
        assert_eq!(store.gc_claimed(Some(second[0]), 1).await.unwrap(), vec![]);
        assert_eq!(delete(&store, &[first[0], second[0]]).await, sorted);
        assert_eq!(store.gc_claimed(None, 10).await.unwrap(), vec![]);
    }

    async fn stray_files_are_adopted_as_claimed_and_an_upload_revives_them(store) {
        let (u, actor) = user(&store, "u").await;
        let known = upload(&store, &u, &["known"]).await[0];
        let stray = block("stray file");
        let revived = block("revived file");
        let adopted = store
            .gc_adopt_orphans(&[known.hash, stray.hash, revived.hash])
            .await
            .unwrap();
        let mut expected = vec![stray.hash, revived.hash];
        expected.sort();
        assert_eq!(adopted, expected);
        let info = store.block_info(stray.hash).await.unwrap().unwrap();
        assert_eq!((info.refcount, info.stored_size), (0, 0));
        assert!(info.gc_started.is_some());
        assert_eq!(store.block_info(known.hash).await.unwrap().unwrap().gc_started, None);
        // Adopting again changes nothing.
        assert!(store.gc_adopt_orphans(&[stray.hash]).await.unwrap().is_empty());

        // An upload of one of them in flight revives it with its real size.
        upload(&store, &u, &["revived file"]).await;
        let info = store.block_info(revived.hash).await.unwrap().unwrap();
        assert_eq!((info.size, info.gc_started), (12, None));
        store.commit_file(req(&u, &actor, "/r", vec![revived], None)).await.unwrap();

        assert_eq!(delete(&store, &adopted).await, vec![stray.hash]);
    }

    async fn retention_keeps_current_newest_and_young_versions(store) {
        let (u, actor) = user(&store, "u").await;
        // Five versions of /f; each has a block of its own and one shared by all.
        let mut revs = Vec::new();
        let mut base = None;
        for i in 1..=5 {
            let content = format!("version {i}");
            let blocks = upload(&store, &u, &["shared", &content]).await;
            let out = store.commit_file(req(&u, &actor, "/f", blocks, base)).await.unwrap();
            base = out.entry.rev;
            revs.push(out.entry.rev.unwrap());
        }
        // A trashed file with three versions.
        let mut base = None;
        for i in 1..=3 {
            let content = format!("trashed {i}");
            let blocks = upload(&store, &u, &[&content]).await;
            let out = store.commit_file(req(&u, &actor, "/t", blocks, base)).await.unwrap();
            base = out.entry.rev;
        }
        store.delete_entry(u.home_ns, &p("/t"), &actor).await.unwrap();
        assert_eq!(refcount(&store, &block("shared")).await, 5);

        // Everything is younger than a day: nothing goes, whatever keep says.
        assert_eq!(store.prune_versions(now_ms(), 86_400_000, 0).await.unwrap(), 0);

        // Old enough, but the newest two of /f (v5 current, v4) and of /t stay.
        let later = now_ms() + 1000;
        assert_eq!(store.prune_versions(later, 0, 2).await.unwrap(), 3 + 1);
        let left: Vec<_> = store
            .list_versions(u.home_ns, &p("/f"))
            .await
            .unwrap()
            .iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(left, vec![revs[4], revs[3]]);
        assert_eq!(refcount(&store, &block("shared")).await, 2);
        for i in 1..=3 {
            let info = store.block_info(block(&format!("version {i}")).hash).await.unwrap().unwrap();
            assert_eq!(info.refcount, 0, "version {i}");
            assert!(info.zero_since.is_some());
        }
        assert_eq!(refcount(&store, &block("version 4")).await, 1);
        assert_eq!(refcount(&store, &block("trashed 1")).await, 0);

        // keep 0: only the current version of each file survives, in the trash too.
        assert_eq!(store.prune_versions(later, 0, 0).await.unwrap(), 2);
        let left = store.list_versions(u.home_ns, &p("/f")).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, revs[4]);
        assert_eq!(refcount(&store, &block("trashed 2")).await, 0);
        assert_eq!(refcount(&store, &block("trashed 3")).await, 1);
        assert_eq!(store.prune_versions(later, 0, 0).await.unwrap(), 0);
        assert_eq!(store.stats().await.unwrap().versions, 2);

        // What retention released, collection takes; the current versions' blocks stay.
        let claimed = store.gc_claim(past_everything(), 1000).await.unwrap();
        assert_eq!(claimed.len(), 6);
        assert_eq!(delete(&store, &claimed).await.len(), 6);
        for c in ["shared", "version 5", "trashed 3"] {
            assert_eq!(refcount(&store, &block(c)).await, 1, "{c}");
        }
        let content = store.version_blocks(revs[4]).await.unwrap();
        assert_eq!(content, vec![block("shared"), block("version 5")]);
    }

    async fn retention_works_in_batches(store) {
        let (u, actor) = user(&store, "u").await;
        // More old versions than one batch holds (200), all sharing one block.
        let blocks = upload(&store, &u, &["a", "b"]).await;
        let mut base = None;
        for i in 0..230 {
            let b = vec![blocks[i % 2]];
            let out = store.commit_file(req(&u, &actor, "/f", b, base)).await.unwrap();
            base = out.entry.rev;
        }
        assert_eq!(store.prune_versions(now_ms() + 1000, 0, 10).await.unwrap(), 220);
        assert_eq!(store.list_versions(u.home_ns, &p("/f")).await.unwrap().len(), 10);
        assert_eq!(refcount(&store, &blocks[0]).await + refcount(&store, &blocks[1]).await, 10);
    }
}
