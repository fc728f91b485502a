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

/// `cairn_http_requests_total` by route, summed over statuses, as `/metrics` says.
fn requests_by_route(server: &Server) -> BTreeMap<String, f64> {
    let body = support::http_get(&format!("{}/metrics", server.url));
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("cairn_http_requests_total{route=\"") else {
            continue;
        };
        let (route, tail) = rest.split_once('"').unwrap();
        let n: f64 = tail.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(route.to_owned()).or_insert(0.0) += n;
    }
    out
}

/// The requests a daemon made between two readings: everything but `/metrics` itself.
fn daemon_requests(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> f64 {
    after
        .iter()
        .filter(|(route, _)| route.as_str() != "/metrics")
        .map(|(route, n)| n - before.get(route).copied().unwrap_or(0.0))
        .sum()
}

/// When the folder's last pass ended, as `cairn status --json` says.
fn last_pass_at(device: &Device) -> i64 {
    let status = device.client.json(&["status", "--json"]);
    status["sync"][0]["last_pass_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pass recorded: {status}"))
}

fn read_log(path: &std::path::Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Files whose name marks them as a download on its way in.
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else if name.contains(".cairn-tmp-") || name.starts_with(".cairn-part-") {
                out.push(entry.path().display().to_string());
            }
        }
    }
    out
}

/// Issue 13: an idle daemon ran about 55 passes a second, each reading the delta, set
/// off by the watcher reporting its own scan's reads. At rest it must make no request
/// (its notification connection's heartbeat is a WebSocket ping, not a request) and
/// run no pass, and still carry the next change at once.
#[test]
fn an_idle_daemon_makes_no_request_and_runs_no_pass() {
    let server = Server::start();
    // Metrics may be recorded only from the first scrape on.
    requests_by_route(&server);
    let a = device(&server, "laptop");
    write(&a.dir.join("one.txt"), "one");
    let log = a.scratch.path().join("sync.log");
    let _sync = SyncProcess::start_logged(&a.client, &a.dir, &log);
    let up = wait_until(
        || a.client.run(&["stat", "/one.txt"]).status.success(),
        Duration::from_secs(60),
    );
    assert!(up, "the file never reached the server: {}", read_log(&log));
    // Let the first pass and the notification of its own upload go by.
    std::thread::sleep(Duration::from_secs(2));

    let pass_before = last_pass_at(&a);
    let before = requests_by_route(&server);
    std::thread::sleep(Duration::from_secs(30));
    let after = requests_by_route(&server);
    let pass_after = last_pass_at(&a);
    let delta = |m: &BTreeMap<String, f64>| m.get("/api/v1/delta").copied().unwrap_or(0.0);
    assert_eq!(
        delta(&after),
        delta(&before),
        "delta requests while idle: {before:?} → {after:?}"
    );
    assert_eq!(
        daemon_requests(&before, &after),
        0.0,
        "requests while idle: {before:?} → {after:?}"
    );
    assert_eq!(pass_after, pass_before, "a pass ran while nothing changed");

    // The next change goes up as before: one pass, a handful of requests.
    let start = std::time::Instant::now();
    write(&a.dir.join("two.txt"), "two");
    let up = wait_until(
        || a.client.run(&["stat", "/two.txt"]).status.success(),
        Duration::from_secs(30),
    );
    assert!(up, "the change after the rest never reached the server");
    eprintln!(
        "a change after 30 s at rest reached the server in {:?}",
        start.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    let later = requests_by_route(&server);
    let delta_reads = delta(&later) - delta(&after);
    assert!(
        (1.0..=4.0).contains(&delta_reads),
        "{delta_reads} delta requests for one new file: {after:?} → {later:?}"
    );
}

/// Issue 13: SIGINT was ignored while a pass ran. It stops the pass at a safe point:
/// the download in flight is dropped with its temp file, the state is saved, and the
/// next run completes.
#[test]
fn sigint_stops_a_daemon_in_the_middle_of_a_download() {
    let server = Server::start();
    let a = device(&server, "laptop");
    let big = a.scratch.path().join("big.bin");
    random_file(&big, 512 << 20, 7);
    a.client.ok(&["put", big.to_str().unwrap(), "/big.bin"]);

    let log = a.scratch.path().join("sync.log");
    let mut sync = SyncProcess::start_logged(&a.client, &a.dir, &log);
    let downloading = wait_until(|| !temp_files(&a.dir).is_empty(), Duration::from_secs(60));
    assert!(downloading, "no download started: {}", read_log(&log));
    sync.signal("INT");
    let asked = std::time::Instant::now();
    let status = sync
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running 30 s after SIGINT: {}", read_log(&log)));
    let took = asked.elapsed();
    eprintln!("stopped {took:?} after SIGINT");
    assert!(
        took <= Duration::from_secs(2),
        "took {took:?} to stop: {}",
        read_log(&log)
    );
    assert!(status.success(), "{status:?}: {}", read_log(&log));
    assert!(read_log(&log).contains("stopped"), "{}", read_log(&log));
    assert_eq!(temp_files(&a.dir), Vec::<String>::new(), "temp files left");
    assert!(
        !a.dir.join("big.bin").exists() || support::same_content(&big, &a.dir.join("big.bin")),
        "a partial file was left in place"
    );
    // The state was saved and says the pass was cut short.
    let status = a.client.json(&["status", "--json"]);
    let error = status["sync"][0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("stopped"), "{status}");

    a.client.ok(&["sync", a.dir.to_str().unwrap(), "--once"]);
    assert!(support::same_content(&big, &a.dir.join("big.bin")));
    assert_eq!(temp_files(&a.dir), Vec::<String>::new());
    let status = a.client.json(&["status", "--json"]);
    assert_eq!(
        status["sync"][0]["pending"],
        serde_json::json!([]),
        "{status}"
    );

    // SIGTERM stops an idle daemon the same way.
    let before = last_pass_at(&a);
    let mut sync = SyncProcess::start_logged(&a.client, &a.dir, &log);
    let running = wait_until(|| last_pass_at(&a) > before, Duration::from_secs(30));
    assert!(running, "{}", read_log(&log));
    sync.signal("TERM");
    let status = sync.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// Issue 13: two daemons could sync one folder at once. The second is refused, with
/// the first one's PID, for as long as the first runs.
#[test]
fn a_second_daemon_on_the_same_folder_is_refused() {
    let server = Server::start();
    let a = device(&server, "laptop");
    write(&a.dir.join("one.txt"), "one");
    let dir = a.dir.to_str().unwrap().to_owned();
    let log = a.scratch.path().join("sync.log");
    let first = SyncProcess::start_logged(&a.client, &a.dir, &log);
    let running = wait_until(
        || read_log(&log).contains("syncing "),
        Duration::from_secs(30),
    );
    assert!(running, "{}", read_log(&log));

    let expected = format!(
        "another `cairn sync` (PID {}) is already syncing",
        first.pid()
    );
    a.client.fails(&["sync", &dir], &expected);
    a.client.fails(&["sync", &dir, "--once"], &expected);
    first.stop();
    a.client.ok(&["sync", &dir, "--once"]);
}

/// Issue 13: a viewer's refused edits were reported, then `sync --once` exited 0 and
/// `cairn status` said nothing. They fail the command and are listed until resolved.
#[test]
fn a_viewers_refused_edits_fail_sync_once_and_are_listed_by_status() {
    let server = Server::start();
    let out = server.admin(
        &["user", "add", "carol", "--password-stdin"],
        support::ADMIN_PASSWORD,
    );
    assert!(out.status.success(), "{out:?}");
    let alice = device(&server, "alice-laptop");
    let seed = alice.scratch.path().join("plan.md");
    fs::write(&seed, "v1 by alice").unwrap();
    alice
        .client
        .ok(&["put", seed.to_str().unwrap(), "/Team/plan.md"]);
    alice.client.ok(&[
        "share", "add", "/Team", "--with", "carol", "--role", "viewer",
    ]);
    let carol = Device::new(&server, "carol", "carol-laptop");
    let dir = carol.dir.to_str().unwrap().to_owned();
    carol.client.ok(&["sync", &dir, "--once"]);
    assert_eq!(
        fs::read_to_string(carol.dir.join("Team/plan.md")).unwrap(),
        "v1 by alice"
    );

    write(&carol.dir.join("Team/plan.md"), "v2 by carol");
    write(&carol.dir.join("Team/notes.txt"), "carol's notes");
    for _ in 0..2 {
        // Refused again on the next run: nothing changed that would let it through.
        let out = carol.client.run(&["sync", &dir, "--once"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "sync --once succeeded: {stderr}");
        assert!(
            stderr.contains("not synced: /Team/plan.md")
                && stderr.contains("not synced: /Team/notes.txt")
                && stderr.contains("2 items of"),
            "{stderr}"
        );
    }
    let status = carol.client.json(&["status", "--json"]);
    let listed: Vec<&str> = status["sync"][0]["not_synced"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"))
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["/Team/notes.txt", "/Team/plan.md"], "{status}");
    assert!(
        !status["sync"][0]["pending"].to_string().contains("/Team/"),
        "refused, so not pending: {status}"
    );
    let reason = status["sync"][0]["not_synced"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("viewer"), "{reason}");
    let text = carol.client.ok(&["status"]);
    assert!(
        text.contains("2 items not synced") && text.contains("/Team/plan.md"),
        "{text}"
    );
    assert!(!text.contains("up to date"), "{text}");

    // Once the edits are undone, nothing is left to refuse.
    fs::remove_file(carol.dir.join("Team/notes.txt")).unwrap();
    write(&carol.dir.join("Team/plan.md"), "v1 by alice");
    carol.client.ok(&["sync", &dir, "--once"]);
    let status = carol.client.json(&["status", "--json"]);
    assert_eq!(
        status["sync"][0]["not_synced"],
        serde_json::json!([]),
        "{status}"
    );
}

/// Issue 13: a revoked login made the daemon retry forever. It stops, saying to log
/// in again.
#[test]
fn a_revoked_login_stops_the_daemon_with_a_hint_to_log_in_again() {
    let server = Server::start();
    let a = device(&server, "laptop");
    write(&a.dir.join("one.txt"), "one");
    let dir = a.dir.to_str().unwrap().to_owned();
    let log = a.scratch.path().join("sync.log");
    let mut sync = SyncProcess::start_logged(&a.client, &a.dir, &log);
    let synced = wait_until(
        || read_log(&log).contains("synced "),
        Duration::from_secs(60),
    );
    assert!(synced, "{}", read_log(&log));

    // The same login, logged out from a copy of the config folder.
    let copy = support::Client {
        config_dir: tempfile::tempdir().unwrap(),
    };
    for entry in fs::read_dir(a.client.config_dir.path()).unwrap().flatten() {
        if entry.path().is_file() {
            fs::copy(entry.path(), copy.config_dir.path().join(entry.file_name())).unwrap();
        }
    }
    copy.ok(&["logout"]);

    write(&a.dir.join("two.txt"), "two");
    let status = sync
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("still running with a revoked login: {}", read_log(&log)));
    let text = read_log(&log);
    assert!(!status.success(), "{text}");
    let hint = format!("log in again: `cairn login {} --user admin`", server.url);
    assert!(text.contains(&hint), "{text}");
    assert!(!text.contains("trying again"), "{text}");
    a.client.fails(&["sync", &dir, "--once"], &hint);
}
