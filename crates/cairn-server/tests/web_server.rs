//! The web interface's server side, on SQLite and PostgreSQL: the page and its assets,
//! and browser sessions (the cookie, its CSRF token, its Origin check, its expiry).

#[macro_use]
mod support;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer, PASSWORD};

/// Signs `user` in as a browser does; returns the cookie pair to send back
/// (`cairn_session=…`), the CSRF token, and the `Set-Cookie` header as given.
async fn sign_in(s: &TestServer, user: &str) -> (String, String, String) {
    let resp = s
        .http
        .post(s.url("/api/v1/auth/session"))
        .json(&json!({"username": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let set_cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["name"], user);
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    (
        pair,
        body["csrf_token"].as_str().unwrap().to_owned(),
        set_cookie,
    )
}

/// A request carried by a session cookie, with extra headers.
async fn with_cookie(
    s: &TestServer,
    method: Method,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s
        .http
        .request(method, s.url(path))
        .header(header::COOKIE, cookie);
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    support::decode(req.send().await.unwrap()).await
}

on_each_backend!(a_browser_session_is_a_cookie_with_a_csrf_token, |s| {
    let (cookie, csrf, set_cookie) = sign_in(&s, "bob").await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP cannot keep a Secure cookie"
    );

    // Reads need only the cookie.
    let (status, body) = with_cookie(&s, Method::GET, "/api/v1/account", &cookie, &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["name"], "bob");
    let (status, body) =
        with_cookie(&s, Method::GET, "/api/v1/auth/session", &cookie, &[], None).await;
    assert_eq!(
        (status, body["csrf_token"].as_str()),
        (StatusCode::OK, Some(csrf.as_str()))
    );

    // A change without the CSRF token, or with a wrong one, is refused and changes nothing.
    let mkdir = |name: &str| Some(json!({"path": format!("/{name}")}));
    for headers in [
        vec![],
        vec![("x-cairn-csrf", "0123456789abcdef0123456789abcdef")],
    ] {
        let (status, body) = with_cookie(
            &s,
            Method::POST,
            "/api/v1/files/mkdir",
            &cookie,
            &headers,
            mkdir("forged"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "csrf_failed");
    }
    // So is one from another site's page, even with the token.
    let (status, body) = with_cookie(
        &s,
        Method::POST,
        "/api/v1/files/mkdir",
        &cookie,
        &[("x-cairn-csrf", &csrf), ("origin", "https://evil.example")],
        mkdir("forged"),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("csrf_failed"))
    );
    let bob = s.login("bob").await;
    let (status, _) = s
        .call_as(
            Some(&bob),
            Method::GET,
            "/api/v1/files/stat?path=/forged",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // With the token, from the server's own page, it is done.
    let origin = format!("http://{}", s.addr);
    let (status, body) = with_cookie(
        &s,
        Method::POST,
        "/api/v1/files/mkdir",
        &cookie,
        &[("x-cairn-csrf", &csrf), ("origin", &origin)],
        mkdir("Photos"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A bearer token needs no CSRF token, and a cookie holding one is not a session.
    let (status, _) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/files/mkdir",
            mkdir("Docs"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let bearer_cookie = format!("cairn_session={bob}");
    let (status, _) = with_cookie(
        &s,
        Method::GET,
        "/api/v1/account",
        &bearer_cookie,
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Signing out ends the session and clears the cookie.
    let resp = s
        .http
        .delete(s.url("/api/v1/auth/session"))
        .header(header::COOKIE, &cookie)
        .header("x-cairn-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let cleared = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("cairn_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (status, _) = with_cookie(&s, Method::GET, "/api/v1/account", &cookie, &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The bearer token lives on.
    let (status, _) = s
        .call_as(Some(&bob), Method::GET, "/api/v1/account", None)
        .await;
    assert_eq!(status, StatusCode::OK);
});

on_each_backend!(signing_in_is_throttled_like_logging_in, |s| {
    let failures = s.config().login_failures_per_account;
    for _ in 0..failures {
        let (status, _) = s
            .call_as(
                None,
                Method::POST,
                "/api/v1/auth/session",
                Some(json!({"username": "bob", "password": "wrong password"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Throttled through either door, even with the right password.
    for path in ["/api/v1/auth/session", "/api/v1/auth/login"] {
        let (status, body) = s
            .call_as(
                None,
                Method::POST,
                path,
                Some(json!({"username": "bob", "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}: {body}");
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_idle_and_at_its_expiry() {
    for (idle, max) in [(1, 3600), (3600, 1)] {
        let s = TestServer::start_with(Backend::Sqlite, |c| {
            c.session_idle_secs = idle;
            c.session_max_secs = max;
        })
        .await;
        let (cookie, _, _) = sign_in(&s, "bob").await;
        let (status, _) = with_cookie(&s, Method::GET, "/api/v1/account", &cookie, &[], None).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let (status, body) =
            with_cookie(&s, Method::GET, "/api/v1/account", &cookie, &[], None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "idle {idle} s, max {max} s: {body}"
        );
        s.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let s = TestServer::start(Backend::Sqlite).await;
    let resp = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h: HeaderMap = resp.headers().clone();
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let etag = h[header::ETAG].clone();
    let page = resp.text().await.unwrap();
    assert!(page.contains("<html"), "{page}");
    // Unchanged: 304.
    let resp = s
        .http
        .get(s.url("/"))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    // Every asset, gzipped for a browser that takes it, identical once unzipped.
    let names = cairn_server::web::asset_names();
    assert!(names.iter().any(|n| n.starts_with("assets/")), "{names:?}");
    for name in names.iter().filter_map(|n| n.strip_prefix("assets/")) {
        let plain = s
            .http
            .get(s.url(&format!("/assets/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), StatusCode::OK, "{name}");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain = plain.bytes().await.unwrap();
        let zipped = s
            .http
            .get(s.url(&format!("/assets/{name}")))
            .header(header::ACCEPT_ENCODING, "gzip, deflate")
            .send()
            .await
            .unwrap();
        let gzipped = zipped.headers().get(header::CONTENT_ENCODING).is_some();
        let body = zipped.bytes().await.unwrap();
        let body = if gzipped {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
                .unwrap();
            out
        } else {
            body.to_vec()
        };
        assert_eq!(body, plain, "{name}");
    }
    let resp = s.http.get(s.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    s.finish().await;
}

/// The notification socket takes the session cookie from the server's own page, and
/// refuses it from another site's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notification_socket_opens_with_the_session_cookie() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = TestServer::start(Backend::Sqlite).await;
    let (cookie, _, _) = sign_in(&s, "bob").await;
    let open = |origin: String| {
        let mut req = format!("ws://{}/api/v1/notify/ws", s.addr)
            .into_client_request()
            .unwrap();
        let h = req.headers_mut();
        h.insert("cookie", cookie.parse().unwrap());
        h.insert("origin", origin.parse().unwrap());
        h.insert("sec-websocket-protocol", "cairn.notify.v1".parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    let (mut ws, _) = open(format!("http://{}", s.addr))
        .await
        .expect("same origin opens");
    let first = futures::StreamExt::next(&mut ws).await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"ns\""), "{first:?}");
    let refused = open("https://evil.example".into()).await;
    assert!(refused.is_err(), "another site's page must not open it");
    drop(ws);
    s.finish().await;
}
