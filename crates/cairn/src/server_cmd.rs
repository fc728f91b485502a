//! Server-side commands: `serve` and `admin …`, which work on a data directory.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use cairn_meta::{DamagedFile, MetaStore};
use cairn_server::block_manager::FsckOptions;
use cairn_server::{bootstrap_admin, open_stores, Application, BlockManager, Bootstrap, Config};
use clap::Subcommand;

use crate::client::output::{count, format_time, human_size, Align, Table};
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
    /// List users: name, role, quota, usage, status and creation date (--json: exact
    /// numbers).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password. Without --password-stdin a password is generated and
    /// printed once. Every session of the user is signed out.
    SetPassword {
        name: String,
        /// Read the new password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: logins are refused, and its tokens and public links stop working
    /// at once (a running server sees it on the next request). Everything else stays;
    /// `enable` brings it all back. The last enabled administrator cannot be disabled.
    Disable { name: String },
    /// Enable a disabled user again, as it was (devices signed in before work again).
    Enable { name: String },
    /// Delete a user for good. Its files and folders are deleted (their blocks are freed
    /// by the next garbage collection, `cairn admin gc`); each shared folder it owns
    /// passes to the editor added to it first, who becomes its owner (it then counts
    /// against their quota), and one without an editor is deleted for its viewers too;
    /// it leaves the shared folders of others; its public links are revoked and every
    /// device signed out. The name can then be given to a new user, who inherits
    /// nothing. The last enabled administrator cannot be deleted.
    Delete {
        name: String,
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
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub async fn serve(opts: &ServerOpts, listen: &str) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut config = load_config(opts)?;
    config.listen = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:8080"))?;
    // Before the stores are opened and the first administrator is made.
    cairn_server::check_tls(&config)?;
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
    let (scheme, addr) = (app.scheme(), app.local_addr());
    tracing::info!("cairn listening on {scheme}://{addr}");
    eprintln!("cairn serving on {scheme}://{addr}");
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
    // Only `serve` makes a data directory: run elsewhere, these commands would make an
    // empty one and change nothing the running server sees.
    cairn_server::check_existing_data_dir(&config)?;
    let (meta, blocks) = open_stores(&config).await?;
    let blocks = BlockManager::new(meta.clone(), blocks, config.chunker);
    match command {
        AdminCommand::Fsck {
            json,
            no_quarantine,
        } => return fsck(&meta, &blocks, json, !no_quarantine).await,
        AdminCommand::Gc { grace, json } => {
            let grace = grace.unwrap_or(config.maintenance.gc_grace_secs);
            let thumbnails = cairn_server::thumbnails::Thumbnails::new(
                &config.data_dir,
                config.thumbnail_max_source_bytes,
            );
            let report = cairn_server::maintenance::run_once(
                &meta,
                &blocks,
                &thumbnails,
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
                    "thumbnails_deleted": report.thumbnails_deleted,
                    "grace_secs": grace,
                });
                println!("{out}");
            } else {
                println!(
                    "expired {}; pruned {}; deleted {}, freed {}",
                    count(report.trash_expired as u64, "trash item"),
                    count(report.versions_pruned as u64, "old version"),
                    count(report.gc.blocks_deleted as u64, "block"),
                    human_size(report.gc.bytes_freed)
                );
            }
        }
        AdminCommand::User { command } => user(&config, &meta, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn admin user …`.
async fn user(config: &Config, meta: &MetaStore, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            quota,
            admin,
            json,
        } => user_add(config, meta, &name, password_stdin, quota, admin, json).await?,
        UserCommand::SetQuota { name, quota } => {
            if quota.is_some_and(|q| q < 0) {
                bail!("--quota must be a number of bytes, 0 or more");
            }
            if !meta.set_quota(&name, quota).await? {
                bail!("no user named {name:?}; `cairn admin user list` shows them");
            }
            match quota {
                Some(q) => println!(
                    "Quota of '{name}' set to {} ({q} bytes)",
                    human_size(q.max(0) as u64)
                ),
                None => println!("Quota of '{name}' removed"),
            }
        }
        UserCommand::List { json } => {
            let users = meta.list_users().await?;
            let usage = meta.usage_by_user().await?;
            let infos: Vec<_> = users
                .iter()
                .map(|u| {
                    let used = usage.get(&u.id).copied().unwrap_or(0);
                    cairn_server::admin::admin_user_info(u, used)
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string(&infos)?);
            } else {
                print!("{}", user_table(&infos));
            }
        }
        UserCommand::SetPassword {
            name,
            password_stdin,
            json,
        } => user_set_password(config, meta, &name, password_stdin, json).await?,
        UserCommand::Disable { name } => {
            let user = meta
                .set_user_disabled(&name, true)
                .await
                .map_err(|e| user_error(e, &name))?;
            println!(
                "Disabled '{}': it cannot log in, and its devices and links are refused \
                 until `cairn admin user enable {}`",
                user.name, user.name
            );
        }
        UserCommand::Enable { name } => {
            let user = meta
                .set_user_disabled(&name, false)
                .await
                .map_err(|e| user_error(e, &name))?;
            println!("Enabled '{}'", user.name);
        }
        UserCommand::Delete { name, json } => user_delete(meta, &name, json).await?,
    }
    Ok(())
}

/// `cairn admin user add`: prints the password when it made one up.
async fn user_add(
    config: &Config,
    meta: &MetaStore,
    name: &str,
    password_stdin: bool,
    quota: Option<i64>,
    admin: bool,
    json: bool,
) -> anyhow::Result<()> {
    cairn_meta::check_user_name(name)?;
    if quota.is_some_and(|q| q < 0) {
        bail!("--quota must be a number of bytes, 0 or more");
    }
    let (password, generated) = new_password(password_stdin)?;
    let hash = cairn_server::hash_password(config, password.clone()).await?;
    let user = meta.create_user(name, &hash, admin, quota).await?;
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
    Ok(())
}

/// `cairn admin user set-password`: every token of the account is revoked.
async fn user_set_password(
    config: &Config,
    meta: &MetaStore,
    name: &str,
    password_stdin: bool,
    json: bool,
) -> anyhow::Result<()> {
    let user = meta
        .user_by_name(name)
        .await?
        .ok_or_else(|| no_such_user(name))?;
    let (password, generated) = new_password(password_stdin)?;
    if !generated {
        cairn_server::auth::check_new_password(&password).map_err(anyhow::Error::msg)?;
    }
    let hash = cairn_server::hash_password(config, password.clone()).await?;
    let revoked = meta.set_password_hash(user.id, &hash, None).await?;
    if json {
        let mut out = serde_json::json!({
            "name": user.name, "sessions_revoked": revoked,
        });
        if generated {
            out["password"] = password.into();
        }
        println!("{out}");
    } else {
        let password = if generated {
            format!(" to: {password}")
        } else {
            String::new()
        };
        println!(
            "Password of '{}' set{password}\n{} signed out",
            user.name,
            sessions(revoked)
        );
    }
    Ok(())
}

/// `cairn admin user delete`: says what went with the account and what passed on.
async fn user_delete(meta: &MetaStore, name: &str, json: bool) -> anyhow::Result<()> {
    let report = meta
        .delete_user(name)
        .await
        .map_err(|e| user_error(e, name))?;
    let out = cairn_server::admin::user_delete_response(name, &report);
    if json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "Deleted '{name}': {} files ({}) deleted, their blocks freed by the \
             next `cairn admin gc`; {} signed out; {} links revoked",
            out.files_deleted,
            human_size(out.bytes_deleted.max(0) as u64),
            sessions(out.sessions_revoked),
            out.links_revoked,
        );
        for t in &out.shares_transferred {
            println!(
                "shared folder '{}' now belongs to '{}'",
                t.folder, t.new_owner
            );
        }
        for folder in &out.shares_deleted {
            println!("shared folder '{folder}' had no editor and was deleted");
        }
    }
    Ok(())
}

/// The password a user command sets: one line of standard input with
/// `--password-stdin`, else a generated one (to be printed once). The flag says which.
fn new_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((cairn_server::auth::generate_password(), true));
    }
    let mut line = String::new();
    std::io::stdin()
        .read_to_string(&mut line)
        .context("reading the password from standard input")?;
    let password = line.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        bail!("the password on standard input is empty");
    }
    Ok((password, false))
}

fn no_such_user(name: &str) -> anyhow::Error {
    anyhow::anyhow!("no user named {name:?}; `cairn admin user list` shows them")
}

/// A store error about the user `name`, with a hint when the name is unknown.
fn user_error(err: cairn_meta::MetaError, name: &str) -> anyhow::Error {
    match err {
        cairn_meta::MetaError::NoSuchUser(_) => no_such_user(name),
        other => other.into(),
    }
}

/// "1 session", "3 sessions".
fn sessions(n: u64) -> String {
    if n == 1 {
        "1 session".to_owned()
    } else {
        format!("{n} sessions")
    }
}

/// `cairn admin user list` for people: a header and aligned columns, sizes in human
/// units. (Plain here; it can move to the client's shared table printer.)
fn user_table(users: &[cairn_proto::AdminUserInfo]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("ADMIN", Align::Left),
        ("QUOTA", Align::Right),
        ("USAGE", Align::Right),
        ("STATUS", Align::Left),
        ("CREATED", Align::Left),
    ]);
    for u in users {
        table.row(vec![
            u.name.clone(),
            if u.is_admin { "yes" } else { "no" }.to_owned(),
            u.quota_bytes
                .map(|q| human_size(q.max(0) as u64))
                .unwrap_or_else(|| "-".to_owned()),
            human_size(u.usage_bytes.max(0) as u64),
            if u.disabled { "disabled" } else { "active" }.to_owned(),
            format_time(u.created_at),
        ]);
    }
    table.render()
}

/// `cairn admin fsck`: runs the check, prints the report, exits 1 when something is
/// wrong.
async fn fsck(
    meta: &MetaStore,
    blocks: &BlockManager,
    json: bool,
    quarantine: bool,
) -> anyhow::Result<ExitCode> {
    let totals = meta
        .referenced_totals()
        .await
        .context("cannot count the referenced blocks")?;
    let bar = crate::client::progress::progress_bar(totals.bytes.max(0) as u64);
    bar.set_prefix("checking blocks ");
    let progress = bar.clone();
    let options = FsckOptions {
        quarantine,
        progress: Some(Arc::new(move |_blocks, bytes| progress.set_position(bytes))),
        ..FsckOptions::default()
    };
    let result = blocks.fsck(&options).await;
    bar.finish_and_clear();
    let report = result.context("fsck could not finish")?;
    let info = report.to_info(quarantine, cairn_server::now_ms());
    // Kept for administrators (the web interface shows the last run); a failure to
    // keep it does not change what the check found.
    let recorded = serde_json::to_string(&info).map_err(anyhow::Error::from);
    if let Err(err) = async {
        meta.record_fsck(info.finished_at, &recorded?)
            .await
            .map_err(anyhow::Error::from)
    }
    .await
    {
        eprintln!("warning: could not record this check's result: {err:#}");
    }

    if json {
        println!("{}", serde_json::to_string(&info)?);
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
            "checked {} ({} verified): {} missing, {} corrupt ({} quarantined), {}, {}",
            count(report.blocks_checked as u64, "block"),
            human_size(report.bytes_verified as u64),
            report.missing.len(),
            report.corrupt.len(),
            report.quarantined.len(),
            count(
                (report.inconsistencies.len() + report.size_mismatches.len()) as u64,
                "metadata inconsistency"
            ),
            count(report.damaged_files.len() as u64, "damaged file version"),
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
