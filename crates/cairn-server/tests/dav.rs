//! WebDAV at `/dav/`, on SQLite and PostgreSQL: who may do what through it (a viewer of
//! a shared folder changes nothing, another account's paths do not exist for a
//! caller), and what Cairn adds around `dav-server`: a refused `Depth: infinity`, a
//! folder deleted whole into the trash, quota and bad names refused with nothing
//! stored, `X-OC-Mtime`, locks that survive a restart and hold on every node, and
//! headers that could trip the protocol library answered with a 400.
//!
//! The protocol itself is checked by litmus and real clients (`crates/cairn/tests/webdav.rs`).

#[macro_use]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Backend, TestServer};

/// A WebDAV client of one account.
struct Dav {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl Dav {
    async fn of(s: &TestServer, user: &str) -> Dav {
        Dav {
            http: reqwest::Client::new(),
            base: s.url("/dav"),
            user: user.to_owned(),
            password: dav_password(s, user).await,
        }
    }

    fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
    }

    async fn status(&self, method: &str, path: &str) -> StatusCode {
        self.request(method, path).send().await.unwrap().status()
    }

    async fn put(&self, path: &str, body: &[u8]) -> StatusCode {
        self.request("PUT", path)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let response = self.request("GET", path).send().await.unwrap();
        let status = response.status();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// COPY or MOVE to `to` (a path under `/dav`).
    async fn transfer(&self, method: &str, from: &str, to: &str) -> StatusCode {
        self.request(method, from)
            .header("destination", format!("{}{to}", self.base))
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// The password a WebDAV client uses for `user`: a new app password.
async fn dav_password(s: &TestServer, user: &str) -> String {
    let token = s.login(user).await;
    let name = format!("dav-{:08x}", rand::random::<u32>());
    let (status, body) = s
        .call_as(
            Some(&token),
            Method::POST,
            "/api/v1/account/app-passwords",
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["password"].as_str().unwrap().to_owned()
}

async fn stat(s: &TestServer, token: &str, path: &str) -> (StatusCode, serde_json::Value) {
    s.call_as(
        Some(token),
        Method::GET,
        &format!("/api/v1/files/stat?path={}", urlencode(path)),
        None,
    )
    .await
}

fn urlencode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The root's ETag, as PROPFIND gives it.
async fn root_etag(dav: &Dav) -> String {
    let xml = dav
        .request("PROPFIND", "/")
        .header("depth", "0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = xml.find("<D:getetag>").expect("an etag") + "<D:getetag>".len();
    let end = start + xml[start..].find('<').unwrap();
    xml[start..end].to_owned()
}

on_each_backend!(files_go_in_and_out_through_webdav, |s| {
    let dav = Dav::of(&s, "admin").await;
    let head = s.journal_head().await;
    let root_before = root_etag(&dav).await;
    assert_eq!(dav.status("MKCOL", "/Docs").await, StatusCode::CREATED);
    assert_eq!(
        dav.put("/Docs/a b é.txt", b"hello").await,
        StatusCode::CREATED
    );
    // Journaled like any change, so sync clients and open pages hear of it; the root's
    // tag moves with it, so a client polling the top sees that something changed.
    assert_eq!(s.journal_head().await, head + 2);
    assert_ne!(root_etag(&dav).await, root_before);
    assert_eq!(
        dav.get("/Docs/a%20b%20%C3%A9.txt").await,
        (StatusCode::OK, b"hello".to_vec())
    );
    // The same file through the JSON API: one tree.
    let (status, entry) = stat(&s, &s.token, "/Docs/a b é.txt").await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["size"], 5);
    // A new version replaces it; the old one is in its history.
    assert_eq!(
        dav.put("/Docs/a b é.txt", b"hello again").await,
        StatusCode::NO_CONTENT
    );
    let (_, versions) = s
        .call(
            Method::GET,
            &format!(
                "/api/v1/files/versions?path={}",
                urlencode("/Docs/a b é.txt")
            ),
            None,
        )
        .await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    // A range.
    let response = dav
        .request("GET", "/Docs/a%20b%20%C3%A9.txt")
        .header("range", "bytes=6-10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&response.bytes().await.unwrap()[..], b"again");
    // PUT into a folder that does not exist is a conflict, and makes nothing.
    assert_eq!(dav.put("/Nowhere/x.txt", b"x").await, StatusCode::CONFLICT);
    let (status, _) = stat(&s, &s.token, "/Nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});

on_each_backend!(
    a_viewer_changes_nothing_and_another_account_sees_nothing,
    |s| {
        let hash = cairn_server::hash_password(s.config(), support::PASSWORD.into())
            .await
            .unwrap();
        s.state
            .meta
            .create_user("carol", &hash, false, None)
            .await
            .unwrap();
        let alice = Dav::of(&s, "admin").await;
        assert_eq!(alice.status("MKCOL", "/Team").await, StatusCode::CREATED);
        assert_eq!(
            alice.put("/Team/plan.txt", b"plan").await,
            StatusCode::CREATED
        );
        assert_eq!(
            alice.status("MKCOL", "/Team/sub").await,
            StatusCode::CREATED
        );
        for (user, role) in [("bob", "viewer")] {
            let (status, body) = s
                .call(
                    Method::POST,
                    "/api/v1/shares",
                    Some(json!({"path": "/Team", "with": user, "role": role})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let viewer = Dav::of(&s, "bob").await;
        assert_eq!(
            viewer.get("/Team/plan.txt").await,
            (StatusCode::OK, b"plan".to_vec())
        );
        assert_eq!(
            viewer.status("PROPFIND", "/Team/").await,
            StatusCode::MULTI_STATUS
        );
        let lock = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
        let proppatch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:color>red</Z:color></D:prop></D:set></D:propertyupdate>"#;
        let writes: Vec<(&str, reqwest::RequestBuilder)> = vec![
            ("PUT new", viewer.request("PUT", "/Team/new.txt").body("x")),
            (
                "PUT over",
                viewer.request("PUT", "/Team/plan.txt").body("x"),
            ),
            ("MKCOL", viewer.request("MKCOL", "/Team/newdir")),
            ("DELETE file", viewer.request("DELETE", "/Team/plan.txt")),
            ("DELETE folder", viewer.request("DELETE", "/Team/sub")),
            (
                "PROPPATCH",
                viewer
                    .request("PROPPATCH", "/Team/plan.txt")
                    .body(proppatch),
            ),
            ("LOCK", viewer.request("LOCK", "/Team/plan.txt").body(lock)),
            (
                "MOVE out",
                viewer
                    .request("MOVE", "/Team/plan.txt")
                    .header("destination", format!("{}/mine.txt", viewer.base)),
            ),
            (
                "MOVE within",
                viewer
                    .request("MOVE", "/Team/plan.txt")
                    .header("destination", format!("{}/Team/plan2.txt", viewer.base)),
            ),
            (
                "COPY in",
                viewer
                    .request("COPY", "/Team/plan.txt")
                    .header("destination", format!("{}/Team/copy.txt", viewer.base)),
            ),
        ];
        for (what, request) in writes {
            let status = request.send().await.unwrap().status();
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} by a viewer");
        }
        // Nothing changed.
        assert_eq!(
            alice.get("/Team/plan.txt").await,
            (StatusCode::OK, b"plan".to_vec())
        );
        for path in [
            "/Team/new.txt",
            "/Team/newdir",
            "/Team/plan2.txt",
            "/Team/copy.txt",
        ] {
            assert_eq!(
                alice.status("PROPFIND", path).await,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        assert_eq!(
            alice.status("PROPFIND", "/Team/sub").await,
            StatusCode::MULTI_STATUS
        );
        // A viewer may copy out into its own tree.
        assert_eq!(
            viewer.transfer("COPY", "/Team/plan.txt", "/mine.txt").await,
            StatusCode::CREATED
        );
        // Another account: Alice's paths are not there at all.
        let carol = Dav::of(&s, "carol").await;
        assert_eq!(carol.get("/Team/plan.txt").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            carol.status("PROPFIND", "/Team/").await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            carol.status("DELETE", "/Team/plan.txt").await,
            StatusCode::NOT_FOUND
        );
        // And no credentials at all is a 401 that names the scheme.
        let response = reqwest::Client::new()
            .request(Method::from_bytes(b"PROPFIND").unwrap(), s.url("/dav/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
    }
);

on_each_backend!(a_folder_deleted_goes_to_the_trash_whole, |s| {
    let dav = Dav::of(&s, "admin").await;
    assert_eq!(dav.status("MKCOL", "/Old").await, StatusCode::CREATED);
    assert_eq!(dav.status("MKCOL", "/Old/inner").await, StatusCode::CREATED);
    for name in ["a.txt", "b.txt", "inner/c.txt"] {
        assert_eq!(
            dav.put(&format!("/Old/{name}"), name.as_bytes()).await,
            StatusCode::CREATED
        );
    }
    assert_eq!(dav.status("DELETE", "/Old").await, StatusCode::NO_CONTENT);
    let (_, trash) = s.call(Method::GET, "/api/v1/trash", None).await;
    let items = trash["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{trash}");
    assert_eq!(items[0]["path"], "/Old");
    // Restored as one folder, contents and all.
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/trash/restore",
            Some(json!({"id": items[0]["id"]})),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(
        dav.get("/Old/inner/c.txt").await,
        (StatusCode::OK, b"inner/c.txt".to_vec())
    );
    // A folder replaced by MOVE with Overwrite goes the same way.
    assert_eq!(dav.status("MKCOL", "/New").await, StatusCode::CREATED);
    assert_eq!(dav.put("/New/n.txt", b"n").await, StatusCode::CREATED);
    assert_eq!(
        dav.transfer("MOVE", "/New", "/Old").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(dav.get("/Old/n.txt").await, (StatusCode::OK, b"n".to_vec()));
    let (_, trash) = s.call(Method::GET, "/api/v1/trash", None).await;
    let paths: Vec<&str> = trash["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/Old"], "{trash}");
});

on_each_backend!(what_cannot_be_stored_is_refused_and_leaves_nothing, |s| {
    let dav = Dav::of(&s, "bob").await;
    let bob = s.login("bob").await;
    assert!(s.state.meta.set_quota("bob", Some(1000)).await.unwrap());
    let status = dav.put("/big.bin", &vec![7u8; 5000]).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(stat(&s, &bob, "/big.bin").await.0, StatusCode::NOT_FOUND);
    // A name Cairn cannot store: a 400 that says why.
    let response = dav
        .request("PUT", "/bad%FFname")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("UTF-8"));
    // A body cut short of its declared length stores nothing.
    {
        use tokio::io::AsyncWriteExt;
        let mut socket = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let credentials = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", dav.user, dav.password))
        };
        let head = format!(
            "PUT /dav/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\n\
             Content-Length: 500\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&[1u8; 100]).await.unwrap();
        socket.shutdown().await.unwrap();
        drop(socket);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(stat(&s, &bob, "/cut.bin").await.0, StatusCode::NOT_FOUND);
    // Depth: infinity is refused, with RFC 4918's precondition.
    let response = dav
        .request("PROPFIND", "/")
        .header("depth", "infinity")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("propfind-finite-depth"));
    // An If header the protocol library would choke on is a 400; the server goes on.
    let response = dav
        .request("PUT", "/x.txt")
        .header("if", "(<urn:uuid:1> [\"abc")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(dav.put("/x.txt", b"x").await, StatusCode::CREATED);
});

on_each_backend!(modification_times_come_from_x_oc_mtime, |s| {
    let dav = Dav::of(&s, "admin").await;
    let response = dav
        .request("PUT", "/dated.txt")
        .header("x-oc-mtime", "1500000000")
        .body("old")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-oc-mtime"], "accepted");
    let (_, entry) = stat(&s, &s.token, "/dated.txt").await;
    assert_eq!(entry["mtime"], 1_500_000_000_000i64, "{entry}");
    let response = dav
        .request("PROPFIND", "/dated.txt")
        .header("depth", "0")
        .body(r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><D:getlastmodified/><D:getetag/><oc:fileid/><oc:permissions/></D:prop></D:propfind>"#)
        .send()
        .await
        .unwrap();
    let xml = response.text().await.unwrap();
    assert!(xml.contains("Fri, 14 Jul 2017 02:40:00 GMT"), "{xml}");
    assert!(xml.contains("fileid>"), "{xml}");
    assert!(xml.contains("DNVW"), "{xml}");
    let bad = dav
        .request("PUT", "/dated.txt")
        .header("x-oc-mtime", "yesterday")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
});

const LOCK_BODY: &str = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>"#;

/// Locks `path` and returns the lock token.
async fn lock(dav: &Dav, path: &str) -> String {
    let response = dav
        .request("LOCK", path)
        .header("timeout", "Second-600")
        .body(LOCK_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["lock-token"]
        .to_str()
        .unwrap()
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_survives_a_restart() {
    for backend in support::BACKENDS {
        let mut s = TestServer::start(backend).await;
        lock_restart_unlock(&mut s).await;
        s.finish().await;
    }
}

async fn lock_restart_unlock(s: &mut TestServer) {
    let dav = Dav::of(s, "admin").await;
    assert_eq!(dav.put("/locked.txt", b"one").await, StatusCode::CREATED);
    let token = lock(&dav, "/locked.txt").await;
    s.stop().await;
    s.start_again().await;
    let dav = Dav::of(s, "admin").await;
    assert_eq!(dav.put("/locked.txt", b"two").await, StatusCode::LOCKED);
    let with_token = dav
        .request("PUT", "/locked.txt")
        .header("if", format!("(<{token}>)"))
        .body("two")
        .send()
        .await
        .unwrap();
    assert!(with_token.status().is_success(), "{}", with_token.status());
    let unlock = dav
        .request("UNLOCK", "/locked.txt")
        .header("lock-token", format!("<{token}>"))
        .send()
        .await
        .unwrap();
    assert_eq!(unlock.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        dav.put("/locked.txt", b"three").await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_taken_on_one_node_holds_on_the_other() {
    let one = TestServer::start(Backend::Postgres).await;
    let mut two = one.another_node().await;
    let on_one = Dav::of(&one, "admin").await;
    let on_two = Dav::of(&two, "admin").await;
    assert_eq!(on_one.put("/shared.txt", b"one").await, StatusCode::CREATED);
    let token = lock(&on_one, "/shared.txt").await;
    assert_eq!(on_two.put("/shared.txt", b"two").await, StatusCode::LOCKED);
    // A second exclusive lock is refused there too.
    let response = on_two
        .request("LOCK", "/shared.txt")
        .body(LOCK_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::LOCKED);
    let with_token = on_two
        .request("PUT", "/shared.txt")
        .header("if", format!("(<{token}>)"))
        .body("two")
        .send()
        .await
        .unwrap();
    assert!(with_token.status().is_success(), "{}", with_token.status());
    assert_eq!(
        on_one.get("/shared.txt").await,
        (StatusCode::OK, b"two".to_vec())
    );
    two.stop().await;
    two.finish().await;
    one.finish().await;
}

on_each_backend!(windows_and_macos_quirks_work, |s| {
    let dav = Dav::of(&s, "admin").await;
    // Windows locks a new name before it writes it, then writes with the token.
    let response = dav
        .request("LOCK", "/from windows.docx")
        .header("timeout", "Infinite, Second-4100000000")
        .body(LOCK_BODY)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let token = response.headers()["lock-token"]
        .to_str()
        .unwrap()
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned();
    let put = dav
        .request("PUT", "/from%20windows.docx")
        .header("if", format!("(<{token}>)"))
        .body("document")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    // Then sets its Win32 times, which are taken without complaint.
    let win32 = r#"<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop><Z:Win32CreationTime>Mon, 07 Dec 2026 10:00:00 GMT</Z:Win32CreationTime><Z:Win32LastAccessTime>Mon, 07 Dec 2026 10:00:00 GMT</Z:Win32LastAccessTime><Z:Win32LastModifiedTime>Mon, 07 Dec 2026 10:00:00 GMT</Z:Win32LastModifiedTime><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>"#;
    let response = dav
        .request("PROPPATCH", "/from%20windows.docx")
        .header("if", format!("(<{token}>)"))
        .body(win32)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MULTI_STATUS);
    let xml = response.text().await.unwrap();
    assert!(xml.contains("200 OK") && !xml.contains("403"), "{xml}");
    let unlock = dav
        .request("UNLOCK", "/from%20windows.docx")
        .header("lock-token", format!("<{token}>"))
        .send()
        .await
        .unwrap();
    assert_eq!(unlock.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        dav.get("/from%20windows.docx").await,
        (StatusCode::OK, b"document".to_vec())
    );
    // macOS writes its `._` companions, and sends bodies chunked with the length in
    // X-Expected-Entity-Length.
    let body = reqwest::Body::wrap_stream(futures::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"resource ")),
        Ok(bytes::Bytes::from_static(b"fork")),
    ]));
    let response = dav
        .request("PUT", "/._photo.jpg")
        .header("x-expected-entity-length", "13")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        dav.get("/._photo.jpg").await,
        (StatusCode::OK, b"resource fork".to_vec())
    );
});

on_each_backend!(nothing_served_from_webdav_acts_in_the_origin, |s| {
    let dav = Dav::of(&s, "admin").await;
    let page = b"<html><script>fetch('/api/v1/auth/session')</script></html>";
    assert_eq!(dav.put("/evil.html", page).await, StatusCode::CREATED);
    assert_eq!(dav.put("/<b>bold.txt", b"x").await, StatusCode::CREATED);
    for path in ["/evil.html", "/"] {
        let response = dav.request("GET", path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; sandbox"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        if path == "/" {
            // The listing a browser gets escapes names.
            let html = response.text().await.unwrap();
            assert!(html.contains("evil.html"), "{html}");
            assert!(!html.contains("<b>bold"), "{html}");
        }
    }
    // Methods WebDAV does not use are refused before anything else.
    for method in ["POST", "PATCH"] {
        let response = reqwest::Client::new()
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                s.url("/dav/evil.html"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
    }
});

on_each_backend!(only_a_live_app_password_opens_webdav, |s| {
    let dav = Dav::of(&s, "bob").await;
    assert_eq!(dav.status("PROPFIND", "/").await, StatusCode::MULTI_STATUS);
    // The account's password is refused, with what to use instead.
    let response = reqwest::Client::new()
        .request(Method::from_bytes(b"PROPFIND").unwrap(), s.url("/dav/"))
        .basic_auth("bob", Some(support::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("app password"));
    // Another account's app password with this user name is no good either.
    let alice = Dav::of(&s, "admin").await;
    let response = dav
        .http
        .request(Method::from_bytes(b"PROPFIND").unwrap(), s.url("/dav/"))
        .basic_auth("bob", Some(&alice.password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Revoked, it is refused on its very next request.
    let bob = s.login("bob").await;
    let (_, list) = s
        .call_as(
            Some(&bob),
            Method::GET,
            "/api/v1/account/app-passwords",
            None,
        )
        .await;
    let name = list["app_passwords"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s
        .call_as(
            Some(&bob),
            Method::DELETE,
            &format!("/api/v1/account/app-passwords/{name}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(dav.status("PROPFIND", "/").await, StatusCode::UNAUTHORIZED);
    assert_eq!(dav.put("/after.txt", b"x").await, StatusCode::UNAUTHORIZED);
});
