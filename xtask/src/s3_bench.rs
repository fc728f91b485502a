//! `cargo xtask s3-bench`: Cairn with its blocks in S3, beside rclone writing to the
//! same S3 server, in one run.
//!
//! - a new 1 GiB file: `cairn put` against `rclone copyto` (its defaults: multipart,
//!   4 parts in flight), alternating, three rounds each, medians;
//! - 10,000 files of 4 KiB: a first `cairn sync --once` against `rclone copy`, and how
//!   many PUTs Cairn made (`cairn_block_store_requests_total{op="put"}`).
//!
//! The S3 server is the tests' SeaweedFS (`.ci/s3-up.sh`, started if it is not up);
//! `CAIRN_TEST_S3_*` name another, as for the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{median, run, run_with_stdin, settle, workspace_root, Server};

const PASSWORD: &str = "s3 bench password";
const ROUNDS: usize = 3;

struct Options {
    size_mib: u64,
    small_files: usize,
    small_size: usize,
    dir: PathBuf,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut opts = Options {
        size_mib: 1024,
        small_files: 10_000,
        small_size: 4096,
        dir: PathBuf::from("bench-out/s3"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--size-mib" => opts.size_mib = value.parse()?,
            "--small-files" => opts.small_files = value.parse()?,
            "--dir" => opts.dir = PathBuf::from(value),
            _ => bail!("unknown option {arg}; usage: cargo xtask s3-bench [--size-mib N] [--small-files N] [--dir DIR]"),
        }
    }
    Ok(opts)
}

/// Random bytes from `seed`, so that each round uploads blocks nobody stored yet.
fn write_seeded(path: &Path, size: u64, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The sum of a metric's samples whose line contains `filter`.
fn metric(server: &Server, name: &str, filter: &str) -> Result<f64> {
    let body = server.metrics_text()?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

pub fn main(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let root = workspace_root()?;
    let work = root.join(&opts.dir);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    run(&mut Command::new(root.join(".ci/s3-up.sh")))?;
    if Command::new("rclone").arg("version").output().is_err() {
        bail!("rclone is not installed: `apt-get install rclone` (the reference)");
    }
    eprintln!("building the release binary…");
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "cairn"]))?;
    let cairn = root.join("target/release/cairn");

    let run_id = format!("{:08x}", std::process::id());
    let s3 = cairn_store::S3Config::for_tests(&format!("bench/{run_id}/cairn"));
    let endpoint = s3.endpoint.clone().unwrap_or_default();
    // rclone's remote, configured by environment only.
    let rclone_env = [
        ("RCLONE_CONFIG_BENCH_TYPE", "s3".to_owned()),
        ("RCLONE_CONFIG_BENCH_PROVIDER", "Other".to_owned()),
        ("RCLONE_CONFIG_BENCH_ENDPOINT", endpoint),
        (
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID",
            s3.access_key_id.clone().unwrap_or_default(),
        ),
        (
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY",
            s3.secret_access_key.clone().unwrap_or_default(),
        ),
        (
            "RCLONE_CONFIG_BENCH_REGION",
            s3.region.clone().unwrap_or_default(),
        ),
    ];
    let rclone_dest = format!("bench:{}/bench/{run_id}/rclone", s3.bucket);
    let rclone = || {
        let mut cmd = Command::new("rclone");
        cmd.envs(rclone_env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    };

    let data = work.join("server");
    let mut serve = Command::new(&cairn);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("CAIRN_ADMIN_PASSWORD", PASSWORD)
        .env("CAIRN_LOG", "warn")
        .envs(s3.to_env());
    let mut server = Server::spawn(serve)?;
    let url = server.url.clone();
    let config_dir = work.join("client");
    run_with_stdin(
        Command::new(&cairn)
            .args(["login", &url, "--user", "admin", "--password-stdin"])
            .env("CAIRN_CONFIG_DIR", &config_dir),
        PASSWORD,
    )?;
    let cairn_cmd = || {
        let mut cmd = Command::new(&cairn);
        cmd.env("CAIRN_CONFIG_DIR", &config_dir);
        cmd
    };

    // 1. One large file.
    let bytes = opts.size_mib << 20;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let file = work.join("big.bin");
        write_seeded(&file, bytes, 2 * round as u64 + 1)?;
        settle();
        ours.push(timed(cairn_cmd().args([
            "put",
            file.to_str().unwrap(),
            &format!("/big-{round}.bin"),
        ]))?);
        write_seeded(&file, bytes, 2 * round as u64 + 2)?;
        settle();
        theirs.push(timed(rclone().args([
            "copyto",
            file.to_str().unwrap(),
            &format!("{rclone_dest}/big-{round}.bin"),
        ]))?);
        eprintln!(
            "round {round}: cairn put {:.0} MB/s, rclone copyto {:.0} MB/s",
            bytes as f64 / ours[round] / 1e6,
            bytes as f64 / theirs[round] / 1e6
        );
    }
    let (ours_s, theirs_s) = (median(&mut ours), median(&mut theirs));
    let (ours_rate, theirs_rate) = (bytes as f64 / ours_s / 1e6, bytes as f64 / theirs_s / 1e6);

    // 2. Many small files.
    let tree = work.join("small");
    let per_dir = 100;
    for i in 0..opts.small_files {
        let dir = tree.join(format!("d{:03}", i / per_dir));
        if i % per_dir == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        write_seeded(
            &dir.join(format!("f{i:05}.bin")),
            opts.small_size as u64,
            1000 + i as u64,
        )?;
    }
    settle();
    let puts_before = metric(&server, "cairn_block_store_requests_total", "op=\"put\"")?;
    let ours_small = timed(cairn_cmd().args(["sync", tree.to_str().unwrap(), "--once"]))?;
    let puts = metric(&server, "cairn_block_store_requests_total", "op=\"put\"")? - puts_before;
    settle();
    let theirs_small = timed(rclone().args([
        "copy",
        tree.to_str().unwrap(),
        &format!("{rclone_dest}/small"),
    ]))?;
    let n = opts.small_files as f64;

    let _ = server.child.kill();
    let _ = server.child.wait();

    println!("| S3 (SeaweedFS on loopback) | Cairn | rclone | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| new {} MiB file | {ours_rate:.0} MB/s (`cairn put`) | {theirs_rate:.0} MB/s (`rclone copyto`) | {:.0}% | ≥ 90% |",
        opts.size_mib,
        ours_rate / theirs_rate * 100.0
    );
    println!(
        "| {} files of {} KiB, first sync | {:.0} files/s, {puts:.0} PUTs | {:.0} files/s (`rclone copy`) | {:.0}% | ≥ 1,500 files/s, < 100 PUTs |",
        opts.small_files,
        opts.small_size / 1024,
        n / ours_small,
        n / theirs_small,
        theirs_small / ours_small * 100.0
    );
    Ok(())
}
