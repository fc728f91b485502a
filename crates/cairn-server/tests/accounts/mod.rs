//! Accounts over the API: changing one's password, and what an administrator's
//! set-password, disable, enable and delete do to an account, its sessions, its links
//! and its shared folders.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{put_file_as, TestServer, PASSWORD};

async fn login_with(s: &TestServer, user: &str, password: &str) -> (StatusCode, Value) {
    s.call_as(
        None,
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"username": user, "password": password, "device_name": "test"})),
    )
    .await
}

async fn account(s: &TestServer, token: &str) -> (StatusCode, Value) {
    s.call_as(Some(token), Method::GET, "/api/v1/account", None)
        .await
}

async fn admin_post(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    s.call(
        Method::POST,
        &format!("/api/v1/admin/users/{path}"),
        Some(body),
    )
    .await
}

async fn make_user(s: &TestServer, name: &str) {
    let hash =
        cairn_server::hash_password(&cairn_server::Config::for_data_dir("."), PASSWORD.into())
            .await
            .unwrap();
    s.state
        .meta
        .create_user(name, &hash, false, None)
        .await
        .unwrap();
}

on_each_backend!(
    a_password_change_needs_the_old_one_and_signs_out_other_sessions,
    |s| {
        let here = s.login("bob").await;
        let elsewhere = s.login("bob").await;
        let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});

        // A wrong old password changes nothing; neither does a new one that is too short.
        let (status, body) = s
            .call_as(
                Some(&here),
                Method::POST,
                "/api/v1/account/password",
                Some(change("not my password", "a new password")),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "wrong_password");
        let (status, body) = s
            .call_as(
                Some(&here),
                Method::POST,
                "/api/v1/account/password",
                Some(change(PASSWORD, "short")),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_password");
        assert_eq!(account(&s, &elsewhere).await.0, StatusCode::OK);

        let (status, body) = s
            .call_as(
                Some(&here),
                Method::POST,
                "/api/v1/account/password",
                Some(change(PASSWORD, "a new password")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["sessions_revoked"], 1);
        // This session stays signed in; the other one is signed out.
        assert_eq!(account(&s, &here).await.0, StatusCode::OK);
        let (status, body) = account(&s, &elsewhere).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        // The new password logs in, the old one no longer does.
        assert_eq!(
            login_with(&s, "bob", "a new password").await.0,
            StatusCode::OK
        );
        let (status, body) = login_with(&s, "bob", PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");

        // Wrong old passwords count as failed logins (two so far, of the ten an
        // account may have in the window): the account is throttled after eight more.
        for _ in 0..8 {
            let (status, _) = s
                .call_as(
                    Some(&here),
                    Method::POST,
                    "/api/v1/account/password",
                    Some(change("guess", "another password")),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        let (status, body) = s
            .call_as(
                Some(&here),
                Method::POST,
                "/api/v1/account/password",
                Some(change("a new password", "another password")),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        let (status, _) = login_with(&s, "bob", "a new password").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
);

on_each_backend!(an_admin_set_password_signs_out_every_session, |s| {
    let bob = s.login("bob").await;
    let (status, body) = admin_post(&s, "bob/password", json!({"password": "set by admin"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sessions_revoked"], 1);
    assert_eq!(account(&s, &bob).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_with(&s, "bob", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_with(&s, "bob", "set by admin").await.0,
        StatusCode::OK
    );

    let (status, body) = admin_post(&s, "nobody/password", json!({"password": "whatever1"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "no_such_user");
    // Only an administrator may.
    let bob = login_with(&s, "bob", "set by admin").await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/admin/users/admin/password",
            Some(json!({"password": "taken over"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "admin_only");
});

on_each_backend!(a_disabled_account_is_refused_at_once_until_enabled, |s| {
    let bob = s.login("bob").await;
    put_file_as(&s, &bob, "/shared.txt", b"bob's file").await;
    let (status, link) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/links",
            Some(json!({"path": "/shared.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let link_url = format!("/s/{}/download", link["token"].as_str().unwrap());
    let fetch_link = || async { s.http.get(s.url(&link_url)).send().await.unwrap().status() };
    assert_eq!(fetch_link().await, StatusCode::OK);

    let (status, body) = admin_post(&s, "bob/disable", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["usage_bytes"], b"bob's file".len());

    // The very next request with Bob's token is refused, and says why.
    let (status, body) = account(&s, &bob).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "account_disabled");
    // A login with the right password is told the account is disabled; a wrong one
    // gets the answer every wrong password gets, so guessing learns nothing.
    let (status, body) = login_with(&s, "bob", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "account_disabled");
    let (status, body) = login_with(&s, "bob", "wrong password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    // Bob's links stop working with him.
    assert_eq!(fetch_link().await, StatusCode::NOT_FOUND);
    let (_, users) = s.call(Method::GET, "/api/v1/admin/users", None).await;
    let listed = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(listed["disabled"], true);
    assert_eq!(listed["usage_bytes"], b"bob's file".len());

    // Enabled again, everything works as before, the same token included.
    let (status, body) = admin_post(&s, "bob/enable", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], false);
    assert_eq!(account(&s, &bob).await.0, StatusCode::OK);
    assert_eq!(login_with(&s, "bob", PASSWORD).await.0, StatusCode::OK);
    assert_eq!(fetch_link().await, StatusCode::OK);

    // The last enabled administrator cannot be disabled, nor deleted.
    let (status, body) = admin_post(&s, "admin/disable", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "last_admin");
    let (status, body) = s
        .call(Method::DELETE, "/api/v1/admin/users/admin", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "last_admin");
    assert_eq!(account(&s, &s.token).await.0, StatusCode::OK);
});

on_each_backend!(
    a_deleted_account_loses_its_files_and_hands_on_its_shares,
    |s| {
        make_user(&s, "carol").await;
        let bob = s.login("bob").await;
        let carol = s.login("carol").await;
        put_file_as(&s, &bob, "/mine.txt", b"only bob has this").await;
        put_file_as(&s, &bob, "/Team/plan.txt", b"the team's plan").await;
        let (status, body) = s
            .call_as(
                Some(&bob),
                Method::POST,
                "/api/v1/shares",
                Some(json!({"path": "/Team", "with": "carol", "role": "editor"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, link) = s
            .call_as(
                Some(&bob),
                Method::POST,
                "/api/v1/links",
                Some(json!({"path": "/mine.txt"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{link}");
        let blocks_before = s.stored_blocks().await;

        let (status, report) = s
            .call(Method::DELETE, "/api/v1/admin/users/bob", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["name"], "bob");
        assert_eq!(report["files_deleted"], 1, "{report}");
        assert_eq!(
            report["shares_transferred"],
            json!([{"folder": "Team", "new_owner": "carol"}])
        );
        assert_eq!(report["links_revoked"], 1);
        assert_eq!(report["sessions_revoked"], 1);

        // Bob is gone: his token, his login, his link.
        let (status, body) = account(&s, &bob).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(
            login_with(&s, "bob", PASSWORD).await.0,
            StatusCode::UNAUTHORIZED
        );
        let link_url = format!("/s/{}", link["token"].as_str().unwrap());
        let status = s.http.get(s.url(&link_url)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = s
            .call(Method::DELETE, "/api/v1/admin/users/bob", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

        // The team folder is Carol's: she reads it and decides who else does.
        let (status, body) = s
            .call_as(
                Some(&carol),
                Method::GET,
                "/api/v1/files/content?path=/Team/plan.txt",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, shares) = s
            .call_as(Some(&carol), Method::GET, "/api/v1/shares", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shares["shares"][0]["role"], "owner", "{shares}");
        let (status, body) = s
            .call_as(
                Some(&carol),
                Method::POST,
                "/api/v1/shares",
                Some(json!({"path": "/Team", "with": "admin", "role": "viewer"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        // Garbage collection frees the block only Bob's file held, and keeps the plan's.
        let report = s
            .state
            .blocks
            .collect_garbage(Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.blocks_deleted, 1, "{report:?}");
        assert_eq!(s.stored_blocks().await, blocks_before - 1);

        // The name is free again, for an account that starts empty.
        make_user(&s, "bob").await;
        let new_bob = s.login("bob").await;
        let (status, listing) = s
            .call_as(
                Some(&new_bob),
                Method::GET,
                "/api/v1/files/list?path=/",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listing["entries"], json!([]), "{listing}");
        let problems = s.state.meta.check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
);

/// Reads a notification WebSocket until the server closes it; the close code.
async fn ws_closed(ws: &mut crate::notify::Ws) -> Option<u16> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(crate::notify::PATIENCE, ws.next())
            .await
            .expect("the server closes the socket in time");
        match message {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

on_each_backend!(
    signing_out_ends_the_accounts_notification_connections,
    |s| {
        let _gauge = crate::notify::GAUGE.lock().await;
        let here = s.login("bob").await;
        let elsewhere = s.login("bob").await;
        let mut here_ws = crate::notify::open_ws(&s, &here).await;
        let mut elsewhere_ws = crate::notify::open_ws(&s, &elsewhere).await;
        let mut admin_ws = crate::notify::open_ws(&s, &s.token).await;
        for ws in [&mut here_ws, &mut elsewhere_ws, &mut admin_ws] {
            crate::notify::ws_next(ws).await; // the head
        }

        // Bob changes his password here: the other session's connection ends.
        let (status, body) = s
            .call_as(
                Some(&here),
                Method::POST,
                "/api/v1/account/password",
                Some(json!({"old_password": PASSWORD, "new_password": "a new password"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(ws_closed(&mut elsewhere_ws).await, Some(1008));
        // This session's connection goes on.
        put_file_as(&s, &here, "/mine.txt", b"bob's").await;
        let told = crate::notify::ws_next(&mut here_ws).await;
        assert!(
            matches!(told, cairn_proto::Notification::Advanced { .. }),
            "{told:?}"
        );

        // Disabled: every connection of his ends; the administrator's goes on.
        let (status, body) = admin_post(&s, "bob/disable", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(ws_closed(&mut here_ws).await, Some(1008));
        put_file_as(&s, &s.token, "/still.txt", b"listening").await;
        let told = crate::notify::ws_next(&mut admin_ws).await;
        assert!(
            matches!(told, cairn_proto::Notification::Advanced { .. }),
            "{told:?}"
        );
        drop(admin_ws);
    }
);

on_each_backend!(
    an_admin_adds_accounts_sets_quotas_and_reads_the_last_fsck,
    |s| {
        // Added over the API, the account signs in with the password given.
        let body = json!({"name": "erin", "password": "erin's password", "quota_bytes": 1000});
        let (status, info) = s
            .call(Method::POST, "/api/v1/admin/users", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{info}");
        assert_eq!(
            (info["name"].as_str(), info["quota_bytes"].as_i64()),
            (Some("erin"), Some(1000))
        );
        let (status, _) = login_with(&s, "erin", "erin's password").await;
        assert_eq!(status, StatusCode::OK);
        // A taken name, a bad name, a short password, a negative quota: refused, nothing made.
        let (status, _) = s
            .call(Method::POST, "/api/v1/admin/users", Some(body))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        for (bad, code) in [
            (
                json!({"name": "a/b", "password": "long enough"}),
                "invalid_name",
            ),
            (
                json!({"name": "frank", "password": "short"}),
                "invalid_password",
            ),
            (
                json!({"name": "frank", "password": "long enough", "quota_bytes": -1}),
                "invalid_quota",
            ),
        ] {
            let (status, err) = s.call(Method::POST, "/api/v1/admin/users", Some(bad)).await;
            assert_eq!(
                (status, err["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code))
            );
        }
        let (_, list) = s.call(Method::GET, "/api/v1/admin/users", None).await;
        let names: Vec<_> = list["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].clone())
            .collect();
        assert_eq!(names, [json!("admin"), json!("bob"), json!("erin")]);

        // The quota is enforced from the next upload; null lifts it.
        let (_, login) = login_with(&s, "erin", "erin's password").await;
        let erin = login["token"].as_str().unwrap().to_owned();
        let put = |token: String, size: usize| {
            let req = s
                .http
                .put(s.url("/api/v1/files/content"))
                .query(&[("path", format!("/f{size}"))])
                .bearer_auth(token)
                .body(vec![7u8; size]);
            async move { req.send().await.unwrap().status() }
        };
        assert_eq!(put(erin.clone(), 2000).await, StatusCode::FORBIDDEN);
        let (status, info) = s
            .call(
                Method::PUT,
                "/api/v1/admin/users/erin/quota",
                Some(json!({"quota_bytes": null})),
            )
            .await;
        assert_eq!(
            (status, &info["quota_bytes"]),
            (StatusCode::OK, &Value::Null),
            "{info}"
        );
        assert_eq!(put(erin.clone(), 2000).await, StatusCode::OK);
        let (status, _) = s
            .call(
                Method::PUT,
                "/api/v1/admin/users/nobody/quota",
                Some(json!({"quota_bytes": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // No check yet, then the newest one's report.
        let (status, body) = s.call(Method::GET, "/api/v1/admin/fsck", None).await;
        assert_eq!((status, &body["last"]), (StatusCode::OK, &Value::Null));
        let report = s.state.blocks.fsck(&Default::default()).await.unwrap();
        let info = report.to_info(true, 1_234);
        s.state
            .meta
            .record_fsck(info.finished_at, &serde_json::to_string(&info).unwrap())
            .await
            .unwrap();
        let (status, body) = s.call(Method::GET, "/api/v1/admin/fsck", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["last"]["clean"], true, "{body}");
        assert_eq!(body["last"]["finished_at"], 1_234);
        assert!(
            body["last"]["blocks_checked"].as_u64().unwrap() >= 1,
            "{body}"
        );
    }
);
