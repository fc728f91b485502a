//! Uploads announced for streaming sync (`/uploads/pending`): who is told of one, when
//! its blocks may be fetched, what its readers see it as, and its limits. The daemon's
//! side is `crates/cairn/tests/streaming.rs`; the rights of every role are rows of the
//! authorization matrix.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::share;
use crate::support::{block_ref, hex_hash, Backend, TestServer};

async fn announce(s: &TestServer, token: &str, path: &str, parts: &[&[u8]]) -> (StatusCode, Value) {
    let blocks: Vec<Value> = parts.iter().map(|p| block_ref(p)).collect();
    s.call_as(
        Some(token),
        Method::POST,
        "/api/v1/uploads/pending",
        Some(json!({"path": path, "blocks": blocks})),
    )
    .await
}

async fn listed(s: &TestServer, token: &str) -> Vec<Value> {
    let (status, body) = s
        .call_as(Some(token), Method::GET, "/api/v1/uploads/pending", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["uploads"].as_array().unwrap().clone()
}

fn stored(upload: &Value) -> Vec<bool> {
    upload["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["stored"].as_bool().unwrap())
        .collect()
}

/// `GET /uploads/pending/{id}/blocks/{hash}`: the status and the bytes.
async fn fetch(s: &TestServer, token: &str, id: &str, part: &[u8]) -> (StatusCode, Vec<u8>) {
    let response = s
        .http
        .get(s.url(&format!(
            "/api/v1/uploads/pending/{id}/blocks/{}",
            hex_hash(part)
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.bytes().await.unwrap().to_vec())
}

/// A block upload tagged with the pending upload `id`.
async fn put_tagged(s: &TestServer, token: &str, id: &str, part: &[u8]) -> StatusCode {
    s.http
        .put(s.url(&format!("/api/v1/blocks/{}", hex_hash(part))))
        .bearer_auth(token)
        .header("cairn-pending-upload", id)
        .body(part.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

on_each_backend!(
    an_announced_upload_is_told_to_the_other_devices_block_by_block,
    |s| {
        let uploader = s.token.clone();
        let other_device = s.login("admin").await;
        let parts: [&[u8]; 2] = [b"the first part", b"the second part"];
        let (status, body) = announce(&s, &uploader, "/big.bin", &parts).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();

        // The uploading device is not told of its own upload; the account's others are.
        assert!(listed(&s, &uploader).await.is_empty());
        let uploads = listed(&s, &other_device).await;
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        assert_eq!(uploads[0]["id"], id.as_str());
        assert_eq!(uploads[0]["path"], "/big.bin");
        assert_eq!(uploads[0]["size"], 29);
        let hashes: Vec<cairn_core::BlockHash> =
            parts.iter().map(|p| cairn_core::BlockHash::of(p)).collect();
        assert_eq!(
            uploads[0]["content_hash"],
            cairn_core::content_hash(&hashes).to_hex().as_str()
        );
        assert_eq!(stored(&uploads[0]), [false, false]);

        // A block is served once stored, not before.
        assert_eq!(
            fetch(&s, &other_device, &id, parts[0]).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            put_tagged(&s, &uploader, &id, parts[0]).await,
            StatusCode::CREATED
        );
        assert_eq!(stored(&listed(&s, &other_device).await[0]), [true, false]);
        let (status, bytes) = fetch(&s, &other_device, &id, parts[0]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(bytes, parts[0]);

        // Only blocks of its list: one the uploader stored for something else is not.
        let (status, _) = s.put_block_as(&uploader, b"not of this upload").await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            fetch(&s, &other_device, &id, b"not of this upload").await.0,
            StatusCode::NOT_FOUND
        );
        // A tag that is not an id is refused, and nothing is stored.
        let malformed = put_tagged(&s, &uploader, "../../etc", parts[1]).await;
        assert_eq!(malformed, StatusCode::BAD_REQUEST);
        assert_eq!(stored(&listed(&s, &other_device).await[0]), [true, false]);

        // Another account sees nothing of it.
        let bob = s.login("bob").await;
        assert!(listed(&s, &bob).await.is_empty());
        assert_eq!(
            fetch(&s, &bob, &id, parts[0]).await.0,
            StatusCode::NOT_FOUND
        );
        let (status, _) = s
            .call_as(
                Some(&bob),
                Method::DELETE,
                &format!("/api/v1/uploads/pending/{id}"),
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "only its uploader ends an upload"
        );

        // Nothing is in the tree before the commit; ended, it is gone.
        let (status, _) = s
            .call_as(
                Some(&uploader),
                Method::GET,
                "/api/v1/files/stat?path=/big.bin",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s
            .call_as(
                Some(&uploader),
                Method::DELETE,
                &format!("/api/v1/uploads/pending/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(listed(&s, &other_device).await.is_empty());
        assert_eq!(
            fetch(&s, &other_device, &id, parts[0]).await.0,
            StatusCode::NOT_FOUND
        );
    }
);

on_each_backend!(
    an_upload_into_a_shared_folder_reaches_its_members_under_their_name,
    |s| {
        let alice = s.token.clone();
        let bob = s.login("bob").await;
        let (status, body) = s
            .call_as(
                Some(&alice),
                Method::POST,
                "/api/v1/files/mkdir",
                Some(json!({"path": "/Team"})),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let (status, body) = share(&s, &alice, "/Team", "bob", "viewer").await;
        assert!(status.is_success(), "{body}");
        // Bob keeps the shared folder under a name of his own.
        let (status, body) = s
            .call_as(
                Some(&bob),
                Method::POST,
                "/api/v1/files/move",
                Some(json!({"from": "/Team", "to": "/From Alice"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let part: &[u8] = b"a part of the team's file";
        let (status, body) = announce(&s, &alice, "/Team/plan.bin", &[part]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        assert_eq!(put_tagged(&s, &alice, &id, part).await, StatusCode::CREATED);
        let uploads = listed(&s, &bob).await;
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        assert_eq!(uploads[0]["path"], "/From Alice/plan.bin");
        assert_eq!(
            fetch(&s, &bob, &id, part).await,
            (StatusCode::OK, part.to_vec())
        );
        // A viewer cannot announce an upload into it: he could not commit one.
        let (status, _) = announce(&s, &bob, "/From Alice/mine.bin", &[part]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

on_each_backend!(announcements_are_checked_and_limited, |s| {
    let token = s.token.clone();
    let part: &[u8] = b"part";
    let (status, body) = announce(&s, &token, "/", &[part]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s
        .call_as(
            Some(&token),
            Method::POST,
            "/api/v1/uploads/pending",
            Some(json!({"path": "/x.bin", "blocks": [{"hash": "nothex", "size": 4}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let too_large = s.config().chunker.max_size as u64 + 1;
    let (status, body) = s
        .call_as(
            Some(&token),
            Method::POST,
            "/api/v1/uploads/pending",
            Some(
                json!({"path": "/x.bin", "blocks": [{"hash": hex_hash(part), "size": too_large}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "block_too_large");

    let mut ids = Vec::new();
    for i in 0..16 {
        let (status, body) = announce(&s, &token, &format!("/f{i}.bin"), &[part]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = announce(&s, &token, "/one-more.bin", &[part]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_uploads");
    let (status, _) = s
        .call_as(
            Some(&token),
            Method::DELETE,
            &format!("/api/v1/uploads/pending/{}", ids[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = announce(&s, &token, "/one-more.bin", &[part]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_receives_nothing_for_the_grace_period_expires() {
    let s = TestServer::start_with(Backend::Sqlite, |c| c.maintenance.gc_grace_secs = 1).await;
    let token = s.token.clone();
    let other_device = s.login("admin").await;
    let part: &[u8] = b"a part";
    let (status, body) = announce(&s, &token, "/slow.bin", &[part, b"another"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(put_tagged(&s, &token, &id, part).await, StatusCode::CREATED);
    assert_eq!(listed(&s, &other_device).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(listed(&s, &other_device).await.is_empty(), "expired");
    assert_eq!(
        fetch(&s, &other_device, &id, part).await.0,
        StatusCode::NOT_FOUND
    );
    // A block tagged with an expired upload is stored all the same.
    assert_eq!(
        put_tagged(&s, &token, &id, b"another").await,
        StatusCode::CREATED
    );
    s.finish().await;
}
