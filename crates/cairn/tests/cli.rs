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

#[test]
fn a_member_with_a_small_quota_uploads_into_a_roomy_owners_shared_folder() {
    // Bob's own quota is 1 KB; admin (Alice here), who has none, shares /Team with him
    // as an editor. A file there is charged to its owner, so the CLI must not refuse it
    // for Bob's quota, and a file in Bob's own home must be refused before it is sent.
    let server = Server::start();
    let out = server.admin(
        &["user", "add", "bob", "--password-stdin", "--quota", "1000"],
        "bob pw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = server.login("admin");
    let bob = server.login_with("bob", "bob pw");
    alice.ok(&["mkdir", "/Team"]);
    alice.ok(&["share", "add", "/Team", "--with", "bob", "--role", "editor"]);

    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    random_file(&big, 100_000, 7);
    bob.ok(&["put", big.to_str().unwrap(), "/Team/big.bin"]);
    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    random_file(&tree.join("one.bin"), 100_000, 8);
    random_file(&tree.join("two.bin"), 1_000, 9);
    bob.ok(&["put", "-r", tree.to_str().unwrap(), "/Team/"]);
    let listing = alice.ok(&["ls", "/Team/tree"]);
    assert!(
        listing.contains("one.bin") && listing.contains("two.bin"),
        "{listing}"
    );
    let status = bob.json(&["status", "--json"]);
    assert_eq!(status["usage_bytes"], 0, "the owner pays, not the member");
    let status = alice.json(&["status", "--json"]);
    assert_eq!(status["usage_bytes"], 201_000);

    // Into Bob's own home: refused before a block is sent, with whose quota it is.
    let sent = server.metric("cairn_block_bytes_received_total");
    bob.fails(
        &["put", big.to_str().unwrap(), "/big.bin"],
        "cannot upload to /big.bin: storage quota exceeded (0 B of",
    );
    bob.fails(
        &["put", "-r", tree.to_str().unwrap(), "/"],
        "cannot upload to /tree: storage quota exceeded (0 B of",
    );
    assert_eq!(
        server.metric("cairn_block_bytes_received_total"),
        sent,
        "a refused upload sent blocks"
    );
    assert!(
        !bob.ok(&["ls", "/"]).contains("tree"),
        "a refused tree made its folder"
    );

    // Alice's quota lowered below what her folder holds: Bob is told it is hers.
    let out = server.admin(&["user", "set-quota", "admin", "--quota", "250000"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bob.fails(
        &["put", big.to_str().unwrap(), "/Team/again.bin"],
        "storage quota exceeded for admin, who owns the folder",
    );
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

/// The sum of `cairn_http_requests_total` for one route, whatever the status.
fn requests(server: &Server, route: &str) -> f64 {
    server.metric(&format!(
        "cairn_http_requests_total{{route=\"/api/v1/{route}\""
    ))
}

#[cfg(unix)]
#[test]
fn get_writes_only_to_files_or_standard_output() {
    use std::os::unix::fs::FileTypeExt;

    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("original.bin");
    random_file(&original, (10 << 20) + 123, 5);
    client.ok(&["put", original.to_str().unwrap(), "/x.bin"]);

    // A symbolic link (as /dev/stdout is) stays a link, and what it points at is
    // untouched.
    let pointee = work.path().join("pointee.txt");
    fs::write(&pointee, "keep me").unwrap();
    let link = work.path().join("link");
    std::os::unix::fs::symlink(&pointee, &link).unwrap();
    client.fails(
        &["get", "/x.bin", link.to_str().unwrap()],
        "it is a symbolic link (to ",
    );
    let out = client.run(&["get", "/x.bin", link.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("use `-` to write to standard output"),
        "{stderr}"
    );
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&pointee).unwrap(), "keep me");

    // A named pipe is refused without being opened (opening it would block).
    let fifo = work.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    client.fails(
        &["get", "/x.bin", fifo.to_str().unwrap()],
        "it is a named pipe (FIFO)",
    );
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // So is a device.
    client.fails(&["get", "/x.bin", "/dev/null"], "it is a character device");
    assert!(fs::symlink_metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // No temp file was left beside any of them.
    let names: Vec<String> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("cairn-tmp")), "{names:?}");

    // '-' is standard output: the file's bytes and nothing else, even with a file
    // named '-' in the current folder.
    let out = client.run(&["get", "/x.bin", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == fs::read(&original).unwrap(), "stdout differs");
    assert!(!Path::new("-").exists());
    client.fails(&["get", "/x.bin", "-", "--json"], "standard output");
    client.ok(&["mkdir", "/folder"]);
    client.fails(&["get", "/folder", "-"], "is a folder");
    // A regular file is still replaced, as before.
    let plain = work.path().join("plain.bin");
    fs::write(&plain, "old").unwrap();
    client.ok(&["get", "/x.bin", plain.to_str().unwrap()]);
    assert!(same_content(&original, &plain));
}

#[test]
fn put_reads_standard_input_as_it_comes() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source.bin");
    random_file(&source, (20 << 20) + 7, 9);
    let bytes = fs::read(&source).unwrap();

    let out = client.run_with_stdin_bytes(&["put", "-", "/in/stream.bin", "--json"], &bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(commit["entry"]["size"], bytes.len() as u64);
    assert_eq!(commit["entry"]["path"], "/in/stream.bin");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("uploaded standard input to /in/stream.bin"),
        "{stderr}"
    );
    // The same bytes a file upload of the same content makes: the same content hash.
    client.ok(&["put", source.to_str().unwrap(), "/in/file.bin"]);
    let from_file = client.json(&["stat", "/in/file.bin", "--json"]);
    assert_eq!(commit["entry"]["content_hash"], from_file["content_hash"]);
    let back = client.run(&["get", "/in/stream.bin", "-"]);
    assert!(back.status.success());
    assert!(back.stdout == bytes, "the round trip differs");

    // Again onto the same path: a new version, based on the current one.
    let out = client.run_with_stdin_bytes(&["put", "-", "/in/stream.bin"], b"short now");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        client
            .json(&["versions", "/in/stream.bin", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Empty input is an empty file.
    let out = client.run_with_stdin_bytes(&["put", "-", "/in/empty"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client.json(&["stat", "/in/empty", "--json"])["size"], 0);

    // A device is not a file to upload; '-' is the way to send a stream.
    #[cfg(unix)]
    client.fails(
        &["put", "/dev/null", "/null"],
        "give '-' to upload standard input",
    );

    // A stream has no name to put in a folder.
    for folder in ["/in", "/in/", "/"] {
        let out = client.run_with_stdin_bytes(&["put", "-", folder], b"x");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("name the file to create"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[cfg(unix)]
#[test]
fn put_r_and_get_r_round_trip_a_thousand_file_tree_in_batches() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // 1,000 small files in 10 × 10 nested folders, an empty folder, a large file that
    // goes alone, and a link that must not be followed.
    for a in 0..10 {
        for b in 0..10 {
            let dir = src.join(format!("d{a}")).join(format!("e{b}"));
            fs::create_dir_all(&dir).unwrap();
            for c in 0..10 {
                let n = a * 100 + b * 10 + c;
                fs::write(
                    dir.join(format!("f{c}.txt")),
                    format!("file {n}\n").repeat(n + 1),
                )
                .unwrap();
            }
        }
    }
    fs::create_dir_all(src.join("empty")).unwrap();
    random_file(&src.join("large.bin"), 5 << 20, 77);
    std::os::unix::fs::symlink("/etc", src.join("escape")).unwrap();

    // The server records request metrics once /metrics has been read.
    let _ = requests(&server, "files/commit");
    let before = |route: &str| requests(&server, route);
    let (commits, batches, mkdirs) = (
        before("files/commit"),
        before("files/commit_batch"),
        before("files/mkdir"),
    );
    let started = std::time::Instant::now();
    let out = client.run(&["put", "-r", src.to_str().unwrap(), "/", "--json"]);
    let put_time = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["remote"], "/src", "{report}");
    assert_eq!(report["files"], 1001, "{report}");
    // /src, 10 + 100 nested folders, and the empty one.
    assert_eq!(report["folders"], 112, "{report}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{report}");
    assert!(skipped[0]["reason"]
        .as_str()
        .unwrap()
        .contains("symbolic link"));
    let commits = requests(&server, "files/commit") - commits;
    let batches = requests(&server, "files/commit_batch") - batches;
    let mkdirs = requests(&server, "files/mkdir") - mkdirs;
    eprintln!(
        "put -r of 1,001 files: {put_time:?}, {commits} commits, {batches} commit batches, {mkdirs} mkdirs"
    );
    assert_eq!(commits, 1.0, "only the large file is committed alone");
    assert!((1.0..=4.0).contains(&batches), "{batches} commit batches");
    assert_eq!(mkdirs, 0.0);
    assert_eq!(
        client.json(&["stat", "/src/empty", "--json"])["kind"],
        "folder"
    );
    assert!(
        !client.ok(&["ls", "/src"]).contains("escape"),
        "the link was not uploaded"
    );

    let (lists, content_batches, block_gets) = (
        before("files/list"),
        before("files/content_batch"),
        before("blocks/{hash}"),
    );
    let back = work.path().join("back");
    let started = std::time::Instant::now();
    let out = client.run(&["get", "-r", "/src", back.to_str().unwrap(), "--json"]);
    let get_time = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"], 1001, "{report}");
    // back itself and the 111 folders below it.
    assert_eq!(report["folders"], 112, "{report}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    let lists = requests(&server, "files/list") - lists;
    let content_batches = requests(&server, "files/content_batch") - content_batches;
    let block_gets = requests(&server, "blocks/{hash}") - block_gets;
    eprintln!(
        "get -r of 1,001 files: {get_time:?}, {lists} listings, {content_batches} content batches, {block_gets} block downloads"
    );
    assert!((1.0..=4.0).contains(&content_batches), "{content_batches}");
    // Only the large file's blocks (5 MiB: at most five 1 MiB chunks) come one by one.
    assert!(block_gets <= 5.0, "{block_gets} blocks fetched one by one");
    // One listing per folder.
    assert_eq!(lists, 112.0);

    fs::remove_file(src.join("escape")).unwrap();
    assert_eq!(
        support::tree(&src),
        support::tree(&back),
        "the round trip differs"
    );
    assert!(same_content(
        &src.join("large.bin"),
        &back.join("large.bin")
    ));

    // Into an existing folder, a second time: the tree goes inside it, and a changed
    // file replaces its old version while unchanged ones stay as they are.
    fs::write(src.join("d3/e4/f5.txt"), "changed").unwrap();
    client.ok(&["put", "-r", src.to_str().unwrap(), "/"]);
    let versions = client.json(&["versions", "/src/d3/e4/f5.txt", "--json"]);
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    let versions = client.json(&["versions", "/src/d3/e4/f6.txt", "--json"]);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    client.ok(&["get", "-r", "/src/d3", back.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(back.join("d3/e4/f5.txt")).unwrap(),
        "changed"
    );
    // The human summary, with counts in words.
    let out = client.run(&["get", "-r", "/src/empty", back.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("downloaded 0 files (0 B) and created 0 folders from /src/empty"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn tree_transfers_report_what_they_cannot_move_and_move_the_rest() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("mixed");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("good.txt"), "good").unwrap();
    fs::write(src.join("sub/also good.txt"), "also").unwrap();
    // Fine on Linux, refused by the server: a control character in a name.
    fs::write(src.join("bad\u{1}name.txt"), "bad").unwrap();
    let out = client.run(&["put", "-r", src.to_str().unwrap(), "/up"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad\u{1}name.txt"), "{stderr}");
    assert!(stderr.contains("1 item not uploaded"), "{stderr}");
    client.ok(&["stat", "/up/good.txt"]);
    client.ok(&["stat", "/up/sub/also good.txt"]);

    // Downloading: a link at a file's place and a link at a folder's place are left
    // alone and reported; nothing is written through them.
    // DEST exists, so the tree goes into DEST/up, as with cp -r.
    let dest = work.path().join("dest");
    fs::create_dir_all(dest.join("up")).unwrap();
    let outside = work.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("good.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(outside.join("good.txt"), dest.join("up/good.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("up/sub")).unwrap();
    let out = client.run(&["get", "-r", "/up", dest.to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"], 0, "{report}");
    assert_eq!(report["failed"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(
        fs::read_to_string(outside.join("good.txt")).unwrap(),
        "outside"
    );
    assert!(!outside.join("also good.txt").exists());
    assert!(fs::symlink_metadata(dest.join("up/good.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    // LOCAL named on the command line and not there yet becomes the folder.
    let fresh = work.path().join("fresh");
    client.ok(&["get", "-r", "/up", fresh.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(fresh.join("sub/also good.txt")).unwrap(),
        "also"
    );
    // Without -r, a folder is refused with the way to do it.
    client.fails(&["get", "/up", fresh.to_str().unwrap()], "cairn get -r");
    client.fails(&["put", src.to_str().unwrap(), "/up2"], "cairn put -r");
}

#[test]
fn login_without_a_scheme_says_what_it_assumed() {
    let server = Server::start();
    let client = support::Client {
        config_dir: tempfile::tempdir().unwrap(),
    };
    // The test server speaks plain HTTP, so the assumed https:// fails, and says so.
    let host = server.url.strip_prefix("http://").unwrap();
    let out = client.run_with_stdin(
        &["login", host, "--user", "admin", "--password-stdin"],
        support::ADMIN_PASSWORD,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("so https:// was assumed"), "{stderr}");
    assert!(
        stderr.contains(&format!("give http://{host} instead")),
        "{stderr}"
    );
    assert!(!stderr.contains("relative URL"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // Given in full, it works.
    let out = client.run_with_stdin(
        &["login", &server.url, "--user", "admin", "--password-stdin"],
        support::ADMIN_PASSWORD,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("without a scheme: {stderr}");
    for (bad, needle) in [
        ("", "no server URL given"),
        ("ftp://host", "http:// or https://"),
    ] {
        let out = client.run_with_stdin(&["login", bad, "--user", "admin"], "pw\n");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{bad:?}: {stderr}");
        assert!(!stderr.contains("relative URL"), "{stderr}");
    }
}

#[test]
fn listings_have_headers_and_sizes_for_people() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("doc.txt");
    for content in ["first draft", "second draft, longer"] {
        fs::write(&local, content).unwrap();
        client.ok(&["put", local.to_str().unwrap(), "/doc.txt"]);
    }
    random_file(&work.path().join("big"), 3 << 20, 3);
    client.ok(&["put", work.path().join("big").to_str().unwrap(), "/big"]);

    let text = client.ok(&["versions", "/doc.txt"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["VERSION", "CREATED", "(UTC)", "SIZE", "BY", "CONTENT"],
        "{text}"
    );
    assert!(
        lines[1].contains("20 B") && lines[2].contains("11 B"),
        "{text}"
    );
    // Each column starts under its heading.
    let at = lines[0].find("BY").unwrap();
    assert!(lines[1][at..].starts_with("admin"), "{text}");

    let text = client.ok(&["ls", "/"]);
    assert!(text.starts_with("   SIZE  MODIFIED (UTC)"), "{text}");
    assert!(text.contains("3.0 MiB"), "sizes for people: {text}");
    // Exact bytes stay in --json.
    let listing = client.json(&["ls", "/", "--json"]);
    assert_eq!(listing[0]["size"], 3u64 << 20);

    let url = client.ok(&["link", "create", "/doc.txt"]);
    let text = client.ok(&["link", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("ID  STATUS  PATH"), "{text}");
    assert!(lines[1].contains(url.trim()), "{text}");

    client.ok(&["rm", "/big"]);
    let text = client.ok(&["trash", "list"]);
    assert!(text.starts_with("ID  DELETED (UTC)"), "{text}");
    let out = client.ok(&["trash", "purge"]);
    assert!(out.contains("purged 1 item (3.0 MiB)"), "{out}");

    // An unknown link id is said plainly, with where to look.
    client.fails(
        &["link", "revoke", "99"],
        "no link with id 99 (see `cairn link list`)",
    );
}

#[test]
fn logs_carry_no_colour_codes_when_they_are_not_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("server.log");
    let mut child = std::process::Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("CAIRN_ADMIN_PASSWORD", support::ADMIN_PASSWORD)
        .env("CAIRN_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let listening = support::wait_until(
        || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("cairn listening on")
        },
        std::time::Duration::from_secs(60),
    );
    let _ = child.kill();
    let _ = child.wait();
    let text = fs::read(&log).unwrap();
    assert!(listening, "{}", String::from_utf8_lossy(&text));
    assert!(
        !text.contains(&0x1b),
        "escape codes in a piped log: {:?}",
        String::from_utf8_lossy(&text)
    );

    // The client's messages neither.
    let client = support::Client {
        config_dir: tempfile::tempdir().unwrap(),
    };
    let out = client.run(&["ls"]);
    assert!(!out.status.success());
    assert!(!out.stderr.contains(&0x1b), "{:?}", out.stderr);
    let out = client.run(&["no-such-command"]);
    assert!(!out.status.success());
    assert!(!out.stderr.contains(&0x1b), "{:?}", out.stderr);
}

#[test]
fn serve_with_a_tls_file_it_cannot_use_exits_with_one_line_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("missing-cert.pem");
    let key = dir.path().join("key.pem");
    fs::write(&key, "not a key\n").unwrap();
    let out = std::process::Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("CAIRN_TLS_CERT", &missing)
        .env("CAIRN_TLS_KEY", &key)
        .env("CAIRN_ADMIN_PASSWORD", support::ADMIN_PASSWORD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot read the TLS certificate") && stderr.contains("missing-cert.pem"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing is created before the start fails");
}
