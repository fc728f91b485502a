//! Version history: listing and restoring.

use cairn_core::VersionId;
use cairn_meta::MetaError;

use crate::common::*;

backend_tests! {
    async fn versions_are_listed_newest_first_and_restore_makes_a_new_version(store) {
        let (u, actor) = user(&store, "u").await;
        let mut revs = Vec::new();
        let mut base = None;
        for content in ["one", "two", "three"] {
            let blocks = upload(&store, &u, &[content]).await;
            let out = store.commit_file(req(&u, &actor, "/f.txt", blocks, base)).await.unwrap();
            base = out.entry.rev;
            revs.push((out.entry.rev.unwrap(), out.entry.content_hash.unwrap()));
        }
        let list = store.list_versions(u.home_ns, &p("/f.txt")).await.unwrap();
        let ids: Vec<VersionId> = list.iter().map(|v| v.id).collect();
        assert_eq!(ids, vec![revs[2].0, revs[1].0, revs[0].0]);
        assert_eq!(list[0].user_name, "u");
        assert_eq!(list[0].device_name.as_deref(), Some("laptop"));
        assert_eq!(list[2].size, 3);

        let head = store.journal_head(u.home_ns).await.unwrap();
        let out = store.restore_version(u.home_ns, &p("/f.txt"), revs[0].0, &actor).await.unwrap();
        assert_eq!(out.entry.content_hash, Some(revs[0].1));
        assert!(out.entry.rev.unwrap() > revs[2].0, "a restore is a new version");
        assert_eq!(store.journal_head(u.home_ns).await.unwrap().0, head.0 + 1);
        let list = store.list_versions(u.home_ns, &p("/f.txt")).await.unwrap();
        assert_eq!(list.len(), 4);
        let blocks = store.version_blocks(out.entry.rev.unwrap()).await.unwrap();
        assert_eq!(blocks, store.version_blocks(revs[0].0).await.unwrap());

        // A version of another file, a folder and a missing file are refused.
        let other = upload(&store, &u, &["other"]).await;
        let other = store.commit_file(req(&u, &actor, "/g.txt", other, None)).await.unwrap();
        let err = store
            .restore_version(u.home_ns, &p("/f.txt"), other.entry.rev.unwrap(), &actor)
            .await
            .unwrap_err();
        assert!(matches!(err, MetaError::NoSuchVersion(_)), "{err}");
        store.mkdir(u.home_ns, &p("/dir"), &actor).await.unwrap();
        assert!(matches!(
            store.list_versions(u.home_ns, &p("/dir")).await.unwrap_err(),
            MetaError::IsAFolder(_)
        ));
        assert!(matches!(
            store.list_versions(u.home_ns, &p("/nope")).await.unwrap_err(),
            MetaError::NotFound(_)
        ));
    }
}
