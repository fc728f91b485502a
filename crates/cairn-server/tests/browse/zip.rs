//! `GET /api/v1/files/zip`: a selection of files and folders as one streamed zip.

use std::collections::BTreeMap;
use std::io::Read;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{put_file_as, TestServer};

/// The zip's entries: name → content (`None` for a folder).
fn unzip(bytes: &[u8]) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().to_owned();
        if file.is_dir() {
            out.insert(name, None);
        } else {
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            out.insert(name, Some(data));
        }
    }
    out
}

async fn zip_as(s: &TestServer, token: &str, query: &str) -> reqwest::Response {
    s.http
        .get(s.url(&format!("/api/v1/files/zip?{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

on_each_backend!(zip_of_a_selection_or_a_folder, |s| {
    let admin = s.token.clone();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    put_file_as(&s, &admin, "/Work/a.txt", b"alpha").await;
    put_file_as(&s, &admin, "/Work/sub/b.bin", &big).await;
    put_file_as(&s, &admin, "/Work/sub/deeper/c.txt", b"gamma").await;
    put_file_as(&s, &admin, "/Work/other.txt", b"not asked").await;
    put_file_as(&s, &admin, "/Team/t.txt", b"team file").await;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/files/mkdir",
            Some(json!({"path": "/Work/empty"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // One folder: named after it, everything below it, entries under its name.
    let resp = zip_as(&s, &admin, "path=/Work/sub").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/zip");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"sub.zip\"; filename*=UTF-8''sub.zip"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let entries = unzip(&resp.bytes().await.unwrap());
    let want: BTreeMap<String, Option<Vec<u8>>> = [
        ("sub/", None),
        ("sub/b.bin", Some(big.clone())),
        ("sub/deeper/", None),
        ("sub/deeper/c.txt", Some(b"gamma".to_vec())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(entries, want);

    // A selection: names relative to the folder holding them all; a path inside
    // another named one (and a repeated one, in another case) comes once.
    let resp = zip_as(
        &s,
        &admin,
        "path=/Work/a.txt&path=/Work/sub&path=/Work/sub/deeper/c.txt&path=/work/A.TXT&path=/Work/empty",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"cairn-20") && disposition.ends_with(".zip"),
        "{disposition}"
    );
    let names: Vec<String> = unzip(&resp.bytes().await.unwrap()).into_keys().collect();
    assert_eq!(
        names,
        [
            "a.txt",
            "empty/",
            "sub/",
            "sub/b.bin",
            "sub/deeper/",
            "sub/deeper/c.txt"
        ]
    );

    // Across folders and into a shared one, as a member sees it.
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/shares",
            Some(json!({"path": "/Team", "with": "bob", "role": "viewer"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let bob = s.login("bob").await;
    let resp = zip_as(&s, &bob, "path=/Team").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let entries = unzip(&resp.bytes().await.unwrap());
    assert_eq!(entries["Team/t.txt"], Some(b"team file".to_vec()));
    let resp = zip_as(&s, &admin, "path=/Team/t.txt&path=/Work/a.txt").await;
    let names: Vec<String> = unzip(&resp.bytes().await.unwrap()).into_keys().collect();
    assert_eq!(names, ["Team/t.txt", "Work/a.txt"]);

    // Another account's path is not there for bob; a missing path is a 404 before any
    // byte; bad requests are 400s.
    let resp = zip_as(&s, &bob, "path=/Work/a.txt").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = zip_as(&s, &admin, "path=/Work/a.txt&path=/Work/missing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()["content-type"], "application/json");
    for query in [
        String::new(),
        "path=/".to_owned(),
        "path=relative".to_owned(),
    ] {
        let resp = zip_as(&s, &admin, &query).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("path=/f{i}")).collect();
    let resp = zip_as(&s, &admin, &many.join("&")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_items", "{body}");
});
