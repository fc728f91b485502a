//! Committing files: revisions, conflicts, block possession, reference counts.

use cairn_core::{content_hash, JournalSeq, VersionId};
use cairn_meta::{ChangeKind, EntryKind, MetaError};

use crate::common::*;

backend_tests! {
    async fn new_file_then_update(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let blocks = upload(&store, &u, &["hello ", "world"]).await;
        let out = store.commit_file(req(&u, &actor, "/docs/a.txt", blocks.clone(), None)).await.unwrap();
        assert!(!out.renamed);
        let e = out.entry;
        assert_eq!((e.path.as_str(), e.kind, e.size), ("/docs/a.txt", EntryKind::File, 11));
        assert_eq!(e.content_hash, Some(content_hash(blocks.iter().map(|b| &b.hash))));
        assert_eq!(e.mtime, 1_700_000_000_000);
        let r1 = e.rev.unwrap();
        assert_eq!(store.version_blocks(r1).await.unwrap(), blocks);
        assert_eq!(store.stat(ns, &p("/docs/a.txt")).await.unwrap(), Some(e.clone()));
        assert_eq!(changes(&store, ns, JournalSeq(0)).await, ["mkdir /docs", "commit /docs/a.txt"]);

        let blocks2 = upload(&store, &u, &["hello ", "there"]).await;
        let mut r = req(&u, &actor, "/DOCS/A.TXT", blocks2.clone(), Some(r1));
        r.mtime = None;
        let e2 = store.commit_file(r).await.unwrap().entry;
        assert_eq!((e2.id, e2.path.as_str()), (e.id, "/docs/a.txt"));
        let r2 = e2.rev.unwrap();
        assert!(r2 > r1);
        assert!(e2.mtime >= e2.modified_at - 1000, "mtime defaults to now");
        assert_eq!(store.version_blocks(r2).await.unwrap(), blocks2);
        assert_eq!(store.version_blocks(r1).await.unwrap(), blocks, "old versions stay");
        assert_eq!(refcount(&store, &blocks[0]).await, 2);
        assert_eq!(refcount(&store, &blocks[1]).await, 1);
        assert_eq!(refcount(&store, &blocks2[1]).await, 1);
        let last = journal(&store, ns).await.pop().unwrap();
        assert_eq!((last.kind, last.version_id, last.entry_id), (ChangeKind::Commit, Some(r2), e.id));
        assert_eq!((last.user_id, last.device_id), (u.id, actor.device_id));
    }

    async fn empty_file_and_unknown_version(store) {
        let (u, actor) = user(&store, "u").await;
        let e = store.commit_file(req(&u, &actor, "/empty", vec![], None)).await.unwrap().entry;
        assert_eq!((e.size, e.content_hash), (0, Some(content_hash([]))));
        assert_eq!(store.version_blocks(e.rev.unwrap()).await.unwrap(), vec![]);
        let err = store.version_blocks(VersionId(987_654)).await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchVersion(VersionId(987_654))), "{err:?}");
    }

    async fn stale_base_rev_is_a_conflict(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let r1 = put(&store, &u, &actor, "/f.txt", &["v1"]).await.entry.rev;
        let b2 = upload(&store, &u, &["v2"]).await;
        let current = store.commit_file(req(&u, &actor, "/f.txt", b2, r1)).await.unwrap().entry;
        let b3 = upload(&store, &u, &["v3"]).await;
        let stats = store.stats().await.unwrap();
        let head = store.journal_head(ns).await.unwrap();

        // Based on an old revision.
        let err = store.commit_file(req(&u, &actor, "/f.txt", b3.clone(), r1)).await.unwrap_err();
        match &err {
            MetaError::RevConflict { path, current: Some(c) } => {
                assert_eq!(path.as_str(), "/f.txt");
                assert_eq!(c, &current);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("has changed"), "{err}");
        // "New file" where a file exists.
        let err = store.commit_file(req(&u, &actor, "/F.txt", b3.clone(), None)).await.unwrap_err();
        assert!(matches!(&err, MetaError::RevConflict { current: Some(c), .. } if c == &current), "{err:?}");
        // Based on a revision of a file that is gone.
        let err = store.commit_file(req(&u, &actor, "/other.txt", b3.clone(), r1)).await.unwrap_err();
        assert!(matches!(err, MetaError::RevConflict { current: None, .. }), "{err:?}");
        // Onto a folder.
        store.mkdir(ns, &p("/dir"), &actor).await.unwrap();
        let head2 = store.journal_head(ns).await.unwrap();
        let err = store.commit_file(req(&u, &actor, "/Dir", b3.clone(), None)).await.unwrap_err();
        assert!(matches!(&err, MetaError::IsAFolder(q) if q.as_str() == "/dir"), "{err:?}");
        let err = store.commit_file(req(&u, &actor, "/", b3.clone(), None)).await.unwrap_err();
        assert!(matches!(err, MetaError::IsAFolder(_)), "{err:?}");

        assert_eq!(store.journal_head(ns).await.unwrap(), JournalSeq(head.0 + 1));
        assert_eq!(head2, JournalSeq(head.0 + 1));
        assert_eq!(store.stats().await.unwrap().versions, stats.versions);
        assert_eq!(store.stat(ns, &p("/f.txt")).await.unwrap(), Some(current));
    }

    async fn autorename_stores_a_conflict_copy(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let orig = put(&store, &u, &actor, "/notes/todo.txt", &["mine"]).await.entry;

        let mut names = Vec::new();
        for content in ["theirs 1", "theirs 2", "theirs 3"] {
            let blocks = upload(&store, &u, &[content]).await;
            let mut r = req(&u, &actor, "/notes/todo.txt", blocks, None);
            r.autorename = true;
            let out = store.commit_file(r).await.unwrap();
            assert!(out.renamed);
            let name = out.entry.name_for_test();
            assert!(name.starts_with("todo (conflicted copy from laptop "), "{name}");
            assert!(name.ends_with(".txt"), "{name}");
            assert_eq!(out.entry.path.parent().unwrap().as_str(), "/notes");
            names.push(name);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 3, "each conflict copy has its own name: {names:?}");
        assert_eq!(store.stat(ns, &p("/notes/todo.txt")).await.unwrap(), Some(orig.clone()));
        assert_eq!(tree(&store, ns, "/notes").await.len(), 4);

        // Onto a folder: the copy goes next to it.
        store.mkdir(ns, &p("/notes/sub"), &actor).await.unwrap();
        let blocks = upload(&store, &u, &["file for sub"]).await;
        let mut r = req(&u, &actor, "/notes/sub", blocks, None);
        r.autorename = true;
        let out = store.commit_file(r).await.unwrap();
        assert!(out.renamed);
        assert!(out.entry.name_for_test().starts_with("sub (conflicted copy from laptop "));

        // Based on a file that was deleted since: the edit survives at its path.
        store.delete_entry(ns, &p("/notes/todo.txt"), &actor).await.unwrap();
        let blocks = upload(&store, &u, &["edited after delete"]).await;
        let mut r = req(&u, &actor, "/notes/todo.txt", blocks, orig.rev);
        r.autorename = true;
        let out = store.commit_file(r).await.unwrap();
        assert!(!out.renamed);
        assert_eq!(out.entry.path.as_str(), "/notes/todo.txt");
        assert_ne!(out.entry.id, orig.id);
    }

    async fn identical_content_is_a_no_op(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let blocks = upload(&store, &u, &["same"]).await;
        let first = store.commit_file(req(&u, &actor, "/s", blocks.clone(), None)).await.unwrap().entry;
        let head = store.journal_head(ns).await.unwrap();
        let stats = store.stats().await.unwrap();
        // With no base, a stale base, or the right base: nothing to do.
        for base in [None, Some(VersionId(1)), first.rev] {
            let out = store.commit_file(req(&u, &actor, "/s", blocks.clone(), base)).await.unwrap();
            assert_eq!((out.entry, out.renamed), (first.clone(), false));
        }
        assert_eq!(store.journal_head(ns).await.unwrap(), head);
        assert_eq!(store.stats().await.unwrap(), stats);
        // A new mtime is a change.
        let mut r = req(&u, &actor, "/s", blocks.clone(), first.rev);
        r.mtime = Some(42);
        let out = store.commit_file(r).await.unwrap().entry;
        assert_ne!(out.rev, first.rev);
        assert_eq!(out.mtime, 42);
    }

    async fn missing_blocks_change_nothing(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/existing", &["present"]).await;
        let have = upload(&store, &u, &["have"]).await[0];
        let (x, y) = (block("not uploaded x"), block("not uploaded y"));
        let present = block("present");
        let stats = store.stats().await.unwrap();
        let head = store.journal_head(ns).await.unwrap();

        let r = req(&u, &actor, "/new/file", vec![have, x, present, y, x], None);
        let err = store.commit_file(r).await.unwrap_err();
        match &err {
            MetaError::MissingBlocks(missing) => assert_eq!(missing, &vec![x.hash, y.hash]),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().starts_with("2 blocks are not on the server"), "{err}");

        assert_eq!(store.stats().await.unwrap(), stats, "no version, entry or reference");
        assert_eq!(store.journal_head(ns).await.unwrap(), head);
        assert_eq!(store.stat(ns, &p("/new")).await.unwrap(), None, "no parent created");
        assert_eq!(refcount(&store, &have).await, 0);
        assert_eq!(refcount(&store, &present).await, 1);
        assert_eq!(store.block_info(x.hash).await.unwrap(), None);

        // A wrong size for a known block is refused too.
        let mut lying = have;
        lying.size += 1;
        let err = store.commit_file(req(&u, &actor, "/new/file", vec![lying], None)).await.unwrap_err();
        assert!(matches!(err, MetaError::BlockSizeMismatch { claimed, stored, .. } if claimed == 5 && stored == 4), "{err:?}");
        assert_eq!(store.stats().await.unwrap(), stats);
    }

    async fn blocks_of_another_account_cannot_be_claimed(store) {
        let (a, a_actor) = user(&store, "alice").await;
        let (b, b_actor) = user(&store, "bob").await;
        let secret = put(&store, &a, &a_actor, "/secret", &["alice's secret"]).await;
        let hash = block("alice's secret");
        assert!(store.blocks_owned_by(b.id, &[hash.hash]).await.unwrap().is_empty());
        assert_eq!(store.blocks_owned_by(a.id, &[hash.hash]).await.unwrap().len(), 1);

        let err = store.commit_file(req(&b, &b_actor, "/stolen", vec![hash], None)).await.unwrap_err();
        assert!(matches!(&err, MetaError::MissingBlocks(m) if m == &vec![hash.hash]), "{err:?}");
        assert_eq!(refcount(&store, &hash).await, 1);

        // Once bob uploads it himself, he may use it; storage is still shared.
        upload(&store, &b, &["alice's secret"]).await;
        let mine = store.commit_file(req(&b, &b_actor, "/mine", vec![hash], None)).await.unwrap();
        assert_eq!(mine.entry.content_hash, secret.entry.content_hash);
        assert_eq!(refcount(&store, &hash).await, 2);
        assert_eq!(store.stats().await.unwrap().blocks, 1);
    }

    async fn block_bookkeeping(store) {
        let (u, actor) = user(&store, "u").await;
        let b = block("block");
        store.record_block_upload(u.id, b.hash, b.size, 3).await.unwrap();
        store.record_block_upload(u.id, b.hash, b.size, 3).await.unwrap();
        let info = store.block_info(b.hash).await.unwrap().unwrap();
        assert_eq!((info.size, info.stored_size, info.refcount), (5, 3, 0));
        assert!(info.zero_since.is_some(), "an unreferenced block has a grace clock");
        store.commit_file(req(&u, &actor, "/f", vec![b, b], None)).await.unwrap();
        let info = store.block_info(b.hash).await.unwrap().unwrap();
        assert_eq!((info.refcount, info.zero_since), (2, None));
        // Uploading a referenced block again leaves its count alone.
        store.record_block_upload(u.id, b.hash, b.size, 3).await.unwrap();
        assert_eq!(store.block_info(b.hash).await.unwrap().unwrap().zero_since, None);

        // Possession lookups go through in chunks.
        let mut uploaded = Vec::new();
        for i in 0..600 {
            let b = block(&format!("many {i}"));
            store.record_block_upload(u.id, b.hash, b.size, 1).await.unwrap();
            uploaded.push(b.hash);
        }
        let mut asked = uploaded.clone();
        asked.extend((0..100).map(|i| block(&format!("never {i}")).hash));
        let owned = store.blocks_owned_by(u.id, &asked).await.unwrap();
        assert_eq!(owned.len(), 600);
        assert!(uploaded.iter().all(|h| owned.contains(h)));

        // A commit naming 600 blocks (several insert batches) keeps its order.
        let blocks: Vec<_> = (0..600).map(|i| block(&format!("many {i}"))).collect();
        let e = store.commit_file(req(&u, &actor, "/big", blocks.clone(), None)).await.unwrap().entry;
        assert_eq!(store.version_blocks(e.rev.unwrap()).await.unwrap(), blocks);
    }

    async fn parents_are_created_but_not_through_files(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/a/b/c.txt", &["c"]).await;
        assert_eq!(tree(&store, ns, "/").await, ["/a", "/a/b", "/a/b/c.txt"]);
        let blocks = upload(&store, &u, &["d"]).await;
        let err = store.commit_file(req(&u, &actor, "/a/b/c.txt/d", blocks, None)).await.unwrap_err();
        assert!(matches!(&err, MetaError::NotAFolder(q) if q.as_str() == "/a/b/c.txt"), "{err:?}");
    }
}

/// The last segment of an entry's path.
trait NameForTest {
    fn name_for_test(&self) -> String;
}

impl NameForTest for cairn_meta::Entry {
    fn name_for_test(&self) -> String {
        self.path.name().unwrap().to_owned()
    }
}
