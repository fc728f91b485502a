//! End-to-end tests through the binary: a real `cairn serve` process on a random
//! loopback port with a temp data dir, driven by the `cairn` client commands.

mod support;

use std::fs;

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
