//! The trash: delete, list, restore, purge, expire.

use cairn_core::{JournalSeq, TrashId};
use cairn_meta::{ChangeKind, EntryKind, MetaError};

use crate::common::*;

backend_tests! {
    async fn a_deleted_file_comes_back_with_its_id_and_history(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let first = put(&store, &u, &actor, "/docs/f.txt", &["v1"]).await.entry;
        let blocks = upload(&store, &u, &["v2", "more"]).await;
        let second = store
            .commit_file(req(&u, &actor, "/docs/f.txt", blocks, first.rev))
            .await
            .unwrap()
            .entry;
        let history = store.list_versions(ns, &p("/docs/f.txt")).await.unwrap();
        assert_eq!(history.len(), 2);

        let id = store.delete_entry(ns, &p("/docs/f.txt"), &actor).await.unwrap();
        assert!(store.stat(ns, &p("/docs/f.txt")).await.unwrap().is_none());
        let items = store.list_trash(ns, None, 100).await.unwrap();
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!(item.id, id);
        assert_eq!((item.kind, item.path.as_str()), (EntryKind::File, "/docs/f.txt"));
        assert_eq!((item.size, item.file_count), (6, 1));
        assert_eq!(item.entry_id, first.id);
        assert_eq!(item.user_name, "u");
        assert_eq!(item.device_name.as_deref(), Some("laptop"));
        assert_eq!(store.trash_item(ns, id).await.unwrap().as_ref(), Some(item));

        let head = store.journal_head(ns).await.unwrap();
        let back = store.restore_trash(ns, id, &actor).await.unwrap();
        assert_eq!(back.id, first.id);
        assert_eq!(back.path, p("/docs/f.txt"));
        assert_eq!(back.rev, second.rev);
        assert_eq!(store.stat(ns, &p("/docs/f.txt")).await.unwrap(), Some(back.clone()));
        assert_eq!(store.list_versions(ns, &p("/docs/f.txt")).await.unwrap(), history);
        assert!(store.list_trash(ns, None, 100).await.unwrap().is_empty());
        let rows = store.journal_since(ns, head, 100).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].kind, ChangeKind::Restore);
        assert_eq!((rows[0].entry_id, rows[0].version_id), (first.id, second.rev));
        assert_eq!(rows[0].path, p("/docs/f.txt"));

        // The item is gone now: restoring or purging it again says so.
        let err = store.restore_trash(ns, id, &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchTrashItem(i) if i == id), "{err:?}");
        let err = store.purge_trash(ns, id, &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchTrashItem(_)), "{err:?}");
    }

    async fn a_folder_comes_back_whole_and_missing_parents_are_recreated(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/a/b/one.txt", &["1"]).await;
        put(&store, &u, &actor, "/a/b/c/two.txt", &["2"]).await;
        put(&store, &u, &actor, "/a/keep.txt", &["k"]).await;
        let inner = store.delete_entry(ns, &p("/a/b"), &actor).await.unwrap();
        let outer = store.delete_entry(ns, &p("/a"), &actor).await.unwrap();
        let items = store.list_trash(ns, None, 100).await.unwrap();
        let summary: Vec<(TrashId, &str, i64, i64)> = items
            .iter()
            .map(|i| (i.id, i.path.as_str(), i.file_count, i.size))
            .collect();
        // Newest first; the folder deleted second holds only what was still live.
        assert_eq!(summary, [(outer, "/a", 1, 1), (inner, "/a/b", 2, 2)]);
        assert!(tree(&store, ns, "/").await.is_empty());

        let head = store.journal_head(ns).await.unwrap();
        let back = store.restore_trash(ns, inner, &actor).await.unwrap();
        assert_eq!((back.path.as_str(), back.kind), ("/a/b", EntryKind::Folder));
        assert_eq!(
            tree(&store, ns, "/").await,
            ["/a", "/a/b", "/a/b/c", "/a/b/c/two.txt", "/a/b/one.txt"]
        );
        assert_eq!(
            changes(&store, ns, head).await,
            [
                "mkdir /a",
                "restore /a/b",
                "restore /a/b/c",
                "restore /a/b/c/two.txt",
                "restore /a/b/one.txt",
            ]
        );
        // /a exists again (as a new folder), so the old /a comes back beside it.
        let back = store.restore_trash(ns, outer, &actor).await.unwrap();
        assert_eq!(back.path.as_str(), "/a (restored)");
        assert_eq!(
            tree(&store, ns, "/").await,
            [
                "/a",
                "/a (restored)",
                "/a (restored)/keep.txt",
                "/a/b",
                "/a/b/c",
                "/a/b/c/two.txt",
                "/a/b/one.txt",
            ]
        );
    }

    async fn a_taken_path_gives_non_clobbering_names(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let mut ids = Vec::new();
        for content in ["first", "second"] {
            put(&store, &u, &actor, "/r.txt", &[content]).await;
            ids.push(store.delete_entry(ns, &p("/r.txt"), &actor).await.unwrap());
        }
        let live = put(&store, &u, &actor, "/r.txt", &["live"]).await.entry;
        let a = store.restore_trash(ns, ids[0], &actor).await.unwrap();
        assert_eq!(a.path.as_str(), "/r (restored).txt");
        let b = store.restore_trash(ns, ids[1], &actor).await.unwrap();
        assert_eq!(b.path.as_str(), "/r (restored 2).txt");
        assert_eq!(store.stat(ns, &p("/r.txt")).await.unwrap(), Some(live));
        assert_eq!(b.content_hash, Some(block_content_hash("second")));

        // A name already near the length limit is shortened, not refused.
        let long = format!("/{}.txt", "n".repeat(250));
        put(&store, &u, &actor, &long, &["old"]).await;
        let id = store.delete_entry(ns, &p(&long), &actor).await.unwrap();
        put(&store, &u, &actor, &long, &["new"]).await;
        let back = store.restore_trash(ns, id, &actor).await.unwrap();
        let name = back.path.name().unwrap();
        assert!(name.len() <= 255 && name.ends_with("n (restored).txt"), "{name}");
    }

    async fn a_clash_in_another_case_is_a_clash(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/Doc.txt", &["mine"]).await;
        let id = store.delete_entry(ns, &p("/Doc.txt"), &actor).await.unwrap();
        put(&store, &u, &actor, "/doc.TXT", &["other"]).await;
        let back = store.restore_trash(ns, id, &actor).await.unwrap();
        assert_eq!(back.path.as_str(), "/Doc (restored).txt");
        // A restored folder's children follow it to its new name.
        put(&store, &u, &actor, "/Dir/x.txt", &["x"]).await;
        let id = store.delete_entry(ns, &p("/Dir"), &actor).await.unwrap();
        store.mkdir(ns, &p("/dir"), &actor).await.unwrap();
        let back = store.restore_trash(ns, id, &actor).await.unwrap();
        assert_eq!(back.path.as_str(), "/Dir (restored)");
        let x = store.stat(ns, &p("/dir (RESTORED)/X.TXT")).await.unwrap().unwrap();
        assert_eq!(x.path.as_str(), "/Dir (restored)/x.txt");
    }

    async fn a_restore_past_the_quota_is_refused(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/big", &["0123456789"]).await;
        let id = store.delete_entry(ns, &p("/big"), &actor).await.unwrap();
        store.set_quota("u", Some(15)).await.unwrap();
        put(&store, &u, &actor, "/other", &["abcdefgh"]).await;
        let head = store.journal_head(ns).await.unwrap();
        let err = store.restore_trash(ns, id, &actor).await.unwrap_err();
        assert!(
            matches!(err, MetaError::QuotaExceeded { quota: 15, used: 8, needed: 10 }),
            "{err:?}"
        );
        assert_eq!(store.journal_head(ns).await.unwrap(), head);
        assert_eq!(store.list_trash(ns, None, 10).await.unwrap().len(), 1);
        store.delete_entry(ns, &p("/other"), &actor).await.unwrap();
        store.restore_trash(ns, id, &actor).await.unwrap();
        assert_eq!(store.usage_bytes(u.id).await.unwrap(), 10);
    }

    async fn restore_by_path_takes_the_newest(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/same.txt", &["older"]).await;
        store.delete_entry(ns, &p("/same.txt"), &actor).await.unwrap();
        put(&store, &u, &actor, "/same.txt", &["newer"]).await;
        store.delete_entry(ns, &p("/same.txt"), &actor).await.unwrap();
        assert_eq!(store.list_trash(ns, None, 10).await.unwrap().len(), 2);
        let back = store.restore_trash_path(ns, &p("/SAME.txt"), &actor).await.unwrap();
        assert_eq!(back.content_hash, Some(block_content_hash("newer")));
        let left = store.list_trash(ns, None, 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].size, 5);
        let err = store.restore_trash_path(ns, &p("/never"), &actor).await.unwrap_err();
        assert!(matches!(&err, MetaError::NotFound(q) if q.as_str() == "/never"), "{err:?}");
    }

    async fn the_trash_pages_newest_first_and_is_per_namespace(store) {
        let (u, actor) = user(&store, "u").await;
        let (v, v_actor) = user(&store, "v").await;
        let ns = u.home_ns;
        let mut ids = Vec::new();
        for i in 0..5 {
            let path = format!("/f{i}");
            put(&store, &u, &actor, &path, &[&format!("c{i}")]).await;
            ids.push(store.delete_entry(ns, &p(&path), &actor).await.unwrap());
        }
        let page1 = store.list_trash(ns, None, 2).await.unwrap();
        let page2 = store.list_trash(ns, Some(page1[1].id), 2).await.unwrap();
        let page3 = store.list_trash(ns, Some(page2[1].id), 2).await.unwrap();
        let seen: Vec<TrashId> = page1.iter().chain(&page2).chain(&page3).map(|i| i.id).collect();
        ids.reverse();
        assert_eq!(seen, ids);

        // Another account sees none of it and cannot touch it by id.
        assert!(store.list_trash(v.home_ns, None, 10).await.unwrap().is_empty());
        assert!(store.trash_item(v.home_ns, ids[0]).await.unwrap().is_none());
        let err = store.restore_trash(v.home_ns, ids[0], &v_actor).await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchTrashItem(_)), "{err:?}");
        let err = store.purge_trash(v.home_ns, ids[0], &v_actor).await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchTrashItem(_)), "{err:?}");
        assert!(store.purge_all_trash(v.home_ns, &v_actor).await.unwrap().is_empty());
        assert_eq!(store.list_trash(ns, None, 10).await.unwrap().len(), 5);
    }

    async fn purge_drops_versions_and_references(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let shared = block("shared block");
        let v1 = put(&store, &u, &actor, "/p/a.txt", &["unique one", "shared block"]).await.entry;
        let blocks = upload(&store, &u, &["unique two"]).await;
        let v2 = store
            .commit_file(req(&u, &actor, "/p/a.txt", blocks, v1.rev))
            .await
            .unwrap()
            .entry;
        put(&store, &u, &actor, "/p/b.txt", &["unique three"]).await;
        put(&store, &u, &actor, "/kept.txt", &["shared block"]).await;
        assert_eq!(refcount(&store, &shared).await, 2);
        let versions_before = store.stats().await.unwrap().versions;

        let id = store.delete_entry(ns, &p("/p"), &actor).await.unwrap();
        // Deleting keeps every reference: the item can still come back.
        assert_eq!(refcount(&store, &shared).await, 2);
        let head = store.journal_head(ns).await.unwrap();
        let gone = store.purge_trash(ns, id, &actor).await.unwrap();
        assert_eq!((gone.id, gone.path.as_str(), gone.file_count), (id, "/p", 2));

        assert_eq!(store.stats().await.unwrap().versions, versions_before - 3);
        for rev in [v1.rev.unwrap(), v2.rev.unwrap()] {
            let err = store.version_blocks(rev).await.unwrap_err();
            assert!(matches!(err, MetaError::NoSuchVersion(_)), "{err:?}");
        }
        for content in ["unique one", "unique two", "unique three"] {
            let info = store.block_info(block(content).hash).await.unwrap().unwrap();
            assert_eq!(info.refcount, 0, "{content}");
            assert!(info.zero_since.is_some(), "{content}");
        }
        let info = store.block_info(shared.hash).await.unwrap().unwrap();
        assert_eq!((info.refcount, info.zero_since), (1, None));
        assert!(store.list_trash(ns, None, 10).await.unwrap().is_empty());

        let rows = store.journal_since(ns, head, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].kind, ChangeKind::Purge);
        assert_eq!((rows[0].path.as_str(), rows[0].entry_kind), ("/p", EntryKind::Folder));
        assert_eq!((rows[0].entry_id, rows[0].version_id), (gone.entry_id, None));
        assert_eq!(tree(&store, ns, "/").await, ["/kept.txt"]);
    }

    async fn purge_by_path_and_purge_all(store) {
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        for content in ["x1", "x2"] {
            put(&store, &u, &actor, "/x", &[content]).await;
            store.delete_entry(ns, &p("/x"), &actor).await.unwrap();
        }
        for name in ["/y", "/z/w"] {
            put(&store, &u, &actor, name, &[name]).await;
            store.delete_entry(ns, &p(name), &actor).await.unwrap();
        }
        let purged = store.purge_trash_path(ns, &p("/X"), &actor).await.unwrap();
        assert_eq!(purged.len(), 2, "every item deleted from /x goes");
        assert!(purged[0].id < purged[1].id);
        let err = store.purge_trash_path(ns, &p("/x"), &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::NotFound(_)), "{err:?}");

        let head = store.journal_head(ns).await.unwrap();
        let purged = store.purge_all_trash(ns, &actor).await.unwrap();
        let paths: Vec<&str> = purged.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["/y", "/z/w"]);
        assert!(store.list_trash(ns, None, 10).await.unwrap().is_empty());
        assert_eq!(changes(&store, ns, head).await, ["purge /y", "purge /z/w"]);
        assert!(store.purge_all_trash(ns, &actor).await.unwrap().is_empty());
        // /z itself is live and untouched.
        assert_eq!(tree(&store, ns, "/").await, ["/z"]);
        for content in ["x1", "x2", "/y", "/z/w"] {
            assert_eq!(refcount(&store, &block(content)).await, 0, "{content}");
        }
    }

    async fn expiry_purges_only_items_older_than_the_cutoff(store) {
        let (u, actor) = user(&store, "u").await;
        let (v, v_actor) = user(&store, "v").await;
        put(&store, &u, &actor, "/old", &["old"]).await;
        put(&store, &v, &v_actor, "/old too", &["old too"]).await;
        store.delete_entry(u.home_ns, &p("/old"), &actor).await.unwrap();
        store.delete_entry(v.home_ns, &p("/old too"), &v_actor).await.unwrap();
        let newest_old = store.list_trash(v.home_ns, None, 1).await.unwrap()[0].deleted_at;
        let cutoff = newest_old + 1;
        // Make sure the next delete is stamped at or after the cutoff.
        while now_ms() < cutoff {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        put(&store, &u, &actor, "/young", &["young"]).await;
        store.delete_entry(u.home_ns, &p("/young"), &actor).await.unwrap();

        let head = store.journal_head(u.home_ns).await.unwrap();
        assert_eq!(store.expire_trash(cutoff).await.unwrap(), 2);
        let left = store.list_trash(u.home_ns, None, 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].path.as_str(), "/young");
        assert!(store.list_trash(v.home_ns, None, 10).await.unwrap().is_empty());
        // The owner is journaled as the actor, with no device.
        let rows = store.journal_since(u.home_ns, head, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].kind.clone(), rows[0].user_id, rows[0].device_id), (ChangeKind::Purge, u.id, None));
        assert_eq!(store.expire_trash(cutoff).await.unwrap(), 0);
        assert_eq!(store.journal_head(u.home_ns).await.unwrap(), JournalSeq(head.0 + 1));
    }
}

/// The content hash of a one-block file with this content.
fn block_content_hash(content: &str) -> cairn_core::ContentHash {
    cairn_core::content_hash([block(content).hash].iter())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
