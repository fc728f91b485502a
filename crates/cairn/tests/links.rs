//! `cairn link create|list|revoke` through the binary, against a real `cairn serve`, and
//! the links they make opened over plain HTTP.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::{http_fetch, Server, ADMIN_PASSWORD};

#[test]
fn links_are_made_listed_and_revoked_from_the_command_line() {
    let server = Server::start();
    let admin = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("report.txt");
    std::fs::write(&local, b"quarterly numbers").unwrap();
    admin.ok(&["put", local.to_str().unwrap(), "/docs/report.txt"]);

    // A plain link: the URL alone on stdout, and it serves the file.
    let url = admin.ok(&["link", "create", "/docs/report.txt"]);
    let url = url.trim();
    assert!(url.starts_with(&format!("{}/s/", server.url)), "{url}");
    assert_eq!(url.lines().count(), 1);
    let (status, body) = http_fetch(&format!("{url}/download"), &[]);
    assert_eq!((status, body.as_slice()), (200, &b"quarterly numbers"[..]));

    // With a password, an expiry and a limit.
    let out = admin.run_with_stdin(
        &[
            "link",
            "create",
            "docs/report.txt",
            "--password-stdin",
            "--expires",
            "7d",
            "--max-downloads",
            "3",
            "--json",
        ],
        "s3cret\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let guarded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(guarded["has_password"], true);
    assert_eq!(guarded["max_downloads"], 3);
    assert_eq!(guarded["path"], "/docs/report.txt");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expires = guarded["expires_at"].as_i64().unwrap();
    let week = 7 * 86_400_000;
    assert!((expires - now - week).abs() < 60_000, "{expires} vs {now}");
    let guarded_url = guarded["url"].as_str().unwrap();
    let (status, _) = http_fetch(&format!("{guarded_url}/download"), &[]);
    assert_eq!(status, 401);
    let (status, body) = http_fetch(
        &format!("{guarded_url}/download"),
        &["X-Cairn-Link-Password: s3cret"],
    );
    assert_eq!((status, body.as_slice()), (200, &b"quarterly numbers"[..]));

    let drop = admin.json(&["link", "create", "/docs", "--upload-only", "--json"]);
    assert_eq!(drop["upload_only"], true);
    assert_eq!(drop["kind"], "folder");

    let listed = admin.json(&["link", "list", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["id"], drop["id"], "newest first");
    let text = admin.ok(&["link", "list"]);
    assert_eq!(text.lines().count(), 4, "a header and three links: {text}");
    assert!(text.starts_with("ID  STATUS"), "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.contains("  active  ")),
        "{text}"
    );
    assert!(text.contains("password, expires "), "{text}");
    assert!(text.contains("downloads 1/3"), "{text}");

    // Someone else sees none of them and cannot revoke them.
    let out = server.admin(&["user", "add", "bob", "--password-stdin"], ADMIN_PASSWORD);
    assert!(out.status.success());
    let bob = server.login("bob");
    assert_eq!(bob.json(&["link", "list", "--json"]), serde_json::json!([]));
    let id = guarded["id"].to_string();
    bob.fails(
        &["link", "revoke", &id],
        &format!("cannot revoke link {id}"),
    );

    admin.ok(&["link", "revoke", &id]);
    let (status, _) = http_fetch(
        &format!("{guarded_url}/download"),
        &["X-Cairn-Link-Password: s3cret"],
    );
    assert_eq!(status, 404);
    let listed = admin.json(&["link", "list", "--json"]);
    let revoked = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == guarded["id"])
        .unwrap();
    assert_eq!(revoked["status"], "revoked");

    // Failures: one line on stderr, a non-zero exit.
    admin.fails(&["link", "revoke", "999999"], "cannot revoke link 999999");
    admin.fails(&["link", "create", "/nope"], "cannot make a link to /nope");
    admin.fails(
        &["link", "create", "/docs/report.txt", "--upload-only"],
        "cannot make a link to /docs/report.txt",
    );
    let out = admin.run(&["link", "create", "/docs", "--expires", "7x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
}
