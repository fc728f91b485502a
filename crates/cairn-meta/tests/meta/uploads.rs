//! Resumable uploads in progress: progress saved by compare-and-set on the offset, and
//! their blocks kept from garbage collection until the upload goes.

use std::time::{SystemTime, UNIX_EPOCH};

use cairn_meta::{LeaseAttempt, MetaError, NewUpload, OnConflict, UploadProgress};

use crate::common::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

backend_tests! {
    async fn an_unfinished_uploads_blocks_are_never_claimed(store) {
        let (u, _) = user(&store, "u").await;
        let blocks = upload(&store, &u, &["held", "free"]).await;
        let later = now_ms() + 60_000;
        store
            .create_upload(&NewUpload {
                id: "up".into(),
                user_id: u.id,
                path: "/f.bin".into(),
                metadata: String::new(),
                on_conflict: OnConflict::Fail,
                mtime: None,
                length: 100,
                expires_at: later,
            })
            .await
            .unwrap();
        let first = UploadProgress {
            from_offset: 0,
            from_blocks: 0,
            new_blocks: vec![blocks[0]],
            tail: b"xy".to_vec(),
            expires_at: later,
        };
        assert_eq!(store.save_upload_progress("up", &first).await.unwrap(), Some(6));
        // The same save again is stale: nothing changes.
        assert_eq!(store.save_upload_progress("up", &first).await.unwrap(), None);

        // Everything is past its grace period, but the upload's block is not collectable.
        let cutoff = now_ms() + 1000;
        assert_eq!(store.gc_stats(cutoff).await.unwrap().collectable_blocks, 1);
        assert_eq!(store.gc_claim(cutoff, 100).await.unwrap(), vec![blocks[1].hash]);

        // A claimed block cannot join an upload; the caller must store it again.
        let second = UploadProgress {
            from_offset: 6,
            from_blocks: 1,
            new_blocks: vec![blocks[1]],
            tail: Vec::new(),
            expires_at: later,
        };
        let err = store.save_upload_progress("up", &second).await.unwrap_err();
        assert!(matches!(&err, MetaError::MissingBlocks(h) if h == &vec![blocks[1].hash]), "{err}");
        let saved = store.upload("up").await.unwrap().unwrap();
        assert_eq!((saved.offset, saved.blocks.len()), (6, 1));
        assert_eq!(saved.tail, b"xy".to_vec());

        // Expired, the upload goes and its block is collectable.
        assert_eq!(store.expire_uploads(now_ms()).await.unwrap(), 0);
        assert_eq!(store.expire_uploads(later + 1).await.unwrap(), 1);
        assert!(store.upload("up").await.unwrap().is_none());
        assert_eq!(store.gc_claim(now_ms() + 1000, 100).await.unwrap(), vec![blocks[0].hash]);
    }

    async fn an_uploads_lease_has_one_holder_until_it_runs_out(store) {
        let (u, _) = user(&store, "u").await;
        let now = now_ms();
        store
            .create_upload(&NewUpload {
                id: "up".into(),
                user_id: u.id,
                path: "/f.bin".into(),
                metadata: String::new(),
                on_conflict: OnConflict::Fail,
                mtime: None,
                length: 100,
                expires_at: now + 60_000,
            })
            .await
            .unwrap();
        assert_eq!(store.lease_upload("up", "a", now, now + 5_000).await.unwrap(), LeaseAttempt::Taken);
        // Held: nobody else gets it, not even the same holder twice.
        assert!(matches!(store.lease_upload("up", "b", now, now + 5_000).await.unwrap(), LeaseAttempt::HeldUntil(_)));
        assert!(matches!(store.lease_upload("up", "a", now, now + 5_000).await.unwrap(), LeaseAttempt::HeldUntil(_)));
        // Only the holder renews or releases it.
        assert!(!store.renew_upload_lease("up", "b", now + 10_000).await.unwrap());
        store.release_upload_lease("up", "b").await.unwrap();
        assert_eq!(store.lease_upload("up", "b", now + 4_000, now + 9_000).await.unwrap(), LeaseAttempt::HeldUntil(now + 5_000));
        assert!(store.renew_upload_lease("up", "a", now + 8_000).await.unwrap());
        // Run out (its holder died): the next asker takes it, and the dead holder's
        // renewal then says it lost it.
        assert!(matches!(store.lease_upload("up", "b", now + 7_999, now + 12_000).await.unwrap(), LeaseAttempt::HeldUntil(_)));
        assert_eq!(store.lease_upload("up", "b", now + 8_000, now + 13_000).await.unwrap(), LeaseAttempt::Taken);
        assert!(!store.renew_upload_lease("up", "a", now + 20_000).await.unwrap());
        store.release_upload_lease("up", "b").await.unwrap();
        assert_eq!(store.lease_upload("up", "c", now, now + 5_000).await.unwrap(), LeaseAttempt::Taken);
        // An upload that is not there has no lease to take.
        assert_eq!(store.lease_upload("gone", "a", now, now + 5_000).await.unwrap(), LeaseAttempt::NoUpload);
    }
}
