//! End-to-end tests through the binary: a real `cairn serve` process on a random
//! loopback port with a temp data dir, driven by the `cairn` client commands.

mod support;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use support::{random_file, same_content, Server};

#[test]
fn round_trip_sizes_and_file_operations() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();

    for (name, size) in [
        ("empty", 0usize),
        ("one", 1),
        ("mib", 1 << 20),
        ("eight_plus_one", (8 << 20) + 1),
        ("medium", 20 << 20),
    ] {
        let local = work.path().join(name);
        random_file(&local, size as u64, size as u64);
        client.ok(&["put", local.to_str().unwrap(), &format!("/in/{name}")]);
        let back = work.path().join(format!("{name}.back"));
        client.ok(&["get", &format!("/in/{name}"), back.to_str().unwrap()]);
        assert!(same_content(&local, &back), "{name} came back different");
        let stat = client.json(&["stat", &format!("/in/{name}"), "--json"]);
        assert_eq!(stat["size"], size as u64, "{name}: {stat}");
        assert_eq!(stat["kind"], "file");
    }

    let listing = client.json(&["ls", "/in", "--json"]);
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eight_plus_one", "empty", "medium", "mib", "one"]);

    // Replacing a file keeps the path and changes the revision.
    let first = client.json(&["stat", "/in/one", "--json"]);
    let local = work.path().join("one2");
    fs::write(&local, b"xy").unwrap();
    client.ok(&["put", local.to_str().unwrap(), "/in/one"]);
    let second = client.json(&["stat", "/in/one", "--json"]);
    assert_eq!(second["size"], 2);
    assert_ne!(first["rev"], second["rev"]);

    client.ok(&["mkdir", "/out/deep"]);
    client.ok(&["mv", "/in/mib", "/out/deep/moved"]);
    client.fails(&["stat", "/in/mib"], "does not exist");
    client.ok(&["cp", "/out", "/copy"]);
    let back = work.path().join("copied.back");
    client.ok(&["get", "/copy/deep/moved", back.to_str().unwrap()]);
    assert!(same_content(&work.path().join("mib"), &back));
    client.ok(&["rm", "/out"]);
    client.fails(&["stat", "/out/deep/moved"], "does not exist");
    // The copy is independent of the deleted original.
    client.ok(&["stat", "/copy/deep/moved"]);

    // Errors are one line on stderr and a non-zero exit.
    client.fails(
        &["get", "/nope", work.path().join("x").to_str().unwrap()],
        "does not exist",
    );
    client.fails(&["mkdir", "/in/one/sub"], "");
    client.fails(&["stat", "/a/../b"], "'.' or '..'");
    assert!(!work.path().join("x").exists());
}

#[test]
fn one_gib_round_trip_and_deduplicated_reupload() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big");
    random_file(&big, 1 << 30, 7);

    client.ok(&["put", big.to_str().unwrap(), "/big"]);
    let before = server.metric("cairn_block_bytes_received_total");
    client.ok(&["put", big.to_str().unwrap(), "/big-again"]);
    let sent = server.metric("cairn_block_bytes_received_total") - before;
    assert!(
        sent < (1 << 20) as f64,
        "re-upload sent {sent} bytes of block payload"
    );

    let back = work.path().join("big.back");
    client.ok(&["get", "/big-again", back.to_str().unwrap()]);
    assert!(same_content(&big, &back));
    let stat = client.json(&["stat", "/big", "--json"]);
    assert_eq!(stat["size"], 1u64 << 30);
}

#[test]
fn first_start_prints_the_admin_password_once_and_admin_commands_manage_users() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(data, None, Stdio::piped());
    let mut stdout = server.child.stdout.take().unwrap();
    let mut first_line = Vec::new();
    let mut byte = [0u8];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first_line.push(byte[0]);
    }
    let line = String::from_utf8(first_line).unwrap();
    let password = line
        .strip_prefix("Created user 'admin' with password: ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    server.login_with("admin", &password);
    assert!(server.login_with_result("admin", "wrong").is_err());

    let out = server.admin(
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--quota",
            "1000000",
        ],
        "alice pw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.admin(&["user", "add", "alice", "--password-stdin"], "again\n");
    assert!(!out.status.success(), "a duplicate user was created");
    let out = server.admin(&["user", "list", "--json"], "");
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice"]);
    assert_eq!(users[1]["quota_bytes"], 1_000_000);
    let alice = server.login_with("alice", "alice pw");
    alice.ok(&["mkdir", "/mine"]);

    // A restart finds users and prints no password.
    let data = server.stop();
    let mut again = Server::spawn(data, None, Stdio::piped());
    let mut stdout = again.child.stdout.take().unwrap();
    again.stop();
    let mut printed = String::new();
    stdout.read_to_string(&mut printed).unwrap();
    assert_eq!(printed, "", "a restart printed to stdout");
}

#[test]
fn versions_are_listed_and_restorable() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("doc.txt");
    for content in ["first draft", "second draft", "third draft"] {
        fs::write(&local, content).unwrap();
        client.ok(&["put", local.to_str().unwrap(), "/doc.txt"]);
    }
    let versions = client.json(&["versions", "/doc.txt", "--json"]);
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2]["size"], "first draft".len());
    let oldest = versions[2]["id"].as_str().unwrap().to_owned();

    client.ok(&["restore", "/doc.txt", "--version", &oldest]);
    let back = work.path().join("back.txt");
    client.ok(&["get", "/doc.txt", back.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&back).unwrap(), "first draft");
    let after = client.json(&["versions", "/doc.txt", "--json"]);
    assert_eq!(
        after.as_array().unwrap().len(),
        4,
        "the restore is a new version"
    );

    client.fails(&["restore", "/doc.txt", "--version", "999999"], "");
    client.fails(&["versions", "/missing.txt"], "");
}

/// Counts the block files the server's local block store holds.
fn stored_block_files(data: &std::path::Path) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() {
                            walk(&path)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&data.join("blocks"))
}

#[test]
fn small_edits_to_a_large_file_keep_every_version_and_store_only_changed_blocks() {
    let server = Server::start();
    let client = server.login("admin");
    let data = server.data.as_ref().unwrap().path().to_owned();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big.bin");
    random_file(&local, 100 << 20, 11);
    client.ok(&["put", local.to_str().unwrap(), "/big.bin"]);
    let first_blocks = stored_block_files(&data);
    let mut copies = vec![work.path().join("v0")];
    fs::copy(&local, &copies[0]).unwrap();

    for edit in 1..=5u64 {
        // Overwrite a few bytes in place, somewhere different each time.
        let mut bytes = fs::read(&local).unwrap();
        let at = (edit as usize * 17 * (1 << 20)) % bytes.len();
        for b in &mut bytes[at..at + 4] {
            *b = b.wrapping_add(1);
        }
        fs::write(&local, &bytes).unwrap();
        client.ok(&["put", local.to_str().unwrap(), "/big.bin"]);
        let copy = work.path().join(format!("v{edit}"));
        fs::copy(&local, &copy).unwrap();
        copies.push(copy);
    }
    let versions = client.json(&["versions", "/big.bin", "--json"]);
    let ids: Vec<String> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 6);
    let grown = stored_block_files(&data) - first_blocks;
    assert!(
        (5..=10).contains(&grown),
        "5 small edits stored {grown} new blocks; expected one or two each"
    );

    // Every version restores bit-identical (newest first in the list, so reverse).
    for (id, copy) in ids.iter().rev().zip(&copies) {
        client.ok(&["restore", "/big.bin", "--version", id]);
        let back = work.path().join("back.bin");
        client.ok(&["get", "/big.bin", back.to_str().unwrap()]);
        assert!(
            same_content(copy, &back),
            "version {id} came back different"
        );
    }
    assert_eq!(
        stored_block_files(&data) - first_blocks,
        grown,
        "restores stored new blocks"
    );
}

#[test]
fn a_user_at_quota_cannot_upload_and_is_told_why() {
    let server = Server::start();
    let out = server.admin(
        &[
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--quota",
            "1000000",
        ],
        "carol pw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let carol = server.login_with("carol", "carol pw");
    let data = server.data.as_ref().unwrap().path().to_owned();
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    random_file(&a, 600_000, 1);
    carol.ok(&["put", a.to_str().unwrap(), "/a"]);
    let blocks = stored_block_files(&data);

    let b = work.path().join("b");
    random_file(&b, 600_000, 2);
    carol.fails(&["put", b.to_str().unwrap(), "/b"], "quota exceeded");
    assert_eq!(
        stored_block_files(&data),
        blocks,
        "a refused upload stored blocks"
    );
    // Copies count too.
    carol.fails(&["cp", "/a", "/a2"], "quota exceeded");
    let status = carol.json(&["status", "--json"]);
    assert_eq!(status["usage_bytes"], 600_000);
    assert_eq!(status["quota_bytes"], 1_000_000);

    // Raising the quota lets the same upload through.
    let out = server.admin(&["user", "set-quota", "carol", "--quota", "2000000"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    carol.ok(&["put", b.to_str().unwrap(), "/b"]);
    let out = server.admin(&["user", "set-quota", "nobody", "--quota", "1"], "");
    assert!(!out.status.success());
}

/// Runs `cairn admin gc ARGS --json` on the server's data dir and returns its report.
fn admin_gc(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["gc", "--json"];
    all.extend_from_slice(args);
    let out = server.admin(&all, "");
    assert!(
        out.status.success(),
        "cairn admin {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn admin_gc_frees_blocks_nothing_references_and_keeps_the_rest() {
    let server = Server::start();
    let client = server.login("admin");
    let data = server.data.as_ref().unwrap().path().to_owned();
    let work = tempfile::tempdir().unwrap();
    let file = |name: &str| work.path().join(name).to_str().unwrap().to_owned();

    // A live file, a file in the trash, and a file whose first content (unique blocks)
    // is now only history.
    random_file(Path::new(&file("live.bin")), 3 << 20, 21);
    client.ok(&["put", &file("live.bin"), "/live.bin"]);
    random_file(Path::new(&file("trashed.bin")), 3 << 20, 22);
    client.ok(&["put", &file("trashed.bin"), "/trashed.bin"]);
    client.ok(&["rm", "/trashed.bin"]);
    random_file(Path::new(&file("doc.bin")), 3 << 20, 23);
    client.ok(&["put", &file("doc.bin"), "/doc.bin"]);
    fs::write(file("doc.bin"), "the new, short content").unwrap();
    client.ok(&["put", &file("doc.bin"), "/doc.bin"]);
    let before = stored_block_files(&data);

    // The default retention keeps a month of history and the trash keeps its files:
    // even with no grace period nothing is referenced by nothing.
    let report = admin_gc(&server, &["--grace", "0"]);
    assert_eq!(report["versions_pruned"], 0, "{report}");
    assert_eq!(report["blocks_deleted"], 0, "{report}");
    assert_eq!(stored_block_files(&data), before);

    // Keep no history: the old content of /doc.bin goes, its blocks are freed.
    let config = work.path().join("cairn.toml");
    fs::write(&config, "version_retention_days = 0\nkeep_versions = 0\n").unwrap();
    let report = admin_gc(
        &server,
        &["--grace", "0", "--config", config.to_str().unwrap()],
    );
    assert_eq!(report["versions_pruned"], 1, "{report}");
    let deleted = report["blocks_deleted"].as_u64().unwrap();
    assert!(deleted >= 1, "{report}");
    assert!(
        report["bytes_freed"].as_u64().unwrap() >= 3 << 20,
        "random content does not compress: {report}"
    );
    assert_eq!(stored_block_files(&data), before - deleted as usize);

    // What is still referenced is intact and readable.
    client.ok(&["get", "/live.bin", &file("live.back")]);
    assert!(same_content(
        Path::new(&file("live.bin")),
        Path::new(&file("live.back"))
    ));
    client.ok(&["get", "/doc.bin", &file("doc.back")]);
    assert_eq!(
        fs::read(file("doc.back")).unwrap(),
        b"the new, short content"
    );

    // Human output, with the configured grace (an hour): nothing more to do.
    let out = server.admin(&["gc"], "");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("deleted 0 blocks, freed 0 B"), "{text:?}");

    // Bad input: one line on stderr, non-zero exit.
    let out = server.admin(&["gc", "--grace", "soon"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--grace"), "{stderr}");
}
