//! Blocks sent as deltas (`/blocks/{hash}/signature`, `/blocks/{hash}/from/{base}`):
//! the bytes counted are the delta's, a block is stored only when the delta rebuilds it
//! exactly, and a base the caller does not hold (or that was collected) is refused or
//! ignored the same way a read of it would be.
//!
//! A test binary of its own whose tests take turns: they compare the process-wide
//! metrics before and after, which another test's uploads would move.

#[macro_use]
mod support;

use std::time::Duration;

use cairn_core::delta;
use reqwest::{Method, StatusCode};
use serde_json::json;

use support::{data, decode, hex_hash, metric, TestServer};

/// Held by each test while it runs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A block of 200 KiB (the test servers' blocks are at most 256 KiB) and the same with
/// one byte inserted near its middle.
fn pair(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let base = data(200 << 10, seed);
    let at = (100 << 10) + 1234;
    let mut new = base[..at].to_vec();
    new.push(0xA5);
    new.extend_from_slice(&base[at..]);
    (base, new)
}

async fn signature(s: &TestServer, token: &str, base: &[u8]) -> (StatusCode, Vec<u8>) {
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/blocks/{}/signature", hex_hash(base))))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

async fn put_delta(
    s: &TestServer,
    token: &str,
    block: &[u8],
    base: &[u8],
    delta: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let url = format!("/api/v1/blocks/{}/from/{}", hex_hash(block), hex_hash(base));
    let resp = s
        .http
        .put(s.url(&url))
        .bearer_auth(token)
        .body(delta)
        .send()
        .await
        .unwrap();
    decode(resp).await
}

async fn missing(s: &TestServer, token: &str, block: &[u8]) -> bool {
    let (status, body) = s
        .call_as(
            Some(token),
            Method::POST,
            "/api/v1/blocks/check",
            Some(json!({"hashes": [hex_hash(block)]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["missing"].as_array().unwrap().len() == 1
}

on_each_backend!(a_block_uploaded_as_a_delta_counts_the_delta, |s| {
    let _turn = SERIAL.lock().await;
    let t = s.token.clone();
    let (base, new) = pair(11);
    assert_eq!(s.put_block_as(&t, &base).await.0, StatusCode::CREATED);
    let sent0 = metric(&s, "cairn_block_bytes_sent_total").await;
    let (status, sig) = signature(&s, &t, &base).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        metric(&s, "cairn_block_bytes_sent_total").await - sent0,
        sig.len() as f64
    );
    let diff = delta::rsync_diff(&sig, &new, 8 << 20).unwrap();
    assert!(diff.len() < 12 << 10, "{} bytes", diff.len());

    // A damaged delta is refused, and nothing is stored.
    let received0 = metric(&s, "cairn_block_bytes_received_total").await;
    let mut bad = diff.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0xFF;
    let (status, body) = put_delta(&s, &t, &new, &base, bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "bad_delta");
    assert!(missing(&s, &t, &new).await);
    // Cut short, or claimed for another block: the same.
    let (status, _) = put_delta(&s, &t, &new, &base, diff[..diff.len() / 2].to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = put_delta(&s, &t, &base, &base, diff.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        metric(&s, "cairn_block_bytes_received_total").await,
        received0,
        "a refused delta counted as received"
    );

    let (status, body) = put_delta(&s, &t, &new, &base, diff.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["size"], new.len());
    assert!(!missing(&s, &t, &new).await);
    assert_eq!(
        metric(&s, "cairn_block_bytes_received_total").await - received0,
        diff.len() as f64
    );
    // The block reads back whole and verified.
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/blocks/{}", hex_hash(&new))))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), new);
});

on_each_backend!(a_block_is_downloaded_as_a_patch_against_a_held_base, |s| {
    let _turn = SERIAL.lock().await;
    let t = s.token.clone();
    let (base, new) = pair(12);
    for block in [&base, &new] {
        assert_eq!(s.put_block_as(&t, block).await.0, StatusCode::CREATED);
    }
    let get = |block: &[u8], from: &[u8], token: &str| {
        let url = s.url(&format!(
            "/api/v1/blocks/{}/from/{}",
            hex_hash(block),
            hex_hash(from)
        ));
        let request = s.http.get(url).bearer_auth(token.to_owned());
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status();
            let kind = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, kind, resp.bytes().await.unwrap().to_vec())
        }
    };
    let sent0 = metric(&s, "cairn_block_bytes_sent_total").await;
    let (status, kind, body) = get(&new, &base, &t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some(cairn_proto::BLOCK_PATCH_CONTENT_TYPE));
    assert!(body.len() < 4 << 10, "a patch of {} bytes", body.len());
    assert_eq!(
        metric(&s, "cairn_block_bytes_sent_total").await - sent0,
        body.len() as f64
    );
    assert_eq!(delta::patch_decode(&base, &body, new.len()).unwrap(), new);

    // A base that has nothing in common: the block itself.
    let other = data(200 << 10, 99);
    assert_eq!(s.put_block_as(&t, &other).await.0, StatusCode::CREATED);
    let (status, kind, body) = get(&new, &other, &t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("application/octet-stream"));
    assert_eq!(body, new);

    // Another account holds neither: 404, as for a plain read; holding only the
    // block, it gets the block whole, never a patch against a base it lacks.
    let bob = s.login("bob").await;
    let (status, _, _) = get(&new, &base, &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.put_block_as(&bob, &new).await.0, StatusCode::CREATED);
    let (status, kind, body) = get(&new, &base, &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("application/octet-stream"));
    assert_eq!(body, new);
    // Nor a signature of, or a delta against, a block he does not hold.
    assert_eq!(signature(&s, &bob, &base).await.0, StatusCode::NOT_FOUND);
    let sig = signature(&s, &t, &base).await.1;
    let diff = delta::rsync_diff(&sig, &new, 8 << 20).unwrap();
    let (status, _) = put_delta(&s, &bob, &new, &base, diff).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});

on_each_backend!(a_delta_against_a_collected_base_is_refused, |s| {
    let _turn = SERIAL.lock().await;
    let t = s.token.clone();
    let (base, new) = pair(13);
    // Uploaded, never committed: the next collection with no grace takes it.
    assert_eq!(s.put_block_as(&t, &base).await.0, StatusCode::CREATED);
    let (status, sig) = signature(&s, &t, &base).await;
    assert_eq!(status, StatusCode::OK);
    let diff = delta::rsync_diff(&sig, &new, 8 << 20).unwrap();
    s.state
        .blocks
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(s.stored_blocks().await, 0);
    let (status, body) = put_delta(&s, &t, &new, &base, diff).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(signature(&s, &t, &base).await.0, StatusCode::NOT_FOUND);
    assert!(missing(&s, &t, &new).await);
    // Sent whole, it is taken.
    assert_eq!(s.put_block_as(&t, &new).await.0, StatusCode::CREATED);
    assert!(!missing(&s, &t, &new).await);
});
