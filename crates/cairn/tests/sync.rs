//! End to end: real `cairn sync` processes on two folders against a real server.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use support::{random_file, tree, wait_until, write, Device, Server, SyncProcess};

/// One of the admin's devices.
fn device(server: &Server, name: &str) -> Device {
    Device::new(server, "admin", name)
}

/// Waits until both folders hold the same tree, and that tree satisfies `check`.
fn converge(
    a: &Device,
    b: &Device,
    check: impl Fn(&BTreeMap<String, Option<blake3::Hash>>) -> bool,
) {
    let ok = wait_until(
        || {
            let ta = tree(&a.dir);
            ta == tree(&b.dir) && check(&ta)
        },
        Duration::from_secs(60),
    );
    assert!(
        ok,
        "the folders did not converge:\n{:#?}\n{:#?}",
        tree(&a.dir),
        tree(&b.dir)
    );
}

/// The server's tree, read by a third device with `sync --once` into a fresh folder.
fn server_tree(server: &Server) -> BTreeMap<String, Option<blake3::Hash>> {
    let c = device(server, "checker");
    c.client.ok(&["sync", c.dir.to_str().unwrap(), "--once"]);
    tree(&c.dir)
}

#[test]
fn two_devices_stay_identical_through_every_kind_of_change() {
    let server = Server::start();
    let a = device(&server, "laptop");
    let b = device(&server, "desktop");
    fs::create_dir_all(&a.dir).unwrap();
    let sync_a = SyncProcess::start(&a.client, &a.dir);
    let sync_b = SyncProcess::start(&b.client, &b.dir);

    // Create on A: files, nested folders, an empty folder.
    write(&a.dir.join("notes.txt"), "hello");
    write(&a.dir.join("Projects/plan.md"), "# plan");
    write(&a.dir.join("Projects/2026/budget.csv"), "a,b\n1,2\n");
    fs::create_dir_all(a.dir.join("Empty")).unwrap();
    converge(&a, &b, |t| t.len() == 6);

    // Edit on B.
    write(&b.dir.join("Projects/plan.md"), "# plan, revised");
    converge(&a, &b, |t| {
        t.get("Projects/plan.md") == Some(&Some(blake3::hash(b"# plan, revised")))
    });

    // Rename a file and move a folder into another on A.
    fs::rename(a.dir.join("notes.txt"), a.dir.join("readme.txt")).unwrap();
    fs::rename(a.dir.join("Projects/2026"), a.dir.join("Empty/2026")).unwrap();
    converge(&a, &b, |t| {
        t.contains_key("readme.txt")
            && !t.contains_key("notes.txt")
            && t.contains_key("Empty/2026/budget.csv")
            && !t.contains_key("Projects/2026")
    });

    // Delete a file and a folder on B.
    fs::remove_file(b.dir.join("readme.txt")).unwrap();
    fs::remove_dir_all(b.dir.join("Empty")).unwrap();
    converge(&a, &b, |t| {
        !t.contains_key("readme.txt") && !t.keys().any(|k| k.starts_with("Empty"))
    });
    assert_eq!(server_tree(&server), tree(&a.dir), "the server agrees");

    // Conflicting offline edits: both devices edit the same file while stopped.
    sync_a.stop();
    sync_b.stop();
    write(&a.dir.join("Projects/plan.md"), "A's plan");
    write(&b.dir.join("Projects/plan.md"), "B's plan");
    let sync_a = SyncProcess::start(&a.client, &a.dir);
    let a_won = wait_until(
        || server_tree(&server).get("Projects/plan.md") == Some(&Some(blake3::hash(b"A's plan"))),
        Duration::from_secs(60),
    );
    assert!(a_won, "A's edit reached the server");
    let sync_b = SyncProcess::start(&b.client, &b.dir);
    converge(&a, &b, |t| t.len() == 3);
    let t = tree(&a.dir);
    assert_eq!(t["Projects/plan.md"], Some(blake3::hash(b"A's plan")));
    let copy = t
        .iter()
        .find(|(k, _)| k.starts_with("Projects/plan (conflicted copy from desktop "))
        .unwrap_or_else(|| panic!("no conflict copy in {t:#?}"));
    assert_eq!(*copy.1, Some(blake3::hash(b"B's plan")));

    // A large file.
    let big = a.dir.join("big.bin");
    random_file(&big, 1 << 30, 42);
    let there = b.dir.join("big.bin");
    let ok = wait_until(
        || {
            // Only a complete file is compared (downloads land whole, by rename).
            fs::metadata(&there).is_ok_and(|m| m.len() == 1 << 30)
                && support::same_content(&big, &there)
        },
        Duration::from_secs(600),
    );
    assert!(ok, "the 1 GiB file reached B");

    // One byte inserted in its middle on A, saved as editors do (a new file renamed
    // over the old): B builds the new version from its old copy, so only the changed
    // blocks leave the server.
    let sent_before = server.metric("cairn_block_bytes_sent_total");
    let edited = a.scratch.path().join("big.new");
    {
        use std::io::{Read, Write};
        let mut from = fs::File::open(&big).unwrap();
        let mut to = std::io::BufWriter::new(fs::File::create(&edited).unwrap());
        std::io::copy(&mut (&mut from).take(1 << 29), &mut to).unwrap();
        to.write_all(b"!").unwrap();
        std::io::copy(&mut from, &mut to).unwrap();
        to.flush().unwrap();
    }
    fs::rename(&edited, &big).unwrap();
    let ok = wait_until(
        || {
            fs::metadata(&there).is_ok_and(|m| m.len() == (1 << 30) + 1)
                && support::same_content(&big, &there)
        },
        Duration::from_secs(600),
    );
    assert!(ok, "the edit reached B");
    let sent = server.metric("cairn_block_bytes_sent_total") - sent_before;
    assert!(
        sent < (64 << 20) as f64,
        "{sent} block bytes were sent for a 1-byte edit"
    );
    assert_eq!(server_tree(&server), tree(&a.dir), "the server agrees");
    drop((sync_a, sync_b));

    // The small files went up in batches, so their blocks sit in pack files. Beside the
    // running server (another process, as an operator would run them), fsck reads every
    // block back verified and a collection with no grace period keeps what is
    // referenced: the history and trash of this test's edits, and the live files.
    let data = server.data.as_ref().unwrap().path();
    let packs = fs::read_dir(data.join("packs")).map_or(0, |d| d.count());
    assert!(packs > 0, "the batches were stored in pack files");
    let fsck = |what: &str| {
        let out = server.admin(&["fsck", "--json"], "");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("fsck {what} printed no JSON ({e}): {out:?}"));
        assert!(
            out.status.success() && report["clean"] == true,
            "{what}: {report}"
        );
    };
    fsck("after sync");
    let gc = server.admin(&["gc", "--grace", "0", "--json"], "");
    assert!(gc.status.success(), "{gc:?}");
    fsck("after gc");
    let back = a.scratch.path().join("plan.back");
    a.client
        .ok(&["get", "/Projects/plan.md", back.to_str().unwrap()]);
    assert_eq!(fs::read(&back).unwrap(), b"A's plan");
}

#[test]
fn an_emptied_or_missing_folder_stops_sync_instead_of_deleting_on_the_server() {
    let server = Server::start();
    let a = device(&server, "laptop");
    let dir = a.dir.to_str().unwrap().to_owned();
    write(&a.dir.join("a.txt"), "a");
    write(&a.dir.join("d/b.txt"), "b");
    let report = a.client.json(&["sync", &dir, "--once", "--json"]);
    assert_eq!(report["uploaded"], 2);
    let status = a.client.json(&["status", "--json"]);
    assert_eq!(status["sync"][0]["dir"], dir.as_str());
    assert_eq!(status["sync"][0]["pending"], serde_json::json!([]));

    fs::remove_file(a.dir.join("a.txt")).unwrap();
    fs::remove_dir_all(a.dir.join("d")).unwrap();
    a.client.fails(&["sync", &dir, "--once"], "is empty");
    let status = a.client.json(&["status", "--json"]);
    let error = status["sync"][0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("is empty"), "{status}");
    fs::remove_dir(&a.dir).unwrap();
    a.client.fails(&["sync", &dir, "--once"], "is missing");
    assert_eq!(
        server_tree(&server).len(),
        3,
        "nothing was deleted on the server"
    );
}

/// A rewrite that leaves a file's size and modification time as they were (two saves
/// within one timestamp granule) is still seen, also by a sync that starts afresh: a
/// hash read while the mtime was that recent is not trusted on the stat's word.
#[test]
fn an_edit_that_keeps_size_and_mtime_is_still_uploaded() {
    let server = Server::start();
    let a = device(&server, "laptop");
    let dir = a.dir.to_str().unwrap().to_owned();
    let file = a.dir.join("same.txt");
    let mtime = std::time::SystemTime::now() + Duration::from_secs(1);
    let write_at = |text: &str| {
        write(&file, text);
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(mtime))
            .unwrap();
    };
    write_at("aaaa");
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&file).unwrap());
    let report = a.client.json(&["sync", &dir, "--once", "--json"]);
    assert_eq!(report["uploaded"], 1);

    write_at("bbbb");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), inode);
    assert_eq!(meta.modified().unwrap(), mtime, "the stat is unchanged");
    let report = a.client.json(&["sync", &dir, "--once", "--json"]);
    assert_eq!(report["uploaded"], 1, "the rewrite was uploaded: {report}");
    let back = a.scratch.path().join("same.back");
    a.client.ok(&["get", "/same.txt", back.to_str().unwrap()]);
    assert_eq!(fs::read(&back).unwrap(), b"bbbb");
}
