//! Damaged blocks: never served, found by fsck and by the background scrub, contained
//! (quarantine, possession forgotten) and repaired by the next upload. On SQLite and on
//! PostgreSQL. A test binary of its own, so that its metric deltas are its own.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use cairn_core::BlockHash;
use cairn_server::block_manager::FsckOptions;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{block_ref, hex_hash, metric, TestServer, WITH_S3};

/// Pseudo-random, incompressible bytes.
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn content(s: &TestServer, path: &str, range: Option<&str>) -> reqwest::Response {
    try_content(s, path, range).await.unwrap()
}

/// [`content`], for a response the server may cut short before its head is out.
async fn try_content(
    s: &TestServer,
    path: &str,
    range: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut req = s
        .http
        .get(s.url(&format!("/api/v1/files/content?path={path}")))
        .bearer_auth(&s.token);
    if let Some(range) = range {
        req = req.header("Range", range);
    }
    req.send().await
}

async fn missing_for_admin(s: &TestServer, hashes: &[&[u8]]) -> Vec<String> {
    let hashes: Vec<String> = hashes.iter().map(|h| hex_hash(h)).collect();
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/blocks/check",
            Some(json!({ "hashes": hashes })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_value(body["missing"].clone()).unwrap()
}

on_each_backend!(
    damaged_blocks_are_never_served_and_fsck_contains_them,
    WITH_S3,
    |s| {
        let (a, b, c) = (noise(3000, 1), noise(2000, 2), noise(1000, 3));
        for block in [&a, &b, &c] {
            let (status, _) = s.put_block_as(&s.token, block).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, body) = s
            .commit(
                json!({"path": "/f.bin", "blocks": [block_ref(&a), block_ref(&b), block_ref(&c)]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let f_rev = body["entry"]["rev"].as_str().unwrap().to_owned();
        let (status, _) = s
            .commit(json!({"path": "/g.bin", "blocks": [block_ref(&b)]}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = s
            .commit(json!({"path": "/clean.bin", "blocks": [block_ref(&c)]}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let clean = s.state.blocks.fsck(&FsckOptions::default()).await.unwrap();
        assert!(clean.is_clean(), "{clean:?}");
        assert_eq!((clean.blocks_checked, clean.bytes_verified), (3, 6000));

        // Damage: b rots, a vanishes.
        s.flip_last_byte(&hex_hash(&b)).await;
        s.remove_block(&hex_hash(&a)).await;
        let failures = metric(&s, "cairn_block_verify_failures_total").await;

        for (hash, what) in [(&b, "corrupt"), (&a, "missing")] {
            let (status, body) = s
                .call(
                    Method::GET,
                    &format!("/api/v1/blocks/{}", hex_hash(hash)),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}: {body}");
            assert_eq!(body["error"]["code"], "block_damaged", "{what}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("cairn admin fsck"), "{message}");
        }
        // A file whose first block is damaged gets a clean error that names it.
        let resp = content(&s, "/g.bin", None).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "block_damaged");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("/g.bin is damaged"));
        let resp = content(&s, "/f.bin", None).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // A range inside the damaged block, too.
        let resp = content(&s, "/f.bin", Some("bytes=3100-3200")).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // A range that starts in a good block and runs into the damaged one starts as a
        // success, so it is cut short: the client never gets a full body of wrong bytes.
        let resp = content(&s, "/clean.bin", None).await;
        assert_eq!(resp.bytes().await.unwrap().to_vec(), c);
        let (status, body) = s
            .commit(json!({"path": "/cb.bin", "blocks": [block_ref(&c), block_ref(&b)]}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // hyper ends the connection early, which reqwest reports as an error — at send
        // when the body fails before the head was flushed, else while reading the body.
        // Whatever does arrive must be short of its Content-Length.
        if let Ok(resp) = try_content(&s, "/cb.bin", Some("bytes=500-1500")).await {
            assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
            assert_eq!(resp.headers()["content-length"], "1001");
            if let Ok(body) = resp.bytes().await {
                assert!(body.len() < 1001, "a full body despite a damaged block");
            }
        }
        // Missing and corrupt blocks alike count as verification failures.
        let counted = metric(&s, "cairn_block_verify_failures_total").await - failures;
        assert!(counted >= 6.0, "{counted} failures counted");

        // A read-only fsck reports and changes nothing.
        let options = FsckOptions {
            quarantine: false,
            ..FsckOptions::default()
        };
        let report = s.state.blocks.fsck(&options).await.unwrap();
        assert!(!report.is_clean());
        assert!(report.quarantined.is_empty());
        assert_eq!(
            missing_for_admin(&s, &[&a, &b, &c]).await,
            Vec::<String>::new()
        );

        let report = s.state.blocks.fsck(&FsckOptions::default()).await.unwrap();
        let (ha, hb) = (BlockHash::of(&a), BlockHash::of(&b));
        assert_eq!(report.missing, vec![ha]);
        assert_eq!(report.corrupt, vec![hb]);
        assert_eq!(report.quarantined, vec![hb]);
        assert_eq!((report.blocks_checked, report.bytes_verified), (3, 1000));
        assert!(report.inconsistencies.is_empty());
        let files: Vec<(String, Vec<BlockHash>)> = report
            .damaged_files
            .iter()
            .map(|f| (f.path.to_string(), f.blocks.clone()))
            .collect();
        let mut both = vec![ha, hb];
        both.sort();
        assert_eq!(
            files,
            vec![
                ("/cb.bin".to_owned(), vec![hb]),
                ("/f.bin".to_owned(), both),
                ("/g.bin".to_owned(), vec![hb]),
            ]
        );
        let f = &report.damaged_files[1];
        assert_eq!(
            (f.version.0.to_string(), f.owner.as_str()),
            (f_rev, "admin")
        );
        assert!(f.is_current && !f.in_trash);
        assert!(s.has_stored("quarantine", &hex_hash(&b)).await);

        // Every client is now told to upload both again; doing so repairs the files.
        let mut expect = vec![hex_hash(&a), hex_hash(&b)];
        expect.sort();
        let mut missing = missing_for_admin(&s, &[&a, &b, &c]).await;
        missing.sort();
        assert_eq!(missing, expect);
        for block in [&a, &b] {
            let (status, _) = s.put_block_as(&s.token, block).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let resp = content(&s, "/f.bin", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap().to_vec(), [a, b, c].concat());
        let report = s.state.blocks.fsck(&FsckOptions::default()).await.unwrap();
        assert!(report.is_clean(), "{report:?}");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_scrub_finds_and_contains_a_rotten_block() {
    for backend in WITH_S3 {
        let s = TestServer::start_with(backend, |config| {
            config.maintenance.scrub_bytes_per_sec = 256 << 20;
        })
        .await;
        let (good, bad) = (noise(5000, 7), noise(5000, 8));
        for block in [&good, &bad] {
            let (status, _) = s.put_block_as(&s.token, block).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, _) = s
            .commit(json!({"path": "/rots.bin", "blocks": [block_ref(&good), block_ref(&bad)]}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let before = metric(&s, "cairn_scrub_damaged_blocks_total").await;
        s.flip_last_byte(&hex_hash(&bad)).await;

        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.has_stored("quarantine", &hex_hash(&bad)).await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            s.has_stored("quarantine", &hex_hash(&bad)).await,
            "the scrub did not quarantine the block"
        );
        // Possession is forgotten right after the move; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while missing_for_admin(&s, &[&bad]).await.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            missing_for_admin(&s, &[&good, &bad]).await,
            vec![hex_hash(&bad)]
        );
        let found = metric(&s, "cairn_scrub_damaged_blocks_total").await - before;
        assert!(found >= 1.0, "{found}");
        // The good block was left alone.
        assert!(s.has_stored("blocks", &hex_hash(&good)).await);
        s.finish().await;
    }
}

/// S3 going away while the server runs: requests that need it get 503 (never 500,
/// nothing half done), and once it is back everything works again by itself, with
/// what was acknowledged before intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_answers_503_and_heals_by_itself() {
    let s3 = cairn_store::S3Config::for_tests("unused");
    let upstream = s3
        .endpoint
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let proxy = support::CutProxy::start(upstream).await;
    let s = TestServer::start_with(support::Backend::PostgresS3, |config| {
        if let cairn_server::BlockLocation::S3(s3) = &mut config.blocks {
            s3.endpoint = Some(format!("http://{}", proxy.addr));
        }
    })
    .await;
    let (before, during) = (noise(200_000, 11), noise(200_000, 12));
    let (status, _) = s.put_block_as(&s.token, &before).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = s
        .commit(json!({"path": "/before.bin", "blocks": [block_ref(&before)]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    proxy.cut();
    let (status, body) = s.put_block_as(&s.token, &during).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    let resp = content(&s, "/before.bin", None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Nothing was recorded for the refused block: it is still missing.
    assert_eq!(
        missing_for_admin(&s, &[&during]).await,
        vec![hex_hash(&during)]
    );

    proxy.restore();
    let (status, body) = s.put_block_as(&s.token, &during).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s
        .commit(json!({"path": "/during.bin", "blocks": [block_ref(&during)]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (path, data) in [("/before.bin", &before), ("/during.bin", &during)] {
        let resp = content(&s, path, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(&resp.bytes().await.unwrap().to_vec(), data);
    }
    s.finish().await;
}
