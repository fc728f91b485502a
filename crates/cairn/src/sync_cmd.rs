//! `cairn sync DIR [--once]`: glue. It builds the sync engine and its daemon
//! (`cairn-sync`) from the login, the config folder and the arguments, turns SIGINT and
//! SIGTERM into the engine's stop, and prints and records what the daemon says.
//!
//! Without `--once` it runs `cairn_sync::Daemon` until stopped (SIGINT or SIGTERM: the
//! pass in progress stops at a safe point and saves what it did), printing what each
//! pass did and recording it in the folder's state for `cairn status`.
//!
//! One daemon per folder: the folder's state file is locked for the daemon's life.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use cairn_client::chunker_config;
use cairn_core::ServerPath;
use cairn_sync::daemon::{load_ignore, not_synced, RealEngine};
use cairn_sync::{
    Daemon, Engine, Event, FolderLock, Ignore, LockError, NotSynced, RealEnv, Report, StateDb,
    SyncError,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::client::output::count;
use crate::client::session::session;
use crate::ClientOpts;

/// The state setting that lists what the last pass could not sync, as JSON.
const NOT_SYNCED: &str = "not_synced";

/// The `cairn sync` arguments.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The local folder to keep in sync (created if it does not exist yet).
    pub dir: PathBuf,
    /// The folder on the server to sync with.
    #[arg(long, default_value = "/")]
    pub remote: String,
    /// One full reconciliation, then exit (0 when both sides agree, 1 when something
    /// could not be synced).
    #[arg(long)]
    pub once: bool,
    /// Print each pass's report as JSON (one object per line).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// What a pass did, for `--json`.
#[derive(Debug, Serialize)]
struct PassOutput<'a> {
    dir: &'a Path,
    uploaded: u64,
    downloaded: u64,
    deleted_local: u64,
    deleted_remote: u64,
    moved_local: u64,
    moved_remote: u64,
    folders_created: u64,
    conflicts: u64,
    problems: &'a [Problem],
}

/// Something that cannot be synced as things stand, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    // First of all, so that a Ctrl-C at any moment stops the command cleanly.
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone())?;
    let session = session(&args.opts)?;
    let client = session.client.clone();
    let device = session
        .credentials
        .device
        .clone()
        .unwrap_or_else(|| "this device".to_owned());
    let remote_root = ServerPath::parse(&args.remote)
        .with_context(|| format!("{:?} is not a server path", args.remote))?;
    let relogin = format!(
        "log in again: `cairn login {} --user {}`",
        session.credentials.server, session.credentials.user
    );

    let config_dir = crate::client::session::config_dir(&args.opts)?;
    let state_dir = config_dir.join("sync");
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let dir = absolute(&args.dir)?;
    let state_name = &blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex()[..16];
    let state_path = state_dir.join(format!("{state_name}.sqlite"));
    // Before anything reads or writes the state: one reconciler per folder.
    let _lock = FolderLock::acquire(&state_dir.join(format!("{state_name}.lock"))).map_err(
        |err| match err {
            LockError::Held { pid } => anyhow!(
                "another `cairn sync`{} is already syncing {}; stop it before starting another",
                pid.map(|p| format!(" (PID {p})")).unwrap_or_default(),
                dir.display()
            ),
            other => anyhow!(other),
        },
    )?;
    let fresh = !state_path.exists();
    if fresh && !dir.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let db = StateDb::open(&state_path).await?;
    let binding = format!(
        "{} {} {}",
        session.credentials.server, session.credentials.user, remote_root
    );
    match db.setting("binding").await? {
        Some(existing) if existing != binding => bail!(
            "{} was synced with another server, account or server folder ({existing}); \
             use another local folder, or remove {} to start over",
            dir.display(),
            state_path.display()
        ),
        Some(_) => {}
        None => db.set_setting("binding", &binding).await?,
    }
    db.set_setting("dir", &dir.display().to_string()).await?;

    let info = client
        .server_info()
        .await
        .with_context(|| format!("cannot reach {}; is the server running?", client.base_url()))?;
    let chunker = chunker_config(&info)?;
    let state = db.load().await?;
    let env = RealEnv::new(dir.clone(), client.clone(), remote_root, chunker);
    let ignore = load_ignore(&dir).unwrap_or_else(|err| warn_ignore(&err));
    let mut engine = Engine::new(env, db.clone(), state, device, ignore).with_cancel(stop.clone());
    let command = SyncCommand {
        dir: &dir,
        db: &db,
        json: args.json,
        relogin: &relogin,
    };

    if args.once {
        return command.once(&mut engine).await;
    }
    let daemon = Daemon::start(engine, &client, dir.clone(), stop).map_err(anyhow::Error::new)?;
    command.run_forever(daemon).await
}

/// Says that `.cairnignore` does not parse; the built-in rules stand in for it.
fn warn_ignore(err: &cairn_sync::ignore::IgnoreError) -> Ignore {
    eprintln!("warning: {err}; using the built-in rules only");
    Ignore::default()
}

/// Stops `stop` on the first SIGINT or SIGTERM; a second one ends the process at once.
fn stop_on_signals(stop: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("stopping (again to stop at once)…");
        stop.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("stopped at once");
        std::process::exit(130);
    });
    Ok(())
}

/// What `cairn sync` prints and records for one folder, around the daemon (or the
/// `--once` run).
struct SyncCommand<'a> {
    dir: &'a Path,
    db: &'a StateDb,
    json: bool,
    /// How to log in again, for a login the server refuses.
    relogin: &'a str,
}

impl SyncCommand<'_> {
    /// `--once`: one full reconciliation; exit 1 if something could not be synced.
    async fn once(&self, engine: &mut RealEngine) -> anyhow::Result<ExitCode> {
        match engine.sync_once().await {
            Ok(report) => {
                let problems = problems(not_synced(&report, engine));
                self.print_report(&report, &problems)?;
                self.record_pass(None, &problems).await;
                if !problems.is_empty() {
                    bail!(
                        "{} of {} could not be synced (listed above; `cairn status` lists them too)",
                        count(problems.len() as u64, "item"),
                        self.dir.display()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(SyncError::Cancelled) => {
                self.record_stopped().await;
                bail!(
                    "stopped before {} was in sync; what was done is saved",
                    self.dir.display()
                )
            }
            Err(err) => {
                self.record_error(&err.to_string()).await;
                Err(self.explain(err))
            }
        }
    }

    /// Runs the daemon until it is stopped or fails, saying what it does.
    async fn run_forever(&self, mut daemon: Daemon) -> anyhow::Result<ExitCode> {
        eprintln!("syncing {} (stop with Ctrl-C)", self.dir.display());
        loop {
            match daemon.next_event().await {
                Event::Synced {
                    report,
                    not_synced,
                    news,
                } => {
                    let problems = problems(not_synced);
                    if news {
                        self.print_report(&report, &problems)?;
                    }
                    self.record_pass(None, &problems).await;
                }
                Event::IgnoreRulesInvalid(err) => {
                    warn_ignore(&err);
                }
                Event::Unavailable { reason, retry_in } => {
                    self.record_error(&reason).await;
                    eprintln!(
                        "cannot reach the server ({reason}); trying again in {:.1} s",
                        retry_in.as_secs_f64()
                    );
                }
                Event::NotificationsStopped { why } => eprintln!(
                    "notifications stopped: {why}; changes on the server are picked up every \
                     minute"
                ),
                Event::Stopped { during_pass: true } => {
                    self.record_stopped().await;
                    eprintln!("stopped; what was done is saved");
                    return Ok(ExitCode::SUCCESS);
                }
                Event::Stopped { during_pass: false } => {
                    eprintln!("stopped");
                    return Ok(ExitCode::SUCCESS);
                }
                Event::Failed(err) => {
                    self.record_error(&err.to_string()).await;
                    return Err(self.explain(err));
                }
            }
        }
    }

    /// The error that ends the command, with what to do about it.
    fn explain(&self, err: SyncError) -> anyhow::Error {
        match err {
            // Logging in again does not help a disabled account; the server's message
            // says whom to ask. (`account_disabled` is the wire error code.)
            SyncError::Unauthorized(msg) if msg.contains("(account_disabled)") => {
                anyhow!("cannot sync {}: {msg}", self.dir.display())
            }
            SyncError::Unauthorized(msg) => anyhow!(
                "cannot sync {}: the server no longer accepts this device's login ({msg}); {}",
                self.dir.display(),
                self.relogin
            ),
            other => anyhow!("cannot sync {}: {other}", self.dir.display()),
        }
    }

    /// Notes a pass that ended, and what it could not sync, for `cairn status`.
    async fn record_pass(&self, error: Option<&str>, problems: &[Problem]) {
        let db = self.db;
        let _ = db.set_setting("last_pass_at", &now_ms().to_string()).await;
        let _ = db.set_setting("last_error", error.unwrap_or("")).await;
        let listed = serde_json::to_string(problems).unwrap_or_default();
        let _ = db.set_setting(NOT_SYNCED, &listed).await;
    }

    /// Notes a pass that failed; what it could not sync is as the last pass said.
    async fn record_error(&self, error: &str) {
        let _ = self
            .db
            .set_setting("last_pass_at", &now_ms().to_string())
            .await;
        let _ = self.db.set_setting("last_error", error).await;
    }

    async fn record_stopped(&self) {
        self.record_error("stopped during a pass; the next run goes on from there")
            .await;
    }

    fn print_report(&self, report: &Report, problems: &[Problem]) -> anyhow::Result<()> {
        if self.json {
            let out = PassOutput {
                dir: self.dir,
                uploaded: report.uploaded,
                downloaded: report.downloaded,
                deleted_local: report.deleted_local,
                deleted_remote: report.deleted_remote,
                moved_local: report.moved_local,
                moved_remote: report.moved_remote,
                folders_created: report.folders_created,
                conflicts: report.conflicts,
                problems,
            };
            println!("{}", serde_json::to_string(&out)?);
            return Ok(());
        }
        eprintln!(
            "synced {}: {} up, {} down, {} deleted here, {} deleted on the server, {} moved, {} created, {}",
            self.dir.display(),
            report.uploaded,
            report.downloaded,
            report.deleted_local,
            report.deleted_remote,
            report.moved_local + report.moved_remote,
            count(report.folders_created, "folder"),
            count(report.conflicts, "conflict")
        );
        for p in problems {
            eprintln!("  not synced: {}: {}", p.path, p.reason);
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What cannot be synced, as `--json` and the state list it.
fn problems(not_synced: Vec<NotSynced>) -> Vec<Problem> {
    not_synced
        .into_iter()
        .map(|p| Problem {
            path: p.path,
            reason: p.reason,
        })
        .collect()
}

fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .context("cannot tell the current folder")?
            .join(dir)
    };
    // Resolve symlinks where the folder exists, so one folder has one state file.
    Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// What `cairn status` says about one sync folder.
#[derive(Debug, Serialize)]
pub struct FolderStatus {
    pub dir: String,
    /// When the last pass ended, Unix milliseconds.
    pub last_pass_at: Option<i64>,
    /// Why the last pass failed, if it did.
    pub last_error: Option<String>,
    /// What the engine would do next, from the state it saved (changes made since its
    /// last look are not counted until it looks again).
    pub pending: Vec<PendingOperation>,
    /// What the last pass could not sync, and why (a change the server refuses, a
    /// name it cannot take): these stay unsynced until something changes.
    pub not_synced: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct PendingOperation {
    pub operation: &'static str,
    pub path: String,
}

/// The sync folders whose state lives in `config_dir`.
pub async fn folder_statuses(config_dir: &Path) -> anyhow::Result<Vec<FolderStatus>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(config_dir.join("sync")) else {
        return Ok(out);
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sqlite"))
        .collect();
    files.sort();
    for file in files {
        let db = StateDb::open(&file).await?;
        let Some(dir) = db.setting("dir").await? else {
            continue;
        };
        let state = db.load().await?;
        let trees = cairn_sync::Trees {
            local: &state.local,
            remote: &state.remote,
            synced: &state.synced,
        };
        let ctx = cairn_sync::PlanContext {
            device: "this device".to_owned(),
            stamp: "now".to_owned(),
        };
        let not_synced: Vec<Problem> = db
            .setting(NOT_SYNCED)
            .await?
            .and_then(|listed| serde_json::from_str(&listed).ok())
            .unwrap_or_default();
        // What was refused is listed as not synced, not as about to happen.
        let pending = cairn_sync::plan_sync(trees, &ctx)
            .iter()
            .filter(|op| !not_synced.iter().any(|p| p.path == op.path().as_str()))
            .filter_map(|op| {
                let name = operation_name(op)?;
                Some(PendingOperation {
                    operation: name,
                    path: op.path().as_str().to_owned(),
                })
            })
            .collect();
        out.push(FolderStatus {
            dir,
            last_pass_at: db
                .setting("last_pass_at")
                .await?
                .and_then(|v| v.parse().ok()),
            last_error: db.setting("last_error").await?.filter(|e| !e.is_empty()),
            pending,
            not_synced,
        });
    }
    Ok(out)
}

/// A user's word for an operation; `None` for bookkeeping that moves no data.
fn operation_name(op: &cairn_sync::Operation) -> Option<&'static str> {
    use cairn_sync::Operation as O;
    Some(match op {
        O::Record { .. } | O::RecordMove { .. } => return None,
        O::MoveRemote { .. } => "move on the server",
        O::MoveLocal { .. } => "move here",
        O::MkdirRemote { .. } => "create folder on the server",
        O::MkdirLocal { .. } => "create folder here",
        O::Upload { .. } => "upload",
        O::Download { .. } => "download",
        O::DeleteRemote { .. } => "delete on the server",
        O::DeleteLocal { .. } => "delete here",
        O::ConflictLocal { .. } => "keep a conflict copy",
    })
}

pub fn print_folder_status(folder: &FolderStatus) {
    let when = folder
        .last_pass_at
        .map(|ms| format!("last pass {}", crate::client::output::format_time(ms)))
        .unwrap_or_else(|| "never synced".to_owned());
    println!("sync:    {} ({when})", folder.dir);
    if let Some(err) = &folder.last_error {
        println!("         last error: {err}");
    }
    if !folder.not_synced.is_empty() {
        println!(
            "         {} not synced:",
            count(folder.not_synced.len() as u64, "item")
        );
        for p in folder.not_synced.iter().take(20) {
            println!("           {}: {}", p.path, p.reason);
        }
        if folder.not_synced.len() > 20 {
            println!("           … and {} more", folder.not_synced.len() - 20);
        }
    }
    if folder.pending.is_empty() {
        if folder.not_synced.is_empty() {
            println!("         up to date");
        }
    } else {
        println!("         {} pending:", folder.pending.len());
        for op in folder.pending.iter().take(20) {
            println!("           {} {}", op.operation, op.path);
        }
        if folder.pending.len() > 20 {
            println!("           … and {} more", folder.pending.len() - 20);
        }
    }
}
