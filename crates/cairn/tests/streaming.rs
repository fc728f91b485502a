//! Streaming sync end to end: while one device uploads a large file, a real `cairn sync`
//! daemon on another fetches its blocks as they are stored, shows nothing before the
//! commit, and then puts the file in place from what it fetched; an upload that is
//! abandoned midway leaves nothing behind once its grace period is over.
//!
//! The uploader is driven through `cairn-client` here, so that the test decides when
//! each block is sent and when (or whether) the upload commits.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::proto::{BlockRef, CommitRequest, LoginRequest};
use cairn_client::{chunk_file, chunker_config, Client};
use cairn_core::BlockHash;
use support::{
    block_files, random_file, spawn_serve, tree, wait_until, Device, Server, SyncProcess, BIN,
};

/// Seconds an announced upload lives after its last block: short, so the test sees it
/// expire.
const GRACE_SECS: u64 = 3;

/// A server whose announced uploads and unreferenced blocks go after [`GRACE_SECS`],
/// with maintenance every second; and the folder holding its config.
fn server() -> (Server, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("cairn.toml");
    fs::write(
        &config,
        format!("gc_grace_secs = {GRACE_SECS}\nmaintenance_interval_secs = 1\n"),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path())
        .env("CAIRN_ADMIN_PASSWORD", support::ADMIN_PASSWORD)
        .env("CAIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (child, url) = spawn_serve(cmd);
    (
        Server {
            child,
            url,
            data: Some(data),
        },
        etc,
    )
}

/// The uploading device: a client logged in as the admin with a device of its own.
struct Uploader {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The file, its blocks in order, and each block's offset.
    source: PathBuf,
    blocks: Vec<(BlockHash, u32)>,
    offsets: Vec<u64>,
    _scratch: tempfile::TempDir,
}

impl Uploader {
    fn new(server: &Server, size: u64, seed: u64) -> Uploader {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let anonymous = Client::new(&server.url, None).unwrap();
        let login = rt
            .block_on(anonymous.login(&LoginRequest {
                username: "admin".into(),
                password: support::ADMIN_PASSWORD.into(),
                device_name: Some("uploader".into()),
            }))
            .unwrap();
        let client = anonymous.with_token(login.token);
        let chunker = chunker_config(&rt.block_on(client.server_info()).unwrap()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let source = scratch.path().join("big.bin");
        random_file(&source, size, seed);
        let blocks = chunk_file(&fs::File::open(&source).unwrap(), &chunker)
            .unwrap()
            .blocks;
        assert!(
            blocks.len() >= 4,
            "{} blocks: too few to stream",
            blocks.len()
        );
        let offsets = blocks
            .iter()
            .scan(0u64, |at, (_, size)| {
                let here = *at;
                *at += u64::from(*size);
                Some(here)
            })
            .collect();
        Uploader {
            rt,
            client,
            source,
            blocks,
            offsets,
            _scratch: scratch,
        }
    }

    fn block(&self, i: usize) -> Bytes {
        let data = fs::read(&self.source).unwrap();
        let at = self.offsets[i] as usize;
        Bytes::copy_from_slice(&data[at..at + self.blocks[i].1 as usize])
    }

    fn announce(&self, remote: &str) -> String {
        self.rt
            .block_on(self.client.announce_upload(remote, &self.blocks))
            .unwrap()
            .id
    }

    fn send(&self, range: std::ops::Range<usize>, pending: &str) {
        for i in range {
            self.rt
                .block_on(self.client.put_block_for(
                    &self.blocks[i].0,
                    self.block(i),
                    Some(pending),
                ))
                .unwrap();
        }
    }

    fn commit(&self, remote: &str) {
        let request = CommitRequest {
            path: remote.to_owned(),
            blocks: self
                .blocks
                .iter()
                .map(|(hash, size)| BlockRef {
                    hash: hash.to_hex(),
                    size: *size,
                })
                .collect(),
            base_rev: None,
            autorename: false,
            mtime: None,
        };
        self.rt.block_on(self.client.commit(&request)).unwrap();
    }
}

/// The sync engine's temp files in `dir` (not below it).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().contains(".cairn-tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `file` holds `data` at `offset`.
fn holds(file: &Path, offset: u64, data: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = fs::File::open(file) else {
        return false;
    };
    let mut read = vec![0u8; data.len()];
    f.read_exact_at(&mut read, offset).is_ok() && read == data
}

/// Starts B's daemon and waits for its first pass (its folder exists).
fn receiver(server: &Server) -> (Device, SyncProcess) {
    let b = Device::new(server, "admin", "desktop");
    let sync = SyncProcess::start(&b.client, &b.dir);
    assert!(
        wait_until(|| b.dir.is_dir(), Duration::from_secs(30)),
        "B's daemon made its folder"
    );
    (b, sync)
}

/// Waits until B has fetched the first `n` blocks of the upload into a temp file laid
/// out as the file will be; returns that file.
fn fetched_ahead(b: &Device, up: &Uploader, n: usize) -> PathBuf {
    let size: u64 = up.blocks.iter().map(|(_, s)| u64::from(*s)).sum();
    let mut found = None;
    let ok = wait_until(
        || {
            found = temp_files(&b.dir).into_iter().find(|t| {
                fs::metadata(t).is_ok_and(|m| m.len() == size)
                    && (0..n).all(|i| holds(t, up.offsets[i], &up.block(i)))
            });
            found.is_some()
        },
        Duration::from_secs(30),
    );
    assert!(
        ok,
        "B fetched the stored blocks before the commit: {:?}",
        temp_files(&b.dir)
    );
    found.unwrap()
}

#[test]
fn a_large_file_streams_to_another_device_and_appears_only_at_its_commit() {
    let (server, _etc) = server();
    let (b, _sync) = receiver(&server);
    let up = Uploader::new(&server, 40 << 20, 7);
    let half = up.blocks.len() / 2;
    let sent_before = server.metric("cairn_block_bytes_sent_total");

    let id = up.announce("/big.bin");
    up.send(0..half, &id);
    fetched_ahead(&b, &up, half);
    assert!(
        !b.dir.join("big.bin").exists(),
        "nothing is visible before the commit"
    );

    up.send(half..up.blocks.len(), &id);
    up.commit("/big.bin");
    up.rt.block_on(up.client.end_upload(&id)).unwrap();
    let there = b.dir.join("big.bin");
    let ok = wait_until(
        || fs::metadata(&there).is_ok_and(|m| m.len() == 40 << 20),
        Duration::from_secs(60),
    );
    assert!(ok, "the committed file reached B");
    assert!(support::same_content(&up.source, &there));
    assert!(
        wait_until(|| temp_files(&b.dir).is_empty(), Duration::from_secs(30)),
        "no temp file is left: {:?}",
        temp_files(&b.dir)
    );
    // Each block crossed to B once: fetched ahead, not again at the commit.
    let sent = server.metric("cairn_block_bytes_sent_total") - sent_before;
    assert!(
        sent < 1.25 * f64::from(40u32 << 20),
        "{sent} bytes sent for a 40 MiB file"
    );
    assert_eq!(tree(&b.dir).len(), 1);
}

#[test]
fn an_upload_abandoned_midway_leaves_nothing_once_its_grace_period_is_over() {
    let (server, _etc) = server();
    let data = server.data.as_ref().unwrap().path().to_owned();
    let (b, _sync) = receiver(&server);
    let before = block_files(&data);
    let up = Uploader::new(&server, 24 << 20, 8);
    let half = up.blocks.len() / 2;

    let id = up.announce("/abandoned.bin");
    up.send(0..half, &id);
    let temp = fetched_ahead(&b, &up, half);
    // The uploader vanishes: no commit, and no word that it gave up.

    let gone = wait_until(
        || !temp.exists() && temp_files(&b.dir).is_empty(),
        Duration::from_secs(GRACE_SECS + 30),
    );
    assert!(gone, "B dropped what it fetched: {:?}", temp_files(&b.dir));
    assert!(tree(&b.dir).is_empty(), "{:?}", tree(&b.dir));
    // And the server collects the blocks, which no version references.
    let collected = wait_until(
        || block_files(&data) == before,
        Duration::from_secs(GRACE_SECS + 30),
    );
    assert!(collected, "the abandoned upload's blocks were collected");
}
