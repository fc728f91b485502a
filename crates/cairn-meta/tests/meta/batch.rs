//! Batches: many commits and folders in one transaction, per-item results; delete and
//! move preconditions; the journal's content fields.

use cairn_core::{content_hash, JournalSeq, VersionId};
use cairn_meta::{BatchItem, ChangeKind, EntryKind, FileCommit, MetaError};

use crate::common::*;

fn file(path: &str, blocks: Vec<cairn_meta::BlockRef>, base_rev: Option<VersionId>) -> BatchItem {
    BatchItem::File(FileCommit {
        path: p(path),
        blocks,
        mtime: Some(1_700_000_000_000),
        base_rev,
        autorename: false,
    })
}

backend_tests! {
    async fn batch_commits_in_order_with_consecutive_journal_numbers(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let head = store.journal_head(ns).await.unwrap();
        let a = upload(&store, &u, &["a"]).await;
        let b = upload(&store, &u, &["b", "bb"]).await;
        let items = vec![
            BatchItem::Mkdir(p("/d1")),
            BatchItem::Mkdir(p("/d1")),
            file("/d1/a", a.clone(), None),
            file("/d2/b", b.clone(), None),
        ];
        let results = store.commit_batch(ns, &actor, items).await.unwrap();
        assert_eq!(results.len(), 4);
        let entries: Vec<_> = results.into_iter().map(|r| r.unwrap().entry).collect();
        assert_eq!(entries[0].kind, EntryKind::Folder);
        assert_eq!(entries[1].id, entries[0].id, "an existing folder is fine");
        assert_eq!((entries[2].path.as_str(), entries[2].size), ("/d1/a", 1));
        assert_eq!(entries[3].size, 3);
        assert_eq!(entries[3].content_hash, Some(content_hash(b.iter().map(|x| &x.hash))));
        assert_eq!(
            changes(&store, ns, head).await,
            ["mkdir /d1", "commit /d1/a", "mkdir /d2", "commit /d2/b"]
        );
        let rows = journal(&store, ns).await;
        let seqs: Vec<i64> = rows.iter().map(|j| j.seq.0).collect();
        assert_eq!(seqs, (head.0 + 1..=head.0 + 4).collect::<Vec<_>>());
        assert_eq!(refcount(&store, &a[0]).await, 1);
        assert_eq!(store.stat(ns, &p("/d2/b")).await.unwrap().unwrap(), entries[3]);
    }

    async fn a_refused_item_is_reported_and_the_others_commit(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let v1 = put(&store, &u, &actor, "/f", &["v1"]).await.entry;
        put(&store, &u, &actor, "/file", &["x"]).await;
        let head = store.journal_head(ns).await.unwrap();
        let ok = upload(&store, &u, &["ok"]).await;
        let v2 = upload(&store, &u, &["v2"]).await;
        let items = vec![
            file("/f", v2.clone(), Some(VersionId(v1.rev.unwrap().0 + 1000))),
            file("/new", vec![block("never uploaded")], None),
            file("/file/below", ok.clone(), None),
            BatchItem::Mkdir(p("/file")),
            file("/good", ok.clone(), None),
            file("/f", v2.clone(), v1.rev),
        ];
        let results = store.commit_batch(ns, &actor, items).await.unwrap();
        match &results[0] {
            Err(MetaError::RevConflict { current: Some(c), .. }) => assert_eq!(c, &v1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(results[1], Err(MetaError::MissingBlocks(_))), "{:?}", results[1]);
        assert!(matches!(results[2], Err(MetaError::NotAFolder(_))), "{:?}", results[2]);
        assert!(matches!(results[3], Err(MetaError::AlreadyExists(_))), "{:?}", results[3]);
        assert_eq!(results[4].as_ref().unwrap().entry.path.as_str(), "/good");
        let updated = &results[5].as_ref().unwrap().entry;
        assert_eq!(updated.id, v1.id);
        assert_eq!(changes(&store, ns, head).await, ["commit /good", "commit /f"]);
        assert_eq!(refcount(&store, &ok[0]).await, 1, "the refused item's reference is rolled back");
    }

    async fn batch_quota_counts_earlier_items(store) {
        let u = store.create_user("q", "$argon2id$fake", false, Some(10)).await.unwrap();
        let actor = cairn_meta::Actor { user_id: u.id, device_id: None, device_name: "d".into() };
        let six = upload(&store, &u, &["123456"]).await;
        let five = upload(&store, &u, &["12345"]).await;
        let four = upload(&store, &u, &["1234"]).await;
        let results = store
            .commit_batch(u.home_ns, &actor, vec![
                file("/a", six, None),
                file("/b", five, None),
                file("/c", four, None),
            ])
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(MetaError::QuotaExceeded { used: 6, .. })), "{:?}", results[1]);
        assert!(results[2].is_ok(), "4 more bytes still fit");
        assert_eq!(store.usage_bytes(u.id).await.unwrap(), 10);
    }

    async fn delete_and_move_with_a_stale_base_rev_change_nothing(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let v1 = put(&store, &u, &actor, "/f", &["v1"]).await.entry;
        let b2 = upload(&store, &u, &["v2"]).await;
        let v2 = store.commit_file(req(&u, &actor, "/f", b2, v1.rev)).await.unwrap().entry;
        let head = store.journal_head(ns).await.unwrap();
        let err = store.delete_entry_at(ns, &p("/f"), v1.rev, &actor).await.unwrap_err();
        match err {
            MetaError::RevConflict { current: Some(c), .. } => assert_eq!(c, v2),
            other => panic!("{other:?}"),
        }
        let err = store.move_entry_at(ns, &p("/f"), &p("/g"), v1.rev, &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::RevConflict { .. }), "{err:?}");
        assert_eq!(store.journal_head(ns).await.unwrap(), head);
        assert_eq!(store.stat(ns, &p("/f")).await.unwrap(), Some(v2.clone()));

        let moved = store.move_entry_at(ns, &p("/f"), &p("/g"), v2.rev, &actor).await.unwrap();
        assert_eq!(moved.path.as_str(), "/g");
        store.delete_entry_at(ns, &p("/g"), v2.rev, &actor).await.unwrap();
        assert_eq!(store.stat(ns, &p("/g")).await.unwrap(), None);
    }

    async fn journal_rows_carry_their_versions_content(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let e = put(&store, &u, &actor, "/d/f", &["abc", "de"]).await.entry;
        store.move_entry(ns, &p("/d/f"), &p("/d/g"), &actor).await.unwrap();
        let rows = store.journal_since(ns, JournalSeq(0), 100).await.unwrap();
        let (mkdir, commit, moved) = (&rows[0], &rows[1], &rows[2]);
        assert_eq!((mkdir.size, mkdir.content_hash, mkdir.mtime), (None, None, None));
        assert_eq!(commit.kind, ChangeKind::Commit);
        assert_eq!((commit.size, commit.content_hash, commit.mtime), (Some(5), e.content_hash, Some(e.mtime)));
        assert_eq!((moved.size, moved.content_hash), (Some(5), e.content_hash));
    }
}

/// What a batch item's result says, without ids and times (two namespaces are
/// compared): the path, kind, size, content, file mtime and whether it was renamed, or
/// the kind of error.
fn summary(result: &Result<cairn_meta::CommitOutcome, MetaError>) -> String {
    match result {
        Ok(o) => {
            let e = &o.entry;
            let mtime = (e.kind == EntryKind::File).then_some(e.mtime);
            format!(
                "{} {:?} {} {:?} {:?} renamed={}",
                e.path, e.kind, e.size, e.content_hash, mtime, o.renamed
            )
        }
        Err(err) => {
            let debug = format!("{err:?}");
            let kind = debug.split([' ', '(', '{']).next().unwrap_or_default();
            format!("error {kind}")
        }
    }
}

backend_tests! {
    /// A batch is written in bulk when nothing in it is refused, item by item
    /// otherwise; either way it must do exactly what its items would do as separate
    /// commits and mkdirs. Random batches over a few clashing paths (case variants, a
    /// name that is a file in one folder and a folder in another, stale revisions) go
    /// to one user as batches and to another one item at a time.
    async fn a_batch_does_what_its_items_do_one_at_a_time(store) {
        use cairn_meta::{CommitFile, CommitOutcome};
        use rand::{rngs::StdRng, Rng, SeedableRng};

        let (batched, batched_actor) = user(&store, "batched").await;
        let (single, single_actor) = user(&store, "single").await;
        let contents: Vec<String> = (0..6).map(|i| format!("content {i}")).collect();
        let contents: Vec<&str> = contents.iter().map(String::as_str).collect();
        let blocks = upload(&store, &batched, &contents).await;
        upload(&store, &single, &contents).await;
        let folders = ["/a", "/A/b", "/a/B/c", "/d", "/D/x"];
        let names = ["x", "X", "y.txt", "b"];
        let mut rng = StdRng::seed_from_u64(20261205);
        for round in 0..40 {
            let heads = (
                store.journal_head(batched.home_ns).await.unwrap(),
                store.journal_head(single.home_ns).await.unwrap(),
            );
            // Each namespace has its own revision numbers: an item says which to use
            // (none, a stale one, the current one), and each side looks it up.
            // Every other round is calm: names that clash with no folder, no stale
            // revision, each file once; those batches go in bulk.
            let calm = round % 2 == 0;
            let names: &[&str] = if calm { &["f", "g.txt", "H"] } else { &names };
            let mut plan = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..rng.gen_range(1..12) {
                let folder = folders[rng.gen_range(0..folders.len())];
                if rng.gen_bool(0.2) {
                    plan.push((p(folder), None));
                    continue;
                }
                let path = p(&format!("{folder}/{}", names[rng.gen_range(0..names.len())]));
                if calm && !seen.insert(path.key()) {
                    continue;
                }
                let stale = !calm && rng.gen_range(0..10) == 0;
                let content: Vec<_> = (0..rng.gen_range(0..3))
                    .map(|_| blocks[rng.gen_range(0..blocks.len())])
                    .collect();
                plan.push((path, Some((stale, content))));
            }
            let mut sides = Vec::new();
            for ns in [batched.home_ns, single.home_ns] {
                let mut items = Vec::new();
                for (path, commit) in &plan {
                    items.push(match commit {
                        None => BatchItem::Mkdir(path.clone()),
                        Some((stale, content)) => {
                            let base_rev = if *stale {
                                Some(VersionId(999_999))
                            } else {
                                store.stat(ns, path).await.unwrap().and_then(|e| e.rev)
                            };
                            file(path.as_str(), content.clone(), base_rev)
                        }
                    });
                }
                sides.push(items);
            }
            let items = sides.pop().unwrap();
            let batch = sides.pop().unwrap();

            let in_batch = store
                .commit_batch(batched.home_ns, &batched_actor, batch)
                .await
                .unwrap();
            let mut one_by_one = Vec::new();
            for item in items {
                let ns = single.home_ns;
                let result = match item {
                    BatchItem::File(f) => {
                        store
                            .commit_file(CommitFile {
                                ns,
                                path: f.path,
                                blocks: f.blocks,
                                mtime: f.mtime,
                                base_rev: f.base_rev,
                                autorename: f.autorename,
                                actor: single_actor.clone(),
                            })
                            .await
                    }
                    BatchItem::Mkdir(path) => match store.stat(ns, &path).await.unwrap() {
                        Some(e) if e.kind == EntryKind::Folder => Ok(e),
                        Some(e) => Err(MetaError::AlreadyExists(e.path)),
                        None => store.mkdir(ns, &path, &single_actor).await,
                    }
                    .map(|entry| CommitOutcome { entry, renamed: false }),
                };
                one_by_one.push(result);
            }
            let in_batch: Vec<String> = in_batch.iter().map(summary).collect();
            let one_by_one: Vec<String> = one_by_one.iter().map(summary).collect();
            assert_eq!(in_batch, one_by_one, "round {round}");
            assert_eq!(
                changes(&store, batched.home_ns, heads.0).await,
                changes(&store, single.home_ns, heads.1).await,
                "round {round}"
            );
        }
        assert_eq!(tree(&store, batched.home_ns, "/").await, tree(&store, single.home_ns, "/").await);
    }
}
