//! App passwords over the JSON API: made, listed and revoked by their account, signed in
//! with a token (never with an app password, which opens no JSON endpoint).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{TestServer, PASSWORD};

const PATH: &str = "/api/v1/account/app-passwords";

async fn create(s: &TestServer, token: &str, name: &str) -> (StatusCode, Value) {
    s.call_as(Some(token), Method::POST, PATH, Some(json!({"name": name})))
        .await
}

async fn names(s: &TestServer, token: &str) -> Vec<String> {
    let (status, body) = s.call_as(Some(token), Method::GET, PATH, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["app_passwords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn revoke(s: &TestServer, token: &str, name: &str) -> (StatusCode, Value) {
    let url = format!("{PATH}/{}", percent_encode(name));
    s.call_as(Some(token), Method::DELETE, &url, None).await
}

/// Every byte but unreserved ASCII as `%XX`, as a client puts a name in a path.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

on_each_backend!(app_passwords_are_made_listed_and_revoked, |s| {
    let bob = s.login("bob").await;
    assert!(names(&s, &bob).await.is_empty());

    let (status, made) = create(&s, &bob, "phone").await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["name"], "phone");
    assert!(made["created_at"].as_i64().unwrap() > 0);
    let password = made["password"].as_str().unwrap();
    assert_eq!(password.len(), 39, "{password}");
    assert_eq!(password.split('-').count(), 8, "{password}");

    // A name is the account's once; bad names are refused with what a name may be.
    let (status, body) = create(&s, &bob, "phone").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "app_password_exists");
    for bad in ["", "tab\there", &"x".repeat(65), ".", ".."] {
        let (status, body) = create(&s, &bob, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_name", "{body}");
    }
    let (status, body) = s
        .call_as(Some(&bob), Method::POST, PATH, Some(json!({"nom": "x"})))
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    // Any other character is fine, a slash included (percent-encoded in the path).
    let (status, body) = create(&s, &bob, "rclone/NAS – übung").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The list shows names and times, never a secret.
    let (status, listed) = s.call_as(Some(&bob), Method::GET, PATH, None).await;
    assert_eq!(status, StatusCode::OK);
    let first = &listed["app_passwords"][0];
    assert_eq!(first["name"], "phone");
    assert_eq!(first["created_at"], made["created_at"]);
    assert!(first["last_used_at"].is_null(), "{first}");
    assert!(!listed.to_string().contains(password), "{listed}");
    let mut fields: Vec<&String> = first.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, ["created_at", "last_used_at", "name"]);

    // Only the caller's own: the administrator neither sees nor revokes Bob's.
    assert!(names(&s, &s.token).await.is_empty());
    let (status, body) = revoke(&s, &s.token, "phone").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(names(&s, &bob).await, ["phone", "rclone/NAS – übung"]);

    let (status, body) = revoke(&s, &bob, "rclone/NAS – übung").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = revoke(&s, &bob, "phone").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = revoke(&s, &bob, "phone").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert!(names(&s, &bob).await.is_empty());
});

on_each_backend!(an_app_password_opens_no_json_endpoint, |s| {
    let bob = s.login("bob").await;
    let (_, made) = create(&s, &bob, "webdav").await;
    let password = made["password"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::GET, "/api/v1/account"),
        (Method::GET, PATH),
        (Method::POST, PATH),
        (Method::GET, "/api/v1/files/list?path=/"),
    ] {
        let response = s
            .http
            .request(method.clone(), s.url(path))
            .basic_auth("bob", Some(&password))
            .json(&json!({"name": "minted"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        // Nor as a bearer token.
        let (status, _) = s.call_as(Some(&password), method.clone(), path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(names(&s, &bob).await, ["webdav"], "none was minted");
});

on_each_backend!(a_password_change_revokes_every_app_password, |s| {
    let bob = s.login("bob").await;
    for name in ["one", "two"] {
        let (status, body) = create(&s, &bob, name).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/account/password",
            Some(json!({"old_password": PASSWORD, "new_password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The token that changed it stays signed in; both app passwords go.
    assert_eq!(body["sessions_revoked"], 2, "{body}");
    assert!(names(&s, &bob).await.is_empty());
});
