//! Several nodes of one deployment: two servers on one PostgreSQL database and one
//! block store, as behind a load balancer. Whatever a request needs is shared, so any
//! node answers as the other would: the throttles of wrong passwords (logins and
//! public links) count on both, and a resumable (tus) upload started on one node is
//! resumed on the other, even from a node that died holding it.

#[allow(unused_macros)]
mod support;

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{data, Backend, TestServer, PASSWORD};
use tokio::io::AsyncWriteExt;

const UPLOAD: &str = "application/offset+octet-stream";

/// Two nodes on one fresh PostgreSQL database.
async fn two_nodes() -> (TestServer, TestServer) {
    let one = TestServer::start(Backend::Postgres).await;
    let two = one.another_node().await;
    (one, two)
}

async fn finish(one: TestServer, mut two: TestServer) {
    two.stop().await;
    two.finish().await;
    one.finish().await;
}

async fn login(s: &TestServer, user: &str, password: &str) -> StatusCode {
    s.call_as(
        None,
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"username": user, "password": password})),
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_on_one_node_count_on_the_other() {
    let (one, two) = two_nodes().await;
    let limit = one.config().login_failures_per_account;
    for _ in 1..limit {
        assert_eq!(login(&one, "bob", "wrong").await, StatusCode::UNAUTHORIZED);
    }
    // The last failure the limit allows, on the other node; then the account is
    // throttled there, even for the right password, and on the first node too.
    assert_eq!(login(&two, "bob", "wrong").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&two, "bob", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&one, "bob", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    finish(one, two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_on_two_nodes_is_held_to_the_limit() {
    let (one, two) = two_nodes().await;
    let limit = one.config().login_failures_per_account as usize;
    let guesses: Vec<_> = (0..2 * limit)
        .map(|i| {
            let node = if i % 2 == 0 { &one } else { &two };
            let (http, url) = (node.http.clone(), node.url("/api/v1/auth/login"));
            tokio::spawn(async move {
                let body = json!({"username": "bob", "password": "wrong"});
                http.post(url).json(&body).send().await.unwrap().status()
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            status => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS),
        }
    }
    assert!(
        checked <= limit,
        "{checked} guesses were checked; the limit is {limit}"
    );
    // Refused guesses counted nothing: the rest of the allowance is still there, and
    // not one guess more.
    while login(&two, "bob", "wrong").await == StatusCode::UNAUTHORIZED {
        checked += 1;
        assert!(checked <= limit);
    }
    assert_eq!(checked, limit);
    finish(one, two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_link_passwords_on_one_node_count_on_the_other() {
    let (one, two) = two_nodes().await;
    let resp = one
        .http
        .put(one.url("/api/v1/files/content"))
        .query(&[("path", "/f.txt")])
        .bearer_auth(&one.token)
        .body(b"content".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = one
        .call(
            Method::POST,
            "/api/v1/links",
            Some(json!({"path": "/f.txt", "password": "right one"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let download = format!("/s/{}/download", body["token"].as_str().unwrap());
    let visit = |node: &TestServer, password: &str| {
        node.http
            .get(node.url(&download))
            .header("X-Cairn-Link-Password", password)
            .send()
    };
    // The other node knows the link and its password.
    assert_eq!(
        visit(&two, "right one").await.unwrap().status(),
        StatusCode::OK
    );
    // Ten wrong guesses (the links' limit) on the first node...
    for i in 0..10 {
        let status = visit(&one, "guess").await.unwrap().status();
        assert_eq!(status, StatusCode::FORBIDDEN, "guess {i}");
    }
    // ...and the second refuses even the right password.
    assert_eq!(
        visit(&two, "right one").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    finish(one, two).await;
}

/// One tus request to `node`: the status and the headers.
async fn tus(
    node: &TestServer,
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> (StatusCode, HeaderMap) {
    let mut req = node
        .http
        .request(method, node.url(url))
        .bearer_auth(&node.token)
        .header("tus-resumable", "1.0.0");
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    if let Some(body) = body {
        req = req.body(body.to_vec());
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.headers().clone())
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A new upload of `length` bytes for `path`, created on `node`: its URL.
async fn create(node: &TestServer, path: &str, length: usize) -> String {
    use base64::Engine;
    let path = base64::engine::general_purpose::STANDARD.encode(path);
    let (status, headers) = tus(
        node,
        Method::POST,
        "/api/v1/tus/",
        &[
            ("upload-length", length.to_string()),
            ("upload-metadata", format!("path {path}")),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    header(&headers, "location")
}

/// The upload's offset as `node`'s HEAD answers it.
async fn offset(node: &TestServer, url: &str) -> usize {
    let (status, headers) = tus(node, Method::HEAD, url, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    header(&headers, "upload-offset").parse().unwrap()
}

/// PATCHes `bytes` at `at` through `node`, which must take them all.
async fn patch(node: &TestServer, url: &str, at: usize, bytes: &[u8]) {
    let (status, headers) = tus(
        node,
        Method::PATCH,
        url,
        &[
            ("content-type", UPLOAD.to_owned()),
            ("upload-offset", at.to_string()),
        ],
        Some(bytes),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        header(&headers, "upload-offset"),
        (at + bytes.len()).to_string()
    );
}

async fn download(node: &TestServer, path: &str) -> Vec<u8> {
    let resp = node
        .http
        .get(node.url("/api/v1/files/content"))
        .query(&[("path", path)])
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap().to_vec()
}

/// The id at the end of an upload's URL.
fn upload_id(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// Whether some request holds upload `id`'s lease now. Asking takes a lease that runs
/// out at once, so it never keeps anyone from the upload.
async fn lease_held(node: &TestServer, id: &str) -> bool {
    let now = cairn_server::now_ms();
    let probe = node.state.meta.lease_upload(id, "probe", now, now).await;
    matches!(probe.unwrap(), cairn_meta::LeaseAttempt::HeldUntil(_))
}

/// Waits (boundedly) until whether upload `id`'s lease is held is `held`.
async fn wait_for_lease(node: &TestServer, id: &str, held: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lease_held(node, id).await != held {
        assert!(Instant::now() < deadline, "the lease is never held: {held}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Takes upload `id`'s lease as a node that then dies, holding it for `for_ms` more:
/// when it was taken (Unix ms). Waits for the requests before to give theirs back.
async fn lease_to_a_dead_node(node: &TestServer, id: &str, for_ms: i64) -> i64 {
    wait_for_lease(node, id, false).await;
    let now = cairn_server::now_ms();
    let meta = &node.state.meta;
    let taken = meta.lease_upload(id, "dead node", now, now + for_ms).await;
    assert_eq!(taken.unwrap(), cairn_meta::LeaseAttempt::Taken);
    now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_started_on_one_node_is_finished_on_the_other() {
    let (one, two) = two_nodes().await;
    let bytes = data(900_000, 7);
    let url = create(&one, "/moved.bin", bytes.len()).await;
    patch(&one, &url, 0, &bytes[..150_000]).await;
    assert_eq!(offset(&two, &url).await, 150_000);

    // A PATCH on the first node whose client goes away halfway through its body: the
    // second node's HEAD waits for the first to save what arrived, and tells it.
    let sent = 300_000;
    let mut raw = tokio::net::TcpStream::connect(one.addr).await.unwrap();
    let head = format!(
        "PATCH {url} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: {UPLOAD}\r\nUpload-Offset: 150000\r\n\
         Content-Length: {}\r\n\r\n",
        one.addr,
        one.token,
        bytes.len() - 150_000
    );
    // The HEAD's lease given back first, so that the lease seen held is the PATCH's.
    wait_for_lease(&one, upload_id(&url), false).await;
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&bytes[150_000..150_000 + sent])
        .await
        .unwrap();
    raw.flush().await.unwrap();
    wait_for_lease(&one, upload_id(&url), true).await;
    drop(raw);
    let at = offset(&two, &url).await;
    assert_eq!(at, 150_000 + sent);

    // The rest through the second node; the file is the bytes sent, read on either.
    patch(&two, &url, at, &bytes[at..]).await;
    assert_eq!(download(&two, "/moved.bin").await, bytes);
    assert_eq!(download(&one, "/moved.bin").await, bytes);
    finish(one, two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_lease_blocks_an_upload_only_until_it_runs_out() {
    let (one, two) = two_nodes().await;
    let bytes = data(500_000, 8);
    let url = create(&one, "/orphan.bin", bytes.len()).await;
    patch(&one, &url, 0, &bytes[..200_000]).await;
    let id = upload_id(&url);
    let lease_ms = cairn_server::tus::LEASE.as_millis() as i64;

    // A node died two thirds of a lease after its last renewal: a HEAD on another
    // node waits for the rest of that lease, and no longer.
    let left = Duration::from_millis((lease_ms / 3) as u64);
    lease_to_a_dead_node(&one, id, lease_ms / 3).await;
    let started = Instant::now();
    assert_eq!(offset(&two, &url).await, 200_000);
    let waited = started.elapsed();
    assert!(
        waited + Duration::from_millis(50) >= left,
        "the HEAD answered after {waited:?}, while the dead node's lease had {left:?} left"
    );
    assert!(waited < left + Duration::from_secs(1), "{waited:?}");

    // A node died right after renewing: the PATCH waits a whole lease, within the
    // time a request waits, and then writes.
    lease_to_a_dead_node(&one, id, lease_ms).await;
    let started = Instant::now();
    patch(&two, &url, 200_000, &bytes[200_000..]).await;
    assert!(
        started.elapsed() < cairn_server::tus::LEASE + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(download(&one, "/orphan.bin").await, bytes);
    finish(one, two).await;
}
