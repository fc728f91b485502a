//! `cargo xtask dav-bench`: `rclone copy` into Cairn's WebDAV (`/dav/`) beside the same
//! into `rclone serve webdav` on a local folder of the same file system, in one run.
//!
//! - many small files: a tree of `--small-files` files of `--small-kib` KiB, 100 to a
//!   folder;
//! - one large file of `--size-mib` MiB.
//!
//! Each is copied `--runs` times into each server, alternating which goes first, each
//! time with new random content (so Cairn never deduplicates a block it already
//! holds) into a new folder, after `sync` and a pause; the table gives medians. Both
//! remotes are rclone `webdav` remotes with `vendor = other` and rclone's defaults
//! (4 transfers at once). Cairn's server is a release build; it fsyncs every block
//! and commit before it answers, the peer does not fsync at all.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{median, run, run_with_stdin, settle, workspace_root, write_seeded, Server};

const USAGE: &str = "usage: cargo xtask dav-bench [--small-files N] [--small-kib N] \
                     [--size-mib N] [--runs N] [--dir DIR] [--out FILE]";

struct Options {
    small_files: usize,
    small_kib: u64,
    size_mib: u64,
    runs: usize,
    dir: PathBuf,
    out: PathBuf,
}

fn parse(args: &[String], root: &Path) -> Result<Options> {
    let mut opts = Options {
        small_files: 1000,
        small_kib: 4,
        size_mib: 1024,
        runs: 3,
        dir: PathBuf::from("bench-out/dav"),
        out: root.join("target/dav-bench.json"),
    };
    for (flag, value) in crate::flag_values(args, USAGE)? {
        match flag {
            "--small-files" => opts.small_files = value.parse()?,
            "--small-kib" => opts.small_kib = value.parse()?,
            "--size-mib" => opts.size_mib = value.parse()?,
            "--runs" => opts.runs = value.parse::<usize>()?.max(1),
            "--dir" => opts.dir = PathBuf::from(value),
            "--out" => opts.out = PathBuf::from(value),
            _ => bail!("unknown option {flag}; {USAGE}"),
        }
    }
    Ok(opts)
}

/// The password a WebDAV client uses for this login (the client config dir of a
/// `cairn login`): a new app password, `cairn app-password create NAME --json`.
fn dav_password(cairn: &Path, config_dir: &Path) -> Result<String> {
    let out = Command::new(cairn)
        .args(["app-password", "create", "dav-bench", "--json"])
        .env("CAIRN_CONFIG_DIR", config_dir)
        .stderr(Stdio::inherit())
        .output()
        .context("running cairn app-password create")?;
    if !out.status.success() {
        bail!("cairn app-password create failed");
    }
    let made: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(made["password"]
        .as_str()
        .context("no password in cairn app-password create's JSON")?
        .to_owned())
}

/// `rclone serve webdav` on a loopback port, serving a local folder; killed on drop.
struct Peer {
    child: Child,
    url: String,
}

impl Peer {
    fn start(dir: &Path) -> Result<Peer> {
        fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("rclone")
            .env_remove("AWS_CA_BUNDLE")
            .args(["serve", "webdav", "--addr", &addr])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rclone serve webdav")?;
        let peer = Peer {
            child,
            url: format!("http://{addr}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                bail!("rclone serve webdav did not listen on {addr} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(peer)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tree of `files` files of `size` bytes, 100 to a folder, new content per `seed`.
fn write_small_tree(dir: &Path, files: usize, size: u64, seed: u64) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    for i in 0..files {
        let folder = dir.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&folder)?;
        }
        let mut state = (seed << 32 | i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut buf = vec![0u8; size.next_multiple_of(8) as usize];
        crate::fill_random(&mut buf, &mut state);
        fs::write(folder.join(format!("f{i:05}.bin")), &buf[..size as usize])?;
    }
    Ok(())
}

/// Seconds per run, ours and the peer's.
#[derive(Default)]
struct Samples {
    cairn: Vec<f64>,
    peer: Vec<f64>,
}

impl Samples {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "cairn_seconds": self.cairn, "peer_seconds": self.peer })
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let opts = parse(args, &root)?;
    let work = root.join(&opts.dir);
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let rclone_version = Command::new("rclone")
        .env_remove("AWS_CA_BUNDLE")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .context("rclone is not installed: `apt-get install rclone` (the client and the peer)")?;
    eprintln!("building the release binary…");
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "cairn"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cairn = target.join("release/cairn");
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    // `Server::start` makes the admin's password `bench-password`.
    let server = Server::start(&cairn, &work.join("cairn-data"))?;
    let config_dir = work.join("cairn-client");
    run_with_stdin(
        Command::new(&cairn)
            .args(["login", &server.url, "--user", "admin", "--password-stdin"])
            .env("CAIRN_CONFIG_DIR", &config_dir),
        "bench-password",
    )?;
    let obscured = Command::new("rclone")
        .env_remove("AWS_CA_BUNDLE")
        .args(["obscure", &dav_password(&cairn, &config_dir)?])
        .output()?;
    if !obscured.status.success() {
        bail!("rclone obscure failed");
    }
    let obscured = String::from_utf8(obscured.stdout)?.trim().to_owned();
    let peer_dir = work.join("peer-data");
    let peer = Peer::start(&peer_dir)?;
    // Both remotes by environment only; the same vendor and defaults for both.
    let remotes = [
        ("RCLONE_CONFIG_CAIRN_TYPE", "webdav".to_owned()),
        ("RCLONE_CONFIG_CAIRN_URL", format!("{}/dav/", server.url)),
        ("RCLONE_CONFIG_CAIRN_VENDOR", "other".to_owned()),
        ("RCLONE_CONFIG_CAIRN_USER", "admin".to_owned()),
        ("RCLONE_CONFIG_CAIRN_PASS", obscured),
        ("RCLONE_CONFIG_PEER_TYPE", "webdav".to_owned()),
        ("RCLONE_CONFIG_PEER_URL", peer.url.clone()),
        ("RCLONE_CONFIG_PEER_VENDOR", "other".to_owned()),
    ];
    let copy = |from: &Path, to: String| -> Result<f64> {
        let mut cmd = Command::new("rclone");
        // rclone fails to load a CA bundle named there, and needs none for http://.
        cmd.env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG", "/dev/null")
            .envs(remotes.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("copy")
            .arg(from)
            .arg(to);
        crate::time(&mut cmd)
    };

    let small_tree = work.join("small");
    let big_file = work.join("big.bin");
    let big_bytes = opts.size_mib << 20;
    let small_bytes = opts.small_kib << 10;
    let (mut small, mut big) = (Samples::default(), Samples::default());
    for round in 0..opts.runs {
        let cairn_first = round % 2 == 0;
        let seed = 100 + round as u64;
        write_small_tree(&small_tree, opts.small_files, small_bytes, seed)?;
        for cairn_turn in [cairn_first, !cairn_first] {
            settle();
            if cairn_turn {
                small
                    .cairn
                    .push(copy(&small_tree, format!("cairn:small-{round}"))?);
            } else {
                small
                    .peer
                    .push(copy(&small_tree, format!("peer:small-{round}"))?);
            }
        }
        write_seeded(&big_file, big_bytes, (seed << 1) | 1)?;
        for cairn_turn in [cairn_first, !cairn_first] {
            settle();
            if cairn_turn {
                big.cairn
                    .push(copy(&big_file, format!("cairn:big-{round}"))?);
            } else {
                big.peer.push(copy(&big_file, format!("peer:big-{round}"))?);
            }
        }
        // The peer's copies are not needed again; the disk is.
        fs::remove_dir_all(peer_dir.join(format!("big-{round}")))?;
        eprintln!(
            "round {round}: small files cairn {:.2} s, peer {:.2} s; big file cairn {:.2} s, peer {:.2} s",
            small.cairn[round], small.peer[round], big.cairn[round], big.peer[round]
        );
    }
    drop(server);
    drop(peer);

    let n = opts.small_files as f64;
    let small_total = n * small_bytes as f64;
    let (small_cairn, small_peer) = (
        median(&mut small.cairn.clone()),
        median(&mut small.peer.clone()),
    );
    let (big_cairn, big_peer) = (
        median(&mut big.cairn.clone()),
        median(&mut big.peer.clone()),
    );
    let mbps = |bytes: f64, secs: f64| bytes / secs / 1e6;
    println!(
        "{date}; rclone copy into WebDAV on loopback ({rclone_version}, `vendor = other`, its defaults); medians of {} runs.",
        opts.runs
    );
    println!("Cairn fsyncs every block and commit before it answers; the peer, `rclone serve webdav` on a folder of the same file system, does not fsync.\n");
    println!("| `rclone copy` into WebDAV | Cairn `/dav/` | peer: `rclone serve webdav` | Cairn / peer | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {} files of {} KiB | {:.0} files/s ({:.2} s, {:.1} MB/s) | {:.0} files/s ({:.2} s, {:.1} MB/s) | {:.0}% | |",
        opts.small_files,
        opts.small_kib,
        n / small_cairn,
        small_cairn,
        mbps(small_total, small_cairn),
        n / small_peer,
        small_peer,
        mbps(small_total, small_peer),
        small_peer / small_cairn * 100.0
    );
    println!(
        "| one {} MiB file | {:.0} MB/s ({:.2} s) | {:.0} MB/s ({:.2} s) | {:.0}% | ≥ 80% |",
        opts.size_mib,
        mbps(big_bytes as f64, big_cairn),
        big_cairn,
        mbps(big_bytes as f64, big_peer),
        big_peer,
        big_peer / big_cairn * 100.0
    );
    let record = serde_json::json!({
        "date": date,
        "rclone": rclone_version,
        "runs": opts.runs,
        "small_files": {
            "files": opts.small_files,
            "file_bytes": small_bytes,
            "samples": small.json(),
            "cairn_files_per_second": n / small_cairn,
            "peer_files_per_second": n / small_peer,
            "ratio": small_peer / small_cairn,
        },
        "big_file": {
            "bytes": big_bytes,
            "samples": big.json(),
            "cairn_mb_per_second": mbps(big_bytes as f64, big_cairn),
            "peer_mb_per_second": mbps(big_bytes as f64, big_peer),
            "ratio": big_peer / big_cairn,
        },
    });
    if let Some(dir) = opts.out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&opts.out, serde_json::to_string_pretty(&record)? + "\n")?;
    eprintln!("results written to {}", opts.out.display());
    let _ = fs::remove_dir_all(&work);
    Ok(())
}
