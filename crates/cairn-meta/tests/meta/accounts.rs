//! Passwords, disabled accounts and deleted accounts.

use cairn_core::{BlockHash, JournalSeq};
use cairn_meta::{ChangeKind, MetaError, NewLink, Role};

use crate::common::*;

backend_tests! {
    async fn a_password_change_keeps_one_token_or_none(store) {
        let (alice, _) = user(&store, "alice").await;
        let (bob, _) = user(&store, "bob").await;
        for t in 1..=3u8 {
            store.create_token(alice.id, None, &[t; 32]).await.unwrap();
        }
        store.create_token(bob.id, None, &[9; 32]).await.unwrap();

        // The user's own change: the token it used stays, the others go.
        let revoked = store.set_password_hash(alice.id, "new-hash", Some(&[1; 32])).await.unwrap();
        assert_eq!(revoked, 2);
        let owner = store.token_owner(&[1; 32]).await.unwrap().unwrap().user;
        assert_eq!(owner.password_hash, "new-hash");
        assert!(store.token_owner(&[2; 32]).await.unwrap().is_none());
        assert!(store.token_owner(&[3; 32]).await.unwrap().is_none());
        // An administrator's: every token goes. Bob's are not touched.
        assert_eq!(store.set_password_hash(alice.id, "newer", None).await.unwrap(), 1);
        assert!(store.token_owner(&[1; 32]).await.unwrap().is_none());
        assert!(store.token_owner(&[9; 32]).await.unwrap().is_some());
        assert_eq!(store.user_by_id(alice.id).await.unwrap().unwrap().password_hash, "newer");
    }

    async fn disabling_keeps_everything_and_spares_the_last_admin(store) {
        let root = store.create_user("root", "h", true, None).await.unwrap();
        let (alice, _) = user(&store, "alice").await;
        store.create_token(alice.id, None, &[1; 32]).await.unwrap();

        let disabled = store.set_user_disabled("alice", true).await.unwrap();
        assert!(!disabled.is_enabled());
        // The token still names its owner, who is disabled: the server refuses it.
        let owner = store.token_owner(&[1; 32]).await.unwrap().unwrap().user;
        assert!(!owner.is_enabled());
        // Again is no error, and keeps the first time.
        let again = store.set_user_disabled("alice", true).await.unwrap();
        assert_eq!(again.disabled_at, disabled.disabled_at);
        let enabled = store.set_user_disabled("alice", false).await.unwrap();
        assert!(enabled.is_enabled());
        assert!(store.token_owner(&[1; 32]).await.unwrap().unwrap().user.is_enabled());

        let err = store.set_user_disabled("root", true).await.unwrap_err();
        assert!(matches!(&err, MetaError::LastAdmin(n) if n == "root"), "{err:?}");
        assert!(store.user_by_id(root.id).await.unwrap().unwrap().is_enabled());
        let err = store.delete_user("root").await.unwrap_err();
        assert!(matches!(err, MetaError::LastAdmin(_)), "{err:?}");
        // With another enabled administrator, either may go; then the other is the last.
        store.create_user("root2", "h", true, None).await.unwrap();
        store.set_user_disabled("root", true).await.unwrap();
        let err = store.delete_user("root2").await.unwrap_err();
        assert!(matches!(err, MetaError::LastAdmin(_)), "{err:?}");
        store.delete_user("root").await.unwrap();
        let err = store.set_user_disabled("root2", true).await.unwrap_err();
        assert!(matches!(err, MetaError::LastAdmin(_)), "{err:?}");

        let err = store.set_user_disabled("nobody", true).await.unwrap_err();
        assert!(matches!(&err, MetaError::NoSuchUser(n) if n == "nobody"), "{err:?}");
    }

    async fn user_names_are_checked(store) {
        for bad in ["", "a/b", "a:b", "tab\there", &"x".repeat(65), &"é".repeat(65)] {
            let err = store.create_user(bad, "h", false, None).await.unwrap_err();
            assert!(matches!(err, MetaError::InvalidUserName(_)), "{bad:?}: {err:?}");
        }
        store.create_user(&"x".repeat(64), "h", false, None).await.unwrap();
        // Counted in characters, not bytes.
        store.create_user(&"é".repeat(64), "h", false, None).await.unwrap();
        store.create_user("Zoë Smith (ops)", "h", false, None).await.unwrap();
    }

    async fn deleting_a_user_takes_its_files_and_hands_on_its_shares(store) {
        store.create_user("root", "h", true, None).await.unwrap();
        let (alice, alice_actor) = user(&store, "alice").await;
        let (bob, bob_actor) = user(&store, "bob").await;
        let (carol, carol_actor) = user(&store, "carol").await;
        let (dave, _) = user(&store, "dave").await;

        // Bob's own files, one of them in his trash, and a block only he references.
        put(&store, &bob, &bob_actor, "/notes.txt", &["bob's notes"]).await;
        put(&store, &bob, &bob_actor, "/old.txt", &["bob's old file"]).await;
        store.delete_entry(bob.home_ns, &p("/old.txt"), &bob_actor).await.unwrap();
        // Bob's /Team: Carol edits, Dave views. It goes to Carol.
        store.mkdir(bob.home_ns, &p("/Team"), &bob_actor).await.unwrap();
        put(&store, &bob, &bob_actor, "/Team/plan.txt", &["the plan"]).await;
        let team = store.share_folder(bob.home_ns, &p("/Team"), &bob_actor).await.unwrap();
        store.add_member(team, carol.id, Role::Editor, &bob_actor).await.unwrap();
        store.add_member(team, dave.id, Role::Viewer, &bob_actor).await.unwrap();
        // Bob's /Solo: only Dave, a viewer. It goes with Bob.
        store.mkdir(bob.home_ns, &p("/Solo"), &bob_actor).await.unwrap();
        put(&store, &bob, &bob_actor, "/Solo/mine.txt", &["solo content"]).await;
        let solo = store.share_folder(bob.home_ns, &p("/Solo"), &bob_actor).await.unwrap();
        let dave_mount = store.add_member(solo, dave.id, Role::Viewer, &bob_actor).await.unwrap();
        // Alice's /Shared, where Bob is an editor and has left a file.
        store.mkdir(alice.home_ns, &p("/Shared"), &alice_actor).await.unwrap();
        let shared = store.share_folder(alice.home_ns, &p("/Shared"), &alice_actor).await.unwrap();
        store.add_member(shared, bob.id, Role::Editor, &alice_actor).await.unwrap();
        let blocks = upload(&store, &bob, &["bob in alice's folder"]).await;
        let mut in_shared = req(&bob, &bob_actor, "/bob.txt", blocks, None);
        in_shared.ns = shared;
        store.commit_file(in_shared).await.unwrap();
        // Carol edits the team folder too; Bob's links, one in the team folder.
        let blocks = upload(&store, &carol, &["carol's part"]).await;
        let mut carol_commit = req(&carol, &carol_actor, "/carol.txt", blocks, None);
        carol_commit.ns = team;
        store.commit_file(carol_commit).await.unwrap();
        for (ns, token) in [(bob.home_ns, "bob-home-link"), (team, "bob-team-link")] {
            store
                .create_link(NewLink {
                    token: token.into(),
                    creator: bob.id,
                    ns,
                    entry: None,
                    password_hash: None,
                    expires_at: None,
                    max_downloads: None,
                    upload_only: false,
                })
                .await
                .unwrap();
        }
        store.create_token(bob.id, None, &[7; 32]).await.unwrap();
        let dave_head = store.journal_head(dave.home_ns).await.unwrap();

        let report = store.delete_user("bob").await.unwrap();
        assert_eq!(report.id, bob.id);
        // notes.txt and old.txt (trash) from the home, mine.txt from /Solo.
        assert_eq!(report.files_deleted, 3, "{report:?}");
        assert_eq!(report.shares_transferred.len(), 1, "{report:?}");
        assert_eq!(report.shares_transferred[0].ns, team);
        assert_eq!(report.shares_transferred[0].folder, "Team");
        assert_eq!(report.shares_transferred[0].new_owner, "carol");
        assert_eq!(report.shares_deleted, vec!["Solo".to_owned()]);
        assert_eq!(report.memberships_removed, 1);
        assert_eq!(report.links_revoked, 2);
        assert_eq!(report.tokens_revoked, 1);

        // The account is gone, its name free, its token dead.
        assert!(store.user_by_name("bob").await.unwrap().is_none());
        assert!(store.user_by_id(bob.id).await.unwrap().is_none());
        assert!(store.token_owner(&[7; 32]).await.unwrap().is_none());
        let names: Vec<String> =
            store.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["root", "alice", "carol", "dave"]);
        assert_eq!(store.user_count().await.unwrap(), 4);
        assert!(store.link_by_token("bob-home-link").await.unwrap().is_none());
        assert!(store.link_by_token("bob-team-link").await.unwrap().is_none());
        let err = store.delete_user("bob").await.unwrap_err();
        assert!(matches!(err, MetaError::NoSuchUser(_)), "{err:?}");

        // Bob's home is gone, and the blocks only it referenced are unreferenced.
        assert!(store.stat(bob.home_ns, &p("/")).await.unwrap().is_none());
        for content in ["bob's notes", "bob's old file", "solo content"] {
            let info = store.block_info(BlockHash::of(content.as_bytes())).await.unwrap().unwrap();
            assert_eq!(info.refcount, 0, "{content}");
            assert!(info.zero_since.is_some(), "{content}");
        }
        // The team folder is Carol's now, with Bob's file and hers; Dave still views it.
        let members = store.members_of(team).await.unwrap();
        let roles: Vec<(String, Role)> =
            members.iter().map(|m| (m.user_name.clone(), m.role)).collect();
        assert_eq!(roles, [("carol".to_owned(), Role::Owner), ("dave".to_owned(), Role::Viewer)]);
        assert_eq!(members[0].owner_name, "carol");
        assert_eq!(tree(&store, team, "/").await, ["/carol.txt", "/plan.txt"]);
        assert_eq!(
            store.usage_bytes(carol.id).await.unwrap(),
            ("the plan".len() + "carol's part".len()) as i64
        );
        // The plan's block keeps its reference (in Carol's folder now).
        let plan = store.block_info(BlockHash::of(b"the plan")).await.unwrap().unwrap();
        assert_eq!(plan.refcount, 1);
        // Solo is gone for Dave: his mount folder went, journaled in his home.
        let dave_mounts: Vec<_> = store
            .memberships_of(dave.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.ns)
            .collect();
        assert_eq!(dave_mounts, [team]);
        assert!(store.stat(dave.home_ns, &dave_mount.mount_path).await.unwrap().is_none());
        let news = store.journal_since(dave.home_ns, dave_head, 100).await.unwrap();
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].kind, ChangeKind::Delete);
        assert_eq!(news[0].path, dave_mount.mount_path);
        assert!(store.stat(solo, &p("/")).await.unwrap().is_none());
        // Alice's folder keeps Bob's file, and its history names him as a tombstone.
        assert_eq!(tree(&store, shared, "/").await, ["/bob.txt"]);
        assert!(store.memberships_of(alice.id).await.unwrap().iter().all(|m| m.ns == shared));
        let versions = store.list_versions(shared, &p("/bob.txt")).await.unwrap();
        assert_eq!(versions[0].user_name, format!("bob:deleted:{}", bob.id.0));

        // The name can be taken again, by an account that starts empty.
        let (new_bob, _) = user(&store, "bob").await;
        assert_ne!(new_bob.id, bob.id);
        assert_ne!(new_bob.home_ns, bob.home_ns);
        assert!(store.memberships_of(new_bob.id).await.unwrap().is_empty());
        assert!(store.links_of(new_bob.id).await.unwrap().is_empty());
        assert_eq!(store.journal_head(new_bob.home_ns).await.unwrap(), JournalSeq(0));
        assert!(tree(&store, new_bob.home_ns, "/").await.is_empty());
    }
}
