//! Users, devices, tokens, usage; connecting.

use cairn_core::{DeviceId, JournalSeq, NamespaceId, UserId};
use cairn_meta::{MetaError, MetaStore, TokenKind, TokenOwner};

use crate::common::*;

backend_tests! {
    async fn users_are_created_and_found(store) {
        assert_eq!(store.user_count().await.unwrap(), 0);
        let alice = store.create_user("alice", "hash-a", true, None).await.unwrap();
        let bob = store.create_user("bob", "hash-b", false, Some(1 << 30)).await.unwrap();
        assert_eq!(store.user_count().await.unwrap(), 2);
        assert_ne!(alice.home_ns, bob.home_ns);
        assert!(alice.is_admin && !bob.is_admin);

        assert_eq!(store.user_by_name("alice").await.unwrap(), Some(alice.clone()));
        assert_eq!(store.user_by_name("Alice").await.unwrap(), None, "names are exact");
        assert_eq!(store.user_by_id(bob.id).await.unwrap(), Some(bob.clone()));
        assert_eq!(store.user_by_id(UserId(999_999)).await.unwrap(), None);
        assert_eq!(store.list_users().await.unwrap(), vec![alice.clone(), bob.clone()]);

        let err = store.create_user("alice", "x", false, None).await.unwrap_err();
        assert!(matches!(&err, MetaError::UserExists(n) if n == "alice"), "{err:?}");
        assert_eq!(err.to_string(), "a user named \"alice\" already exists");
        assert_eq!(store.user_count().await.unwrap(), 2);

        // A new home namespace is empty, with its root present and its journal at 0.
        assert_eq!(store.journal_head(alice.home_ns).await.unwrap(), JournalSeq(0));
        let root = store.stat(alice.home_ns, &p("/")).await.unwrap().unwrap();
        assert!(root.path.is_root());
        assert!(store.list_folder(alice.home_ns, &p("/"), None, 100).await.unwrap().is_empty());
        assert_eq!(store.stat(NamespaceId(999_999), &p("/")).await.unwrap(), None);
    }

    async fn devices_and_tokens(store) {
        let alice = store.create_user("alice", "h", false, None).await.unwrap();
        let bob = store.create_user("bob", "h", false, None).await.unwrap();
        let laptop = store.create_device(alice.id, "laptop").await.unwrap();
        assert_eq!(store.device(laptop.id).await.unwrap(), Some(laptop.clone()));
        assert_eq!(store.device(DeviceId(999_999)).await.unwrap(), None);

        let t1 = [1u8; 32];
        let t2 = [2u8; 32];
        store.create_token(alice.id, Some(laptop.id), &t1).await.unwrap();
        store.create_token(bob.id, None, &t2).await.unwrap();

        let TokenOwner { user: owner, device, .. } = store.token_owner(&t1).await.unwrap().unwrap();
        assert_eq!((owner.id, device), (alice.id, Some(laptop.id)));
        let TokenOwner { user: owner, device, .. } = store.token_owner(&t2).await.unwrap().unwrap();
        assert_eq!((owner.id, device), (bob.id, None));
        assert_eq!(store.token_owner(&[3u8; 32]).await.unwrap(), None);

        assert!(store.delete_token(&t1).await.unwrap());
        assert!(!store.delete_token(&t1).await.unwrap());
        assert_eq!(store.token_owner(&t1).await.unwrap(), None);
        assert!(store.token_owner(&t2).await.unwrap().is_some());
    }

    async fn web_sessions_end_when_idle_or_expired(store) {
        let alice = store.create_user("alice", "h", false, None).await.unwrap();
        let (live, idle, expired) = ([4u8; 32], [5u8; 32], [6u8; 32]);
        store.create_web_session(alice.id, &live, 60_000, 3_600_000).await.unwrap();
        store.create_web_session(alice.id, &idle, 0, 3_600_000).await.unwrap();
        store.create_web_session(alice.id, &expired, 60_000, 0).await.unwrap();

        let owner = store.token_owner(&live).await.unwrap().unwrap();
        assert_eq!(owner.user.id, alice.id);
        assert!(matches!(owner.kind, TokenKind::Web { idle_ms: 60_000, .. }), "{owner:?}");
        assert_eq!(store.token_owner(&idle).await.unwrap(), None, "idle too long");
        assert_eq!(store.token_owner(&expired).await.unwrap(), None, "past its expiry");
        // An ended session is gone, not just refused.
        assert!(!store.delete_token(&idle).await.unwrap());
        assert!(!store.delete_token(&expired).await.unwrap());

        store.create_token(alice.id, None, &[7u8; 32]).await.unwrap();
        let api = store.token_owner(&[7u8; 32]).await.unwrap().unwrap();
        assert_eq!(api.kind, TokenKind::Api);
    }

    async fn usage_counts_live_current_versions(store) {
        let (alice, actor) = user(&store, "alice").await;
        let (bob, bob_actor) = user(&store, "bob").await;
        assert_eq!(store.usage_bytes(alice.id).await.unwrap(), 0);
        put(&store, &alice, &actor, "/a.txt", &["12345", "678"]).await;
        put(&store, &alice, &actor, "/d/b.txt", &["1234567890"]).await;
        put(&store, &bob, &bob_actor, "/bob.txt", &["xx"]).await;
        assert_eq!(store.usage_bytes(alice.id).await.unwrap(), 18);
        assert_eq!(store.usage_bytes(bob.id).await.unwrap(), 2);
        store.delete_entry(alice.home_ns, &p("/d"), &actor).await.unwrap();
        assert_eq!(store.usage_bytes(alice.id).await.unwrap(), 8);
    }
}

#[tokio::test]
async fn sqlite_in_memory_and_bad_urls() {
    let store = MetaStore::connect("sqlite::memory:").await.unwrap();
    assert!(!store.is_postgres());
    let (alice, actor) = user(&store, "alice").await;
    put(&store, &alice, &actor, "/x/y.txt", &["hello"]).await;
    assert_eq!(tree(&store, alice.home_ns, "/").await, ["/x", "/x/y.txt"]);
    assert!(store.check_consistency().await.unwrap().is_empty());

    let err = MetaStore::connect("mysql://localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::UnsupportedUrl(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_file_uses_wal_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/meta.db?mode=rwc", dir.path().display());
    let ns = {
        let store = MetaStore::connect(&url).await.unwrap();
        let (alice, actor) = user(&store, "alice").await;
        put(&store, &alice, &actor, "/keep.txt", &["kept"]).await;
        assert!(dir.path().join("meta.db-wal").exists(), "WAL mode is on");
        store.close().await;
        alice.home_ns
    };
    // Migrations are recorded: opening again runs none and keeps the data.
    let store = MetaStore::connect(&url).await.unwrap();
    assert!(store.stat(ns, &p("/keep.txt")).await.unwrap().is_some());
    assert_eq!(store.user_count().await.unwrap(), 1);
}
