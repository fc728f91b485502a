//! Shared folders through the HTTP API, on SQLite and on PostgreSQL: what owners,
//! editors, viewers and strangers may do, and what each of them sees.

#[macro_use]
mod support;
// After `support`, whose macro it uses.
mod pending;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{hex_hash, try_put_file, TestServer, PASSWORD};

async fn add_user(s: &TestServer, name: &str) -> String {
    let hash =
        cairn_server::hash_password(&cairn_server::Config::for_data_dir("."), PASSWORD.into())
            .await
            .unwrap();
    s.state
        .meta
        .create_user(name, &hash, false, None)
        .await
        .unwrap();
    s.login(name).await
}

async fn names(s: &TestServer, token: &str, path: &str) -> Vec<String> {
    let (status, body) = s
        .call_as(
            Some(token),
            Method::GET,
            &format!("/api/v1/files/list?path={path}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn share(
    s: &TestServer,
    token: &str,
    path: &str,
    with: &str,
    role: &str,
) -> (StatusCode, Value) {
    s.call_as(
        Some(token),
        Method::POST,
        "/api/v1/shares",
        Some(json!({"path": path, "with": with, "role": role})),
    )
    .await
}

async fn download(s: &TestServer, token: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/files/content?path={path}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

/// Every change the delta holds after `cursor`, as (kind, path) pairs, and the new cursor.
async fn delta(s: &TestServer, token: &str, cursor: &str) -> (Vec<(String, String)>, String) {
    let (status, body) = s
        .call_as(
            Some(token),
            Method::GET,
            &format!("/api/v1/delta?cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let changes = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (changes, body["cursor"].as_str().unwrap().to_owned())
}

async fn latest(s: &TestServer, token: &str) -> String {
    let (_, body) = s
        .call_as(Some(token), Method::GET, "/api/v1/delta/latest", None)
        .await;
    body["cursor"].as_str().unwrap().to_owned()
}

on_each_backend!(owners_editors_viewers_and_strangers, |s| {
    let alice = s.token.clone();
    let bob = s.login("bob").await;
    let carol = add_user(&s, "carol").await;
    let dave = add_user(&s, "dave").await;
    try_put_file(&s, &alice, "/Team/plan.md", b"the plan").await;
    try_put_file(&s, &alice, "/Team/sub/notes.txt", b"notes").await;
    try_put_file(&s, &alice, "/Team/old.txt", b"old").await;
    try_put_file(&s, &alice, "/private.txt", b"mine").await;
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/Team/old.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, before) = s
        .call(Method::GET, "/api/v1/files/stat?path=/Team/plan.md", None)
        .await;
    let bob_cursor = latest(&s, &bob).await;
    // Bob has a /Team of his own: the shared one comes in beside it.
    let (status, _) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/files/mkdir",
            Some(json!({"path": "/Team"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Sharing: only a top-level folder, only by its owner.
    let (status, body) = share(&s, &alice, "/Team/sub", "bob", "editor").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = share(&s, &alice, "/private.txt", "bob", "editor").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = share(&s, &alice, "/Team", "bob", "owner").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = share(&s, &alice, "/Team", "nobody", "editor").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = share(&s, &alice, "/Team", "bob", "editor").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["path"], "/Team");
    assert_eq!(body["role"], "owner");
    let (status, body) = share(&s, &alice, "/Team", "carol", "viewer").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["members"].as_array().unwrap().len(), 3, "{body}");
    let (status, body) = share(&s, &carol, "/Team", "dave", "viewer").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = share(&s, &bob, "/Team (2)", "dave", "viewer").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The owner sees the same files, with the same revisions.
    let (_, after) = s
        .call(Method::GET, "/api/v1/files/stat?path=/Team/plan.md", None)
        .await;
    assert_eq!(before["rev"], after["rev"]);
    assert_eq!(before["id"], after["id"]);
    assert_eq!(names(&s, &alice, "/Team").await, ["plan.md", "sub"]);

    // Bob's mount avoids his own /Team; both show in his listing, the shared one marked.
    let (_, root) = s
        .call_as(Some(&bob), Method::GET, "/api/v1/files/list?path=/", None)
        .await;
    let mount = root["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Team (2)")
        .cloned()
        .unwrap_or_else(|| panic!("no mount in {root}"));
    assert_eq!(mount["shared"]["owner"], "admin");
    assert_eq!(mount["shared"]["role"], "editor");
    assert_eq!(names(&s, &bob, "/Team (2)").await, ["plan.md", "sub"]);
    assert_eq!(names(&s, &carol, "/Team").await, ["plan.md", "sub"]);
    let (status, body) = download(&s, &carol, "/Team/sub/notes.txt").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"notes"[..]));

    // Bob's delta from before he was added: his folder, the mount, then the shared tree.
    let (changes, bob_cursor) = delta(&s, &bob, &bob_cursor).await;
    let expected: Vec<(String, String)> = [
        ("mkdir", "/Team"),
        ("mkdir", "/Team (2)"),
        ("commit", "/Team (2)/plan.md"),
        ("mkdir", "/Team (2)/sub"),
        ("commit", "/Team (2)/sub/notes.txt"),
    ]
    .iter()
    .map(|(k, p)| (k.to_string(), p.to_string()))
    .collect();
    assert_eq!(changes, expected);

    // An editor changes things; the owner sees it, and pays for it.
    let (status, body) = try_put_file(&s, &bob, "/Team (2)/from-bob.txt", b"bob was here").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entry"]["path"], "/Team (2)/from-bob.txt");
    assert!(names(&s, &alice, "/Team")
        .await
        .contains(&"from-bob.txt".to_owned()));
    let (_, account) = s.call(Method::GET, "/api/v1/account", None).await;
    let expected_usage =
        (b"the plan".len() + b"notes".len() + b"mine".len() + b"bob was here".len()) as u64;
    assert_eq!(account["usage_bytes"], expected_usage, "{account}");
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/files/move",
            Some(json!({"from": "/Team (2)/plan.md", "to": "/Team (2)/sub/plan.md"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "/Team (2)/sub/plan.md");
    let (changes, _) = delta(&s, &bob, &bob_cursor).await;
    assert_eq!(
        changes,
        [
            ("commit".to_owned(), "/Team (2)/from-bob.txt".to_owned()),
            ("move".to_owned(), "/Team (2)/sub/plan.md".to_owned())
        ]
    );
    // Bob may read the blocks of files he can read, though Alice uploaded them.
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/blocks/{}", hex_hash(b"the plan"))))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Files are copied and moved between a shared folder and one's own files.
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/files/copy",
            Some(json!({"from": "/Team (2)/from-bob.txt", "to": "/mine.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["path"], "/mine.txt");
    let (status, body) = download(&s, &bob, "/mine.txt").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"bob was here"[..])
    );
    try_put_file(&s, &bob, "/draft.txt", b"draft").await;
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/files/move",
            Some(json!({"from": "/draft.txt", "to": "/Team (2)/draft.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "/Team (2)/draft.txt");
    assert!(!names(&s, &bob, "/").await.contains(&"draft.txt".to_owned()));
    let (status, body) = download(&s, &alice, "/Team/draft.txt").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"draft"[..]));
    // A move onto something that exists changes nothing.
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/files/move",
            Some(json!({"from": "/mine.txt", "to": "/Team (2)/draft.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(names(&s, &bob, "/").await.contains(&"mine.txt".to_owned()));
    // The trash of the shared folder is the members' too.
    let (_, trash) = s
        .call_as(Some(&bob), Method::GET, "/api/v1/trash", None)
        .await;
    assert!(
        trash["items"].to_string().contains("/Team (2)/old.txt"),
        "{trash}"
    );
    let (status, body) = s
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/trash/restore",
            Some(json!({"path": "/Team (2)/old.txt"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entry"]["path"], "/Team (2)/old.txt");

    // A viewer reads and changes nothing, and is told why.
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/files/mkdir",
            json!({"path": "/Team/new"}),
        ),
        (
            Method::POST,
            "/api/v1/files/delete",
            json!({"path": "/Team/old.txt"}),
        ),
        (
            Method::POST,
            "/api/v1/files/move",
            json!({"from": "/Team/old.txt", "to": "/Team/o.txt"}),
        ),
        (
            Method::POST,
            "/api/v1/files/copy",
            json!({"from": "/Team/old.txt", "to": "/Team/o.txt"}),
        ),
        (
            Method::POST,
            "/api/v1/trash/restore",
            json!({"path": "/Team/old.txt"}),
        ),
    ] {
        let (status, answer) = s.call_as(Some(&carol), method, path, Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "read_only", "{answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("viewer"));
    }
    let (status, answer) = try_put_file(&s, &carol, "/Team/plan.md", b"carol's version").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = download(&s, &alice, "/Team/sub/plan.md").await;
    assert_eq!(status, StatusCode::OK);
    // She can rename her own mount, though.
    let (status, body) = s
        .call_as(
            Some(&carol),
            Method::POST,
            "/api/v1/files/move",
            Some(json!({"from": "/Team", "to": "/Alice's team"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        names(&s, &carol, "/Alice's team/sub").await,
        ["notes.txt", "plan.md"]
    );

    // A stranger sees nothing of it, blocks included.
    let (status, _) = download(&s, &dave, "/Team/sub/notes.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/blocks/{}", hex_hash(b"notes"))))
        .bearer_auth(&dave)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (_, shares) = s
        .call_as(Some(&dave), Method::GET, "/api/v1/shares", None)
        .await;
    assert_eq!(shares["shares"], json!([]));

    // Removing Bob takes the folder out of his tree, and nothing out of Alice's.
    let bob_cursor = latest(&s, &bob).await;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/shares/remove",
            Some(json!({"path": "/Team", "with": "bob"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(names(&s, &bob, "/").await, ["mine.txt", "Team"]);
    let (changes, _) = delta(&s, &bob, &bob_cursor).await;
    assert_eq!(changes, [("delete".to_owned(), "/Team (2)".to_owned())]);
    assert_eq!(
        names(&s, &alice, "/Team").await,
        ["draft.txt", "from-bob.txt", "old.txt", "sub"]
    );
    let (status, _) = try_put_file(&s, &bob, "/Team (2)/late.txt", b"too late").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "it is an ordinary path of his own now"
    );
    assert!(!names(&s, &alice, "/Team")
        .await
        .contains(&"late.txt".to_owned()));

    // Carol leaves by deleting her mount; the owner cannot delete the shared folder.
    let (status, body) = s
        .call_as(
            Some(&carol),
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/Alice's team"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(names(&s, &carol, "/").await.is_empty());
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/Team"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "shared_folder");
    let problems = s.state.meta.check_consistency().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
});

on_each_backend!(what_members_add_counts_against_the_owners_quota, |s| {
    let alice = s.token.clone();
    let bob = s.login("bob").await;
    try_put_file(&s, &alice, "/Team/a.txt", b"0123456789").await;
    let (status, body) = share(&s, &alice, "/Team", "bob", "editor").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(s.state.meta.set_quota("admin", Some(25)).await.unwrap());
    // Bob's own quota is not what limits him here: Alice's is.
    let (status, body) = try_put_file(&s, &bob, "/Team/b.txt", b"0123456789").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = try_put_file(&s, &bob, "/Team/c.txt", b"0123456789").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    // Bob's own files are his own business.
    let (status, body) = try_put_file(&s, &bob, "/mine.txt", b"0123456789").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, account) = s.call(Method::GET, "/api/v1/account", None).await;
    assert_eq!(account["usage_bytes"], 20);
    let (_, account) = s
        .call_as(Some(&bob), Method::GET, "/api/v1/account", None)
        .await;
    assert_eq!(account["usage_bytes"], 10);

    // The early answer a client asks before an upload names who pays: Alice for a file
    // in /Team, Bob for one in his home.
    let space_at = |path: &'static str| {
        let (s, bob) = (&s, &bob);
        async move {
            let uri = format!("/api/v1/files/space?path={path}");
            let (status, body) = s.call_as(Some(bob), Method::GET, &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let space = space_at("/Team/new.txt").await;
    assert_eq!(space["charged_to"], "admin", "{space}");
    assert_eq!(space["quota_bytes"], 25, "{space}");
    assert_eq!(space["usage_bytes"], 20, "{space}");
    assert_eq!(space["available_bytes"], 5, "{space}");
    let space = space_at("/new.txt").await;
    assert_eq!(space["charged_to"], "bob", "{space}");
    assert_eq!(space["usage_bytes"], 10, "{space}");
    assert!(space["quota_bytes"].is_null() && space["available_bytes"].is_null());

    // Bob's home full does not stop his blocks going up for Alice's roomy folder; it
    // stops what goes into his home.
    assert!(s.state.meta.set_quota("bob", Some(10)).await.unwrap());
    assert!(s.state.meta.set_quota("admin", None).await.unwrap());
    let (status, body) = try_put_file(&s, &bob, "/Team/d.txt", b"abcdefghij").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = try_put_file(&s, &bob, "/more.txt", b"klmnopqrst").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(space_at("/new.txt").await["available_bytes"], 0);
});
