//! The journal: one row per changed entry, consecutive numbers, per namespace.

use cairn_core::{JournalSeq, NamespaceId};
use cairn_meta::{ChangeKind, EntryKind, MetaError};

use crate::common::*;

backend_tests! {
    async fn every_change_appends_consecutive_rows(store) {
        let (u, actor) = user(&store, "u").await;
        let (other, other_actor) = user(&store, "other").await;
        let ns = u.home_ns;
        put(&store, &u, &actor, "/a/one.txt", &["1"]).await;
        store.mkdir(ns, &p("/b"), &actor).await.unwrap();
        store.move_entry(ns, &p("/a"), &p("/b/a"), &actor).await.unwrap();
        store.copy_entry(ns, &p("/b/a/one.txt"), &p("/two.txt"), &actor).await.unwrap();
        store.delete_entry(ns, &p("/b"), &actor).await.unwrap();
        put(&store, &other, &other_actor, "/elsewhere", &["e"]).await;

        let rows = journal(&store, ns).await;
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, (1..=rows.len() as i64).collect::<Vec<_>>());
        assert_eq!(store.journal_head(ns).await.unwrap(), JournalSeq(rows.len() as i64));
        assert_eq!(
            changes(&store, ns, JournalSeq(0)).await,
            [
                "mkdir /a",
                "commit /a/one.txt",
                "mkdir /b",
                "move /a -> /b/a",
                "move /a/one.txt -> /b/a/one.txt",
                "copy /b/a/one.txt -> /two.txt",
                "delete /b/a/one.txt",
                "delete /b/a",
                "delete /b",
            ]
        );
        assert!(rows.iter().all(|r| r.ns == ns && r.user_id == u.id && r.device_id == actor.device_id));
        assert_eq!(rows[0].entry_kind, EntryKind::Folder);
        assert_eq!(rows[1].entry_kind, EntryKind::File);
        assert_eq!(rows[3].kind, ChangeKind::Move { from: p("/a") });
        assert!(rows.windows(2).all(|w| w[0].created_at <= w[1].created_at));

        // Paging.
        let page = store.journal_since(ns, JournalSeq(3), 2).await.unwrap();
        assert_eq!(page.iter().map(|r| r.seq.0).collect::<Vec<_>>(), [4, 5]);
        assert!(store.journal_since(ns, JournalSeq(9), 10).await.unwrap().is_empty());

        // Namespaces are numbered independently.
        assert_eq!(store.journal_head(other.home_ns).await.unwrap(), JournalSeq(1));
        let err = store.journal_head(NamespaceId(424_242)).await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchNamespace(_)), "{err:?}");
        let err = store.mkdir(NamespaceId(424_242), &p("/x"), &actor).await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchNamespace(_)), "{err:?}");
    }

    async fn the_commit_hook_hears_each_write_after_it_commits(store) {
        use std::sync::{Arc, Mutex};
        let (u, actor) = user(&store, "u").await;
        let ns = u.home_ns;
        let heard: Arc<Mutex<Vec<(NamespaceId, JournalSeq)>>> = Arc::default();
        // The hook reads the head through a fresh query: it must already see the write.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let heard = heard.clone();
            store.on_commit(Arc::new(move |ns, seq| {
                heard.lock().unwrap().push((ns, seq));
                let _ = tx.send((ns, seq));
            }));
        }
        store.mkdir(ns, &p("/a/b"), &actor).await.unwrap();
        let (hns, seq) = rx.recv().await.unwrap();
        assert_eq!(store.journal_head(hns).await.unwrap(), seq);
        put(&store, &u, &actor, "/a/f", &["1"]).await;
        // A write that fails changes nothing and is not heard of.
        assert!(store.mkdir(ns, &p("/a/f/x"), &actor).await.is_err());
        store.delete_entry(ns, &p("/a"), &actor).await.unwrap();
        assert_eq!(*heard.lock().unwrap(), [
            (ns, JournalSeq(2)),
            (ns, JournalSeq(3)),
            (ns, JournalSeq(6)),
        ]);
    }
}
