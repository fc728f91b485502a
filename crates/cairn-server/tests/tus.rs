//! Resumable uploads over tus 1.0 (`/api/v1/tus/`), through HTTP against the real
//! server, on SQLite and PostgreSQL: uploads in pieces, creation with upload, a
//! connection cut mid-body, every refused input changing nothing, termination,
//! expiry, `onconflict`, quota and roles, garbage collection beside an unfinished
//! upload, and files sent as parts joined by a final upload (concatenation).

#[macro_use]
mod support;

use std::time::Duration;

use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{data, put_file_as, TestServer};
use tokio::io::AsyncWriteExt;

const UPLOAD: &str = "application/offset+octet-stream";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One tus request: the status, the headers and the body.
async fn tus(
    s: &TestServer,
    token: &str,
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = s.http.request(method, s.url(url)).bearer_auth(token);
    if !headers.iter().any(|(name, _)| *name == "tus-resumable") {
        req = req.header("tus-resumable", "1.0.0");
    }
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Creates an upload of `length` bytes for `path` (plus `extra` metadata); its URL.
async fn create(s: &TestServer, token: &str, path: &str, length: usize, extra: &str) -> String {
    let (status, headers, body) = try_create(s, token, path, length, extra).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    header(&headers, "location")
}

async fn try_create(
    s: &TestServer,
    token: &str,
    path: &str,
    length: usize,
    extra: &str,
) -> (StatusCode, HeaderMap, Value) {
    let mut metadata = format!("path {}", b64(path));
    if !extra.is_empty() {
        metadata = format!("{metadata},{extra}");
    }
    tus(
        s,
        token,
        Method::POST,
        "/api/v1/tus/",
        &[
            ("upload-length", length.to_string()),
            ("upload-metadata", metadata),
        ],
        None,
    )
    .await
}

async fn patch(
    s: &TestServer,
    token: &str,
    url: &str,
    offset: usize,
    bytes: &[u8],
) -> (StatusCode, HeaderMap, Value) {
    tus(
        s,
        token,
        Method::PATCH,
        url,
        &[
            ("content-type", UPLOAD.to_owned()),
            ("upload-offset", offset.to_string()),
        ],
        Some(bytes.to_vec()),
    )
    .await
}

/// The upload's offset as HEAD tells it, or the status when it is not 200.
async fn offset(s: &TestServer, token: &str, url: &str) -> Result<usize, StatusCode> {
    let (status, headers, _) = tus(s, token, Method::HEAD, url, &[], None).await;
    match status {
        StatusCode::OK => Ok(header(&headers, "upload-offset").parse().unwrap()),
        other => Err(other),
    }
}

async fn download(s: &TestServer, token: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = s
        .http
        .get(s.url("/api/v1/files/content"))
        .query(&[("path", path)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

async fn exists(s: &TestServer, token: &str, path: &str) -> bool {
    let resp = s
        .http
        .get(s.url("/api/v1/files/stat"))
        .query(&[("path", path)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    resp.status() == StatusCode::OK
}

async fn mkdir(s: &TestServer, token: &str, path: &str) {
    let (status, body) = s
        .call_as(
            Some(token),
            Method::POST,
            "/api/v1/files/mkdir",
            Some(json!({"path": path})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Sends `bytes` at `from` in pieces of `piece`, each answered 204; the last answer's
/// headers.
async fn upload_rest(
    s: &TestServer,
    token: &str,
    url: &str,
    bytes: &[u8],
    from: usize,
    piece: usize,
) -> HeaderMap {
    let mut at = from;
    let mut last = HeaderMap::new();
    while at < bytes.len() {
        let end = (at + piece).min(bytes.len());
        let (status, headers, body) = patch(s, token, url, at, &bytes[at..end]).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert_eq!(header(&headers, "upload-offset"), end.to_string());
        assert!(!header(&headers, "upload-expires").is_empty());
        at = end;
        last = headers;
    }
    last
}

on_each_backend!(options_says_what_the_server_speaks, |s| {
    let resp = s
        .http
        .request(Method::OPTIONS, s.url("/api/v1/tus/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let h = resp.headers();
    assert_eq!(header(h, "tus-resumable"), "1.0.0");
    assert_eq!(header(h, "tus-version"), "1.0.0");
    assert_eq!(
        header(h, "tus-extension"),
        "creation,creation-with-upload,termination,expiration,checksum,concatenation"
    );
    assert_eq!(header(h, "tus-checksum-algorithm"), "sha1,md5,sha256");
});

on_each_backend!(
    an_upload_in_several_patches_is_the_file_chunked_as_one_stream,
    |s| {
        let t = s.token.clone();
        mkdir(&s, &t, "/docs").await;
        // Several maximal chunks of the test chunker (256 KiB) and pieces that cut them
        // anywhere.
        let bytes = data(1_300_000, 1);
        let url = create(
            &s,
            &t,
            "/docs/big.bin",
            bytes.len(),
            &format!("mtime {}", b64("1700000000000")),
        )
        .await;
        assert!(url.starts_with("/api/v1/tus/"), "{url}");
        assert_eq!(offset(&s, &t, &url).await, Ok(0));
        let (status, headers, _) = tus(&s, &t, Method::HEAD, &url, &[], None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "upload-length"), bytes.len().to_string());
        assert_eq!(header(&headers, "cache-control"), "no-store");
        let last = upload_rest(&s, &t, &url, &bytes, 0, 170_001).await;
        assert_eq!(header(&last, "cairn-path"), "/docs/big.bin");
        let (status, got) = download(&s, &t, "/docs/big.bin").await;
        assert_eq!(status, StatusCode::OK);
        assert!(got == bytes, "the download differs from the upload");
        // The blocks are those of the whole file chunked as one stream.
        let expected = cairn_core::chunk::chunk_and_hash_slice(&bytes, &s.config().chunker);
        let (status, listed) = s
            .call(Method::GET, "/api/v1/files/blocks?path=/docs/big.bin", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let hashes: Vec<String> = listed["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["hash"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = expected.blocks.iter().map(|(h, _)| h.to_hex()).collect();
        assert_eq!(hashes, want);
        assert_eq!(listed["entry"]["mtime"], 1_700_000_000_000i64);
        // Finished, the upload is gone.
        assert_eq!(offset(&s, &t, &url).await, Err(StatusCode::NOT_FOUND));
        assert_eq!(s.state.meta.upload_count().await.unwrap(), 0);
        let problems = s.state.meta.check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
);

on_each_backend!(creation_with_upload_and_folder_with_filename, |s| {
    let t = s.token.clone();
    mkdir(&s, &t, "/in").await;
    let bytes = data(400_000, 2);
    // The first part in the creation, the rest in a PATCH.
    let metadata = format!("folder {},filename {}", b64("/in"), b64("a b.bin"));
    let (status, headers, body) = tus(
        &s,
        &t,
        Method::POST,
        "/api/v1/tus/",
        &[
            ("upload-length", bytes.len().to_string()),
            ("upload-metadata", metadata),
            ("content-type", UPLOAD.to_owned()),
        ],
        Some(bytes[..100_000].to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(header(&headers, "upload-offset"), "100000");
    let url = header(&headers, "location");
    let last = upload_rest(&s, &t, &url, &bytes, 100_000, 1 << 20).await;
    assert_eq!(header(&last, "cairn-path"), "/in/a%20b.bin");
    assert_eq!(download(&s, &t, "/in/a b.bin").await.1, bytes);

    // All of it in the creation: 201 only once it is a file.
    let small = data(5_000, 3);
    let (status, headers, body) = tus(
        &s,
        &t,
        Method::POST,
        "/api/v1/tus/",
        &[
            ("upload-length", small.len().to_string()),
            ("upload-metadata", format!("path {}", b64("/in/small.bin"))),
            ("content-type", UPLOAD.to_owned()),
        ],
        Some(small.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(header(&headers, "upload-offset"), "5000");
    assert_eq!(header(&headers, "cairn-path"), "/in/small.bin");
    assert_eq!(download(&s, &t, "/in/small.bin").await.1, small);

    // An empty file is complete at its creation.
    let (status, headers, _) = try_create(&s, &t, "/in/empty", 0, "").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(header(&headers, "cairn-path"), "/in/empty");
    assert_eq!(
        download(&s, &t, "/in/empty").await,
        (StatusCode::OK, vec![])
    );
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_patch_keeps_what_arrived() {
    for backend in support::BACKENDS {
        let mut s = TestServer::start(backend).await;
        cut_mid_patch(&mut s).await;
        s.finish().await;
    }
}

async fn cut_mid_patch(s: &mut TestServer) {
    let t = s.token.clone();
    let bytes = data(700_000, 4);
    let url = create(s, &t, "/cut.bin", bytes.len(), "").await;
    upload_rest(s, &t, &url, &bytes[..100_000], 0, 100_000).await;

    // Headers and half of the body, then the socket goes.
    let sent = 350_000;
    let mut raw = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "PATCH {url} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {t}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: {UPLOAD}\r\nUpload-Offset: 100000\r\n\
         Content-Length: {}\r\n\r\n",
        s.addr,
        bytes.len() - 100_000
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&bytes[100_000..100_000 + sent])
        .await
        .unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(raw);

    // Everything that arrived is kept: HEAD waits for the cut request to save it.
    let at = offset(s, &t, &url).await.unwrap();
    assert_eq!(at, 100_000 + sent);
    // And it survives a restart.
    s.stop().await;
    s.start_again().await;
    assert_eq!(offset(s, &t, &url).await, Ok(at));
    upload_rest(s, &t, &url, &bytes, at, 1 << 20).await;
    assert_eq!(download(s, &t, "/cut.bin").await.1, bytes);
}

on_each_backend!(
    bad_input_gets_the_protocols_status_and_changes_nothing,
    |s| {
        let t = s.token.clone();
        let bytes = data(300_000, 5);
        let url = create(&s, &t, "/bad.bin", bytes.len(), "").await;
        upload_rest(&s, &t, &url, &bytes[..50_000], 0, 50_000).await;

        // No Tus-Resumable: 412 with the versions served.
        let resp = s
            .http
            .request(Method::HEAD, s.url(&url))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(header(resp.headers(), "tus-version"), "1.0.0");
        let (status, headers, body) = tus(
            &s,
            &t,
            Method::PATCH,
            &url,
            &[
                ("tus-resumable", "0.2.2".to_owned()),
                ("content-type", UPLOAD.to_owned()),
                ("upload-offset", "50000".to_owned()),
            ],
            Some(bytes[50_000..60_000].to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
        assert_eq!(header(&headers, "tus-version"), "1.0.0");
        assert!(body["error"]["code"].is_string(), "{body}");

        // The wrong content type: 415.
        let (status, _, _) = tus(
            &s,
            &t,
            Method::PATCH,
            &url,
            &[
                ("content-type", "application/octet-stream".to_owned()),
                ("upload-offset", "50000".to_owned()),
            ],
            Some(bytes[50_000..60_000].to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        // A wrong offset: 409.
        for wrong in [0, 40_000, 60_000] {
            let (status, _, body) = patch(&s, &t, &url, wrong, &bytes[wrong..wrong + 1000]).await;
            assert_eq!(status, StatusCode::CONFLICT, "{wrong}: {body}");
        }

        // Past the length, declared: 413 before a byte is read.
        let mut long = bytes[50_000..].to_vec();
        long.extend_from_slice(b"one byte too many");
        // Each on a connection of its own, a few attempts: the server answers before it
        // has read the whole body and closes the connection, so a pooled connection
        // could be dead, and the sender may see it reset before it reads the answer.
        for chunked in [false, true] {
            let mut answered = None;
            for _ in 0..5 {
                let body = match chunked {
                    // Past the length, declared: 413 before a byte is read.
                    false => reqwest::Body::from(long.clone()),
                    // Past the length, chunked: 413 once it passes, none of it kept.
                    true => reqwest::Body::wrap_stream(futures::stream::iter(
                        long.chunks(64 << 10)
                            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                            .collect::<Vec<_>>(),
                    )),
                };
                let sent = reqwest::Client::new()
                    .patch(s.url(&url))
                    .bearer_auth(&t)
                    .header("tus-resumable", "1.0.0")
                    .header("content-type", UPLOAD)
                    .header("upload-offset", "50000")
                    .body(body)
                    .send()
                    .await;
                if let Ok(resp) = sent {
                    answered = Some(resp.status());
                    break;
                }
            }
            assert_eq!(
                answered,
                Some(StatusCode::PAYLOAD_TOO_LARGE),
                "chunked: {chunked}"
            );
            assert_eq!(offset(&s, &t, &url).await, Ok(50_000));
        }

        // An unknown id, and another account's upload: the same 404.
        let bob = s.login("bob").await;
        for (token, target) in [
            (&t, "/api/v1/tus/0123456789abcdef0123456789abcdef"),
            (&bob, url.as_str()),
        ] {
            let (status, _, body) = patch(&s, token, target, 50_000, &bytes[50_000..60_000]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            assert_eq!(offset(&s, token, target).await, Err(StatusCode::NOT_FOUND));
            let (status, _, _) = tus(&s, token, Method::DELETE, target, &[], None).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }

        // A checksum that does not match: 460, nothing kept; an unknown algorithm: 400.
        use sha1::Digest;
        let piece = &bytes[50_000..150_000];
        let wrong = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"other"));
        for (checksum, want) in [
            (format!("sha1 {wrong}"), 460),
            (format!("crc32 {wrong}"), 400),
            ("sha1".to_owned(), 400),
        ] {
            let (status, _, body) = tus(
                &s,
                &t,
                Method::PATCH,
                &url,
                &[
                    ("content-type", UPLOAD.to_owned()),
                    ("upload-offset", "50000".to_owned()),
                    ("upload-checksum", checksum.clone()),
                ],
                Some(piece.to_vec()),
            )
            .await;
            assert_eq!(status.as_u16(), want, "{checksum}: {body}");
        }
        assert_eq!(offset(&s, &t, &url).await, Ok(50_000));
        // The right checksum, in each algorithm.
        let mut at = 50_000;
        for algorithm in ["sha1", "md5", "sha256"] {
            let piece = &bytes[at..at + 50_000];
            let digest = match algorithm {
                "sha1" => sha1::Sha1::digest(piece).to_vec(),
                "md5" => md5::Md5::digest(piece).to_vec(),
                _ => sha2::Sha256::digest(piece).to_vec(),
            };
            let (status, _, body) = tus(
                &s,
                &t,
                Method::PATCH,
                &url,
                &[
                    ("content-type", UPLOAD.to_owned()),
                    ("upload-offset", at.to_string()),
                    (
                        "upload-checksum",
                        format!(
                            "{algorithm} {}",
                            base64::engine::general_purpose::STANDARD.encode(digest)
                        ),
                    ),
                ],
                Some(piece.to_vec()),
            )
            .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{algorithm}: {body}");
            at += 50_000;
        }
        assert_eq!(offset(&s, &t, &url).await, Ok(at));
        assert!(!exists(&s, &t, "/bad.bin").await);

        // Bad creations: each 400 and no upload made.
        let before = s.state.meta.upload_count().await.unwrap();
        let cases: Vec<Vec<(&str, String)>> = vec![
            vec![("upload-metadata", format!("path {}", b64("/x.bin")))],
            vec![
                ("upload-length", "-1".into()),
                ("upload-metadata", format!("path {}", b64("/x.bin"))),
            ],
            vec![
                ("upload-length", "10".into()),
                ("upload-metadata", "path !!!".into()),
            ],
            vec![
                ("upload-length", "10".into()),
                ("upload-metadata", format!("path {}", b64("relative"))),
            ],
            vec![
                ("upload-length", "10".into()),
                ("upload-metadata", format!("path {}", b64("/a/../b"))),
            ],
            vec![
                ("upload-length", "10".into()),
                ("upload-metadata", format!("filename {}", b64("a/b"))),
            ],
            vec![
                ("upload-length", "10".into()),
                ("upload-metadata", format!("path {}", b64("/"))),
            ],
            vec![("upload-length", "10".into())],
            vec![
                ("upload-length", "10".into()),
                (
                    "upload-metadata",
                    format!("path {},onconflict {}", b64("/x"), b64("merge")),
                ),
            ],
            vec![
                ("upload-defer-length", "1".into()),
                ("upload-metadata", format!("path {}", b64("/x.bin"))),
            ],
        ];
        for headers in cases {
            let (status, _, body) = tus(&s, &t, Method::POST, "/api/v1/tus/", &headers, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}: {body}");
        }
        assert_eq!(s.state.meta.upload_count().await.unwrap(), before);

        // After all of that, the upload completes as if nothing had happened.
        upload_rest(&s, &t, &url, &bytes, at, 1 << 20).await;
        assert_eq!(download(&s, &t, "/bad.bin").await.1, bytes);
    }
);

on_each_backend!(termination_removes_the_upload, |s| {
    let t = s.token.clone();
    let bytes = data(600_000, 6);
    let url = create(&s, &t, "/gone.bin", bytes.len(), "").await;
    upload_rest(&s, &t, &url, &bytes[..500_000], 0, 500_000).await;
    let (status, _, _) = tus(&s, &t, Method::DELETE, &url, &[], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(offset(&s, &t, &url).await, Err(StatusCode::NOT_FOUND));
    let (status, _, _) = patch(&s, &t, &url, 500_000, &bytes[500_000..]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!exists(&s, &t, "/gone.bin").await);
    assert_eq!(s.state.meta.upload_count().await.unwrap(), 0);
    // Its blocks are collectable.
    let stored = s.stored_blocks().await;
    assert!(stored > 0);
    s.state
        .blocks
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(s.stored_blocks().await, 0);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upload_is_gone_and_removed_by_maintenance() {
    for backend in support::BACKENDS {
        let s = TestServer::start_with(backend, |c| c.tus_upload_lifetime_secs = 1).await;
        let t = s.token.clone();
        let bytes = data(600_000, 7);
        let url = create(&s, &t, "/old.bin", bytes.len(), "").await;
        let last = upload_rest(&s, &t, &url, &bytes[..300_000], 0, 300_000).await;
        let expires = httpdate::parse_http_date(&header(&last, "upload-expires")).unwrap();
        let ahead = expires
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        assert!(ahead <= Duration::from_secs(2), "{ahead:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(offset(&s, &t, &url).await, Err(StatusCode::NOT_FOUND));
        let (status, _, _) = patch(&s, &t, &url, 300_000, &bytes[300_000..]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(s.state.meta.upload_count().await.unwrap(), 1);
        let report = cairn_server::maintenance::run_once(
            &s.state.meta,
            &s.state.blocks,
            &s.state.thumbnails,
            &s.config().maintenance,
            Duration::ZERO,
        )
        .await
        .unwrap();
        assert_eq!(report.uploads_expired, 1);
        assert!(report.gc.blocks_deleted > 0, "{report:?}");
        assert_eq!(s.state.meta.upload_count().await.unwrap(), 0);
        assert_eq!(s.stored_blocks().await, 0);
        s.finish().await;
    }
}

on_each_backend!(onconflict_fail_rename_replace, |s| {
    let t = s.token.clone();
    mkdir(&s, &t, "/c").await;
    put_file_as(&s, &t, "/c/a.txt", b"first").await;

    // fail (the default): 409 at creation.
    let (status, _, body) = try_create(&s, &t, "/c/a.txt", 3, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(s.state.meta.upload_count().await.unwrap(), 0);

    // rename: a free name, told in Cairn-Path.
    let url = create(
        &s,
        &t,
        "/c/a.txt",
        6,
        &format!("onconflict {}", b64("rename")),
    )
    .await;
    let (status, headers, body) = patch(&s, &t, &url, 0, b"second").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(header(&headers, "cairn-path"), "/c/a%20%281%29.txt");
    assert_eq!(download(&s, &t, "/c/a (1).txt").await.1, b"second");
    assert_eq!(download(&s, &t, "/c/a.txt").await.1, b"first");

    // replace: a new version of the file.
    let url = create(
        &s,
        &t,
        "/c/a.txt",
        5,
        &format!("onconflict {}", b64("replace")),
    )
    .await;
    let (status, headers, body) = patch(&s, &t, &url, 0, b"third").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(header(&headers, "cairn-path"), "/c/a.txt");
    assert_eq!(download(&s, &t, "/c/a.txt").await.1, b"third");
    let (_, versions) = s
        .call(Method::GET, "/api/v1/files/versions?path=/c/a.txt", None)
        .await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );

    // fail, when the name is taken while the upload runs: 409 at completion, the
    // other file untouched, and the upload still there.
    let url = create(&s, &t, "/c/b.txt", 4, "").await;
    put_file_as(&s, &t, "/c/b.txt", b"them").await;
    let (status, _, body) = patch(&s, &t, &url, 0, b"mine").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(download(&s, &t, "/c/b.txt").await.1, b"them");
    let problems = s.state.meta.check_consistency().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
});

on_each_backend!(quota_and_roles_are_those_of_a_whole_file_upload, |s| {
    let t = s.token.clone();
    assert!(s.state.meta.set_quota("admin", Some(10_000)).await.unwrap());
    let (status, _, body) = try_create(&s, &t, "/big.bin", 20_000, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let url = create(&s, &t, "/fits.bin", 9_000, "").await;
    assert!(!url.is_empty());

    // A viewer of a shared folder may not upload into it; an editor may.
    mkdir(&s, &t, "/Team").await;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/shares",
            Some(json!({"path": "/Team", "with": "bob", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bob = s.login("bob").await;
    let (status, _, body) = try_create(&s, &bob, "/Team/x.bin", 10, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "read_only");
    // Bob's own home is his.
    let url = create(&s, &bob, "/x.bin", 3, "").await;
    let (status, _, _) = patch(&s, &bob, &url, 0, b"abc").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Anonymous: 401.
    let resp = s
        .http
        .post(s.url("/api/v1/tus/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
});

on_each_backend!(
    garbage_collection_leaves_an_unfinished_uploads_blocks,
    |s| {
        let t = s.token.clone();
        let bytes = data(1_200_000, 8);
        let url = create(&s, &t, "/held.bin", bytes.len(), "").await;
        upload_rest(&s, &t, &url, &bytes[..900_000], 0, 300_000).await;
        let held = s.stored_blocks().await;
        assert!(held >= 2, "{held}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = s
            .state
            .blocks
            .collect_garbage(Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.blocks_deleted, 0, "{report:?}");
        assert_eq!(s.stored_blocks().await, held);
        upload_rest(&s, &t, &url, &bytes, 900_000, 1 << 20).await;
        assert_eq!(download(&s, &t, "/held.bin").await.1, bytes);
        let problems = s.state.meta.check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
);

/// Creates a part of a file (`Upload-Concat: partial`) of `length` bytes; its URL.
async fn create_part(s: &TestServer, token: &str, length: usize) -> String {
    let (status, headers, body) = tus(
        s,
        token,
        Method::POST,
        "/api/v1/tus/",
        &[
            ("upload-length", length.to_string()),
            ("upload-concat", "partial".to_owned()),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    header(&headers, "location")
}

/// `POST` of a final upload joining `parts` into `path` (`onconflict` as given).
async fn join_parts(
    s: &TestServer,
    token: &str,
    parts: &[String],
    path: &str,
    onconflict: &str,
) -> (StatusCode, HeaderMap, Value) {
    let full: Vec<String> = parts.iter().map(|p| s.url(p).to_string()).collect();
    tus(
        s,
        token,
        Method::POST,
        "/api/v1/tus/",
        &[
            ("upload-concat", format!("final;{}", full.join(" "))),
            (
                "upload-metadata",
                format!("path {},onconflict {}", b64(path), b64(onconflict)),
            ),
        ],
        None,
    )
    .await
}

/// The hex hashes of the blocks of the file at `path`.
async fn block_hashes(s: &TestServer, path: &str) -> Vec<String> {
    let (status, listed) = s
        .call(
            Method::GET,
            &format!("/api/v1/files/blocks?path={path}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    listed["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["hash"].as_str().unwrap().to_owned())
        .collect()
}

on_each_backend!(
    parts_joined_by_a_final_upload_are_the_file_chunked_as_one_stream,
    |s| {
        let t = s.token.clone();
        let bytes = data(1_300_000, 7);
        let stream = cairn_core::chunk::chunk_and_hash_slice(&bytes, &s.config().chunker);
        let want: Vec<String> = stream.blocks.iter().map(|(h, _)| h.to_hex()).collect();
        let sizes: Vec<usize> = stream.blocks.iter().map(|(_, n)| *n as usize).collect();
        let at_cut = sizes[0] + sizes[1];
        // Where the parts meet: anywhere, on a cut point of the stream, one byte either
        // side of it, tiny parts, empty parts, one part.
        let splits: Vec<Vec<usize>> = vec![
            vec![433_333, 866_666],
            vec![at_cut],
            vec![at_cut - 1, at_cut + 1],
            vec![10, 20, 700_000],
            vec![0, 650_000, 650_000],
            vec![],
        ];
        for (n, split) in splits.iter().enumerate() {
            let mut bounds = vec![0];
            bounds.extend(split);
            bounds.push(bytes.len());
            let mut urls = Vec::new();
            for w in bounds.windows(2) {
                let part = &bytes[w[0]..w[1]];
                let url = create_part(&s, &t, part.len()).await;
                upload_rest(&s, &t, &url, part, 0, 100_001).await;
                let (status, headers, _) = tus(&s, &t, Method::HEAD, &url, &[], None).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(header(&headers, "upload-concat"), "partial");
                assert_eq!(header(&headers, "upload-offset"), part.len().to_string());
                urls.push(url);
            }
            let path = format!("/joined-{n}.bin");
            let (status, headers, body) = join_parts(&s, &t, &urls, &path, "fail").await;
            assert_eq!(status, StatusCode::CREATED, "{split:?}: {body}");
            assert_eq!(header(&headers, "cairn-path"), path);
            assert_eq!(header(&headers, "upload-offset"), bytes.len().to_string());
            assert!(header(&headers, "location").starts_with("/api/v1/tus/"));
            let (status, got) = download(&s, &t, &path).await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                got == bytes,
                "{split:?}: the download differs from the upload"
            );
            assert_eq!(block_hashes(&s, &path).await, want, "{split:?}");
            for url in &urls {
                assert_eq!(offset(&s, &t, url).await, Err(StatusCode::NOT_FOUND));
            }
        }
        assert_eq!(s.state.meta.upload_count().await.unwrap(), 0);
        let problems = s.state.meta.check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
);

on_each_backend!(a_final_upload_refuses_what_it_cannot_join, |s| {
    let t = s.token.clone();
    let bytes = data(300_000, 8);
    let a = create_part(&s, &t, 100_000).await;
    upload_rest(&s, &t, &a, &bytes[..100_000], 0, 1 << 20).await;
    let b = create_part(&s, &t, 200_000).await;
    upload_rest(&s, &t, &b, &bytes[100_000..150_000], 0, 1 << 20).await;
    let whole = create(&s, &t, "/whole.bin", 10, "").await;
    let bob = s.login("bob").await;
    let bobs = create_part(&s, &bob, 10).await;
    let unknown = "/api/v1/tus/0123456789abcdef0123456789abcdef".to_owned();
    for (parts, want, code) in [
        (vec![a.clone(), b.clone()], 400, "part_incomplete"),
        (vec![a.clone(), whole.clone()], 400, "not_partial"),
        (vec![a.clone(), bobs.clone()], 404, "not_found"),
        (vec![a.clone(), unknown], 404, "not_found"),
        (vec![a.clone(), a.clone()], 400, "invalid_concat"),
    ] {
        let (status, _, body) = join_parts(&s, &t, &parts, "/j.bin", "fail").await;
        assert_eq!(status.as_u16(), want, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    for bad in ["final;", "final;/api/v1/files/x", "whole"] {
        let (status, _, body) = tus(
            &s,
            &t,
            Method::POST,
            "/api/v1/tus/",
            &[
                ("upload-concat", bad.to_owned()),
                ("upload-metadata", format!("path {}", b64("/j.bin"))),
                ("upload-length", "1".to_owned()),
            ],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // Nothing changed: no file, and the parts are where they were.
    assert!(!exists(&s, &t, "/j.bin").await);
    assert_eq!(offset(&s, &t, &a).await, Ok(100_000));
    assert_eq!(offset(&s, &t, &b).await, Ok(50_000));
    assert_eq!(offset(&s, &bob, &bobs).await, Ok(0));

    // A name taken: 409 with `fail`, and the parts stay for another try.
    upload_rest(&s, &t, &b, &bytes[100_000..], 50_000, 1 << 20).await;
    put_file_as(&s, &t, "/j.bin", b"already here").await;
    let (status, _, body) = join_parts(&s, &t, &[a.clone(), b.clone()], "/j.bin", "fail").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(offset(&s, &t, &a).await, Ok(100_000));
    let (status, headers, body) =
        join_parts(&s, &t, &[a.clone(), b.clone()], "/j.bin", "rename").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(header(&headers, "cairn-path"), "/j%20%281%29.bin");
    assert_eq!(download(&s, &t, "/j (1).bin").await.1, bytes);
    assert_eq!(download(&s, &t, "/j.bin").await.1, b"already here");
    // The final upload's URL is not an upload one can write to.
    let (status, _, _) = patch(&s, &t, &header(&headers, "location"), 0, b"x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});
