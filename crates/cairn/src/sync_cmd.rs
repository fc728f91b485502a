//! `cairn sync DIR [--once]`: glue between the login, the sync engine (`cairn-sync`),
//! the file-system watcher and the server's notifications.
//!
//! Without `--once` it runs until stopped: a pass runs at start, then whenever the
//! watcher reports a change in the folder (after a short debounce), whenever the server
//! says the account's tree advanced, and every `FULL_SCAN_EVERY` regardless, which
//! catches anything the watcher missed. A pass that cannot reach the server is retried
//! with exponential backoff and jitter.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_client::{chunker_config, Client};
use cairn_core::ServerPath;
use cairn_sync::{Engine, Ignore, RealEnv, Report, StateDb, SyncError};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::client_cmd::{session, LOGIN_HINT};
use crate::ClientOpts;

/// How long the watcher waits for more events before a pass starts: editors write a
/// file in several steps, and one pass should see the result.
const DEBOUNCE: Duration = Duration::from_millis(15);
/// A full pass at least this often, whatever the watcher and the server say.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(60);
/// The longest wait between retries when the server cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The `cairn sync` arguments.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The local folder to keep in sync (created if it does not exist yet).
    pub dir: PathBuf,
    /// The folder on the server to sync with.
    #[arg(long, default_value = "/")]
    pub remote: String,
    /// One full reconciliation, then exit (0 when both sides agree).
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
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct Problem {
    path: String,
    reason: String,
}

type SyncEngine = Engine<RealEnv, StateDb>;

pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let session = session(&args.opts)?;
    let client = session.client.clone();
    let device = session
        .credentials
        .device
        .clone()
        .unwrap_or_else(|| "this device".to_owned());
    let remote_root = ServerPath::parse(&args.remote)
        .with_context(|| format!("{:?} is not a server path", args.remote))?;

    let config_dir = crate::client_cmd::config_dir(&args.opts)?;
    let state_dir = config_dir.join("sync");
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let dir = absolute(&args.dir)?;
    let state_path = state_dir.join(format!(
        "{}.sqlite",
        &blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex()[..16]
    ));
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
    let mut engine = Engine::new(env, db.clone(), state, device, load_ignore(&dir));

    if args.once {
        let report = match engine.sync_once().await {
            Ok(report) => report,
            Err(err) => {
                record_pass(&db, Some(&err.to_string())).await;
                return Err(explain(err, &dir));
            }
        };
        print_report(&dir, &report, &engine, args.json)?;
        record_pass(&db, None).await;
        return Ok(ExitCode::SUCCESS);
    }
    run_forever(&mut engine, &db, &client, &dir, args.json).await
}

async fn run_forever(
    engine: &mut SyncEngine,
    db: &StateDb,
    client: &Client,
    dir: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (tx, mut triggers) = mpsc::channel::<Trigger>(64);
    let _watcher = watch(dir, tx.clone())?;
    spawn_remote_listener(client, tx.clone());
    let mut backoff = Duration::from_millis(500);
    eprintln!("syncing {} (stop with Ctrl-C)", dir.display());
    loop {
        engine.set_ignore(load_ignore(dir));
        match engine.sync_once().await {
            Ok(report) => {
                backoff = Duration::from_millis(500);
                if report.rounds > 0 || !report.problems.is_empty() {
                    print_report(dir, &report, engine, json)?;
                }
                record_pass(db, None).await;
            }
            Err(SyncError::Unavailable(msg)) => {
                record_pass(db, Some(&msg)).await;
                let wait = jitter(backoff);
                eprintln!(
                    "cannot reach the server ({msg}); trying again in {:.1} s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(err) => {
                record_pass(db, Some(&err.to_string())).await;
                return Err(explain(err, dir));
            }
        }
        // Wait for a reason to look again: a change on disk, a change on the server,
        // or the periodic full pass.
        let started = tokio::time::Instant::now();
        loop {
            let wait = FULL_SCAN_EVERY.saturating_sub(started.elapsed());
            let first = tokio::select! {
                trigger = triggers.recv() => trigger,
                _ = tokio::time::sleep(wait) => break,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("stopped");
                    return Ok(ExitCode::SUCCESS);
                }
            };
            let Some(first) = first else { break };
            tokio::time::sleep(DEBOUNCE).await;
            let mut needed = first.needs_pass(engine);
            while let Ok(more) = triggers.try_recv() {
                needed |= more.needs_pass(engine);
            }
            if needed {
                break;
            }
        }
    }
}

/// Why a pass may be due.
#[derive(Debug)]
enum Trigger {
    /// Something changed in the folder.
    Disk,
    /// The server's tree stands at this cursor.
    Server(String),
}

impl Trigger {
    /// Whether a pass is needed: not for a server position the engine has already read
    /// (its own changes come back as notifications too).
    fn needs_pass(&self, engine: &SyncEngine) -> bool {
        match self {
            Trigger::Disk => true,
            Trigger::Server(cursor) => engine.state().cursor.as_deref() != Some(cursor.as_str()),
        }
    }
}

/// Watches the sync folder recursively; every event is a trigger.
fn watch(dir: &Path, tx: mpsc::Sender<Trigger>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full queue already holds triggers enough for one more pass.
            let _ = tx.try_send(Trigger::Disk);
        }
    })
    .context("cannot start the file-system watcher")?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}

/// Listens to the server's notifications (WebSocket, falling back to SSE and long-poll;
/// the subscription reconnects by itself) and turns each into a trigger, for as long as
/// the daemon runs; it ends on its own when the trigger queue is gone.
fn spawn_remote_listener(client: &Client, tx: mpsc::Sender<Trigger>) {
    let mut subscription = client.subscribe();
    tokio::spawn(async move {
        while let Some(notification) = subscription.next().await {
            match notification {
                Ok(n) => {
                    if tx
                        .send(Trigger::Server(n.cursor().to_owned()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(err) => {
                    eprintln!("notifications stopped: {err}; changes on the server are picked up every minute");
                    return;
                }
            }
        }
    });
}

/// `wait` give or take a quarter, so that many clients do not retry in step.
fn jitter(wait: Duration) -> Duration {
    let spread = wait.as_millis() as u64 / 4;
    let offset = rand::random::<u64>() % (2 * spread + 1);
    Duration::from_millis(wait.as_millis() as u64 - spread + offset)
}

fn load_ignore(dir: &Path) -> Ignore {
    match std::fs::read_to_string(dir.join(cairn_sync::ignore::IGNORE_FILE)) {
        Ok(text) => Ignore::parse(&text).unwrap_or_else(|err| {
            eprintln!("warning: {err}; using the built-in rules only");
            Ignore::default()
        }),
        Err(_) => Ignore::default(),
    }
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

fn explain(err: SyncError, dir: &Path) -> anyhow::Error {
    match err {
        SyncError::Unavailable(msg) if msg.contains("401") => {
            anyhow::anyhow!("cannot sync {}: {msg}; {LOGIN_HINT}", dir.display())
        }
        other => anyhow::anyhow!("cannot sync {}: {other}", dir.display()),
    }
}

async fn record_pass(db: &StateDb, error: Option<&str>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let _ = db.set_setting("last_pass_at", &now.to_string()).await;
    let _ = db.set_setting("last_error", error.unwrap_or("")).await;
}

fn print_report(
    dir: &Path,
    report: &Report,
    engine: &SyncEngine,
    json: bool,
) -> anyhow::Result<()> {
    let mut problems: Vec<Problem> = report
        .problems
        .iter()
        .map(|(path, reason)| Problem {
            path: path.as_str().to_owned(),
            reason: reason.clone(),
        })
        .collect();
    for (path, reason) in engine.env().skipped() {
        problems.push(Problem {
            path: path.display().to_string(),
            reason,
        });
    }
    if json {
        let out = PassOutput {
            dir,
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
        "synced {}: {} up, {} down, {} deleted here, {} deleted on the server, {} moved, {} folders created, {} conflicts",
        dir.display(),
        report.uploaded,
        report.downloaded,
        report.deleted_local,
        report.deleted_remote,
        report.moved_local + report.moved_remote,
        report.folders_created,
        report.conflicts
    );
    for p in problems {
        eprintln!("  not synced: {}: {}", p.path, p.reason);
    }
    Ok(())
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
        let pending = cairn_sync::plan_sync(trees, &ctx)
            .iter()
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
        .map(|ms| format!("last pass {}", crate::client_cmd::output::format_time(ms)))
        .unwrap_or_else(|| "never synced".to_owned());
    println!("sync:    {} ({when})", folder.dir);
    if let Some(err) = &folder.last_error {
        println!("         last error: {err}");
    }
    if folder.pending.is_empty() {
        println!("         up to date");
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
