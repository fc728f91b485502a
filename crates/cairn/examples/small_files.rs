//! First sync of a tree of small files through the real server on loopback (DESIGN.md
//! §6: 10,000 files of 4 KiB in 100 folders, target ≥ 2,000 files/s).
//!
//! ```text
//! cargo run --release -p cairn --example small_files [FILES] [FOLDERS]
//! CAIRN_BENCH_DIR=/srv/scratch cargo run --release -p cairn --example small_files
//! ```
//!
//! Starts `cairn serve`'s application on a temp data dir (SQLite, local blocks, durable
//! as in production) under `CAIRN_BENCH_DIR` (default: the system temp dir), then times
//! `Client::upload_small_files` on distinct random 4 KiB files held in memory: chunk,
//! hash, check, batched block upload, batched commits. Not a test: it prints a figure.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes_helper::random_bytes;
use cairn_client::{Client, SmallFile, SmallSource};

mod bytes_helper {
    /// Distinct pseudo-random content (xorshift; no dependency needed).
    pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let files: usize = args.first().map_or(Ok(10_000), |a| a.parse())?;
    let folders: usize = args.get(1).map_or(Ok(100), |a| a.parse())?;
    if folders == 0 {
        bail!("at least one folder");
    }
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let base = std::env::var_os("CAIRN_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let data = tempfile::tempdir_in(&base).context("temp data dir")?;
    let mut config = cairn_server::Config::for_data_dir(data.path());
    config.listen = "127.0.0.1:0".parse()?;
    config.maintenance.scrub_bytes_per_sec = 0;
    let (meta, blocks) = cairn_server::open_stores(&config).await?;
    let password = "small files benchmark";
    let hash = cairn_server::hash_password(&config, password.to_owned()).await?;
    meta.create_user("bench", &hash, false, None).await?;
    let app = cairn_server::Application::with_stores(config, meta, blocks).await?;
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(std::future::pending()));

    let anonymous = Client::new(&url, None)?;
    let login = anonymous
        .login(&cairn_client::proto::LoginRequest {
            username: "bench".into(),
            password: password.into(),
            device_name: Some("bench".into()),
        })
        .await?;
    let client = anonymous.with_token(login.token);

    let items: Vec<SmallFile> = (0..files)
        .map(|i| SmallFile {
            source: SmallSource::Bytes(random_bytes(i as u64 + 1, 4096).into()),
            remote: format!("/tree/d{:03}/f{:05}.bin", i % folders, i),
            base_rev: None,
            mtime: Some(1_700_000_000_000),
        })
        .collect();
    eprintln!(
        "uploading {files} files of 4 KiB in {folders} folders to {url}, data in {}",
        data.path().display()
    );
    let start = Instant::now();
    let results = client.upload_small_files(items).await?;
    let elapsed = start.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(err)) = results.iter().find(|r| r.is_err()) {
        bail!("{failed} files failed; the first: {err}");
    }
    println!(
        "{files} files of 4 KiB in {folders} folders: {:.2} s, {:.0} files/s",
        elapsed.as_secs_f64(),
        files as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
