//! Public links: create, find, list, revoke, and the download limit.

use cairn_core::{EntryId, UserId};
use cairn_meta::{LinkId, NewLink};

use crate::common::*;

fn new_link(token: &str, creator: UserId, ns: cairn_core::NamespaceId) -> NewLink {
    NewLink {
        token: token.to_owned(),
        creator,
        ns,
        entry: Some(EntryId(42)),
        password_hash: None,
        expires_at: None,
        max_downloads: Some(2),
        upload_only: false,
    }
}

backend_tests! {
    async fn links_are_created_listed_and_revoked_by_their_creator(store) {
        let (alice, _) = user(&store, "alice").await;
        let (bob, _) = user(&store, "bob").await;
        let mut drop = new_link("t-drop", alice.id, alice.home_ns);
        drop.entry = None;
        drop.upload_only = true;
        drop.max_downloads = None;
        drop.password_hash = Some("phc".into());
        let first = store.create_link(new_link("t-one", alice.id, alice.home_ns)).await.unwrap();
        let second = store.create_link(drop).await.unwrap();
        assert_eq!((first.downloads, first.upload_only, first.entry), (0, false, Some(EntryId(42))));
        assert_eq!((second.upload_only, second.entry), (true, None));
        assert_eq!(second.password_hash.as_deref(), Some("phc"));

        assert_eq!(store.link_by_token("t-one").await.unwrap(), Some(first.clone()));
        assert_eq!(store.link_by_token("t-none").await.unwrap(), None);
        let listed = store.links_of(alice.id).await.unwrap();
        assert_eq!(listed, vec![second.clone(), first.clone()], "newest first");
        assert!(store.links_of(bob.id).await.unwrap().is_empty());

        // Someone else's link is not there for them.
        assert!(!store.revoke_link(bob.id, first.id).await.unwrap());
        assert!(!store.revoke_link(alice.id, LinkId(999_999)).await.unwrap());
        assert!(store.link_by_token("t-one").await.unwrap().unwrap().revoked_at.is_none());
        assert!(store.revoke_link(alice.id, first.id).await.unwrap());
        let revoked = store.link_by_token("t-one").await.unwrap().unwrap();
        let at = revoked.revoked_at.expect("revoked");
        assert!(revoked.is_dead_at(at));
        // Again: still revoked, at the first time.
        assert!(store.revoke_link(alice.id, first.id).await.unwrap());
        assert_eq!(store.link_by_token("t-one").await.unwrap().unwrap().revoked_at, Some(at));
        assert!(!store.count_link_download(first.id).await.unwrap(), "revoked");
    }

    async fn downloads_stop_at_the_limit_and_at_expiry(store) {
        let (alice, _) = user(&store, "alice").await;
        let link = store.create_link(new_link("t-max", alice.id, alice.home_ns)).await.unwrap();
        assert!(store.count_link_download(link.id).await.unwrap());
        assert!(store.count_link_download(link.id).await.unwrap());
        assert!(!store.count_link_download(link.id).await.unwrap(), "the third is refused");
        let spent = store.link_by_token("t-max").await.unwrap().unwrap();
        assert_eq!(spent.downloads, 2);
        assert!(spent.is_dead_at(0));

        let mut expired = new_link("t-old", alice.id, alice.home_ns);
        expired.expires_at = Some(1);
        expired.max_downloads = None;
        let expired = store.create_link(expired).await.unwrap();
        assert!(expired.is_dead_at(2));
        assert!(!store.count_link_download(expired.id).await.unwrap());

        // Many at once never pass the limit together.
        let mut racy = new_link("t-race", alice.id, alice.home_ns);
        racy.max_downloads = Some(3);
        let racy = store.create_link(racy).await.unwrap();
        let tries = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.count_link_download(racy.id).await.unwrap() })
        });
        let mut granted = 0;
        for t in tries {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 3);
    }
}
