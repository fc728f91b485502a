//! `GET /api/v1/files/search`: by name, over the caller's home and shared folders.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{put_file_as, TestServer};

async fn search_as(s: &TestServer, token: &str, query: &str) -> (StatusCode, Value) {
    s.call_as(
        Some(token),
        Method::GET,
        &format!("/api/v1/files/search?{query}"),
        None,
    )
    .await
}

/// The paths found for `q` (percent-encoded by the caller where it must be).
async fn found(s: &TestServer, token: &str, query: &str) -> (Vec<String>, bool) {
    let (status, body) = search_as(s, token, query).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let paths = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    (paths, body["truncated"].as_bool().unwrap())
}

on_each_backend!(search_finds_names_in_home_and_shared_folders, |s| {
    let admin = s.token.clone();
    let bob = s.login("bob").await;
    for path in [
        "/Photos/Beach.jpg",
        "/Docs/beachball.txt",
        "/x/The Beach Party.md",
        "/Docs/ÉTÉ 2024.txt",
        "/Docs/100%_done.txt",
        "/Docs/100ab.txt",
        "/gone-beach.txt",
        "/Team/Beach Plan.pdf",
    ] {
        put_file_as(&s, &admin, path, path.as_bytes()).await;
    }
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/files/mkdir",
            Some(json!({"path": "/photos-old"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    put_file_as(&s, &bob, "/Mine/beach-of-bob.txt", b"bob's").await;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/gone-beach.txt"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/shares",
            Some(json!({"path": "/Team", "with": "bob", "role": "viewer"})),
        )
        .await;
    assert!(status.is_success(), "{body}");

    // Prefix matches first (shorter names first), then the others; any case; folders
    // too; nothing from the trash or from another account.
    let (paths, truncated) = found(&s, &admin, "q=BEACH").await;
    assert_eq!(
        paths,
        [
            "/Photos/Beach.jpg",
            "/Docs/beachball.txt",
            "/Team/Beach Plan.pdf",
            "/x/The Beach Party.md"
        ]
    );
    assert!(!truncated);
    let (paths, _) = found(&s, &admin, "q=photos").await;
    assert_eq!(paths, ["/Photos", "/photos-old"]);

    // Bob finds the shared folder's file under his mount, and his own, not Alice's.
    let (paths, _) = found(&s, &bob, "q=beach").await;
    assert_eq!(paths, ["/Team/Beach Plan.pdf", "/Mine/beach-of-bob.txt"]);
    let (status, body) = search_as(&s, &bob, "q=beach").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["entries"][0]["kind"], "file", "{body}");
    let (paths, _) = found(&s, &bob, "q=team").await;
    assert_eq!(paths, ["/Team"], "the mount folder is a name of bob's tree");

    // Unicode case and normalization: "été" (decomposed) finds "ÉTÉ".
    let (paths, _) = found(&s, &admin, "q=e%CC%81t%C3%A9%202").await;
    assert_eq!(paths, ["/Docs/ÉTÉ 2024.txt"]);
    // LIKE's wildcards are plain characters here; a two-character query works too.
    let (paths, _) = found(&s, &admin, "q=100%25_").await;
    assert_eq!(paths, ["/Docs/100%_done.txt"]);
    let (paths, _) = found(&s, &admin, "q=_").await;
    assert_eq!(paths, ["/Docs/100%_done.txt"]);
    let (paths, _) = found(&s, &admin, "q=ab").await;
    assert_eq!(paths, ["/Docs/100ab.txt"]);

    // A rename is found by its new name only; a moved folder's files by their new path.
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/files/move",
            Some(json!({"from": "/Docs/beachball.txt", "to": "/Docs/ball.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/files/move",
            Some(json!({"from": "/Photos", "to": "/Pictures"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (paths, _) = found(&s, &admin, "q=beachball").await;
    assert!(paths.is_empty(), "{paths:?}");
    let (paths, _) = found(&s, &admin, "q=ball").await;
    assert_eq!(paths, ["/Docs/ball.txt"]);
    let (paths, _) = found(&s, &admin, "q=beach.jpg").await;
    assert_eq!(paths, ["/Pictures/Beach.jpg"]);

    // `limit` bounds the answer and says when more matched.
    let (paths, truncated) = found(&s, &admin, "q=beach&limit=2").await;
    assert_eq!(paths, ["/Pictures/Beach.jpg", "/Team/Beach Plan.pdf"]);
    assert!(truncated);
    let (paths, truncated) = found(&s, &admin, "q=beach&limit=3").await;
    assert_eq!(paths.len(), 3);
    assert!(!truncated);

    // A control character is in no name.
    let (paths, _) = found(&s, &admin, "q=%00").await;
    assert!(paths.is_empty());

    // Bad requests.
    let long = "a".repeat(256);
    for (query, code) in [
        ("q=".to_owned(), "invalid_query"),
        ("limit=3".to_owned(), "invalid_query"),
        (format!("q={long}"), "invalid_query"),
        ("q=a&limit=0".to_owned(), "invalid_limit"),
        ("q=a&limit=10001".to_owned(), "invalid_limit"),
    ] {
        let (status, body) = search_as(&s, &admin, &query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }
    let (paths, _) = found(&s, &admin, &format!("q={}", "é".repeat(255))).await;
    assert!(paths.is_empty());
    let (status, _) = s
        .call_as(None, Method::GET, "/api/v1/files/search?q=beach", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
});
