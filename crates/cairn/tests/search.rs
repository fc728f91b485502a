//! `cairn search` through the binary, against a real `cairn serve`: the table, `--json`,
//! a member finding a shared folder's files, and another account's files never showing.

mod support;

use std::fs;

use support::{Server, ADMIN_PASSWORD};

#[test]
fn search_by_name_in_home_and_shared_folders() {
    let server = Server::start();
    let out = server.admin(&["user", "add", "bob", "--password-stdin"], ADMIN_PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = server.login("admin");
    let bob = server.login_with("bob", ADMIN_PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("f");
    fs::write(&local, b"twelve bytes").unwrap();
    let local = local.to_str().unwrap();
    alice.ok(&["put", local, "/Team/Report 2024.pdf"]);
    alice.ok(&["put", local, "/private/report-secret.txt"]);
    alice.ok(&["mkdir", "/Reports"]);
    bob.ok(&["put", local, "/mine/old report.txt"]);
    alice.ok(&["share", "add", "/Team", "--with", "bob", "--role", "viewer"]);

    // The table: path, size, modified; prefix matches first, then shorter names.
    let table = alice.ok(&["search", "REPORT"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("PATH"), "{table}");
    assert!(
        lines[0].contains("SIZE") && lines[0].contains("MODIFIED"),
        "{table}"
    );
    assert!(lines[1].starts_with("/Reports/"), "{table}");
    assert!(lines[2].starts_with("/Team/Report 2024.pdf"), "{table}");
    assert!(lines[2].contains("12 B"), "{table}");
    assert!(
        lines[3].starts_with("/private/report-secret.txt"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");

    // --json: the array of entries, in the caller's view.
    let found = bob.json(&["search", "report", "--json"]);
    let paths: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/Team/Report 2024.pdf", "/mine/old report.txt"]);
    assert_eq!(found[0]["size"], 12);

    // --limit, with a note on stderr that more matched; nothing found is no error.
    let out = alice.run(&["search", "report", "--json", "--limit", "1"]);
    assert!(out.status.success());
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("more names match"));
    assert_eq!(
        bob.json(&["search", "secret", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(bob.ok(&["search", "secret"]), "");
    alice.fails(&["search", ""], "q is empty");
}
