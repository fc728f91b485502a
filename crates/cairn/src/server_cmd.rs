//! Server-side commands: `serve` and `admin …`, which work on a data directory.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use cairn_meta::{DamagedFile, MetaStore};
use cairn_server::fsck::{FsckOptions, FsckReport};
use cairn_server::{bootstrap_admin, open_stores, Application, Bootstrap, Config};
use cairn_store::BlockStore;
use clap::Subcommand;

use crate::ServerOpts;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check every block and reference: every block a file version names must exist
    /// and match its hash. Lists the damaged files and exits 1 when anything is wrong.
    /// Damaged blocks are moved to quarantine and marked for re-upload (the next upload
    /// of an original copy of a damaged file repairs it).
    Fsck {
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Only report: leave damaged blocks in place and change nothing.
        #[arg(long)]
        no_quarantine: bool,
    },
    /// Run trash expiry, version retention and garbage collection now. Safe while the server runs.
    Gc {
        /// Collect blocks unreferenced for at least this many seconds (default: the
        /// configured gc_grace_secs). 0 collects every unreferenced block now; uploads
        /// in flight then have to send their blocks again.
        #[arg(long, value_name = "SECS")]
        grace: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Without --password-stdin a password is generated and printed once.
    Add {
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Storage quota in bytes.
        #[arg(long)]
        quota: Option<i64>,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change a user's storage quota (without --quota: remove it).
    SetQuota {
        name: String,
        /// The new quota in bytes.
        #[arg(long)]
        quota: Option<i64>,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn load_config(opts: &ServerOpts) -> anyhow::Result<Config> {
    Ok(Config::load(&opts.data_dir, opts.config.as_deref())?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn serve(opts: &ServerOpts, listen: &str) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut config = load_config(opts)?;
    config.listen = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:8080"))?;
    let (meta, blocks) = open_stores(&config).await?;
    if let Bootstrap::AdminCreated { password } = bootstrap_admin(&config, &meta).await? {
        match password {
            Some(password) => println!(
                "Created user 'admin' with password: {password}\n(shown once; change it or set CAIRN_ADMIN_PASSWORD on first start)"
            ),
            None => println!("Created user 'admin' with the password from CAIRN_ADMIN_PASSWORD"),
        }
    }
    let app = Application::with_stores(config, meta, blocks).await?;
    let addr = app.local_addr();
    tracing::info!("cairn listening on http://{addr}");
    eprintln!("cairn serving on http://{addr}");
    app.run(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn admin(opts: &ServerOpts, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(opts)?;
    let (meta, blocks) = open_stores(&config).await?;
    match command {
        AdminCommand::Fsck {
            json,
            no_quarantine,
        } => return fsck(&meta, &blocks, json, !no_quarantine).await,
        AdminCommand::Gc { grace, json } => {
            let grace = grace.unwrap_or(config.maintenance.gc_grace_secs);
            let report = cairn_server::maintenance::run_once(
                &meta,
                &blocks,
                &config.maintenance,
                std::time::Duration::from_secs(grace),
            )
            .await?;
            if json {
                let out = serde_json::json!({
                    "trash_expired": report.trash_expired,
                    "versions_pruned": report.versions_pruned,
                    "blocks_deleted": report.gc.blocks_deleted,
                    "bytes_freed": report.gc.bytes_freed,
                    "unfinished_deleted": report.gc.unfinished_deleted,
                    "orphans_adopted": report.gc.orphans_adopted,
                    "grace_secs": grace,
                });
                println!("{out}");
            } else {
                println!(
                    "expired {} trash items; pruned {} old versions; deleted {} blocks, freed {}",
                    report.trash_expired,
                    report.versions_pruned,
                    report.gc.blocks_deleted,
                    crate::client_cmd::output::human_size(report.gc.bytes_freed)
                );
            }
        }
        AdminCommand::User { command } => match command {
            UserCommand::Add {
                name,
                password_stdin,
                quota,
                admin,
                json,
            } => {
                if name.is_empty()
                    || name.len() > 64
                    || name.chars().any(|c| c.is_control() || c == '/' || c == ':')
                {
                    bail!("user name must be 1 to 64 characters without '/', ':' or control characters");
                }
                if quota.is_some_and(|q| q < 0) {
                    bail!("--quota must be a number of bytes, 0 or more");
                }
                let (password, generated) = if password_stdin {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_to_string(&mut line)
                        .context("reading the password from standard input")?;
                    let password = line.lines().next().unwrap_or("").to_owned();
                    if password.is_empty() {
                        bail!("the password on standard input is empty");
                    }
                    (password, false)
                } else {
                    (cairn_server::auth::generate_password(), true)
                };
                let hash = cairn_server::hash_password(&config, password.clone()).await?;
                let user = meta.create_user(&name, &hash, admin, quota).await?;
                if json {
                    let mut out = serde_json::json!({
                        "id": user.id.0, "name": user.name, "is_admin": user.is_admin,
                        "quota_bytes": user.quota_bytes,
                    });
                    if generated {
                        out["password"] = password.into();
                    }
                    println!("{out}");
                } else if generated {
                    println!("Created user '{}' with password: {password}", user.name);
                } else {
                    println!("Created user '{}'", user.name);
                }
            }
            UserCommand::SetQuota { name, quota } => {
                if quota.is_some_and(|q| q < 0) {
                    bail!("--quota must be a number of bytes, 0 or more");
                }
                if !meta.set_quota(&name, quota).await? {
                    bail!("no user named {name:?}; `cairn admin user list` shows them");
                }
                match quota {
                    Some(q) => println!("Quota of '{name}' set to {q} bytes"),
                    None => println!("Quota of '{name}' removed"),
                }
            }
            UserCommand::List { json } => {
                let users = meta.list_users().await?;
                if json {
                    let list: Vec<_> = users
                        .iter()
                        .map(|u| {
                            serde_json::json!({
                                "id": u.id.0, "name": u.name, "is_admin": u.is_admin,
                                "quota_bytes": u.quota_bytes, "created_at": u.created_at,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(list));
                } else {
                    for u in users {
                        let quota = u
                            .quota_bytes
                            .map(|q| format!("quota {q} B"))
                            .unwrap_or_else(|| "no quota".to_owned());
                        let role = if u.is_admin { "admin" } else { "user" };
                        println!("{}\t{role}\t{quota}", u.name);
                    }
                }
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn admin fsck`: runs the check, prints the report, exits 1 when something is
/// wrong.
async fn fsck(
    meta: &MetaStore,
    blocks: &BlockStore,
    json: bool,
    quarantine: bool,
) -> anyhow::Result<ExitCode> {
    let totals = meta
        .referenced_totals()
        .await
        .context("cannot count the referenced blocks")?;
    let bar = crate::client_cmd::progress_bar(totals.bytes.max(0) as u64);
    bar.set_prefix("checking blocks ");
    let progress = bar.clone();
    let options = FsckOptions {
        quarantine,
        progress: Some(Arc::new(move |_blocks, bytes| progress.set_position(bytes))),
        ..FsckOptions::default()
    };
    let result = cairn_server::fsck::fsck(meta, blocks, &options).await;
    bar.finish_and_clear();
    let report = result.context("fsck could not finish")?;

    if json {
        println!("{}", fsck_json(&report, quarantine));
    } else {
        for file in &report.damaged_files {
            println!("{}", describe_damaged(file));
        }
        for problem in &report.inconsistencies {
            println!("metadata: {problem}");
        }
        for m in &report.size_mismatches {
            println!(
                "metadata: block {} is recorded as {} bytes but holds {}",
                m.hash, m.recorded, m.actual
            );
        }
        println!(
            "checked {} blocks ({} bytes verified): {} missing, {} corrupt ({} quarantined), \
             {} metadata inconsistencies, {} damaged file versions",
            report.blocks_checked,
            report.bytes_verified,
            report.missing.len(),
            report.corrupt.len(),
            report.quarantined.len(),
            report.inconsistencies.len() + report.size_mismatches.len(),
            report.damaged_files.len(),
        );
        if !report.damaged_files.is_empty() && quarantine {
            println!(
                "damaged blocks were marked for re-upload: putting an original copy of a \
                 damaged file again repairs it"
            );
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `PATH (version V, user U)`, plus where the version is when it is not the live file.
fn describe_damaged(file: &DamagedFile) -> String {
    let state = match (file.in_trash, file.is_current) {
        (true, _) => ", in trash",
        (false, false) => ", older version",
        (false, true) => "",
    };
    format!(
        "{} (version {}, user {}{state})",
        file.path, file.version, file.owner
    )
}

fn fsck_json(report: &FsckReport, quarantine: bool) -> serde_json::Value {
    let hexes = |hashes: &[cairn_core::BlockHash]| -> Vec<String> {
        hashes.iter().map(|h| h.to_hex()).collect()
    };
    serde_json::json!({
        "clean": report.is_clean(),
        "blocks_checked": report.blocks_checked,
        "bytes_verified": report.bytes_verified,
        "missing_blocks": hexes(&report.missing),
        "corrupt_blocks": hexes(&report.corrupt),
        "quarantine": quarantine,
        "quarantined_blocks": hexes(&report.quarantined),
        "size_mismatches": report.size_mismatches.iter().map(|m| serde_json::json!({
            "hash": m.hash.to_hex(), "recorded": m.recorded, "actual": m.actual,
        })).collect::<Vec<_>>(),
        "inconsistencies": report.inconsistencies.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "damaged_files": report.damaged_files.iter().map(|f| serde_json::json!({
            "namespace": f.ns.0,
            "user": f.owner,
            "path": f.path.as_str(),
            "version": f.version.0.to_string(),
            "is_current": f.is_current,
            "in_trash": f.in_trash,
            "blocks": hexes(&f.blocks),
        })).collect::<Vec<_>>(),
    })
}
