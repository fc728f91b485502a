//! `cargo xtask sync-bench`: the sync benchmarks of issue 4 (DESIGN.md §6), two real
//! `cairn sync` daemons against a real `cairn serve` on loopback, and the same work done
//! by two Syncthing instances (`shared/peers/syncthing/run.sh`) in the same invocation;
//! and issue 13's idle test (`--only idle`): the requests and CPU of daemons left alone,
//! beside the CPU of the harness's two Syncthing instances left alone as long.
//!
//! Every process it starts is held by a [`Proc`], which stops it by its PID when
//! dropped, so every exit path (an error, a panic, the end) stops them all. Every wait
//! is bounded.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{median, run, run_with_stdin, settle, workspace_root, write_random, Server};

const USAGE: &str = "usage: cargo xtask sync-bench [--only latency,small,edit,memory,idle] \
[--skip-syncthing] [--skip-cairn] [--no-build] [--lat-n N] [--edit-runs N] [--big-mib N] \
[--small-files DIRSxFILES] [--mem-files DIRSxFILES] [--idle-secs N] [--dir TMPDIR] [--out FILE] \
[--keep]";

/// The password `Server::start` gives the admin.
const PASSWORD: &str = "bench-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Test {
    Latency,
    Small,
    Edit,
    Memory,
    Idle,
}

impl Test {
    fn parse(s: &str) -> Result<Test> {
        Ok(match s {
            "latency" => Test::Latency,
            "small" | "smallfiles" => Test::Small,
            "edit" => Test::Edit,
            "memory" | "mem" => Test::Memory,
            "idle" => Test::Idle,
            _ => bail!("unknown test {s:?} (latency, small, edit, memory, idle)"),
        })
    }
}

struct Options {
    only: BTreeSet<Test>,
    syncthing: bool,
    cairn: bool,
    build: bool,
    lat_n: usize,
    edit_runs: usize,
    big_bytes: u64,
    small: (usize, usize),
    small_size: usize,
    mem: (usize, usize),
    idle_secs: u64,
    tmp: PathBuf,
    out: PathBuf,
    keep: bool,
}

fn dims(s: &str) -> Result<(usize, usize)> {
    let (a, b) = s
        .split_once('x')
        .context("expected DIRSxFILES, e.g. 100x100")?;
    Ok((a.parse()?, b.parse()?))
}

fn parse(args: &[String], root: &Path) -> Result<Options> {
    let mut o = Options {
        only: [
            Test::Latency,
            Test::Small,
            Test::Edit,
            Test::Memory,
            Test::Idle,
        ]
        .into(),
        syncthing: true,
        cairn: true,
        build: true,
        lat_n: 50,
        edit_runs: 3,
        big_bytes: 1 << 30,
        small: (100, 100),
        small_size: 4096,
        mem: (1000, 100),
        idle_secs: 60,
        tmp: std::env::temp_dir(),
        out: root.join("target/sync-bench.json"),
        keep: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--skip-syncthing" => o.syncthing = false,
            "--skip-cairn" => o.cairn = false,
            "--no-build" => o.build = false,
            "--keep" => o.keep = true,
            "--only" => {
                o.only = value()?
                    .split(',')
                    .map(Test::parse)
                    .collect::<Result<_>>()?
            }
            "--lat-n" => o.lat_n = value()?.parse()?,
            "--edit-runs" => o.edit_runs = value()?.parse::<usize>()?.max(1),
            "--big-mib" => o.big_bytes = value()?.parse::<u64>()? << 20,
            "--small-files" => o.small = dims(value()?)?,
            "--mem-files" => o.mem = dims(value()?)?,
            "--idle-secs" => o.idle_secs = value()?.parse::<u64>()?.max(1),
            "--dir" => o.tmp = PathBuf::from(value()?),
            "--out" => o.out = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown option {arg}; {USAGE}"),
        }
    }
    Ok(o)
}

pub fn main(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let opts = parse(args, &root)?;
    let harness = root
        .parent()
        .context("the workspace has a parent folder")?
        .join("shared/peers/syncthing/run.sh");
    if opts.syncthing {
        if Command::new("syncthing")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            bail!(
                "syncthing is not installed: `apt-get install syncthing` \
                 (or run with --skip-syncthing)"
            );
        }
        if !harness.exists() {
            bail!(
                "the Syncthing harness {} is missing (or run with --skip-syncthing)",
                harness.display()
            );
        }
    }
    if opts.cairn && opts.build {
        eprintln!("building target/release/cairn…");
        run(Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--release", "-p", "cairn"]))?;
    }
    let cairn = root.join("target/release/cairn");

    let work = opts
        .tmp
        .join(format!("cairn-sync-bench.{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let _cleanup = Cleanup {
        dir: work.clone(),
        keep: opts.keep,
    };
    eprintln!(
        "working in {} (file system of the temp dir)",
        work.display()
    );

    let started = command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    let ours = if opts.cairn {
        Some(cairn_bench(&opts, &cairn, &work)?)
    } else {
        None
    };
    let theirs = if opts.syncthing {
        Some(syncthing_bench(&opts, &harness, &work)?)
    } else {
        None
    };

    let host = host_note(&work);
    let table = table(&opts, ours.as_ref(), theirs.as_ref());
    println!("\n{started}; {host}\n");
    println!("{table}");
    let json = to_json(&opts, &started, &host, ours.as_ref(), theirs.as_ref());
    if let Some(dir) = opts.out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&opts.out, json)?;
    eprintln!("results written to {}", opts.out.display());
    Ok(())
}

/// Removes the work folder at the end, unless asked to keep it.
struct Cleanup {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------
// Processes

/// A child process, stopped by its PID when dropped: SIGTERM first where it cleans up
/// after itself (the Syncthing harness), SIGKILL otherwise.
struct Proc {
    child: Child,
    graceful: bool,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        if self.graceful {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if self.exited() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One device: its login (config folder) and sync folder, and its `cairn sync` while
/// it runs.
struct Device {
    name: String,
    config: PathBuf,
    dir: PathBuf,
    remote: String,
    log: PathBuf,
    sync: Option<Proc>,
}

impl Device {
    fn login(cairn: &Path, server: &Server, work: &Path, name: &str, remote: &str) -> Result<Self> {
        let config = work.join(format!("{name}/config"));
        let dir = work.join(format!("{name}/folder"));
        fs::create_dir_all(&config)?;
        run_with_stdin(
            Command::new(cairn)
                .env("CAIRN_CONFIG_DIR", &config)
                .args(["login", &server.url, "--user", "admin", "--password-stdin"])
                .args(["--device", name])
                .stderr(Stdio::null()),
            PASSWORD,
        )?;
        Ok(Device {
            name: name.to_owned(),
            log: work.join(format!("{name}/sync.log")),
            config,
            dir,
            remote: remote.to_owned(),
            sync: None,
        })
    }

    fn start(&mut self, cairn: &Path) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(cairn)
            .env("CAIRN_CONFIG_DIR", &self.config)
            .arg("sync")
            .arg(&self.dir)
            .args(["--remote", &self.remote])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting cairn sync")?;
        self.sync = Some(Proc {
            child,
            graceful: false,
        });
        Ok(())
    }

    fn stop(&mut self) {
        self.sync = None;
    }

    /// Fails if its `cairn sync` has exited (then the log says why).
    fn check(&mut self) -> Result<()> {
        if let Some(p) = &mut self.sync {
            if p.exited() {
                bail!(
                    "cairn sync of device {} exited; see {}",
                    self.name,
                    self.log.display()
                );
            }
        }
        Ok(())
    }

    fn memory(&self) -> Option<Memory> {
        let pid = self.sync.as_ref()?.pid();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some(Memory {
            peak_kib: kib("VmHWM:")?,
            rss_kib: kib("VmRSS:")?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    peak_kib: u64,
    rss_kib: u64,
}

/// Polls `ready` every `every` until it holds, checking both sync processes; fails
/// after `limit`.
fn wait_for(
    what: &str,
    limit: Duration,
    every: Duration,
    devices: &mut [&mut Device],
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut checked = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        if checked.elapsed() > Duration::from_millis(200) {
            for d in devices.iter_mut() {
                d.check()?;
            }
            checked = Instant::now();
        }
        std::thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------------
// Cairn

#[derive(Default)]
struct CairnResults {
    latency: Option<Latency>,
    small: Option<Throughput>,
    big: Option<Throughput>,
    edits: Vec<Edit>,
    memory: Option<MemoryRun>,
    idle: Option<IdleRun>,
}

struct Latency {
    samples_ms: Vec<f64>,
    fails: usize,
}

impl Latency {
    fn percentile(&self, p: f64) -> f64 {
        let mut s = self.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        // Nearest rank: with 50 samples, p99 is the largest.
        let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }
}

struct Throughput {
    files: usize,
    bytes: u64,
    seconds: f64,
}

struct Edit {
    seconds: f64,
    dd_seconds: f64,
    blocks: f64,
    /// Block payload from A to the server, and from the server to B (deltas count as
    /// their size; the signature A reads counts in the second).
    payload: f64,
    payload_down: f64,
}

struct MemoryRun {
    files: usize,
    up_seconds: f64,
    down_seconds: f64,
    uploader: Memory,
    downloader: Memory,
}

fn cairn_bench(opts: &Options, cairn: &Path, work: &Path) -> Result<CairnResults> {
    let server = Server::start(cairn, &work.join("server"))?;
    eprintln!("cairn serve on {}", server.url);
    let staging = work.join("staging");
    fs::create_dir_all(&staging)?;
    let mut results = CairnResults::default();

    let needs_pair = opts.only.iter().any(|t| *t != Test::Memory);
    if needs_pair {
        let mut a = Device::login(cairn, &server, work, "a", "/")?;
        let mut b = Device::login(cairn, &server, work, "b", "/")?;
        fs::create_dir_all(&a.dir)?;
        a.start(cairn)?;
        b.start(cairn)?;
        // Both daemons are up and listening once a first file has gone across.
        fs::write(a.dir.join("ready.txt"), b"ready")?;
        let there = b.dir.join("ready.txt");
        wait_for(
            "the first file on B",
            Duration::from_secs(60),
            Duration::from_millis(10),
            &mut [&mut a, &mut b],
            || fs::read(&there).is_ok_and(|c| c == b"ready"),
        )?;
        // First, while each folder holds one file, as in issue 13's report.
        if opts.only.contains(&Test::Idle) {
            results.idle = Some(cairn_idle(opts, &server, &mut a, &mut b)?);
        }
        if opts.only.contains(&Test::Latency) {
            results.latency = Some(cairn_latency(opts, &mut a, &mut b)?);
        }
        if opts.only.contains(&Test::Small) {
            results.small = Some(cairn_small(opts, &staging, &mut a, &mut b)?);
        }
        if opts.only.contains(&Test::Edit) {
            let (big, edits) = cairn_edit(opts, &server, work, &staging, &mut a, &mut b)?;
            results.big = Some(big);
            results.edits = edits;
        }
        // A and B sync the whole account, so they must not see the memory test's tree.
        a.stop();
        b.stop();
    }
    if opts.only.contains(&Test::Memory) {
        results.memory = Some(cairn_memory(opts, cairn, &server, work)?);
    }
    Ok(results)
}

/// What an idle run measured: the CPU each process used and the requests the
/// daemons made, over `seconds` with nothing changing.
struct IdleRun {
    seconds: f64,
    /// CPU seconds per minute of each process measured, by name.
    cpu_per_min: Vec<(String, f64)>,
    /// Requests the two daemons made in all (everything but `/metrics`), per minute
    /// and per daemon; `None` for Syncthing, whose requests are not HTTP.
    requests_per_min: Option<f64>,
    /// The requests by route, for the record.
    routes: Vec<(String, f64)>,
}

impl IdleRun {
    /// The highest CPU per minute among the processes whose name starts with `prefix`.
    fn worst_cpu(&self, prefix: &str) -> f64 {
        self.cpu_per_min
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, cpu)| *cpu)
            .fold(0.0, f64::max)
    }
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
fn clock_ticks() -> f64 {
    command_output(Command::new("getconf").arg("CLK_TCK"))
        .parse()
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) the process `pid` has used so far.
fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14,
    // stime 15.
    let rest = &stat[stat.rfind(')').context("a /proc stat line")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

/// Requests by route from the server's `/metrics`, summed over statuses.
fn requests_by_route(server: &Server) -> Result<Vec<(String, f64)>> {
    let body = server.metrics_text()?;
    let mut out: Vec<(String, f64)> = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("cairn_http_requests_total{route=\"") else {
            continue;
        };
        let Some((route, tail)) = rest.split_once('"') else {
            continue;
        };
        let n: f64 = tail
            .rsplit(' ')
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        match out.iter_mut().find(|(r, _)| r == route) {
            Some((_, total)) => *total += n,
            None => out.push((route.to_owned(), n)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Measures `pids` (named) over `seconds` of nothing happening: CPU seconds per minute
/// each, from /proc/PID/stat before and after. `during` is polled every second, so a
/// process that exits fails the run.
fn idle_cpu(
    pids: &[(String, u32)],
    seconds: u64,
    mut during: impl FnMut() -> Result<()>,
) -> Result<(f64, Vec<(String, f64)>)> {
    let ticks = clock_ticks();
    let before: Vec<f64> = pids
        .iter()
        .map(|(_, pid)| cpu_seconds(*pid, ticks))
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        during()?;
    }
    let after: Vec<f64> = pids
        .iter()
        .map(|(_, pid)| cpu_seconds(*pid, ticks))
        .collect::<Result<_>>()?;
    let elapsed = t0.elapsed().as_secs_f64();
    let per_min = pids
        .iter()
        .zip(before.iter().zip(after))
        .map(|((name, _), (b, a))| (name.clone(), (a - b) * 60.0 / elapsed))
        .collect();
    Ok((elapsed, per_min))
}

/// Issue 13: two `cairn sync` daemons (and the server) left alone with one file each
/// and nothing changing: the requests the daemons make and the CPU they use.
fn cairn_idle(opts: &Options, server: &Server, a: &mut Device, b: &mut Device) -> Result<IdleRun> {
    // Let the first passes, and the notifications of their own writes, go by.
    std::thread::sleep(Duration::from_secs(5));
    let pids = vec![
        (
            "cairn sync A".to_owned(),
            a.sync.as_ref().context("A runs")?.pid(),
        ),
        (
            "cairn sync B".to_owned(),
            b.sync.as_ref().context("B runs")?.pid(),
        ),
        ("cairn serve".to_owned(), server.child.id()),
    ];
    eprintln!(
        "idling {} s: CPU of both daemons and the server, requests from /metrics…",
        opts.idle_secs
    );
    let before = requests_by_route(server)?;
    let (seconds, cpu_per_min) = idle_cpu(&pids, opts.idle_secs, || {
        a.check()?;
        b.check()
    })?;
    let after = requests_by_route(server)?;
    let routes: Vec<(String, f64)> = after
        .iter()
        .filter(|(route, _)| route != "/metrics")
        .map(|(route, n)| {
            let was = before
                .iter()
                .find(|(r, _)| r == route)
                .map_or(0.0, |(_, n)| *n);
            (route.clone(), n - was)
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    // `+ 0.0`: an empty sum of floats is -0.0, which prints as "-0.00".
    let total: f64 = routes.iter().map(|(_, n)| n).sum::<f64>() + 0.0;
    let run = IdleRun {
        seconds,
        cpu_per_min,
        requests_per_min: Some(total / 2.0 * 60.0 / seconds),
        routes,
    };
    eprintln!(
        "idle: {:.2} requests/min per daemon ({:?}); CPU s/min {:?}",
        run.requests_per_min.unwrap_or(0.0),
        run.routes,
        run.cpu_per_min
    );
    Ok(run)
}

fn cairn_latency(opts: &Options, a: &mut Device, b: &mut Device) -> Result<Latency> {
    fs::create_dir(a.dir.join("lat"))?;
    let there = b.dir.join("lat");
    wait_for(
        "the latency folder on B",
        Duration::from_secs(60),
        Duration::from_millis(10),
        &mut [a, b],
        || there.is_dir(),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let mut out = Latency {
        samples_ms: Vec::new(),
        fails: 0,
    };
    let mut rng = Rng(0x5EED_0001);
    for i in 0..opts.lat_n {
        // Isolated changes: the daemons are idle when each write happens.
        std::thread::sleep(Duration::from_millis(300));
        let content = rng.bytes(1024);
        let name = format!("lat/f{i:03}.bin");
        let (pa, pb) = (a.dir.join(&name), b.dir.join(&name));
        let t0 = Instant::now();
        fs::write(&pa, &content)?;
        let arrived = wait_for(
            "a latency file on B",
            Duration::from_secs(10),
            Duration::from_millis(1),
            &mut [a, b],
            || fs::read(&pb).is_ok_and(|c| c == content),
        );
        match arrived {
            Ok(()) => {
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                eprintln!("latency #{i}: {ms:.1} ms");
                out.samples_ms.push(ms);
            }
            Err(err) => {
                eprintln!("latency #{i}: {err}");
                out.fails += 1;
            }
        }
    }
    if out.samples_ms.is_empty() {
        bail!("no latency sample arrived");
    }
    Ok(out)
}

/// Files in the folders directly under `root`, leaving out the daemons' temp files.
fn count_files(root: &Path) -> usize {
    let Ok(dirs) = fs::read_dir(root) else {
        return 0;
    };
    dirs.flatten()
        .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
        .map(|d| {
            fs::read_dir(d.path()).map_or(0, |files| {
                files
                    .flatten()
                    .filter(|f| !f.file_name().to_string_lossy().contains(".cairn-tmp-"))
                    .count()
            })
        })
        .sum()
}

/// Writes `dirs` × `per_dir` files of `size` random bytes under `root`.
fn write_tree(root: &Path, (dirs, per_dir): (usize, usize), size: usize, seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    for d in 0..dirs {
        let dir = root.join(format!("d{d:04}"));
        fs::create_dir_all(&dir)?;
        for f in 0..per_dir {
            fs::write(dir.join(format!("f{f:04}.bin")), rng.bytes(size))?;
        }
    }
    Ok(())
}

/// Fails unless both trees hold the same files with the same content.
fn same_tree(a: &Path, b: &Path, (dirs, per_dir): (usize, usize)) -> Result<()> {
    for d in 0..dirs {
        for f in 0..per_dir {
            let rel = format!("d{d:04}/f{f:04}.bin");
            if fs::read(a.join(&rel))? != fs::read(b.join(&rel))? {
                bail!("{rel} differs between A and B");
            }
        }
    }
    Ok(())
}

fn cairn_small(
    opts: &Options,
    staging: &Path,
    a: &mut Device,
    b: &mut Device,
) -> Result<Throughput> {
    let total = opts.small.0 * opts.small.1;
    let src = staging.join("small");
    eprintln!(
        "writing {total} files of {} bytes in {} folders…",
        opts.small_size, opts.small.0
    );
    write_tree(&src, opts.small, opts.small_size, 0x5EED_0002)?;
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
    let (dst_a, dst_b) = (a.dir.join("small"), b.dir.join("small"));
    // Like Syncthing's harness: the tree appears on A at once, by a rename.
    let t0 = Instant::now();
    fs::rename(&src, &dst_a)?;
    wait_for(
        "all small files on B",
        Duration::from_secs(1200),
        Duration::from_millis(50),
        &mut [a, b],
        || count_files(&dst_b) >= total,
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    same_tree(&dst_a, &dst_b, opts.small)?;
    eprintln!(
        "{total} small files on B after {seconds:.2} s ({:.0} files/s)",
        total as f64 / seconds
    );
    Ok(Throughput {
        files: total,
        bytes: (total * opts.small_size) as u64,
        seconds,
    })
}

/// Whether two files hold the same bytes.
fn same_file(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Copies `from` to `to` with `byte` inserted at `at`, durably.
fn copy_with_insert(from: &Path, to: &Path, at: u64, byte: u8) -> Result<()> {
    let mut src = fs::File::open(from)?;
    let mut dst = std::io::BufWriter::with_capacity(4 << 20, fs::File::create(to)?);
    std::io::copy(&mut (&mut src).take(at), &mut dst)?;
    dst.write_all(&[byte])?;
    std::io::copy(&mut src, &mut dst)?;
    dst.flush()?;
    dst.get_ref().sync_all()?;
    Ok(())
}

fn dd_seconds(work: &Path, bytes: u64) -> Result<f64> {
    let out = work.join("dd.out");
    let start = Instant::now();
    run(Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", out.display()))
        .args([
            "bs=4M",
            &format!("count={}", bytes >> 22),
            "conv=fsync",
            "status=none",
        ]))?;
    let seconds = start.elapsed().as_secs_f64();
    fs::remove_file(&out)?;
    Ok(seconds)
}

fn cairn_edit(
    opts: &Options,
    server: &Server,
    work: &Path,
    staging: &Path,
    a: &mut Device,
    b: &mut Device,
) -> Result<(Throughput, Vec<Edit>)> {
    let size = opts.big_bytes;
    let src = staging.join("big.bin");
    eprintln!("writing a {} MiB random file…", size >> 20);
    write_random(&src, size)?;
    settle();
    let (pa, pb) = (a.dir.join("big.bin"), b.dir.join("big.bin"));
    let t0 = Instant::now();
    fs::rename(&src, &pa)?;
    wait_for(
        "the big file on B",
        Duration::from_secs(1200),
        Duration::from_millis(20),
        &mut [a, b],
        || fs::metadata(&pb).is_ok_and(|m| m.len() == size),
    )?;
    let big_seconds = t0.elapsed().as_secs_f64();
    if !same_file(&pa, &pb)? {
        bail!("the big file differs on B");
    }
    eprintln!("{} MiB new file on B after {big_seconds:.2} s", size >> 20);
    let big = Throughput {
        files: 1,
        bytes: size,
        seconds: big_seconds,
    };

    let mut edits = Vec::new();
    let mut size = size;
    for run_no in 0..opts.edit_runs {
        // The edited file is prepared beside the folder and renamed over A's copy, as
        // editors save; each run inserts one more byte in the middle, so every edit is
        // new content.
        let mid = size / 2;
        let byte = 0xA5 ^ run_no as u8;
        let new = staging.join("big.new");
        let original_next = {
            let mut f = fs::File::open(&pa)?;
            f.seek(SeekFrom::Start(mid))?;
            let mut one = [0u8];
            f.read_exact(&mut one)?;
            one[0]
        };
        copy_with_insert(&pa, &new, mid, byte)?;
        settle();
        let dd = dd_seconds(work, opts.big_bytes)?;
        settle();
        let ino0 = fs::metadata(&pb)?.ino();
        let blocks0 = server.metric("cairn_blocks_stored_total")?;
        let bytes0 = server.metric("cairn_block_bytes_received_total")?;
        let sent0 = server.metric("cairn_block_bytes_sent_total")?;
        let t0 = Instant::now();
        fs::rename(&new, &pa)?;
        let new_size = size + 1;
        wait_for(
            "the edited file on B",
            Duration::from_secs(300),
            Duration::from_millis(2),
            &mut [a, b],
            || {
                let Ok(f) = fs::File::open(&pb) else {
                    return false;
                };
                let Ok(meta) = f.metadata() else {
                    return false;
                };
                let mut two = [0u8; 2];
                meta.ino() != ino0
                    && meta.len() == new_size
                    && f.read_exact_at(&mut two, mid).is_ok()
                    && two == [byte, original_next]
            },
        )?;
        let seconds = t0.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(500));
        let blocks = server.metric("cairn_blocks_stored_total")? - blocks0;
        let payload = server.metric("cairn_block_bytes_received_total")? - bytes0;
        let payload_down = server.metric("cairn_block_bytes_sent_total")? - sent0;
        if !same_file(&pa, &pb)? {
            bail!("the edited file differs on B");
        }
        eprintln!(
            "edit #{run_no}: on B after {seconds:.3} s (dd of {} MiB: {dd:.3} s); {blocks} blocks, {payload} bytes up, {payload_down} bytes down",
            opts.big_bytes >> 20
        );
        edits.push(Edit {
            seconds,
            dd_seconds: dd,
            blocks,
            payload,
            payload_down,
        });
        size = new_size;
    }
    Ok((big, edits))
}

fn cairn_memory(opts: &Options, cairn: &Path, server: &Server, work: &Path) -> Result<MemoryRun> {
    // Two more devices on their own server folder, so their trees hold only this.
    let m = Device::login(cairn, server, work, "mkdir", "/")?;
    run(Command::new(cairn)
        .env("CAIRN_CONFIG_DIR", &m.config)
        .args(["mkdir", "/mem"])
        .stdout(Stdio::null()))?;
    let mut c = Device::login(cairn, server, work, "c", "/mem")?;
    let mut d = Device::login(cairn, server, work, "d", "/mem")?;
    let total = opts.mem.0 * opts.mem.1;
    eprintln!("writing {total} files of 1 byte in {} folders…", opts.mem.0);
    write_tree(&c.dir, opts.mem, 1, 0x5EED_0003)?;
    let _ = Command::new("sync").status();
    // One device after the other: C's daemon on the prepared folder until the server
    // has every file, then D's on an empty one until it holds them all. (Run side by
    // side, D re-plans its whole tree for every few files C commits, and the two
    // fight over the two cores for far longer than either alone.)
    let commits0 = server.metric("cairn_commits_total")?;
    let t0 = Instant::now();
    c.start(cairn)?;
    wait_for(
        "every memory-test file on the server",
        Duration::from_secs(3600),
        Duration::from_millis(500),
        &mut [&mut c],
        || {
            server
                .metric("cairn_commits_total")
                .is_ok_and(|n| n - commits0 >= total as f64)
        },
    )?;
    let up_seconds = t0.elapsed().as_secs_f64();
    eprintln!(
        "{total} files on the server after {up_seconds:.1} s ({:.0} files/s)",
        total as f64 / up_seconds
    );
    let t1 = Instant::now();
    d.start(cairn)?;
    let there = d.dir.clone();
    wait_for(
        "all memory-test files on D",
        Duration::from_secs(3600),
        Duration::from_millis(500),
        &mut [&mut c, &mut d],
        || count_files(&there) >= total,
    )?;
    let down_seconds = t1.elapsed().as_secs_f64();
    eprintln!(
        "{total} files on D after {down_seconds:.1} s ({:.0} files/s); idling 10 s",
        total as f64 / down_seconds
    );
    std::thread::sleep(Duration::from_secs(10));
    c.check()?;
    d.check()?;
    same_tree(&c.dir, &d.dir, opts.mem)?;
    let uploader = c.memory().context("reading C's memory")?;
    let downloader = d.memory().context("reading D's memory")?;
    Ok(MemoryRun {
        files: total,
        up_seconds,
        down_seconds,
        uploader,
        downloader,
    })
}

// ---------------------------------------------------------------------------------
// Syncthing

#[derive(Default)]
struct SyncthingResults {
    version: String,
    latency: Option<Latency>,
    small: Option<Throughput>,
    big: Option<Throughput>,
    edit_seconds: Option<f64>,
    edit_wire_bytes: Option<f64>,
    idle: Option<IdleRun>,
}

fn syncthing_bench(opts: &Options, harness: &Path, work: &Path) -> Result<SyncthingResults> {
    let mut tests = Vec::new();
    if opts.only.contains(&Test::Latency) {
        tests.push("latency");
    }
    if opts.only.contains(&Test::Edit) {
        tests.extend(["bigfile", "edit"]);
    }
    if opts.only.contains(&Test::Small) {
        tests.push("smallfiles");
    }
    let version = command_output(Command::new("syncthing").arg("--version"));
    // The harness has no idle test: its setup and its way of starting the two
    // instances are used here, and the instances measured while they idle.
    let idle = if opts.only.contains(&Test::Idle) {
        Some(syncthing_idle(opts, harness, work)?)
    } else {
        None
    };
    if tests.is_empty() {
        return Ok(SyncthingResults {
            version,
            idle,
            ..SyncthingResults::default()
        });
    }
    let results_dir = work.join("syncthing-results");
    eprintln!("running Syncthing's harness ({})…", tests.join(" "));
    let out = fs::File::create(work.join("syncthing.out"))?;
    let child = Command::new("bash")
        .arg(harness)
        .arg(work.join("stbench"))
        .env("LAT_DELAYS", "1")
        .env("LAT_N", opts.lat_n.to_string())
        .env("TESTS", tests.join(" "))
        .env("TIMEOUT", "600")
        .env("RESULTS_DIR", &results_dir)
        .env("BIG_SIZE", opts.big_bytes.to_string())
        .env("SMALL_DIRS", opts.small.0.to_string())
        .env("SMALL_PER_DIR", opts.small.1.to_string())
        .env("SMALL_SIZE", opts.small_size.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .spawn()
        .context("starting the Syncthing harness")?;
    let mut proc = Proc {
        child,
        graceful: true,
    };
    let deadline = Instant::now() + Duration::from_secs(3600);
    let status = loop {
        if let Some(status) = proc.child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            bail!("the Syncthing harness did not finish within an hour");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        bail!(
            "the Syncthing harness failed ({status}); its output is in {}",
            work.join("syncthing.out").display()
        );
    }
    let jsonl = fs::read_dir(&results_dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .context("the Syncthing harness wrote no results")?;
    let text = fs::read_to_string(&jsonl)?;
    let summary = fs::read_to_string(work.join("syncthing.out")).unwrap_or_default();
    eprintln!("{summary}");
    let mut r = SyncthingResults {
        version,
        idle,
        ..SyncthingResults::default()
    };
    for line in text.lines() {
        match json_str(line, "test").as_deref() {
            Some("latency") => {
                r.latency = Some(Latency {
                    samples_ms: json_nums(line, "samples_ms"),
                    fails: json_num(line, "fails").unwrap_or(0.0) as usize,
                })
            }
            Some("smallfiles") => {
                r.small = Some(Throughput {
                    files: json_num(line, "files").unwrap_or(0.0) as usize,
                    bytes: (json_num(line, "files").unwrap_or(0.0)
                        * json_num(line, "size").unwrap_or(0.0)) as u64,
                    seconds: json_num(line, "seconds").unwrap_or(f64::NAN),
                })
            }
            Some("bigfile") => {
                r.big = Some(Throughput {
                    files: 1,
                    bytes: json_num(line, "size").unwrap_or(0.0) as u64,
                    seconds: json_num(line, "seconds").unwrap_or(f64::NAN),
                })
            }
            Some("edit1byte") => {
                r.edit_seconds = json_num(line, "seconds");
                r.edit_wire_bytes = json_num(line, "A_out");
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Two Syncthing instances of the harness, stopped on drop: SIGTERM to the workers
/// the monitors forked, then to the monitors (as `run.sh` stops them).
struct SyncthingPair {
    monitors: Vec<Proc>,
    workers: Vec<u32>,
}

impl Drop for SyncthingPair {
    fn drop(&mut self) {
        for pid in &self.workers {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && self
                .workers
                .iter()
                .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.monitors.clear();
    }
}

/// `KEY='value'` lines of the harness's `bench.env`.
fn read_env(path: &Path) -> Result<std::collections::HashMap<String, String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('\'').to_owned()))
        .collect())
}

/// Syncthing's idle CPU for reference: the harness's two instances (its `setup.sh`:
/// loopback only, fsWatcherDelayS=1, the default hourly rescan), started as `run.sh`
/// starts them, connected and in sync with one file, then left alone as long as the
/// daemons. Each instance is a monitor process and the worker it forks; both count.
fn syncthing_idle(opts: &Options, harness: &Path, work: &Path) -> Result<IdleRun> {
    let here = harness.parent().context("the harness's folder")?;
    let dir = work.join("stidle");
    eprintln!("setting up two Syncthing instances for the idle test…");
    run(Command::new("bash")
        .arg(here.join("setup.sh"))
        .arg(&dir)
        .env("WATCH_DELAY", "1")
        .stdout(Stdio::null()))?;
    let env = read_env(&dir.join("bench.env"))?;
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .with_context(|| format!("{k} in bench.env"))
    };
    let st = get("ST")?;
    let start = |home: &str| -> Result<Proc> {
        let log = fs::File::create(Path::new(home).join("stdout.log"))?;
        let child = Command::new(&st)
            .args(["serve", "--home", home, "--no-browser", "--no-restart"])
            .arg("--no-upgrade")
            .arg(format!("--logfile={home}/syncthing.log"))
            .arg("--logflags=7")
            .env("STNORESTART", "1")
            .env("STNOUPGRADE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting syncthing")?;
        Ok(Proc {
            child,
            graceful: true,
        })
    };
    let mut pair = SyncthingPair {
        monitors: vec![start(&get("HOME_A")?)?, start(&get("HOME_B")?)?],
        workers: Vec::new(),
    };
    // Syncthing 1.19 runs a monitor that forks the real worker.
    let monitors: Vec<u32> = pair.monitors.iter().map(Proc::pid).collect();
    for monitor in &monitors {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = command_output(Command::new("ps").args([
                "-o",
                "pid=",
                "--ppid",
                &monitor.to_string(),
            ]));
            if let Some(pid) = child.lines().next().and_then(|l| l.trim().parse().ok()) {
                pair.workers.push(pid);
                break;
            }
            if Instant::now() > deadline {
                bail!("syncthing {monitor} forked no worker within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (data_a, data_b) = (PathBuf::from(get("DATA_A")?), PathBuf::from(get("DATA_B")?));
    fs::write(data_a.join("ready.txt"), b"ready")?;
    run(Command::new("python3")
        .arg(here.join("stbench.py"))
        .arg("--env")
        .arg(dir.join("bench.env"))
        .args(["--timeout", "300", "wait-connected"])
        .stderr(Stdio::null()))?;
    let there = data_b.join("ready.txt");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !fs::read(&there).is_ok_and(|c| c == b"ready") {
        if Instant::now() > deadline {
            bail!("the first file never reached Syncthing B");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(5));
    let mut pids = Vec::new();
    for (name, (monitor, worker)) in ["A", "B"]
        .iter()
        .zip(monitors.iter().zip(pair.workers.clone()))
    {
        pids.push((format!("syncthing {name} (monitor)"), *monitor));
        pids.push((format!("syncthing {name}"), worker));
    }
    eprintln!(
        "idling {} s: CPU of both Syncthing instances…",
        opts.idle_secs
    );
    let (seconds, per_process) = idle_cpu(&pids, opts.idle_secs, || {
        for p in &mut pair.monitors {
            if p.exited() {
                bail!("a syncthing monitor exited; see {}", dir.display());
            }
        }
        Ok(())
    })?;
    // Per instance: its monitor and its worker together.
    let cpu_per_min = ["A", "B"]
        .iter()
        .map(|name| {
            let total = per_process
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("syncthing {name}")))
                .map(|(_, cpu)| cpu)
                .sum();
            (format!("syncthing {name}"), total)
        })
        .collect();
    drop(pair);
    let run = IdleRun {
        seconds,
        cpu_per_min,
        requests_per_min: None,
        routes: Vec::new(),
    };
    eprintln!("Syncthing idle: CPU s/min {:?}", run.cpu_per_min);
    Ok(run)
}

/// The number after `"key": ` in a line of Python's `json.dumps` output.
fn json_num(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\": "))? + key.len() + 4;
    let rest = &line[at..];
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn json_str(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let rest = &line[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn json_nums(line: &str, key: &str) -> Vec<f64> {
    let Some(at) = line.find(&format!("\"{key}\": [")) else {
        return Vec::new();
    };
    let rest = &line[at + key.len() + 5..];
    let end = rest.find(']').unwrap_or(rest.len());
    rest[..end]
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------------
// Report

fn command_output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn host_note(work: &Path) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fs_type = command_output(
        Command::new("findmnt")
            .args(["-n", "-o", "FSTYPE", "--target"])
            .arg(work),
    );
    let kernel = command_output(Command::new("uname").arg("-r"));
    format!("{cores} cores ({cpu}), kernel {kernel}, {fs_type} temp dir")
}

fn ms(x: f64) -> String {
    format!("{x:.0} ms")
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn rate(t: &Throughput) -> String {
    format!(
        "{:.0} files/s ({:.2} s)",
        t.files as f64 / t.seconds,
        t.seconds
    )
}

fn table(opts: &Options, ours: Option<&CairnResults>, theirs: Option<&SyncthingResults>) -> String {
    let mut t = String::new();
    let st_name = theirs.map_or("Syncthing".to_owned(), |s| {
        let v = s.version.split_whitespace().nth(1).unwrap_or("");
        format!("Syncthing {v}")
    });
    let _ = writeln!(t, "| what | Cairn | {st_name} (same run) | target | |");
    let _ = writeln!(t, "| --- | --- | --- | --- | --- |");
    let none = "—".to_owned();
    let our_lat = ours.and_then(|o| o.latency.as_ref());
    let st_lat = theirs.and_then(|s| s.latency.as_ref());
    if our_lat.is_some() || st_lat.is_some() {
        let show = |l: &Latency| {
            format!(
                "{} / {} (min {}, max {}, {} of {} arrived)",
                ms(l.percentile(50.0)),
                ms(l.percentile(99.0)),
                ms(l.percentile(0.0)),
                ms(l.percentile(100.0)),
                l.samples_ms.len(),
                l.samples_ms.len() + l.fails
            )
        };
        let verdict = our_lat.map_or(none.clone(), |l| {
            yes(l.fails == 0 && l.percentile(50.0) <= 40.0 && l.percentile(99.0) <= 100.0)
                .to_owned()
        });
        let _ = writeln!(
            t,
            "| 1 KiB file written on A appears on B: median / p99 ({} trials) | {} | {} (fsWatcherDelayS=1, its minimum) | ≤ 40 / ≤ 100 ms | {verdict} |",
            opts.lat_n,
            our_lat.map_or(none.clone(), show),
            st_lat.map_or(none.clone(), show),
        );
    }
    let our_small = ours.and_then(|o| o.small.as_ref());
    let st_small = theirs.and_then(|s| s.small.as_ref());
    if our_small.is_some() || st_small.is_some() {
        let verdict = our_small.map_or(none.clone(), |s| {
            yes(s.files as f64 / s.seconds >= 3000.0).to_owned()
        });
        let _ = writeln!(
            t,
            "| {} files of {} KiB in {} folders, first sync (from their rename into A's folder until B holds all) | {} | {} | ≥ 3,000 files/s | {verdict} |",
            opts.small.0 * opts.small.1,
            opts.small_size / 1024,
            opts.small.0,
            our_small.map_or(none.clone(), rate),
            st_small.map_or(none.clone(), rate),
        );
    }
    let our_big = ours.and_then(|o| o.big.as_ref());
    let st_big = theirs.and_then(|s| s.big.as_ref());
    if our_big.is_some() || st_big.is_some() {
        let show = |b: &Throughput| {
            format!(
                "{:.2} s ({:.0} MB/s)",
                b.seconds,
                b.bytes as f64 / b.seconds / 1e6
            )
        };
        let _ = writeln!(
            t,
            "| new {} MiB file, from its rename into A's folder until B holds it | {} | {} | (for reference) | |",
            opts.big_bytes >> 20,
            our_big.map_or(none.clone(), show),
            st_big.map_or(none.clone(), show),
        );
    }
    let edits = ours.map(|o| &o.edits[..]).unwrap_or(&[]);
    let st_edit = theirs.and_then(|s| s.edit_seconds);
    if !edits.is_empty() || st_edit.is_some() {
        const LIMIT: f64 = 64.0 * 1024.0;
        let worst = edits
            .iter()
            .map(|e| e.payload.max(e.payload_down))
            .fold(0.0, f64::max);
        let payloads: Vec<String> = edits
            .iter()
            .map(|e| {
                format!(
                    "{:.1} KiB up / {:.1} KiB down",
                    e.payload / 1024.0,
                    e.payload_down / 1024.0
                )
            })
            .collect();
        let _ = writeln!(
            t,
            "| 1 byte inserted in the middle of the synced {} MiB file: block payload A→server / server→B ({} runs) | {} | {} | ≤ 64 KiB each way | {} |",
            opts.big_bytes >> 20,
            edits.len(),
            if edits.is_empty() { none.clone() } else { payloads.join("; ") },
            theirs
                .and_then(|s| s.edit_wire_bytes)
                .map_or(none.clone(), |b| format!("{:.0} KiB on the wire A→B (a 1-byte overwrite, its harness)", b / 1024.0)),
            if edits.is_empty() { none.clone() } else { yes(worst <= LIMIT).to_owned() },
        );
        let mut secs: Vec<f64> = edits.iter().map(|e| e.seconds).collect();
        let mut dds: Vec<f64> = edits.iter().map(|e| e.dd_seconds).collect();
        let all_met = edits.iter().all(|e| e.seconds <= 1.0 + e.dd_seconds);
        let ours_text = if edits.is_empty() {
            none.clone()
        } else {
            let runs: Vec<String> = edits
                .iter()
                .map(|e| format!("{:.2} s (dd {:.2} s)", e.seconds, e.dd_seconds))
                .collect();
            format!(
                "median {:.2} s; runs: {}",
                median(&mut secs),
                runs.join(", ")
            )
        };
        let bound = if dds.is_empty() {
            "≤ 1 s + dd".to_owned()
        } else {
            format!("≤ 1 s + dd (median dd {:.2} s)", median(&mut dds))
        };
        let _ = writeln!(
            t,
            "| … the edited file on B, durably (fsynced and renamed), after the save on A | {ours_text} | {} | {bound}, every run | {} |",
            st_edit.map_or(none.clone(), |s| format!("{s:.2} s")),
            if edits.is_empty() { none.clone() } else { yes(all_met).to_owned() },
        );
    }
    let our_idle = ours.and_then(|o| o.idle.as_ref());
    let st_idle = theirs.and_then(|s| s.idle.as_ref());
    if our_idle.is_some() || st_idle.is_some() {
        let cpu = |r: &IdleRun, prefix: &str| {
            r.cpu_per_min
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(n, c)| format!("{n} {c:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ours_text = our_idle.map_or(none.clone(), |r| {
            let routes: Vec<String> = r
                .routes
                .iter()
                .map(|(route, n)| format!("{n:.0} {route}"))
                .collect();
            format!(
                "{:.2} requests/min per daemon{}; CPU s/min: {} (server: {})",
                r.requests_per_min.unwrap_or(0.0),
                if routes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", routes.join(", "))
                },
                cpu(r, "cairn sync"),
                cpu(r, "cairn serve"),
            )
        });
        let verdict = our_idle.map_or(none.clone(), |r| {
            yes(r.requests_per_min == Some(0.0) && r.worst_cpu("cairn sync") < 0.1).to_owned()
        });
        let _ = writeln!(
            t,
            "| idle daemon, one file, nothing changing ({} s; CPU from /proc/PID/stat in {:.0} ms ticks, requests from /metrics) | {ours_text} | {} | no request but the notification heartbeat (a WebSocket ping), < 0.1 s CPU/min | {verdict} |",
            our_idle.or(st_idle).map_or(opts.idle_secs as f64, |r| r.seconds).round(),
            1000.0 / clock_ticks(),
            st_idle.map_or(none.clone(), |r| format!("CPU s/min: {} (monitor + worker each)", cpu(r, "syncthing"))),
        );
    }
    if let Some(m) = ours.and_then(|o| o.memory.as_ref()) {
        let mb = |k: u64| k as f64 * 1024.0 / 1e6;
        let _ = writeln!(
            t,
            "| `cairn sync` memory with a {}-file tree (1 byte each, {} folders): peak RSS (VmHWM) / RSS idle after | uploader {:.0} / {:.0} MB, downloader {:.0} / {:.0} MB (one after the other: upload from starting the daemon on the prepared folder {:.0} s, {:.0} files/s; download into an empty folder {:.0} s, {:.0} files/s) | — | ≤ 150 MB | {} |",
            m.files,
            opts.mem.0,
            mb(m.uploader.peak_kib),
            mb(m.uploader.rss_kib),
            mb(m.downloader.peak_kib),
            mb(m.downloader.rss_kib),
            m.up_seconds,
            m.files as f64 / m.up_seconds,
            m.down_seconds,
            m.files as f64 / m.down_seconds,
            yes(mb(m.uploader.peak_kib.max(m.downloader.peak_kib)) <= 150.0),
        );
    }
    t
}

fn json_latency(l: Option<&Latency>) -> String {
    match l {
        None => "null".to_owned(),
        Some(l) => format!(
            "{{\"n\": {}, \"fails\": {}, \"median_ms\": {:.1}, \"p99_ms\": {:.1}, \"min_ms\": {:.1}, \"max_ms\": {:.1}, \"samples_ms\": [{}]}}",
            l.samples_ms.len(),
            l.fails,
            l.percentile(50.0),
            l.percentile(99.0),
            l.percentile(0.0),
            l.percentile(100.0),
            l.samples_ms
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn json_throughput(t: Option<&Throughput>) -> String {
    match t {
        None => "null".to_owned(),
        Some(t) => format!(
            "{{\"files\": {}, \"bytes\": {}, \"seconds\": {:.3}, \"files_per_s\": {:.1}, \"MBps\": {:.1}}}",
            t.files,
            t.bytes,
            t.seconds,
            t.files as f64 / t.seconds,
            t.bytes as f64 / t.seconds / 1e6
        ),
    }
}

fn json_idle(r: Option<&IdleRun>) -> String {
    let Some(r) = r else {
        return "null".to_owned();
    };
    let pairs = |v: &[(String, f64)]| {
        v.iter()
            .map(|(k, x)| format!("\"{k}\": {x:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{\"seconds\": {:.1}, \"requests_per_min_per_daemon\": {}, \"requests\": {{{}}}, \"cpu_s_per_min\": {{{}}}}}",
        r.seconds,
        json_opt(r.requests_per_min),
        pairs(&r.routes),
        pairs(&r.cpu_per_min)
    )
}

fn json_opt(x: Option<f64>) -> String {
    x.map_or("null".to_owned(), |x| format!("{x:.3}"))
}

fn to_json(
    opts: &Options,
    date: &str,
    host: &str,
    ours: Option<&CairnResults>,
    theirs: Option<&SyncthingResults>,
) -> String {
    let cairn = match ours {
        None => "null".to_owned(),
        Some(o) => {
            let edits: Vec<String> = o
                .edits
                .iter()
                .map(|e| {
                    format!(
                        "{{\"seconds\": {:.3}, \"dd_seconds\": {:.3}, \"blocks_uploaded\": {}, \"payload_bytes\": {}, \"payload_down_bytes\": {}}}",
                        e.seconds, e.dd_seconds, e.blocks, e.payload, e.payload_down
                    )
                })
                .collect();
            let memory = o.memory.as_ref().map_or("null".to_owned(), |m| {
                format!(
                    "{{\"files\": {}, \"upload_seconds\": {:.1}, \"download_seconds\": {:.1}, \"uploader_peak_kib\": {}, \"uploader_idle_rss_kib\": {}, \"downloader_peak_kib\": {}, \"downloader_idle_rss_kib\": {}}}",
                    m.files,
                    m.up_seconds,
                    m.down_seconds,
                    m.uploader.peak_kib,
                    m.uploader.rss_kib,
                    m.downloader.peak_kib,
                    m.downloader.rss_kib
                )
            });
            format!(
                "{{\"latency\": {}, \"small_files\": {}, \"big_file\": {}, \"edits\": [{}], \"memory\": {}, \"idle\": {}}}",
                json_latency(o.latency.as_ref()),
                json_throughput(o.small.as_ref()),
                json_throughput(o.big.as_ref()),
                edits.join(", "),
                memory,
                json_idle(o.idle.as_ref())
            )
        }
    };
    let syncthing = match theirs {
        None => "null".to_owned(),
        Some(s) => format!(
            "{{\"version\": \"{}\", \"fsWatcherDelayS\": 1, \"latency\": {}, \"small_files\": {}, \"big_file\": {}, \"edit_1byte_overwrite_seconds\": {}, \"edit_wire_bytes_a_to_b\": {}, \"idle\": {}}}",
            s.version.replace('"', "'"),
            json_latency(s.latency.as_ref()),
            json_throughput(s.small.as_ref()),
            json_throughput(s.big.as_ref()),
            json_opt(s.edit_seconds),
            json_opt(s.edit_wire_bytes),
            json_idle(s.idle.as_ref())
        ),
    };
    format!(
        "{{\n  \"date\": \"{date}\",\n  \"host\": \"{}\",\n  \"latency_trials\": {},\n  \"cairn\": {cairn},\n  \"syncthing\": {syncthing}\n}}\n",
        host.replace('"', "'"),
        opts.lat_n
    )
}

/// xorshift64*: distinct, incompressible file contents without a dependency.
struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            out.extend_from_slice(&self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out.truncate(n);
        out
    }
}
