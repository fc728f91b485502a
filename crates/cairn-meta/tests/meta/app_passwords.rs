//! App passwords: made, listed, looked up by their hash, revoked; and what password
//! changes and account deletion do to them.

use cairn_meta::{Actor, AppPasswordOwner, MetaError};

use crate::common::*;

backend_tests! {
    async fn app_passwords_are_made_listed_found_and_revoked(store) {
        let (alice, _) = user(&store, "alice").await;
        let (bob, _) = user(&store, "bob").await;
        assert!(store.list_app_passwords(alice.id).await.unwrap().is_empty());

        let phone = store.create_app_password(alice.id, "phone", &[1; 32]).await.unwrap();
        assert_eq!((phone.name.as_str(), phone.last_used_at), ("phone", None));
        store.create_app_password(alice.id, "rclone on the NAS", &[2; 32]).await.unwrap();
        // Names are per account: Bob may have a "phone" too.
        store.create_app_password(bob.id, "phone", &[3; 32]).await.unwrap();

        let err = store.create_app_password(alice.id, "phone", &[4; 32]).await.unwrap_err();
        assert!(matches!(&err, MetaError::AppPasswordExists(n) if n == "phone"), "{err:?}");
        // The refused one left nothing behind: its secret opens nothing.
        assert_eq!(store.app_password_owner(&[4; 32]).await.unwrap(), None);

        let listed = store.list_app_passwords(alice.id).await.unwrap();
        let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["phone", "rclone on the NAS"], "oldest first, Alice's only");
        assert_eq!(listed[0], phone);

        let AppPasswordOwner { user: owner, name, device } =
            store.app_password_owner(&[1; 32]).await.unwrap().unwrap();
        assert_eq!((owner.id, name.as_str()), (alice.id, "phone"));
        // Its device carries its name, so what it writes is attributed to it.
        let device = store.device(device).await.unwrap().unwrap();
        assert_eq!((device.user_id, device.name.as_str()), (alice.id, "phone"));
        let bobs = store.app_password_owner(&[3; 32]).await.unwrap().unwrap();
        assert_eq!((bobs.user.id, bobs.name.as_str()), (bob.id, "phone"));
        assert_eq!(store.app_password_owner(&[9; 32]).await.unwrap(), None);

        store.revoke_app_password(alice.id, "phone").await.unwrap();
        assert_eq!(store.app_password_owner(&[1; 32]).await.unwrap(), None);
        // Gone, and revoking is within the account: Alice's second try does not reach
        // Bob's "phone".
        let err = store.revoke_app_password(alice.id, "phone").await.unwrap_err();
        assert!(matches!(&err, MetaError::NoSuchAppPassword(n) if n == "phone"), "{err:?}");
        assert!(store.app_password_owner(&[3; 32]).await.unwrap().is_some());
        let names: Vec<String> = store
            .list_app_passwords(alice.id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["rclone on the NAS"]);
        // The name is free again, for a new secret.
        store.create_app_password(alice.id, "phone", &[5; 32]).await.unwrap();
        assert_eq!(store.app_password_owner(&[5; 32]).await.unwrap().unwrap().name, "phone");
    }

    async fn last_use_is_recorded_at_most_once_a_minute(store) {
        let (alice, _) = user(&store, "alice").await;
        let made = store.create_app_password(alice.id, "webdav", &[1; 32]).await.unwrap();
        store.app_password_owner(&[1; 32]).await.unwrap().unwrap();
        let first = store.list_app_passwords(alice.id).await.unwrap()[0].last_used_at;
        let first = first.expect("the first use is recorded");
        assert!(first >= made.created_at, "{first} < {}", made.created_at);
        // Later uses within the minute write nothing.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for _ in 0..3 {
            store.app_password_owner(&[1; 32]).await.unwrap().unwrap();
        }
        let again = store.list_app_passwords(alice.id).await.unwrap()[0].last_used_at;
        assert_eq!(again, Some(first));
    }

    async fn a_disabled_account_is_found_with_its_flag(store) {
        store.create_user("root", "h", true, None).await.unwrap();
        let (alice, _) = user(&store, "alice").await;
        store.create_app_password(alice.id, "webdav", &[1; 32]).await.unwrap();
        store.set_user_disabled("alice", true).await.unwrap();
        let owner = store.app_password_owner(&[1; 32]).await.unwrap().unwrap();
        assert!(!owner.user.is_enabled(), "the caller refuses it, knowing why");
        store.set_user_disabled("alice", false).await.unwrap();
        let owner = store.app_password_owner(&[1; 32]).await.unwrap().unwrap();
        assert!(owner.user.is_enabled());
    }

    async fn a_new_password_revokes_every_app_password(store) {
        let (alice, _) = user(&store, "alice").await;
        let (bob, _) = user(&store, "bob").await;
        store.create_token(alice.id, None, &[7; 32]).await.unwrap();
        store.create_app_password(alice.id, "one", &[1; 32]).await.unwrap();
        store.create_app_password(alice.id, "two", &[2; 32]).await.unwrap();
        store.create_app_password(bob.id, "bob's", &[3; 32]).await.unwrap();
        // The user's own change keeps its token, but not the app passwords: whoever
        // knew the old password could have made them.
        let revoked = store.set_password_hash(alice.id, "new", Some(&[7; 32])).await.unwrap();
        assert_eq!(revoked, 2);
        assert!(store.list_app_passwords(alice.id).await.unwrap().is_empty());
        assert_eq!(store.app_password_owner(&[1; 32]).await.unwrap(), None);
        assert!(store.token_owner(&[7; 32]).await.unwrap().is_some());
        assert!(store.app_password_owner(&[3; 32]).await.unwrap().is_some(), "Bob's stays");
    }

    async fn a_deleted_account_takes_its_app_passwords(store) {
        store.create_user("root", "h", true, None).await.unwrap();
        let (alice, _) = user(&store, "alice").await;
        let made = store.create_app_password(alice.id, "webdav", &[1; 32]).await.unwrap();
        let device = store.app_password_owner(&[1; 32]).await.unwrap().unwrap().device;
        // A file written through it names its device, which outlives the account.
        let actor = Actor { user_id: alice.id, device_id: Some(device), device_name: made.name };
        put(&store, &alice, &actor, "/via-dav.txt", &["written over WebDAV"]).await;
        let versions = store.list_versions(alice.home_ns, &p("/via-dav.txt")).await.unwrap();
        assert_eq!(versions[0].device_name.as_deref(), Some("webdav"));

        let report = store.delete_user("alice").await.unwrap();
        assert_eq!(report.app_passwords_revoked, 1, "{report:?}");
        assert_eq!(store.app_password_owner(&[1; 32]).await.unwrap(), None);
        // A new account of the same name inherits none of them.
        let again = store.create_user("alice", "h", false, None).await.unwrap();
        assert!(store.list_app_passwords(again.id).await.unwrap().is_empty());
        store.create_app_password(again.id, "webdav", &[2; 32]).await.unwrap();
    }
}
