//! Project automation. `cargo xtask bench` measures Cairn against its reference figures
//! side by side in one run (DESIGN.md §6) and prints a Markdown table for the README;
//! `cargo xtask sync-bench` does the same for two syncing devices, beside Syncthing;
//! `cargo xtask notify-bench` holds 10,000 idle notification connections on one server;
//! `cargo xtask s3-bench` measures Cairn with its blocks in S3 beside rclone;
//! `cargo xtask dav-bench` measures `rclone copy` into Cairn's WebDAV beside
//! `rclone serve webdav`.

mod dav_bench;
mod notify_bench;
mod s3_bench;
mod sync_bench;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask bench [--size-mib N] [--dir DIR] [--runs N]
       cargo xtask sync-bench --help
       cargo xtask notify-bench [--connections N] [--hold-secs S]
       cargo xtask s3-bench [--size-mib N] [--small-files N] [--dir DIR]
       cargo xtask dav-bench [--small-files N] [--small-kib N] [--size-mib N] [--runs N] [--dir DIR] [--out FILE]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        Some("sync-bench") => sync_bench::main(&args[1..]),
        Some("notify-bench") => notify_bench::main(&args[1..]),
        Some("s3-bench") => s3_bench::main(&args[1..]),
        Some("dav-bench") => dav_bench::main(&args[1..]),
        _ => bail!("{USAGE}"),
    }
}

struct Options {
    size_mib: u64,
    dir: PathBuf,
    runs: usize,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut opts = Options {
        size_mib: 1024,
        dir: PathBuf::from("bench-out"),
        runs: 5,
    };
    for (flag, value) in flag_values(args, USAGE)? {
        match flag {
            "--size-mib" => opts.size_mib = value.parse()?,
            "--dir" => opts.dir = PathBuf::from(value),
            "--runs" => opts.runs = value.parse()?,
            _ => bail!("unknown option {flag}; {USAGE}"),
        }
    }
    Ok(opts)
}

/// A bench's arguments as `(--flag, value)` pairs, for benches whose every option takes
/// a value.
pub(crate) fn flag_values<'a>(args: &'a [String], usage: &str) -> Result<Vec<(&'a str, &'a str)>> {
    let mut it = args.iter();
    let mut out = Vec::new();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value; {usage}"))?;
        out.push((flag.as_str(), value.as_str()));
    }
    Ok(out)
}

fn bench(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let root = workspace_root()?;
    let dir = root.join(&opts.dir);
    std::fs::create_dir_all(&dir)?;
    eprintln!("building release binaries…");
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "cairn-core",
        "--example",
        "chunk_bench",
    ]))?;
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "cairn"]))?;
    let cairn = root.join("target/release/cairn");
    let chunk_bench = root.join("target/release/examples/chunk_bench");
    if Command::new("b3sum").arg("--version").output().is_err() {
        bail!("b3sum is not installed: `apt-get install b3sum` (the reference for chunk + hash)");
    }

    let bytes = opts.size_mib << 20;
    let input = dir.join("input.bin");
    eprintln!("writing {} MiB of random data…", opts.size_mib);
    write_random(&input, bytes)?;
    // Warm the page cache so both sides read from memory.
    let _ = std::fs::read(&input).map(|v| v.len());

    let mut rows = Vec::new();

    // 1. Chunk + hash on one core against b3sum on one core.
    // Alternate the two so a noisy moment hurts both alike.
    // These runs take well under a second each, and the page cache here is noisy (a DAMON
    // pageout scheme evicts pages of the input between runs), so take three times as many.
    let (mut b3, mut ours, mut ours_1) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.runs * 3 {
        b3.push(time(
            Command::new("b3sum")
                .args(["--num-threads", "1"])
                .arg(&input),
        )?);
        ours.push(time(Command::new(&chunk_bench).arg(&input))?);
        ours_1.push(time(
            Command::new(&chunk_bench)
                .arg(&input)
                .args(["--threads", "1"]),
        )?);
    }
    let (b3, ours, ours_1) = (median(&mut b3), median(&mut ours), median(&mut ours_1));
    let (b3_rate, ours_rate, ours_1_rate) =
        (mbps(bytes, b3), mbps(bytes, ours), mbps(bytes, ours_1));
    rows.push(row(
        "chunk + hash, page cache (both cores)",
        ours_rate,
        "`b3sum --num-threads 1`",
        b3_rate,
        "≥ 60%",
    ));
    rows.push(row(
        "chunk + hash, page cache (one core)",
        ours_1_rate,
        "`b3sum --num-threads 1`",
        b3_rate,
        "(for reference)",
    ));

    // 2. Upload of a new file against dd with fsync to the same file system. The virtual
    // disk here absorbs bursts in a host cache and then slows down while it drains, so
    // each measurement starts after `sync` and a pause, dd and upload alternate, and the
    // table reports medians.
    let dd_out = dir.join("dd.out");
    let (mut dd_times, mut upload_times, mut reupload_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut reupload_payload = 0.0;
    for run_no in 0..opts.runs {
        settle();
        dd_times.push(time(
            Command::new("dd")
                .arg(format!("if={}", input.display()))
                .arg(format!("of={}", dd_out.display()))
                .args(["bs=4M", "conv=fsync", "status=none"]),
        )?);
        let _ = std::fs::remove_file(&dd_out);

        let data_dir = dir.join(format!("server-{run_no}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        let server = Server::start(&cairn, &data_dir)?;
        let config_dir = dir.join(format!("client-{run_no}"));
        let _ = std::fs::remove_dir_all(&config_dir);
        let client = |args: &[&str]| {
            let mut c = Command::new(&cairn);
            c.env("CAIRN_CONFIG_DIR", &config_dir)
                .args(args)
                .stderr(Stdio::null());
            c
        };
        run_with_stdin(
            &mut client(&["login", &server.url, "--user", "admin", "--password-stdin"]),
            "bench-password",
        )?;
        settle();
        upload_times.push(time(&mut client(&["put", path_str(&input), "/first"]))?);
        let before = server.metric("cairn_block_bytes_received_total")?;
        reupload_times.push(time(&mut client(&["put", path_str(&input), "/second"]))?);
        reupload_payload = server.metric("cairn_block_bytes_received_total")? - before;
        drop(server);
        let _ = std::fs::remove_dir_all(&data_dir);
        let _ = std::fs::remove_dir_all(&config_dir);
    }
    let dd_rate = mbps(bytes, median(&mut dd_times));
    let upload_rate = mbps(bytes, median(&mut upload_times));
    let reupload_rate = mbps(bytes, median(&mut reupload_times));
    rows.push(row(
        "upload new file, loopback, durable",
        upload_rate,
        "`dd bs=4M conv=fsync`, same FS",
        dd_rate,
        "≥ 85%",
    ));
    rows.push(format!(
        "| re-upload same file | {reupload_rate:.0} MB/s | target 1500 MB/s | {:.0}% | ≥ 100%; block payload sent: {reupload_payload} bytes (< 1 MiB) |",
        reupload_rate / 1500.0 * 100.0,
    ));
    eprintln!("dd seconds: {dd_times:.2?}; upload seconds: {upload_times:.2?}; re-upload seconds: {reupload_times:.2?}");
    let _ = std::fs::remove_file(&input);

    println!(
        "File size {} MiB; medians of {} runs ({} for chunk + hash).\n",
        opts.size_mib,
        opts.runs,
        opts.runs * 3
    );
    println!("| what | Cairn | reference | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

fn row(what: &str, ours: f64, reference: &str, theirs: f64, target: &str) -> String {
    format!(
        "| {what} | {ours:.0} MB/s | {reference}: {theirs:.0} MB/s | {:.0}% | {target} |",
        ours / theirs * 100.0
    )
}

fn mbps(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

pub(crate) fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Lets the disk drain what earlier steps wrote, so each measurement starts alike.
pub(crate) fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(3));
}

pub(crate) fn time(cmd: &mut Command) -> Result<f64> {
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

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed");
    }
    Ok(())
}

pub(crate) fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<()> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    child.stdin.take().unwrap().write_all(input.as_bytes())?;
    if !child.wait()?.success() {
        bail!("{cmd:?} failed");
    }
    Ok(())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("bench paths are UTF-8")
}

pub(crate) fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask lives in the workspace")?
        .to_owned())
}

/// Incompressible data, so neither compression nor dedup flatters the figures.
pub(crate) fn write_random(path: &Path, size: u64) -> Result<()> {
    write_seeded(path, size, 0x9E37_79B9_7F4A_7C15)
}

/// [`write_random`] from another seed (not 0): other bytes, so other blocks. Durable on
/// return.
pub(crate) fn write_seeded(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state: u64 = seed;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        fill_random(&mut buf, &mut state);
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    file.get_ref().sync_all()?;
    Ok(())
}

/// Fills `buf` (a multiple of 8 bytes long) with xorshift output from `state`.
pub(crate) fn fill_random(buf: &mut [u8], state: &mut u64) {
    for word in buf.chunks_exact_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
}

/// A `cairn serve` child on a random loopback port, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(cairn: &Path, data_dir: &Path) -> Result<Server> {
        let mut cmd = Command::new(cairn);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("CAIRN_ADMIN_PASSWORD", "bench-password")
            .env("CAIRN_LOG", "warn");
        Self::spawn(cmd)
    }

    /// Starts a prepared `cairn serve` command and waits for it to say where it listens.
    pub(crate) fn spawn(mut cmd: Command) -> Result<Server> {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            if Instant::now() > deadline {
                bail!("server did not start within 60 s");
            }
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("cairn serving on ") {
                        break url.to_owned();
                    }
                }
                _ => bail!("server exited before listening"),
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, url })
    }

    /// The server's `/metrics` text (with the HTTP answer's head before it).
    pub(crate) fn metrics_text(&self) -> Result<String> {
        let host = self.url.strip_prefix("http://").context("an http URL")?;
        let mut stream = std::net::TcpStream::connect(host)?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body)
    }

    pub(crate) fn metric(&self, name: &str) -> Result<f64> {
        Ok(self
            .metrics_text()?
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
