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

use anyhow::{bail, Result};

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
    const USAGE: &str = "usage: cargo xtask s3-bench [--size-mib N] [--small-files N] [--dir DIR]";
    for (flag, value) in crate::flag_values(args, USAGE)? {
        match flag {
            "--size-mib" => opts.size_mib = value.parse()?,
            "--small-files" => opts.small_files = value.parse()?,
            "--dir" => opts.dir = PathBuf::from(value),
            _ => bail!("unknown option {flag}; {USAGE}"),
        }
    }
    Ok(opts)
}

/// Random bytes from `seed`, so that each round uploads blocks nobody stored yet.
fn write_seeded(path: &Path, size: u64, seed: u64) -> Result<()> {
    crate::write_seeded(path, size, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
}

const LATENCY_SAMPLES: usize = 15;

/// A `cairn sync` daemon on its own folder, stopped on drop.
struct Daemon {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon(cairn: &Path, work: &Path, name: &str, url: &str) -> Result<Daemon> {
    let config = work.join(name).join("config");
    let dir = work.join(name).join("folder");
    std::fs::create_dir_all(&dir)?;
    run_with_stdin(
        Command::new(cairn).env("CAIRN_CONFIG_DIR", &config).args([
            "login",
            url,
            "--user",
            "admin",
            "--password-stdin",
            "--device",
            name,
        ]),
        PASSWORD,
    )?;
    let child = Command::new(cairn)
        .env("CAIRN_CONFIG_DIR", &config)
        .arg("sync")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Daemon { child, dir })
}

/// The median time from a 1 KiB write in `a`'s folder to its arrival in `b`'s.
fn median_latency(a: &Daemon, b: &Daemon, tag: &str) -> Result<f64> {
    let warm = format!("warm-{tag}.txt");
    std::fs::write(a.dir.join(&warm), tag)?;
    wait(|| b.dir.join(&warm).exists(), 60)?;
    let mut samples = Vec::new();
    for i in 0..LATENCY_SAMPLES {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let name = format!("{tag}-{i}.bin");
        let content: Vec<u8> = (0..1024).map(|j| (i * 7 + j) as u8).collect();
        let started = Instant::now();
        std::fs::write(a.dir.join(&name), &content)?;
        wait(
            || std::fs::read(b.dir.join(&name)).is_ok_and(|c| c == content),
            10,
        )?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("latency {tag}: {samples:.0?} ms");
    Ok(median(&mut samples))
}

fn wait(mut done: impl FnMut() -> bool, secs: u64) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        if Instant::now() > deadline {
            bail!("nothing arrived within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

fn psql(sql: &str) -> Result<()> {
    let base = std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    run(Command::new("psql").args([&base, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]))
}

fn notify_latency(cairn: &Path, work: &Path, run_id: &str) -> Result<(f64, f64)> {
    let schema = format!("cairn_bench_{run_id}");
    psql(&format!("CREATE SCHEMA {schema}"))?;
    let result = (|| {
        let base = std::env::var("CAIRN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let s3 = cairn_store::S3Config::for_tests(&format!("bench/{run_id}/latency"));
        let mut env = s3.to_env();
        env.push((
            "CAIRN_DATABASE_URL".into(),
            format!("{base}?options[search_path]={schema}"),
        ));
        env.push(("CAIRN_EVENTS_URL".into(), "nats://127.0.0.1:4222".into()));
        let node = |i: usize| {
            let mut cmd = Command::new(cairn);
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(work.join(format!("node{i}")))
                .env("CAIRN_ADMIN_PASSWORD", PASSWORD)
                .env("CAIRN_LOG", "warn")
                .envs(env.iter().map(|(k, v)| (k, v)));
            Server::spawn(cmd)
        };
        let (n1, n2) = (node(1)?, node(2)?);
        let a = daemon(cairn, work, "lat-a", &n1.url)?;
        let one = {
            let b = daemon(cairn, work, "lat-b1", &n1.url)?;
            median_latency(&a, &b, "one-node")?
        };
        let b = daemon(cairn, work, "lat-b2", &n2.url)?;
        let two = median_latency(&a, &b, "two-nodes")?;
        Ok((one, two))
    })();
    psql(&format!("DROP SCHEMA {schema} CASCADE"))?;
    result
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
        // rclone's S3 client cannot load a CA bundle named there (and needs none for
        // a loopback http:// endpoint).
        cmd.env_remove("AWS_CA_BUNDLE")
            .envs(rclone_env.iter().map(|(k, v)| (*k, v.as_str())));
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
        ours.push(crate::time(cairn_cmd().args([
            "put",
            file.to_str().unwrap(),
            &format!("/big-{round}.bin"),
        ]))?);
        write_seeded(&file, bytes, 2 * round as u64 + 2)?;
        settle();
        theirs.push(crate::time(rclone().args([
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
    let ours_small = crate::time(cairn_cmd().args([
        "sync",
        tree.to_str().unwrap(),
        "--remote",
        "/small",
        "--once",
    ]))?;
    let puts = metric(&server, "cairn_block_store_requests_total", "op=\"put\"")? - puts_before;
    settle();
    let theirs_small = crate::time(rclone().args([
        "copy",
        tree.to_str().unwrap(),
        &format!("{rclone_dest}/small"),
    ]))?;
    let n = opts.small_files as f64;

    let _ = server.child.kill();
    let _ = server.child.wait();

    // 3. Notification latency: one node, then two nodes on one PostgreSQL, S3 bucket
    // and NATS.
    let (one_node, two_nodes) = notify_latency(&cairn, &work, &run_id)?;
    // What this run stored, Cairn's and rclone's: gigabytes a run.
    let purge = format!("bench:{}/bench/{run_id}", s3.bucket);
    let _ = rclone().args(["purge", &purge]).status();

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
    println!(
        "| 1 KiB file, write on A to arrival on B (median of {LATENCY_SAMPLES}) | across two nodes: {two_nodes:.0} ms | one node: {one_node:.0} ms | +{:.0} ms | ≤ +50 ms |",
        two_nodes - one_node
    );
    Ok(())
}
