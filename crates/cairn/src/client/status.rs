//! `cairn status`: the server, the account, its storage, and every sync folder.

use serde::Serialize;

use super::output::{self, print_json};
use super::session::{config_dir, session, Doing};
use crate::ClientOpts;

#[derive(Serialize)]
struct StatusOutput<'a> {
    server: &'a str,
    server_version: Option<String>,
    user: &'a str,
    device: Option<&'a str>,
    is_admin: bool,
    usage_bytes: i64,
    quota_bytes: Option<i64>,
    /// Every folder `cairn sync` keeps in sync from this config folder.
    sync: Vec<crate::sync_cmd::FolderStatus>,
}

pub(super) async fn status(opts: &ClientOpts, json: bool) -> anyhow::Result<()> {
    let session = session(opts)?;
    let client = &session.client;
    let account = client
        .account()
        .await
        .doing(|| format!("cannot get the account from {}", client.base_url()))?;
    let server_version = client.server_info().await.ok().map(|info| info.version);
    let device = account
        .device
        .as_ref()
        .map(|d| d.name.as_str())
        .or(session.credentials.device.as_deref());
    let out = StatusOutput {
        server: client.base_url(),
        server_version,
        user: &account.user.name,
        device,
        is_admin: account.user.is_admin,
        usage_bytes: account.usage_bytes,
        quota_bytes: account.user.quota_bytes,
        sync: crate::sync_cmd::folder_statuses(&config_dir(opts)?).await?,
    };
    if json {
        return print_json(&out);
    }
    let usage = output::human_size(out.usage_bytes.max(0) as u64);
    let usage = match out.quota_bytes {
        Some(quota) if quota > 0 => format!(
            "{usage} of {} ({:.0}%)",
            output::human_size(quota as u64),
            out.usage_bytes.max(0) as f64 * 100.0 / quota as f64
        ),
        _ => format!("{usage} (no quota)"),
    };
    let version = out
        .server_version
        .as_deref()
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    println!("server:  {}{version}", out.server);
    println!(
        "user:    {}{}",
        out.user,
        if out.is_admin { " (admin)" } else { "" }
    );
    println!("device:  {}", out.device.unwrap_or("-"));
    println!("usage:   {usage}");
    for folder in &out.sync {
        crate::sync_cmd::print_folder_status(folder);
    }
    Ok(())
}
