//! Idle notification connections (DESIGN.md §6: 10,000 on one node in ≤ 200 MB RSS):
//! the client half of `cargo xtask notify-bench`, which starts the server, reads its
//! memory and runs this.
//!
//! ```text
//! idle_notify URL PASSWORD [CONNECTIONS]
//! ```
//!
//! Logs in as `admin`, opens CONNECTIONS (default 10,000) WebSocket subscriptions the
//! way `cairn sync` does (`Client::subscribe`: heartbeats answered, reconnects with
//! backoff), waits until the server's `cairn_notify_connections` counts them all,
//! prints `connected N`, holds them idle until stdin closes, then prints how many are
//! still open and exits. Not a test: the figures come from the harness.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_client::Client;
use cairn_proto::LoginRequest;

/// How long the server may take to count every connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(180);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, password, rest @ ..] = args.as_slice() else {
        bail!("usage: idle_notify URL PASSWORD [CONNECTIONS]");
    };
    let wanted: usize = rest.first().map_or(Ok(10_000), |n| n.parse())?;
    let anonymous = Client::new(url, None)?;
    let login = anonymous
        .login(&LoginRequest {
            username: "admin".into(),
            password: password.clone(),
            device_name: None,
        })
        .await
        .context("logging in")?;
    let client = anonymous.with_token(login.token);

    let started = Instant::now();
    let mut subscriptions = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        subscriptions.push(client.subscribe());
        // A breath now and then, so the server's accept queue never overflows.
        if subscriptions.len() % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let http = reqwest::Client::new();
    let metrics_url = format!("{}/metrics", url.trim_end_matches('/'));
    loop {
        let open = open_connections(&http, &metrics_url).await?;
        if open >= wanted as f64 {
            break;
        }
        if started.elapsed() > CONNECT_DEADLINE {
            bail!("only {open} of {wanted} connections open after {CONNECT_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "connected {wanted} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Hold them until the harness has read the server's memory and closes stdin.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    let open = open_connections(&http, &metrics_url).await?;
    println!("still open {open}");
    drop(subscriptions);
    Ok(())
}

/// The server's `cairn_notify_connections` gauge.
async fn open_connections(http: &reqwest::Client, url: &str) -> Result<f64> {
    let text = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix("cairn_notify_connections "))
        .context("no cairn_notify_connections in /metrics")?
        .trim()
        .parse()
        .context("cairn_notify_connections is not a number")
}
