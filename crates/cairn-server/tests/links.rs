//! Public links against a real server, on SQLite and on PostgreSQL: the creator's API
//! and the pages at `/s/TOKEN`.

#[macro_use]
mod support;

use std::io::Read;

use cairn_core::{NamespaceId, ServerPath};
use cairn_meta::{Actor, NewLink, Role};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestServer;

/// A client that does not follow redirects (the password form answers 303).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Uploads `data` to `path` with `token`.
async fn put_file(s: &TestServer, token: &str, path: &str, data: &[u8]) {
    let resp = s
        .http
        .put(s.url("/api/v1/files/content"))
        .query(&[("path", path)])
        .bearer_auth(token)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let (status, body) = support::decode(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A file's bytes as its owner downloads them.
async fn owner_file(s: &TestServer, token: &str, path: &str) -> Vec<u8> {
    let resp = s
        .http
        .get(s.url("/api/v1/files/content"))
        .query(&[("path", path)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.bytes().await.unwrap().to_vec()
}

/// `POST /api/v1/links` with `token`.
async fn create_link(s: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
    s.call_as(Some(token), Method::POST, "/api/v1/links", Some(body))
        .await
}

/// Makes a link that must be accepted; returns its token.
async fn link(s: &TestServer, body: Value) -> String {
    let (status, body) = create_link(s, &s.token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(body["url"], s.url(&format!("/s/{token}")), "{body}");
    token
}

/// A public request: status, headers, body.
async fn visit(
    s: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = browser().request(method, s.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

async fn get(s: &TestServer, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    visit(s, Method::GET, path, &[], None).await
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// A random token in the server's format that names no link.
fn unknown_token() -> String {
    (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect()
}

fn varied(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

on_each_backend!(a_password_link_opens_with_the_cookie_or_the_header, |s| {
    put_file(&s, &s.token, "/docs/secret.txt", b"the secret").await;
    let token = link(
        &s,
        json!({"path": "/docs/secret.txt", "password": "hunter2"}),
    )
    .await;

    // Without the password: the form, and no bytes.
    let (status, headers, body) = get(&s, &format!("/s/{token}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(text(&body).contains("type=\"password\""), "{}", text(&body));
    let (status, _, body) = get(&s, &format!("/s/{token}/download")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!text(&body).contains("the secret"));

    // The header, for scripts.
    let download = format!("/s/{token}/download");
    let (status, headers, body) = visit(
        &s,
        Method::GET,
        &download,
        &[("X-Cairn-Link-Password", "hunter2")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"the secret");
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"secret.txt\""));
    let (status, _, body) = visit(
        &s,
        Method::GET,
        &download,
        &[("X-Cairn-Link-Password", "hunter3")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!text(&body).contains("the secret"));

    // The form: a wrong password shows it again; the right one sets a cookie that
    // opens the link from then on.
    let form = |password: &str| {
        browser()
            .post(s.url(&format!("/s/{token}")))
            .form(&[("password", password)])
            .send()
    };
    let wrong = form("nope").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = form("hunter2").await.unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()["location"], format!("/s/{token}"));
    let set_cookie = right.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(
        set_cookie.contains(&format!("Path=/s/{token}")),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (status, _, body) = visit(
        &s,
        Method::GET,
        &format!("/s/{token}"),
        &[("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text(&body).contains("secret.txt"));
    let (status, _, body) = visit(&s, Method::GET, &download, &[("Cookie", &cookie)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"the secret");
    // A forged or another link's cookie proves nothing.
    let forged = format!("cairn_link={}", "0".repeat(64));
    let (status, _, _) = visit(&s, Method::GET, &download, &[("Cookie", &forged)], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    put_file(&s, &s.token, "/docs/other.txt", b"other").await;
    let other = link(
        &s,
        json!({"path": "/docs/other.txt", "password": "hunter2"}),
    )
    .await;
    let (status, _, _) = visit(
        &s,
        Method::GET,
        &format!("/s/{other}/download"),
        &[("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
});

on_each_backend!(
    the_eleventh_wrong_password_is_refused_even_when_right,
    |s| {
        put_file(&s, &s.token, "/f.txt", b"content").await;
        let token = link(&s, json!({"path": "/f.txt", "password": "right one"})).await;
        let page = format!("/s/{token}");
        let download = format!("{page}/download");
        // A cookie got before the guessing starts keeps working: it is not a guess.
        let right = browser()
            .post(s.url(&page))
            .form(&[("password", "right one")])
            .send()
            .await
            .unwrap();
        let cookie = right.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();

        for i in 0..10 {
            let (status, _, _) = if i % 2 == 0 {
                visit(
                    &s,
                    Method::GET,
                    &download,
                    &[("X-Cairn-Link-Password", "guess")],
                    None,
                )
                .await
            } else {
                let resp = browser()
                    .post(s.url(&page))
                    .form(&[("password", "guess")])
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.headers().clone(), Vec::new())
            };
            assert_eq!(status, StatusCode::FORBIDDEN, "guess {i}");
        }
        let (status, headers, body) = visit(
            &s,
            Method::GET,
            &download,
            &[("X-Cairn-Link-Password", "right one")],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(text(&body).contains("Too many"), "{}", text(&body));
        let resp = browser()
            .post(s.url(&page))
            .form(&[("password", "right one")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(resp.headers().get("set-cookie").is_none());
        let (status, _, body) =
            visit(&s, Method::GET, &download, &[("Cookie", &cookie)], None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"content");
    }
);

on_each_backend!(dead_links_all_answer_the_same_404, |s| {
    put_file(&s, &s.token, "/f.txt", b"content").await;
    let admin = s.state.meta.user_by_name("admin").await.unwrap().unwrap();

    // An expiry in the past is refused when asked for; one that passed is stored here.
    let (status, body) =
        create_link(&s, &s.token, json!({"path": "/f.txt", "expires_at": 1_000})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let entry = s
        .state
        .meta
        .stat(admin.home_ns, &ServerPath::parse("/f.txt").unwrap())
        .await
        .unwrap()
        .unwrap();
    let expired = unknown_token();
    s.state
        .meta
        .create_link(NewLink {
            token: expired.clone(),
            creator: admin.id,
            ns: admin.home_ns,
            entry: Some(entry.id),
            password_hash: None,
            expires_at: Some(1_000),
            max_downloads: None,
            upload_only: false,
        })
        .await
        .unwrap();

    // One download allowed: the second finds nothing, and so does the page.
    let exhausted = link(&s, json!({"path": "/f.txt", "max_downloads": 1})).await;
    let (status, _, body) = get(&s, &format!("/s/{exhausted}/download")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"content"[..]));

    let revoked = link(&s, json!({"path": "/f.txt"})).await;
    let (_, listed) = s.call(Method::GET, "/api/v1/links", None).await;
    let id = listed["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["token"] == revoked.as_str())
        .unwrap()["id"]
        .clone();
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/links/revoke",
            Some(json!({"id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    put_file(&s, &s.token, "/gone.txt", b"soon gone").await;
    let deleted = link(&s, json!({"path": "/gone.txt"})).await;
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/gone.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Bob makes a link inside a folder shared with him, then is removed from it.
    let actor = Actor {
        user_id: admin.id,
        device_id: None,
        device_name: "test".into(),
    };
    put_file(&s, &s.token, "/team/plan.txt", b"plan").await;
    let team = s
        .state
        .meta
        .share_folder(admin.home_ns, &ServerPath::parse("/team").unwrap(), &actor)
        .await
        .unwrap();
    let bob = s.state.meta.user_by_name("bob").await.unwrap().unwrap();
    s.state
        .meta
        .add_member(team, bob.id, Role::Editor, &actor)
        .await
        .unwrap();
    let bob_token = s.login("bob").await;
    let (status, body) = create_link(&s, &bob_token, json!({"path": "/team/plan.txt"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let outsider = body["token"].as_str().unwrap().to_owned();
    let (status, _, body) = get(&s, &format!("/s/{outsider}/download")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"plan"[..]));
    assert!(s
        .state
        .meta
        .remove_member(team, bob.id, &actor)
        .await
        .unwrap());

    let reference = get(&s, &format!("/s/{}", unknown_token())).await;
    assert_eq!(reference.0, StatusCode::NOT_FOUND);
    let mut probes = Vec::new();
    for token in [&expired, &exhausted, &revoked, &deleted, &outsider] {
        probes.push(format!("/s/{token}"));
        probes.push(format!("/s/{token}/download"));
    }
    probes.push("/s/not-a-token".to_owned());
    probes.push(format!("/s/{}/download", unknown_token()));
    probes.push(format!("/s/{}/zip", unknown_token()));
    for probe in &probes {
        let (status, headers, body) = get(&s, probe).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{probe}");
        assert_eq!(body, reference.2, "{probe}: the same bytes");
        assert_eq!(
            headers["content-type"], reference.1["content-type"],
            "{probe}"
        );
        assert_eq!(
            headers.get("content-length"),
            reference.1.get("content-length")
        );
    }

    // The creator sees why each stopped working.
    let (_, listed) = s.call(Method::GET, "/api/v1/links", None).await;
    let status_of = |token: &str| {
        listed["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["token"] == token)
            .map(|l| (l["status"].clone(), l["path"].clone()))
            .unwrap()
    };
    assert_eq!(status_of(&expired), (json!("expired"), json!("/f.txt")));
    assert_eq!(status_of(&exhausted), (json!("exhausted"), json!("/f.txt")));
    assert_eq!(status_of(&revoked), (json!("revoked"), json!("/f.txt")));
    assert_eq!(status_of(&deleted), (json!("gone"), Value::Null));
    let (_, bobs) = s
        .call_as(Some(&bob_token), Method::GET, "/api/v1/links", None)
        .await;
    assert_eq!(bobs["links"][0]["status"], "gone", "{bobs}");
});

/// A multipart form body with one file per `(name, bytes)`.
fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----cairn-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, data) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

on_each_backend!(a_file_drop_takes_uploads_and_shows_nothing, |s| {
    put_file(&s, &s.token, "/inbox/existing-secret.txt", b"private").await;
    let (status, body) = create_link(
        &s,
        &s.token,
        json!({"path": "/inbox/existing-secret.txt", "upload_only": true}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a drop needs a folder: {body}"
    );
    let token = link(&s, json!({"path": "/inbox", "upload_only": true})).await;

    let (status, _, page) = get(&s, &format!("/s/{token}")).await;
    assert_eq!(status, StatusCode::OK);
    let page = text(&page);
    assert!(page.contains("type=\"file\""), "{page}");
    assert!(!page.contains("existing-secret"), "{page}");

    // A browser's form, then a script's raw body under the same name: both kept.
    let big = varied(300 << 10, 1);
    let (content_type, form) = multipart(&[("report.txt", &big), ("notes.md", b"# notes")]);
    let (status, _, page) = visit(
        &s,
        Method::POST,
        &format!("/s/{token}/upload"),
        &[("Content-Type", &content_type)],
        Some(form),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", text(&page));
    assert!(text(&page).contains("report.txt"));
    assert!(!text(&page).contains("existing-secret"));
    assert_eq!(owner_file(&s, &s.token, "/inbox/report.txt").await, big);
    assert_eq!(
        owner_file(&s, &s.token, "/inbox/notes.md").await,
        b"# notes"
    );

    let (status, _, answer) = visit(
        &s,
        Method::PUT,
        &format!("/s/{token}/upload?name=report.txt"),
        &[],
        Some(b"second report".to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{}", text(&answer));
    assert_eq!(text(&answer), "received report.txt (13 bytes)\n");
    assert_eq!(
        owner_file(&s, &s.token, "/inbox/report.txt").await,
        big,
        "not clobbered"
    );
    let (_, listing) = s
        .call(Method::GET, "/api/v1/files/list?path=/inbox", None)
        .await;
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let copy = names
        .iter()
        .find(|n| n.starts_with("report (") && n.ends_with(").txt"))
        .unwrap_or_else(|| panic!("no renamed copy in {names:?}"));
    assert_eq!(
        owner_file(&s, &s.token, &format!("/inbox/{copy}")).await,
        b"second report"
    );
    // Names that would leave the folder are reduced to their last segment.
    let (status, _, _) = visit(
        &s,
        Method::PUT,
        &format!("/s/{token}/upload?name=..%2F..%2Fescape.txt"),
        &[],
        Some(b"x".to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(owner_file(&s, &s.token, "/inbox/escape.txt").await, b"x");

    // Nothing can be read through it.
    for probe in [
        format!("/s/{token}/download?path=/report.txt"),
        format!("/s/{token}/download?path=/existing-secret.txt"),
        format!("/s/{token}/zip"),
        format!("/s/{token}?path=/report.txt"),
    ] {
        let (status, _, body) = get(&s, &probe).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{probe}");
        assert!(!text(&body).contains("private"));
    }
    // And a link that is not a drop takes no uploads.
    let reader = link(&s, json!({"path": "/inbox"})).await;
    let (status, _, _) = visit(
        &s,
        Method::PUT,
        &format!("/s/{reader}/upload?name=x.txt"),
        &[],
        Some(b"x".to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});

on_each_backend!(
    a_folder_link_lists_downloads_and_zips_only_its_folder,
    |s| {
        let big = varied(600 << 10, 7);
        put_file(&s, &s.token, "/share/a.txt", b"alpha").await;
        put_file(&s, &s.token, "/share/sub/b.bin", &big).await;
        put_file(&s, &s.token, "/share/sub/deeper/c.txt", b"gamma").await;
        put_file(&s, &s.token, "/share/<b>&'x'.txt", b"tricky").await;
        let (status, _) = s
            .call(
                Method::POST,
                "/api/v1/files/mkdir",
                Some(json!({"path": "/share/empty"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        put_file(&s, &s.token, "/outside.txt", b"OUTSIDE").await;
        let token = link(&s, json!({"path": "/share"})).await;

        let (status, headers, page) = get(&s, &format!("/s/{token}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        let page = text(&page);
        assert!(page.contains("a.txt") && page.contains("sub/") && page.contains("empty/"));
        assert!(page.contains("&lt;b&gt;&amp;&#39;x&#39;.txt"), "{page}");
        assert!(!page.contains("<b>&"), "names are escaped: {page}");
        assert!(!page.contains("<script"));
        let (status, _, page) = get(&s, &format!("/s/{token}?path=/sub")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(text(&page).contains("b.bin") && text(&page).contains("deeper/"));
        let (status, _, body) = get(&s, &format!("/s/{token}/download?path=/sub/b.bin")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, big);

        // Nothing outside the folder, however the path is spelled.
        for probe in [
            "?path=/../outside.txt",
            "?path=/%2e%2e/outside.txt",
            "?path=%2F%2E%2E%2Foutside.txt",
            "?path=/sub/../../outside.txt",
            "?path=/sub/%2e%2e/%2e%2e/outside.txt",
            "?path=../outside.txt",
            "?path=/outside.txt",
        ] {
            for route in ["", "/download", "/zip"] {
                let url = format!("/s/{token}{route}{probe}");
                let (status, _, body) = get(&s, &url).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{url}");
                assert!(!text(&body).contains("OUTSIDE"), "{url}");
            }
        }

        // The zip holds the tree below the folder's name, with every byte right.
        let (status, headers, zip) = get(&s, &format!("/s/{token}/zip")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/zip");
        assert!(headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("share.zip"));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut files = std::collections::BTreeMap::new();
        // Every entry, folders included, ends with its data descriptor (16 bytes) right
        // before the next one begins: Info-ZIP's unzip refuses "overlapped components".
        let mut spans = Vec::new();
        for i in 0..archive.len() {
            let file = archive.by_index(i).unwrap();
            spans.push((
                file.header_start(),
                file.data_start() + file.compressed_size(),
            ));
        }
        spans.sort();
        for pair in spans.windows(2) {
            assert_eq!(pair[0].1 + 16, pair[1].0, "{spans:?}");
        }
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            files.insert(file.name().to_owned(), data);
        }
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "share/",
                "share/<b>&'x'.txt",
                "share/a.txt",
                "share/empty/",
                "share/sub/",
                "share/sub/b.bin",
                "share/sub/deeper/",
                "share/sub/deeper/c.txt",
            ]
        );
        assert_eq!(files["share/a.txt"], b"alpha");
        assert_eq!(files["share/sub/b.bin"], big);
        assert_eq!(files["share/sub/deeper/c.txt"], b"gamma");

        let (status, _, zip) = get(&s, &format!("/s/{token}/zip?path=/sub/deeper")).await;
        assert_eq!(status, StatusCode::OK);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut data = String::new();
        archive
            .by_name("deeper/c.txt")
            .unwrap()
            .read_to_string(&mut data)
            .unwrap();
        assert_eq!(data, "gamma");

        // The link follows its folder when it is renamed.
        let (status, _) = s
            .call(
                Method::POST,
                "/api/v1/files/move",
                Some(json!({"from": "/share", "to": "/shared"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = get(&s, &format!("/s/{token}/download?path=/a.txt")).await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"alpha"[..]));
        let (_, listed) = s.call(Method::GET, "/api/v1/links", None).await;
        assert_eq!(listed["links"][0]["path"], "/shared");
    }
);

on_each_backend!(links_are_private_to_their_creator, |s| {
    put_file(&s, &s.token, "/docs/f.txt", b"mine").await;
    let token = link(&s, json!({"path": "/docs/f.txt", "max_downloads": 5})).await;
    let (status, listed) = s.call(Method::GET, "/api/v1/links", None).await;
    assert_eq!(status, StatusCode::OK);
    let mine = &listed["links"][0];
    assert_eq!(mine["token"], token.as_str());
    assert_eq!(
        (
            mine["status"].clone(),
            mine["kind"].clone(),
            mine["max_downloads"].clone()
        ),
        (json!("active"), json!("file"), json!(5))
    );
    assert_eq!(mine["has_password"], false);
    let id = mine["id"].as_i64().unwrap();

    let bob = s.login("bob").await;
    let (status, theirs) = s
        .call_as(Some(&bob), Method::GET, "/api/v1/links", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(theirs["links"], json!([]));
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/links/revoke",
            Some(json!({"id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/links/revoke",
            Some(json!({"id": 999_999})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the same as a link that does not exist"
    );
    // Bob's /docs/f.txt is his own (and missing).
    let (status, _) = create_link(&s, &bob, json!({"path": "/docs/f.txt"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = get(&s, &format!("/s/{token}/download")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"mine"[..]));

    // Without a login, nothing.
    for (method, path, body) in [
        (Method::GET, "/api/v1/links", None),
        (
            Method::POST,
            "/api/v1/links",
            Some(json!({"path": "/docs/f.txt"})),
        ),
        (
            Method::POST,
            "/api/v1/links/revoke",
            Some(json!({"id": id})),
        ),
    ] {
        let (status, _) = s.call_as(None, method, path, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Requests that make no sense are refused with reasons.
    for body in [
        json!({"path": "/"}),
        json!({"path": "/docs/../x"}),
        json!({"path": "/docs/f.txt", "max_downloads": 0}),
        json!({"path": "/docs/f.txt", "password": ""}),
        json!({"path": "/docs", "upload_only": true, "max_downloads": 3}),
    ] {
        let (status, answer) = create_link(&s, &s.token, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/links/revoke",
            Some(json!({"id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = get(&s, &format!("/s/{token}/download")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});

on_each_backend!(
    a_viewer_can_link_a_shared_folder_but_not_drop_into_it,
    |s| {
        let admin = s.state.meta.user_by_name("admin").await.unwrap().unwrap();
        let actor = Actor {
            user_id: admin.id,
            device_id: None,
            device_name: "test".into(),
        };
        put_file(&s, &s.token, "/team/plan.txt", b"plan").await;
        let team: NamespaceId = s
            .state
            .meta
            .share_folder(admin.home_ns, &ServerPath::parse("/team").unwrap(), &actor)
            .await
            .unwrap();
        let bob = s.state.meta.user_by_name("bob").await.unwrap().unwrap();
        s.state
            .meta
            .add_member(team, bob.id, Role::Viewer, &actor)
            .await
            .unwrap();
        let bob_token = s.login("bob").await;
        let (status, body) = create_link(
            &s,
            &bob_token,
            json!({"path": "/team", "upload_only": true}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        // The shared folder's top itself can be linked, and zipped under its name.
        let (status, body) = create_link(&s, &bob_token, json!({"path": "/team"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["path"], "/team");
        let token = body["token"].as_str().unwrap().to_owned();
        let (status, _, zip) = get(&s, &format!("/s/{token}/zip")).await;
        assert_eq!(status, StatusCode::OK);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut data = String::new();
        archive
            .by_name("team/plan.txt")
            .unwrap()
            .read_to_string(&mut data)
            .unwrap();
        assert_eq!(data, "plan");
        // The owner's drop into the same folder works, and lands in the shared namespace.
        let drop = link(&s, json!({"path": "/team", "upload_only": true})).await;
        let (status, _, _) = visit(
            &s,
            Method::PUT,
            &format!("/s/{drop}/upload?name=dropped.txt"),
            &[],
            Some(b"dropped".to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            owner_file(&s, &bob_token, "/team/dropped.txt").await,
            b"dropped"
        );
    }
);

#[test]
fn the_api_routes_are_in_the_openapi_document() {
    // Kept in step by hand; see `openapi.rs`.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = TestServer::start(support::Backend::Sqlite).await;
        let (_, doc) = s
            .call_as(None, Method::GET, "/api/v1/openapi.json", None)
            .await;
        for path in ["/api/v1/links", "/api/v1/links/revoke"] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["components"]["schemas"]["LinkInfo"].is_object());
        s.finish().await;
    });
}

/// The key that signs link cookies is the deployment's, kept in the metadata store: a
/// restart (or another node on the same database) accepts the cookies given before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cookie_outlives_a_restart_of_the_server() {
    for backend in support::BACKENDS {
        let mut s = TestServer::start(backend).await;
        put_file(&s, &s.token, "/f.txt", b"kept").await;
        let token = link(&s, json!({"path": "/f.txt", "password": "hunter2"})).await;
        let right = browser()
            .post(s.url(&format!("/s/{token}")))
            .form(&[("password", "hunter2")])
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), StatusCode::SEE_OTHER);
        let set_cookie = right.headers()["set-cookie"].to_str().unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        s.stop().await;
        s.start_again().await;
        let download = format!("/s/{token}/download");
        let (status, _, body) =
            visit(&s, Method::GET, &download, &[("Cookie", &cookie)], None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"kept");
        s.finish().await;
    }
}
