//! What fsck and the scrub ask the metadata store: which blocks must exist, which files
//! a damaged block breaks, and forgetting possession of a lost block.

use cairn_core::BlockHash;
use cairn_meta::{DamagedFile, ReferencedTotals};

use crate::common::*;

backend_tests! {
    async fn referenced_blocks_page_in_hash_order_and_skip_unreferenced(store) {
        let (u, actor) = user(&store, "u").await;
        let contents: Vec<String> = (0..7).map(|i| format!("block number {i}")).collect();
        let refs: Vec<&str> = contents.iter().map(String::as_str).collect();
        put(&store, &u, &actor, "/f.bin", &refs).await;
        // Uploaded but never committed: nothing demands it.
        upload(&store, &u, &["uploaded, never committed"]).await;

        let mut expected: Vec<BlockHash> = refs.iter().map(|c| block(c).hash).collect();
        expected.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.referenced_blocks(after, 3).await.unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = Some(last.hash);
            for b in &page {
                assert_eq!(b.size, 14, "recorded plaintext size");
                seen.push(b.hash);
            }
        }
        assert_eq!(seen, expected);
        assert_eq!(
            store.referenced_totals().await.unwrap(),
            ReferencedTotals { blocks: 7, bytes: 7 * 14 }
        );
        assert!(store.block_is_referenced(expected[0]).await.unwrap());
        assert!(!store
            .block_is_referenced(block("uploaded, never committed").hash)
            .await
            .unwrap());
        assert!(!store.block_is_referenced(BlockHash::of(b"unknown")).await.unwrap());
    }

    async fn files_referencing_names_every_version_live_old_and_trashed(store) {
        let (u, actor) = user(&store, "alice").await;
        let (v, vactor) = user(&store, "victor").await;
        let old = put(&store, &u, &actor, "/docs/Report.txt", &["shared", "old tail"]).await;
        let blocks = upload(&store, &u, &["shared", "new tail"]).await;
        let new = store
            .commit_file(req(&u, &actor, "/docs/Report.txt", blocks, old.entry.rev))
            .await
            .unwrap();
        let gone = put(&store, &u, &actor, "/trash-me.txt", &["shared"]).await;
        store.delete_entry(u.home_ns, &p("/trash-me.txt"), &actor).await.unwrap();
        let theirs = put(&store, &v, &vactor, "/v.txt", &["new tail", "shared"]).await;
        put(&store, &u, &actor, "/clean.txt", &["unrelated"]).await;

        let shared = block("shared").hash;
        let found = store.files_referencing(&[shared, shared]).await.unwrap();
        let expect = vec![
            DamagedFile {
                ns: u.home_ns,
                owner: "alice".into(),
                path: p("/docs/Report.txt"),
                version: old.entry.rev.unwrap(),
                is_current: false,
                in_trash: false,
                blocks: vec![shared],
            },
            DamagedFile {
                ns: u.home_ns,
                owner: "alice".into(),
                path: p("/docs/Report.txt"),
                version: new.entry.rev.unwrap(),
                is_current: true,
                in_trash: false,
                blocks: vec![shared],
            },
            DamagedFile {
                ns: u.home_ns,
                owner: "alice".into(),
                path: p("/trash-me.txt"),
                version: gone.entry.rev.unwrap(),
                is_current: true,
                in_trash: true,
                blocks: vec![shared],
            },
            DamagedFile {
                ns: v.home_ns,
                owner: "victor".into(),
                path: p("/v.txt"),
                version: theirs.entry.rev.unwrap(),
                is_current: true,
                in_trash: false,
                blocks: vec![shared],
            },
        ];
        assert_eq!(found, expect);

        // A version naming two damaged blocks is listed once, with both.
        let tail = block("new tail").hash;
        let found = store.files_referencing(&[tail, shared]).await.unwrap();
        let theirs = found.iter().find(|f| f.owner == "victor").unwrap();
        let mut both = vec![tail, shared];
        both.sort();
        assert_eq!(theirs.blocks, both);
        assert_eq!(found.len(), 4);
        assert!(store.files_referencing(&[]).await.unwrap().is_empty());
        assert!(store.files_referencing(&[BlockHash::of(b"x")]).await.unwrap().is_empty());
    }

    async fn forgetting_possession_makes_every_account_upload_the_block_again(store) {
        let (u, actor) = user(&store, "u").await;
        let (v, vactor) = user(&store, "v").await;
        put(&store, &u, &actor, "/a", &["lost block", "kept block"]).await;
        put(&store, &v, &vactor, "/b", &["lost block"]).await;
        let (lost, kept) = (block("lost block").hash, block("kept block").hash);

        assert_eq!(store.forget_block_possession(lost).await.unwrap(), 2);
        assert!(store.blocks_owned_by(u.id, &[lost, kept]).await.unwrap() == [kept].into());
        assert!(store.blocks_owned_by(v.id, &[lost]).await.unwrap().is_empty());
        // The files still name it, so it is still demanded: fsck keeps reporting them.
        assert!(store.block_is_referenced(lost).await.unwrap());
        assert_eq!(store.files_referencing(&[lost]).await.unwrap().len(), 2);

        // The re-upload restores possession, and a commit naming it works again.
        let again = upload(&store, &u, &["lost block", "kept block"]).await;
        let rev = store.stat(u.home_ns, &p("/a")).await.unwrap().unwrap().rev;
        store.commit_file(req(&u, &actor, "/a", again, rev)).await.unwrap();
        assert_eq!(store.forget_block_possession(BlockHash::of(b"none")).await.unwrap(), 0);
    }
}

/// A block garbage collection has claimed is being deleted: nothing may demand it, even
/// if (through some other bug) a reference to it remained.
async fn claimed_blocks_are_not_demanded(store: cairn_meta::MetaStore, url: String) {
    use sqlx::{Connection, Executor};
    let (u, actor) = user(&store, "u").await;
    put(&store, &u, &actor, "/f", &["kept", "claimed"]).await;
    let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
    raw.execute("UPDATE blocks SET gc_started = 1 WHERE size = 7")
        .await
        .unwrap();
    raw.close().await.unwrap();
    let listed: Vec<BlockHash> = store
        .referenced_blocks(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|b| b.hash)
        .collect();
    assert_eq!(listed, vec![block("kept").hash]);
    assert!(!store
        .block_is_referenced(block("claimed").hash)
        .await
        .unwrap());
    assert_eq!(
        store.referenced_totals().await.unwrap(),
        ReferencedTotals {
            blocks: 1,
            bytes: 4
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_blocks_are_not_demanded_sqlite() {
    run_raw(Backend::Sqlite, claimed_blocks_are_not_demanded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_blocks_are_not_demanded_postgres() {
    run_raw(Backend::Postgres, claimed_blocks_are_not_demanded).await;
}
