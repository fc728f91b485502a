//! Resumable uploads in progress: progress saved by compare-and-set on the offset, and
//! their blocks kept from garbage collection until the upload goes.

use std::time::{SystemTime, UNIX_EPOCH};

use cairn_meta::{MetaError, NewUpload, OnConflict, UploadProgress};

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
}
