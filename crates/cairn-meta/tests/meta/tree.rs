//! mkdir, stat, list, move, copy, delete.

use cairn_core::JournalSeq;
use cairn_meta::{ChangeKind, EntryKind, MetaError};

use crate::common::*;

backend_tests! {
    async fn mkdir_creates_missing_parents(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let c = store.mkdir(ns, &p("/a/b/c"), &actor).await.unwrap();
        assert_eq!(c.path, p("/a/b/c"));
        assert_eq!(c.kind, EntryKind::Folder);
        assert_eq!((c.size, c.rev, c.content_hash), (0, None, None));
        assert_eq!(tree(&store, ns, "/").await, ["/a", "/a/b", "/a/b/c"]);
        assert_eq!(
            changes(&store, ns, JournalSeq(0)).await,
            ["mkdir /a", "mkdir /a/b", "mkdir /a/b/c"]
        );

        let head = store.journal_head(ns).await.unwrap();
        for (path, existing) in [("/a/b", "/a/b"), ("/A/B", "/a/b"), ("/", "/")] {
            let err = store.mkdir(ns, &p(path), &actor).await.unwrap_err();
            assert!(
                matches!(&err, MetaError::AlreadyExists(q) if q.as_str() == existing),
                "{path}: {err:?}"
            );
        }
        put(&store, &u, &actor, "/a/f", &["data"]).await;
        let err = store.mkdir(ns, &p("/a/f"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::AlreadyExists(q) if q.as_str() == "/a/f"), "{err:?}");
        let err = store.mkdir(ns, &p("/a/F/x/y"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::NotAFolder(q) if q.as_str() == "/a/f"), "{err:?}");
        assert_eq!(err.to_string(), "/a/f is a file, not a folder");
        // Only the commit of /a/f changed the namespace.
        assert_eq!(store.journal_head(ns).await.unwrap(), JournalSeq(head.0 + 1));
    }

    async fn paths_are_unique_by_key_and_keep_their_case(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        store.mkdir(ns, &p("/Docs"), &actor).await.unwrap();
        // stat matches case-insensitively and answers in the stored case.
        let docs = store.stat(ns, &p("/DOCS")).await.unwrap().unwrap();
        assert_eq!(docs.path, p("/Docs"));
        let err = store.mkdir(ns, &p("/docs"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::AlreadyExists(q) if q.as_str() == "/Docs"), "{err:?}");

        // Children take their parent's stored case.
        store.mkdir(ns, &p("/docs/Sub"), &actor).await.unwrap();
        let out = put(&store, &u, &actor, "/DOCS/sub/Read Me.TXT", &["x"]).await;
        assert_eq!(out.entry.path, p("/Docs/Sub/Read Me.TXT"));
        assert_eq!(tree(&store, ns, "/").await, ["/Docs", "/Docs/Sub", "/Docs/Sub/Read Me.TXT"]);
        let err = store.mkdir(ns, &p("/docs/sub/read me.txt"), &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::AlreadyExists(_)), "{err:?}");

        // Non-ASCII case folding: Ä and ä are the same name.
        store.mkdir(ns, &p("/Äpfel"), &actor).await.unwrap();
        let err = store.mkdir(ns, &p("/äPFEL"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::AlreadyExists(q) if q.as_str() == "/Äpfel"), "{err:?}");
    }

    async fn list_folder_pages_in_key_order(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let names = [
            "b", "A", "c.txt", "B2", "a b", "a-b", "a_b", "Z", "ä", "aa", "10", "9", "_x", "~y",
        ];
        for (i, name) in names.iter().enumerate() {
            let path = format!("/dir/{name}");
            if i % 2 == 0 {
                store.mkdir(ns, &p(&path), &actor).await.unwrap_or_else(|e| panic!("{path}: {e}"));
            } else {
                put(&store, &u, &actor, &path, &[name]).await;
            }
        }
        // Deeper entries and deleted ones are not listed.
        store.mkdir(ns, &p("/dir/b/deeper"), &actor).await.unwrap();
        put(&store, &u, &actor, "/dir/gone", &["gone"]).await;
        store.delete_entry(ns, &p("/dir/gone"), &actor).await.unwrap();

        let mut expected: Vec<String> = names.iter().map(|n| format!("/dir/{n}")).collect();
        // Bytewise order of the lowercased path, identical on both backends.
        expected.sort_by_key(|s| s.to_lowercase());

        let all = store.list_folder(ns, &p("/dir"), None, 1000).await.unwrap();
        let all: Vec<String> = all.iter().map(|e| e.path.as_str().to_owned()).collect();
        assert_eq!(all, expected);

        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_folder(ns, &p("/DIR"), cursor.as_deref(), 4).await.unwrap();
            assert!(page.len() <= 4);
            let Some(last) = page.last() else { break };
            cursor = Some(last.path.key());
            paged.extend(page.iter().map(|e| e.path.as_str().to_owned()));
        }
        assert_eq!(paged, expected);

        let root = store.list_folder(ns, &p("/"), None, 10).await.unwrap();
        assert_eq!(root.len(), 1);
        assert_eq!(root[0].path, p("/dir"));

        let err = store.list_folder(ns, &p("/dir/A"), None, 10).await.unwrap_err();
        assert!(matches!(&err, MetaError::NotAFolder(q) if q.as_str() == "/dir/A"), "{err:?}");
        let err = store.list_folder(ns, &p("/nope"), None, 10).await.unwrap_err();
        assert!(matches!(&err, MetaError::NotFound(q) if q.as_str() == "/nope"), "{err:?}");
        assert_eq!(err.to_string(), "/nope: no such file or folder");
    }

    async fn move_file_creates_target_parents(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let f = put(&store, &u, &actor, "/a.txt", &["one"]).await.entry;
        let head = store.journal_head(ns).await.unwrap();
        let moved = store.move_entry(ns, &p("/a.txt"), &p("/x/y/b.txt"), &actor).await.unwrap();
        assert_eq!(moved.path, p("/x/y/b.txt"));
        assert_eq!((moved.id, moved.rev, moved.content_hash), (f.id, f.rev, f.content_hash));
        assert_eq!(store.stat(ns, &p("/a.txt")).await.unwrap(), None);
        assert_eq!(store.stat(ns, &p("/x/y/b.txt")).await.unwrap(), Some(moved));
        assert_eq!(
            changes(&store, ns, head).await,
            ["mkdir /x", "mkdir /x/y", "move /a.txt -> /x/y/b.txt"]
        );
        let last = journal(&store, ns).await.pop().unwrap();
        assert_eq!(last.kind, ChangeKind::Move { from: p("/a.txt") });
        assert_eq!((last.entry_id, last.version_id), (f.id, f.rev));
        assert_eq!(last.entry_kind, EntryKind::File);
    }

    async fn move_folder_moves_subtree(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/src/a/b.txt", &["b"]).await;
        put(&store, &u, &actor, "/src/c.txt", &["c"]).await;
        store.mkdir(ns, &p("/src/a/d"), &actor).await.unwrap();
        // A sibling whose name extends the folder's must not move along.
        put(&store, &u, &actor, "/src2/keep.txt", &["k"]).await;
        put(&store, &u, &actor, "/src.txt", &["k2"]).await;
        let before = store.stat(ns, &p("/src/a/b.txt")).await.unwrap().unwrap();
        let head = store.journal_head(ns).await.unwrap();

        let moved = store.move_entry(ns, &p("/src"), &p("/dst"), &actor).await.unwrap();
        assert_eq!(moved.path, p("/dst"));
        assert_eq!(
            tree(&store, ns, "/").await,
            ["/dst", "/dst/a", "/dst/a/b.txt", "/dst/a/d", "/dst/c.txt", "/src.txt", "/src2", "/src2/keep.txt"]
        );
        let after = store.stat(ns, &p("/dst/a/b.txt")).await.unwrap().unwrap();
        assert_eq!((after.id, after.rev), (before.id, before.rev));
        assert_eq!(
            changes(&store, ns, head).await,
            [
                "move /src -> /dst",
                "move /src/a -> /dst/a",
                "move /src/a/b.txt -> /dst/a/b.txt",
                "move /src/a/d -> /dst/a/d",
                "move /src/c.txt -> /dst/c.txt",
            ]
        );
        // The old path is free again.
        store.mkdir(ns, &p("/src/a"), &actor).await.unwrap();
    }

    async fn case_only_rename(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/photos/x.jpg", &["jpg"]).await;
        let head = store.journal_head(ns).await.unwrap();
        let moved = store.move_entry(ns, &p("/photos"), &p("/Photos"), &actor).await.unwrap();
        assert_eq!(moved.path, p("/Photos"));
        assert_eq!(tree(&store, ns, "/").await, ["/Photos", "/Photos/x.jpg"]);
        store.move_entry(ns, &p("/photos/x.jpg"), &p("/PHOTOS/X.JPG"), &actor).await.unwrap();
        // The child keeps its parent's stored case; its own name takes the new case.
        assert_eq!(tree(&store, ns, "/").await, ["/Photos", "/Photos/X.JPG"]);
        assert_eq!(
            changes(&store, ns, head).await,
            [
                "move /photos -> /Photos",
                "move /photos/x.jpg -> /Photos/x.jpg",
                "move /Photos/x.jpg -> /Photos/X.JPG",
            ]
        );
        // A move to the very same path changes nothing and journals nothing.
        let head = store.journal_head(ns).await.unwrap();
        store.move_entry(ns, &p("/Photos"), &p("/Photos"), &actor).await.unwrap();
        assert_eq!(store.journal_head(ns).await.unwrap(), head);
    }

    async fn bad_moves_are_refused_and_change_nothing(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        store.mkdir(ns, &p("/a/b"), &actor).await.unwrap();
        put(&store, &u, &actor, "/f", &["f"]).await;
        put(&store, &u, &actor, "/g", &["g"]).await;
        let head = store.journal_head(ns).await.unwrap();
        let tree_before = tree(&store, ns, "/").await;

        for (from, to) in [("/a", "/a/b/c"), ("/a", "/A/x"), ("/a", "/a/b"), ("/", "/x"), ("/a", "/")] {
            let err = store.move_entry(ns, &p(from), &p(to), &actor).await.unwrap_err();
            assert!(matches!(err, MetaError::InvalidMove { .. }), "{from} -> {to}: {err:?}");
            let err = store.copy_entry(ns, &p(from), &p(to), &actor).await.unwrap_err();
            assert!(matches!(err, MetaError::InvalidMove { .. }), "copy {from} -> {to}: {err:?}");
        }
        let err = store.move_entry(ns, &p("/a"), &p("/a/b/c"), &actor).await.unwrap_err();
        assert_eq!(err.to_string(), "cannot move or copy /a to /a/b/c: a folder cannot go inside itself");

        let err = store.move_entry(ns, &p("/f"), &p("/G"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::AlreadyExists(q) if q.as_str() == "/g"), "{err:?}");
        let err = store.move_entry(ns, &p("/f"), &p("/a"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::AlreadyExists(q) if q.as_str() == "/a"), "{err:?}");
        let err = store.move_entry(ns, &p("/nope"), &p("/x"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::NotFound(q) if q.as_str() == "/nope"), "{err:?}");
        let err = store.move_entry(ns, &p("/a"), &p("/f/a"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::NotAFolder(q) if q.as_str() == "/f"), "{err:?}");

        assert_eq!(store.journal_head(ns).await.unwrap(), head);
        assert_eq!(tree(&store, ns, "/").await, tree_before);
    }

    async fn copy_file_and_folder_add_references(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let blocks = upload(&store, &u, &["b1", "b2"]).await;
        let (b1, b2) = (blocks[0], blocks[1]);
        let f = store
            .commit_file(req(&u, &actor, "/f", vec![b1, b2, b1], None))
            .await
            .unwrap()
            .entry;
        assert_eq!((refcount(&store, &b1).await, refcount(&store, &b2).await), (2, 1));

        let head = store.journal_head(ns).await.unwrap();
        let g = store.copy_entry(ns, &p("/f"), &p("/G"), &actor).await.unwrap();
        assert_eq!(g.path, p("/G"));
        assert_ne!(g.id, f.id);
        assert_ne!(g.rev, f.rev);
        assert_eq!((g.size, g.content_hash, g.mtime), (f.size, f.content_hash, f.mtime));
        assert_eq!(
            store.version_blocks(g.rev.unwrap()).await.unwrap(),
            vec![b1, b2, b1]
        );
        assert_eq!((refcount(&store, &b1).await, refcount(&store, &b2).await), (4, 2));
        let row = journal(&store, ns).await.pop().unwrap();
        assert_eq!(row.kind, ChangeKind::Copy { from: p("/f") });
        assert_eq!((row.seq.0, row.version_id), (head.0 + 1, g.rev));

        put(&store, &u, &actor, "/d/x", &["x"]).await;
        put(&store, &u, &actor, "/d/e/y", &["b2"]).await;
        store.mkdir(ns, &p("/d/empty"), &actor).await.unwrap();
        let head = store.journal_head(ns).await.unwrap();
        let d2 = store.copy_entry(ns, &p("/d"), &p("/backup/d2"), &actor).await.unwrap();
        assert_eq!((d2.path.as_str(), d2.kind), ("/backup/d2", EntryKind::Folder));
        assert_eq!(
            tree(&store, ns, "/backup").await,
            ["/backup/d2", "/backup/d2/e", "/backup/d2/e/y", "/backup/d2/empty", "/backup/d2/x"]
        );
        assert_eq!(tree(&store, ns, "/d").await, ["/d/e", "/d/e/y", "/d/empty", "/d/x"]);
        assert_eq!(refcount(&store, &b2).await, 4);
        assert_eq!(
            changes(&store, ns, head).await,
            [
                "mkdir /backup",
                "copy /d -> /backup/d2",
                "copy /d/e -> /backup/d2/e",
                "copy /d/e/y -> /backup/d2/e/y",
                "copy /d/empty -> /backup/d2/empty",
                "copy /d/x -> /backup/d2/x",
            ]
        );

        let err = store.copy_entry(ns, &p("/f"), &p("/g"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::AlreadyExists(q) if q.as_str() == "/G"), "{err:?}");
        let err = store.copy_entry(ns, &p("/d"), &p("/D/inner"), &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::InvalidMove { .. }), "{err:?}");
        let err = store.copy_entry(ns, &p("/f"), &p("/F"), &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::AlreadyExists(_)), "{err:?}");
    }

    async fn copy_grants_possession_of_blocks(store) {
        // An account that copies a file it can read gains the blocks' possession: it
        // may then commit them elsewhere without uploading.
        let (u, actor) = user(&store, "u").await;
        let (other, _) = user(&store, "other").await;
        let blocks = upload(&store, &u, &["shared"]).await;
        store.commit_file(req(&u, &actor, "/f", blocks.clone(), None)).await.unwrap();
        let hashes: Vec<_> = blocks.iter().map(|b| b.hash).collect();
        assert!(store.blocks_owned_by(other.id, &hashes).await.unwrap().is_empty());
        let other_actor = cairn_meta::Actor { user_id: other.id, device_id: None, device_name: "web".into() };
        store.copy_entry(u.home_ns, &p("/f"), &p("/g"), &other_actor).await.unwrap();
        assert_eq!(store.blocks_owned_by(other.id, &hashes).await.unwrap().len(), 1);
    }

    async fn delete_subtree_then_recreate(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let blocks = upload(&store, &u, &["t1"]).await;
        let f = store.commit_file(req(&u, &actor, "/t/a/b.txt", blocks.clone(), None)).await.unwrap().entry;
        put(&store, &u, &actor, "/t/c.txt", &["t2"]).await;
        put(&store, &u, &actor, "/t2.txt", &["t3"]).await;
        let stats_before = store.stats().await.unwrap();
        let head = store.journal_head(ns).await.unwrap();

        store.delete_entry(ns, &p("/T"), &actor).await.unwrap();
        for gone in ["/t", "/t/a", "/t/a/b.txt", "/t/c.txt"] {
            assert_eq!(store.stat(ns, &p(gone)).await.unwrap(), None, "{gone}");
        }
        assert_eq!(tree(&store, ns, "/").await, ["/t2.txt"]);
        assert_eq!(
            changes(&store, ns, head).await,
            ["delete /t/c.txt", "delete /t/a/b.txt", "delete /t/a", "delete /t"]
        );
        let rows = journal(&store, ns).await;
        let del = rows.iter().find(|r| r.path == p("/t/a/b.txt")).unwrap();
        assert_eq!((del.entry_id, del.version_id), (f.id, f.rev));

        // Versions and references stay for the trash.
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.versions, stats_before.versions);
        assert_eq!(stats.block_references, stats_before.block_references);
        assert_eq!(stats.live_files, stats_before.live_files - 2);
        assert_eq!(refcount(&store, &blocks[0]).await, 1);

        // The paths are free again.
        store.mkdir(ns, &p("/t/a"), &actor).await.unwrap();
        let again = store.commit_file(req(&u, &actor, "/t/a/b.txt", blocks.clone(), None)).await.unwrap();
        assert!(!again.renamed);
        assert_ne!(again.entry.id, f.id);
        assert_eq!(refcount(&store, &blocks[0]).await, 2);

        let err = store.delete_entry(ns, &p("/t/nope"), &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::NotFound(_)), "{err:?}");
        let err = store.delete_entry(ns, &p("/"), &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::RootFolder), "{err:?}");
        store.delete_entry(ns, &p("/t2.txt"), &actor).await.unwrap();
        assert_eq!(store.stat(ns, &p("/t2.txt")).await.unwrap(), None);
    }
}
