//! `cargo xtask notify-bench [--connections N] [--hold-secs S]`: idle notification
//! connections on one node (DESIGN.md §6: 10,000 in ≤ 200 MB RSS).
//!
//! Starts a release `cairn serve` on a temp data dir, reads its memory with no client
//! (the reference, in the same run), then runs the `idle_notify` example, which opens N
//! WebSocket subscriptions as `cairn sync` does and waits until the server counts them
//! all. They are held idle for S seconds (default 35: past the server's 30 s heartbeat,
//! so every connection has sent and answered one), then the server's memory is read
//! again and the connections still open are counted. Prints a Markdown row for the
//! README.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{run, workspace_root, Server};

const TARGET_MB: f64 = 200.0;

pub fn main(args: &[String]) -> Result<()> {
    let mut connections: usize = 10_000;
    let mut hold = Duration::from_secs(35);
    const USAGE: &str = "usage: cargo xtask notify-bench [--connections N] [--hold-secs S]";
    for (flag, value) in crate::flag_values(args, USAGE)? {
        match flag {
            "--connections" => connections = value.parse()?,
            "--hold-secs" => hold = Duration::from_secs(value.parse()?),
            _ => bail!("unknown option {flag}; {USAGE}"),
        }
    }
    let root = workspace_root()?;
    eprintln!("building target/release/cairn and the idle_notify example…");
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "cairn",
        "--bin",
        "cairn",
        "--example",
        "idle_notify",
    ]))?;
    let cairn = root.join("target/release/cairn");
    let example = root.join("target/release/examples/idle_notify");

    let work = std::env::temp_dir().join(format!("cairn-notify-bench.{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = measure(&cairn, &example, &work, connections, hold);
    let _ = std::fs::remove_dir_all(&work);
    let row = result?;
    println!("\n| what | Cairn | reference (same run) | target | |\n| --- | --- | --- | --- | --- |\n{row}");
    Ok(())
}

fn measure(
    cairn: &std::path::Path,
    example: &std::path::Path,
    work: &std::path::Path,
    connections: usize,
    hold: Duration,
) -> Result<String> {
    let server = Server::start(cairn, &work.join("server"))?;
    let pid = server.child.id();
    std::thread::sleep(Duration::from_secs(2));
    let (base_rss, _) = memory_kib(pid)?;
    eprintln!(
        "cairn serve on {}: {:.1} MB RSS with no client",
        server.url,
        mb(base_rss)
    );

    let mut client = Command::new(example)
        .args([&server.url, "bench-password", &connections.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the idle_notify example")?;
    let mut lines = BufReader::new(client.stdout.take().context("client stdout")?).lines();
    let connected = lines
        .next()
        .context("the client exited before connecting")??;
    eprintln!("{connected}; holding them idle for {} s…", hold.as_secs());
    if !connected.starts_with("connected ") {
        bail!("unexpected client output: {connected}");
    }
    std::thread::sleep(hold);
    let (rss, peak) = memory_kib(pid)?;
    let metric_open = server.metric("cairn_notify_connections")?;
    // Closing stdin lets the client report and exit.
    drop(client.stdin.take());
    let still = lines.next().context("the client did not report")??;
    let status = client.wait()?;
    if !status.success() {
        bail!("the client failed: {status}");
    }
    eprintln!("{still}");
    let per_conn_kib = rss.saturating_sub(base_rss) as f64 / connections as f64;
    let met = mb(rss) <= TARGET_MB && metric_open >= connections as f64;
    Ok(format!(
        "| {connections} idle WebSocket notification connections on one node (held {} s, through a heartbeat): server RSS / peak (VmHWM) | {:.0} / {:.0} MB ({:.1} KiB per connection; {} open at the end, `cairn_notify_connections`) | the same server with no client: {:.0} MB | ≤ {TARGET_MB:.0} MB | {} |",
        hold.as_secs(),
        mb(rss),
        mb(peak),
        per_conn_kib,
        metric_open,
        mb(base_rss),
        if met { "met" } else { "**missed**" }
    ))
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in /proc/{pid}/status"))
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}
