//! Quotas: a file is charged to the owner of the namespace it lives in, and the early
//! checks (`space_of`, `check_quota_of`, `check_room_for_blocks`) say what the commit
//! will.

use cairn_meta::{CommitFile, MetaError, Role};

use crate::common::*;

backend_tests! {
    async fn a_shared_folder_is_charged_to_its_owner(store) {
        let (alice, alice_actor) = user(&store, "alice").await;
        let (bob, bob_actor) = user(&store, "bob").await;
        store.set_quota("bob", Some(10)).await.unwrap();
        store.mkdir(alice.home_ns, &p("/Team"), &alice_actor).await.unwrap();
        let team = store.share_folder(alice.home_ns, &p("/Team"), &alice_actor).await.unwrap();
        store.add_member(team, bob.id, Role::Editor, &alice_actor).await.unwrap();

        // Alice has no quota: the folder has room for anything, whatever Bob's is.
        let space = store.space_of(team).await.unwrap();
        assert_eq!(space.owner, alice.id);
        assert_eq!(space.owner_name, "alice");
        assert_eq!((space.quota_bytes, space.usage_bytes), (None, 0));
        assert_eq!(space.available_bytes(), None);
        store.check_quota_of(team, 1 << 40).await.unwrap();

        // Bob's 20 bytes in the folder: past his own quota, but charged to Alice.
        let blocks = upload(&store, &bob, &["0123456789", "abcdefghij"]).await;
        store
            .commit_file(CommitFile { ns: team, ..req(&bob, &bob_actor, "/big.txt", blocks, None) })
            .await
            .unwrap();
        assert_eq!(store.space_of(team).await.unwrap().usage_bytes, 20);
        assert_eq!(store.usage_bytes(alice.id).await.unwrap(), 20);
        assert_eq!(store.usage_bytes(bob.id).await.unwrap(), 0);

        // Bob's home is his own: the same early answer the commit then gives.
        let home = store.space_of(bob.home_ns).await.unwrap();
        assert_eq!((home.owner, home.quota_bytes, home.available_bytes()), (bob.id, Some(10), Some(10)));
        assert!(matches!(
            store.check_quota_of(bob.home_ns, 20).await,
            Err(MetaError::QuotaExceeded { quota: 10, used: 0, needed: 20 })
        ));
        let blocks = upload(&store, &bob, &["0123456789", "abcdefghij"]).await;
        assert!(matches!(
            store.commit_file(req(&bob, &bob_actor, "/big.txt", blocks, None)).await,
            Err(MetaError::QuotaExceeded { quota: 10, used: 0, needed: 20 })
        ));

        // Alice's quota, once she has one, is the folder's.
        store.set_quota("alice", Some(25)).await.unwrap();
        let space = store.space_of(team).await.unwrap();
        assert_eq!((space.quota_bytes, space.available_bytes()), (Some(25), Some(5)));
        store.check_quota_of(team, 5).await.unwrap();
        assert!(store.check_quota_of(team, 6).await.is_err());
    }

    async fn blocks_are_refused_only_when_no_writable_folder_has_room(store) {
        let (alice, alice_actor) = user(&store, "alice").await;
        let (bob, bob_actor) = user(&store, "bob").await;
        let (carol, _) = user(&store, "carol").await;
        put(&store, &bob, &bob_actor, "/mine.txt", &["12345"]).await;
        store.set_quota("bob", Some(5)).await.unwrap();
        // Bob's home is full, and he may write nowhere else.
        assert!(matches!(
            store.check_room_for_blocks(&bob).await,
            Err(MetaError::QuotaExceeded { quota: 5, used: 5, .. })
        ));

        store.mkdir(alice.home_ns, &p("/Team"), &alice_actor).await.unwrap();
        let team = store.share_folder(alice.home_ns, &p("/Team"), &alice_actor).await.unwrap();
        // Reading Alice's folder gives him nowhere to put blocks.
        let membership = store.add_member(team, bob.id, Role::Viewer, &alice_actor).await.unwrap();
        assert_eq!(membership.role, Role::Viewer);
        assert!(store.check_room_for_blocks(&bob).await.is_err());
        // Editing it does: his blocks may become files there, charged to Alice.
        store.remove_member(team, bob.id, &alice_actor).await.unwrap();
        store.add_member(team, bob.id, Role::Editor, &alice_actor).await.unwrap();
        store.check_room_for_blocks(&bob).await.unwrap();
        // Until Alice's own quota is full too.
        store.set_quota("alice", Some(0)).await.unwrap();
        assert!(store.check_room_for_blocks(&bob).await.is_err());
        // An account with room in its own home is never refused.
        store.check_room_for_blocks(&carol).await.unwrap();
    }
}
