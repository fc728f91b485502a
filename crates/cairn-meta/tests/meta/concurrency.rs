//! Many writers at once: no spurious failures, no lost updates, a gap-free journal.

use std::collections::HashSet;

use cairn_core::JournalSeq;
use cairn_meta::{ChangeKind, MetaError, MetaStore};

use crate::common::*;

/// Commits `content` to `path`, re-reading the base revision after each conflict, as a
/// sync client would. Returns how many conflicts it met.
async fn commit_with_retry(
    store: &MetaStore,
    user: &cairn_meta::User,
    actor: &cairn_meta::Actor,
    path: &str,
    content: &str,
) -> u32 {
    let blocks = upload(store, user, &[content]).await;
    let mut conflicts = 0;
    loop {
        let base = store
            .stat(user.home_ns, &p(path))
            .await
            .unwrap()
            .and_then(|e| e.rev);
        match store
            .commit_file(req(user, actor, path, blocks.clone(), base))
            .await
        {
            Ok(out) => {
                assert!(!out.renamed);
                return conflicts;
            }
            Err(MetaError::RevConflict { .. }) => conflicts += 1,
            Err(other) => panic!("spurious failure committing {path}: {other}"),
        }
        assert!(conflicts < 1000, "no progress on {path}");
    }
}

backend_tests! {
    async fn concurrent_block_records_are_group_committed_per_account(store) {
        let (u, _) = user(&store, "u").await;
        let (v, _) = user(&store, "v").await;
        let mut handles = Vec::new();
        for i in 0..60 {
            let store = store.clone();
            let owner = if i % 3 == 0 { v.clone() } else { u.clone() };
            handles.push(tokio::spawn(async move {
                // Every third block is uploaded by both accounts.
                let b = block(&format!("block {}", i / 2));
                store.record_block_upload(owner.id, b.hash, b.size, 1).await.unwrap();
                (owner.id, b.hash)
            }));
        }
        let mut expected: std::collections::HashMap<_, HashSet<_>> = Default::default();
        for h in handles {
            let (owner, hash) = h.await.unwrap();
            expected.entry(owner).or_default().insert(hash);
        }
        let all: Vec<_> = (0..30).map(|i| block(&format!("block {i}")).hash).collect();
        for who in [&u, &v] {
            let owned = store.blocks_owned_by(who.id, &all).await.unwrap();
            assert_eq!(owned, expected[&who.id], "{}", who.name);
            for hash in &owned {
                let info = store.block_info(*hash).await.unwrap().unwrap();
                assert_eq!((info.refcount, info.zero_since.is_some()), (0, true));
            }
        }
    }

    async fn concurrent_commits_to_same_and_different_files(store) {
        let (u, actor) = user(&store, "u").await;
        let (v, v_actor) = user(&store, "v").await;
        const TASKS: usize = 20;
        const ROUNDS: usize = 4;
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            let (user, actor) = if t % 5 == 4 { (v.clone(), v_actor.clone()) } else { (u.clone(), actor.clone()) };
            handles.push(tokio::spawn(async move {
                for round in 0..ROUNDS {
                    // Half the tasks fight over one file per namespace; the others each
                    // own a file (in a folder they all create on first use). All share
                    // one block, so its count is updated from every task.
                    let path = if t % 2 == 0 { "/shared.txt".to_owned() } else { format!("/own/{t}.txt") };
                    let content = format!("task {t} round {round}");
                    let blocks = upload(&store, &user, &[&content, "common block"]).await;
                    loop {
                        let base = store.stat(user.home_ns, &p(&path)).await.unwrap().and_then(|e| e.rev);
                        match store.commit_file(req(&user, &actor, &path, blocks.clone(), base)).await {
                            Ok(_) => break,
                            Err(MetaError::RevConflict { .. }) if t % 2 == 0 => continue,
                            Err(e) => panic!("task {t}: spurious failure: {e}"),
                        }
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }

        for user in [&u, &v] {
            let rows = journal(&store, user.home_ns).await;
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq.0).collect();
            assert_eq!(seqs, (1..=rows.len() as i64).collect::<Vec<_>>(), "gap-free journal");
            assert_eq!(store.journal_head(user.home_ns).await.unwrap(), JournalSeq(rows.len() as i64));
        }
        // Every successful commit is in the journal exactly once.
        let mut commits = 0;
        for user in [&u, &v] {
            commits += journal(&store, user.home_ns).await.iter().filter(|r| r.kind == ChangeKind::Commit).count();
        }
        assert_eq!(commits, TASKS * ROUNDS);
        assert_eq!(refcount(&store, &block("common block")).await, (TASKS * ROUNDS) as i64);
        let mkdirs = journal(&store, u.home_ns).await.iter().filter(|r| r.kind == ChangeKind::Mkdir).count();
        assert_eq!(mkdirs, 1, "the shared parent folder is created once");
    }

    async fn concurrent_sync_clients_lose_no_update(store) {
        let (u, actor) = user(&store, "u").await;
        let mut handles = Vec::new();
        for t in 0..20 {
            let (store, u, actor) = (store.clone(), u.clone(), actor.clone());
            handles.push(tokio::spawn(async move {
                commit_with_retry(&store, &u, &actor, "/contended.txt", &format!("writer {t}")).await
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        // 20 versions, each based on the one before: nothing overwritten blindly.
        let rows = journal(&store, u.home_ns).await;
        let versions: Vec<_> = rows.iter().filter_map(|r| r.version_id).collect();
        assert_eq!(versions.len(), 20);
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
    }

    async fn concurrent_autorename_keeps_every_copy(store) {
        let (u, actor) = user(&store, "u").await;
        let mut handles = Vec::new();
        for t in 0..20 {
            let (store, u, actor) = (store.clone(), u.clone(), actor.clone());
            handles.push(tokio::spawn(async move {
                let blocks = upload(&store, &u, &[&format!("new file from {t}")]).await;
                let mut r = req(&u, &actor, "/inbox/same.txt", blocks, None);
                r.autorename = true;
                store.commit_file(r).await.unwrap_or_else(|e| panic!("task {t}: {e}"))
            }));
        }
        let mut renamed = 0;
        let mut paths = HashSet::new();
        for h in handles {
            let out = h.await.unwrap();
            renamed += usize::from(out.renamed);
            assert!(paths.insert(out.entry.path.key()), "two writers got {}", out.entry.path);
        }
        assert_eq!(renamed, 19);
        assert_eq!(tree(&store, u.home_ns, "/inbox").await.len(), 20);
    }

    async fn concurrent_tree_operations(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let mut handles = Vec::new();
        for t in 0..20 {
            let (store, u, actor) = (store.clone(), u.clone(), actor.clone());
            handles.push(tokio::spawn(async move {
                let dir = format!("/t{t}");
                put(&store, &u, &actor, &format!("{dir}/a/f.txt"), &[&format!("f{t}"), "shared"]).await;
                store.copy_entry(ns, &p(&dir), &p(&format!("{dir}-copy")), &actor).await.unwrap();
                store.move_entry(ns, &p(&format!("{dir}-copy")), &p(&format!("/moved/{t}")), &actor).await.unwrap();
                store.delete_entry(ns, &p(&dir), &actor).await.unwrap();
                // Everyone also races to create the same folder: exactly one wins.
                match store.mkdir(ns, &p("/common"), &actor).await {
                    Ok(_) | Err(MetaError::AlreadyExists(_)) => {}
                    Err(e) => panic!("task {t}: {e}"),
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let listing = store.list_folder(ns, &p("/moved"), None, 100).await.unwrap();
        assert_eq!(listing.len(), 20);
        assert!(store.stat(ns, &p("/common")).await.unwrap().is_some());
        assert_eq!(refcount(&store, &block("shared")).await, 40);
        let rows = journal(&store, ns).await;
        assert_eq!(rows.last().unwrap().seq.0, rows.len() as i64);
    }
}
