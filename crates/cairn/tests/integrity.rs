//! The integrity story end to end, through the binary: one flipped byte in a stored
//! block makes `cairn get` of that file fail cleanly (other files still download),
//! `cairn admin fsck` names the file and exits 1, and putting the original file again
//! repairs it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{block_files, random_file, same_content, Server, BIN};

/// Every block file under `DATA/blocks`.
/// `cairn admin ARGS --data-dir DATA`, with no server running.
fn admin(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_flipped_byte_is_reported_contained_and_repaired_by_a_reupload() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let (small1, small2, big) = (
        work.path().join("small1"),
        work.path().join("small2"),
        work.path().join("big"),
    );
    random_file(&small1, 1000, 1);
    random_file(&small2, 300 << 10, 2);
    random_file(&big, 10 << 20, 3);
    let data = server.data.as_ref().unwrap().path().to_owned();

    client.ok(&["put", small1.to_str().unwrap(), "/small1.bin"]);
    client.ok(&["put", small2.to_str().unwrap(), "/docs/small2.bin"]);
    let before = block_files(&data);
    client.ok(&["put", big.to_str().unwrap(), "/big.bin"]);
    let big_blocks: Vec<PathBuf> = block_files(&data).difference(&before).cloned().collect();
    assert!(big_blocks.len() >= 2, "a 10 MiB file has several blocks");
    let rev = client.json(&["stat", "/big.bin", "--json"])["rev"]
        .as_str()
        .unwrap()
        .to_owned();

    let victim = &big_blocks[big_blocks.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(victim, bytes).unwrap();

    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("big");
    client.fails(
        &["get", "/big.bin", target.to_str().unwrap()],
        "the file is damaged on the server",
    );
    let stderr = String::from_utf8(
        client
            .run(&["get", "/big.bin", target.to_str().unwrap()])
            .stderr,
    )
    .unwrap();
    assert!(stderr.contains("cairn admin fsck"), "{stderr}");
    assert!(!target.exists(), "no partial file");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "no temp file left behind"
    );
    for (remote, local) in [("/small1.bin", &small1), ("/docs/small2.bin", &small2)] {
        let back = out.join(remote.rsplit('/').next().unwrap());
        client.ok(&["get", remote, back.to_str().unwrap()]);
        assert!(same_content(local, &back), "{remote} came back different");
    }
    let dir = server.stop();

    let report = admin(dir.path(), &["fsck", "--json"]);
    assert_eq!(report.status.code(), Some(1), "{report:?}");
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(json["clean"], false);
    let damaged = json["damaged_files"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{json}");
    assert_eq!(damaged[0]["path"], "/big.bin");
    assert_eq!(damaged[0]["version"], rev.as_str());
    assert_eq!(damaged[0]["user"], "admin");
    assert_eq!(damaged[0]["is_current"], true);
    // Found corrupt now, or already moved aside by the server's background scrub.
    let found = json["corrupt_blocks"].as_array().unwrap().len()
        + json["missing_blocks"].as_array().unwrap().len();
    assert_eq!(found, 1, "{json}");
    assert!(!victim.exists(), "the damaged block is moved to quarantine");

    // A second run still reports the file (its block is missing now), in words.
    let report = admin(dir.path(), &["fsck"]);
    assert_eq!(report.status.code(), Some(1));
    let text = String::from_utf8(report.stdout).unwrap();
    assert!(
        text.contains(&format!("/big.bin (version {rev}, user admin)")),
        "{text}"
    );
    assert!(text.contains("1 missing"), "{text}");

    // Putting the original again uploads the lost block, and all is well.
    let server = Server::start_in(dir);
    let client = server.login("admin");
    client.ok(&["put", big.to_str().unwrap(), "/big.bin"]);
    client.ok(&["get", "/big.bin", target.to_str().unwrap()]);
    assert!(same_content(&big, &target));
    let dir = server.stop();
    let report = admin(dir.path(), &["fsck", "--json"]);
    assert_eq!(report.status.code(), Some(0), "{report:?}");
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(json["clean"], true, "{json}");
    assert!(json["blocks_checked"].as_u64().unwrap() >= 4);
}

#[test]
fn a_damaged_block_stops_a_download_to_standard_output_and_says_it_is_incomplete() {
    let server = Server::start();
    let client = server.login("admin");
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big");
    random_file(&big, 24 << 20, 31);
    let data = server.data.as_ref().unwrap().path().to_owned();
    let before = block_files(&data);
    client.ok(&["put", big.to_str().unwrap(), "/big.bin"]);
    let blocks: Vec<PathBuf> = block_files(&data).difference(&before).cloned().collect();
    assert!(blocks.len() >= 3, "a 24 MiB file has several blocks");
    let original = std::fs::read(&big).unwrap();

    // Damage every block but the file's first, which is found as the one whose bytes
    // (stored uncompressed: random data does not compress) begin the file.
    let first = blocks
        .iter()
        .find(|b| {
            let stored = std::fs::read(b).unwrap();
            stored.windows(64).any(|w| w == &original[..64])
        })
        .cloned()
        .expect("the file's first block is stored as it is");
    for block in &blocks {
        if *block == first {
            continue;
        }
        let mut bytes = std::fs::read(block).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(block, bytes).unwrap();
    }

    let out = client.run(&["get", "/big.bin", "-"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the output is incomplete"), "{stderr}");
    assert!(stderr.contains("damaged on the server"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // What was written is the file's beginning, never a damaged byte.
    assert!(out.stdout.len() < original.len());
    assert!(
        original.starts_with(&out.stdout),
        "{} bytes written are not the file's beginning",
        out.stdout.len()
    );
    // The untouched first block made it out.
    assert!(!out.stdout.is_empty());
}
