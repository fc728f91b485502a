//! End to end: a folder shared by Alice with Bob (editor) and Carol (viewer), each of
//! them running `cairn sync` against a real server.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{tree, wait_until, write, Device, Server, SyncProcess, ADMIN_PASSWORD};

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Waits until the file at `path` holds `text`; how long that took.
fn arrives(path: &Path, text: &str) -> Duration {
    let start = Instant::now();
    let ok = wait_until(
        || read(path).as_deref() == Some(text),
        Duration::from_secs(30),
    );
    assert!(
        ok,
        "{} never held {text:?}: {:?}",
        path.display(),
        read(path)
    );
    start.elapsed()
}

#[test]
fn a_team_folder_shared_with_an_editor_and_a_viewer() {
    let server = Server::start();
    for user in ["bob", "carol"] {
        let out = server.admin(&["user", "add", user, "--password-stdin"], ADMIN_PASSWORD);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let alice = Device::new(&server, "admin", "alice-laptop");
    let bob = Device::new(&server, "bob", "bob-laptop");
    let carol = Device::new(&server, "carol", "carol-laptop");

    // Alice's /Team, shared before anyone syncs.
    let seed = alice.dir.parent().unwrap().join("plan.md");
    fs::write(&seed, "v1 by alice").unwrap();
    alice
        .client
        .ok(&["put", seed.to_str().unwrap(), "/Team/plan.md"]);
    alice
        .client
        .ok(&["put", seed.to_str().unwrap(), "/private.md"]);
    alice
        .client
        .ok(&["share", "add", "/Team", "--with", "bob", "--role", "editor"]);
    alice.client.ok(&[
        "share", "add", "/Team", "--with", "carol", "--role", "viewer",
    ]);
    let shares = alice.client.json(&["share", "list", "--json"]);
    assert_eq!(
        shares[0]["members"].as_array().unwrap().len(),
        3,
        "{shares}"
    );
    let listing = carol.client.ok(&["ls", "/"]);
    assert!(
        listing.contains("Team/  (shared by admin, viewer)"),
        "{listing}"
    );

    let carol_log = carol.dir.parent().unwrap().join("sync.log");
    let sync_alice = SyncProcess::start(&alice.client, &alice.dir);
    let sync_bob = SyncProcess::start(&bob.client, &bob.dir);
    let sync_carol = SyncProcess::start_logged(&carol.client, &carol.dir, &carol_log);
    for device in [&alice, &bob, &carol] {
        arrives(&device.dir.join("Team/plan.md"), "v1 by alice");
    }
    assert!(
        !bob.dir.join("private.md").exists(),
        "Alice's own files stay hers"
    );

    // Bob's edit reaches Alice and Carol in real time.
    write(&bob.dir.join("Team/plan.md"), "v2 by bob");
    let to_alice = arrives(&alice.dir.join("Team/plan.md"), "v2 by bob");
    let to_carol = arrives(&carol.dir.join("Team/plan.md"), "v2 by bob");
    eprintln!("bob's edit reached alice in {to_alice:?}, carol in {to_carol:?}");
    write(&bob.dir.join("Team/new/from-bob.txt"), "hello team");
    arrives(&alice.dir.join("Team/new/from-bob.txt"), "hello team");

    // Carol's changes are refused: kept on her disk, reported, never reverted, and
    // never seen by the others.
    write(&carol.dir.join("Team/plan.md"), "v3 by carol");
    write(&carol.dir.join("Team/carol.txt"), "carol's note");
    let reported = wait_until(
        || {
            let log = read(&carol_log).unwrap_or_default();
            log.contains("not synced: /Team/plan.md") && log.contains("viewer")
        },
        Duration::from_secs(30),
    );
    assert!(reported, "carol's log: {:?}", read(&carol_log));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        read(&carol.dir.join("Team/plan.md")).as_deref(),
        Some("v3 by carol")
    );
    assert_eq!(
        read(&carol.dir.join("Team/carol.txt")).as_deref(),
        Some("carol's note")
    );
    assert_eq!(
        read(&alice.dir.join("Team/plan.md")).as_deref(),
        Some("v2 by bob")
    );
    assert!(!alice.dir.join("Team/carol.txt").exists());
    let status = carol.client.ok(&["status"]);
    assert!(status.contains("Team"), "{status}");

    // Removing Bob takes /Team off his devices and nothing away from Alice.
    alice
        .client
        .ok(&["share", "remove", "/Team", "--with", "bob"]);
    let gone = wait_until(|| !bob.dir.join("Team").exists(), Duration::from_secs(30));
    assert!(gone, "bob still syncs /Team: {:#?}", tree(&bob.dir));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        read(&alice.dir.join("Team/plan.md")).as_deref(),
        Some("v2 by bob")
    );
    assert_eq!(
        read(&alice.dir.join("Team/new/from-bob.txt")).as_deref(),
        Some("hello team")
    );
    let on_server = alice.client.ok(&["ls", "/Team"]);
    assert!(
        on_server.contains("plan.md") && on_server.contains("new/"),
        "{on_server}"
    );
    // What Bob writes at that name now is his own.
    write(&bob.dir.join("Team/mine.txt"), "bob's own");
    let uploaded = wait_until(
        || String::from_utf8_lossy(&bob.client.run(&["ls", "/Team"]).stdout).contains("mine.txt"),
        Duration::from_secs(30),
    );
    assert!(uploaded);
    assert!(!alice.client.ok(&["ls", "/Team"]).contains("mine.txt"));
    assert!(!carol.client.ok(&["ls", "/Team"]).contains("mine.txt"));

    sync_alice.stop();
    sync_bob.stop();
    sync_carol.stop();
}
