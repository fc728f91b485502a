//! `cairn sync DIR [--once]`: glue between the login, the sync engine (`cairn-sync`),
//! the file-system watcher and the server's notifications.
//!
//! Without `--once` it runs until stopped (SIGINT or SIGTERM: the pass in progress stops
//! at a safe point and saves what it did). A full pass (server and disk) runs at start,
//! whenever the server announces a position this device has not read, and after a
//! failure to reach the server (retried with exponential backoff and jitter). A look at
//! the disk runs when the watcher reports a change in the folder (after a short
//! debounce) and every `FULL_SCAN_EVERY`, which catches anything the watcher missed;
//! it goes on to the server only if the disk holds something to carry over. So a daemon
//! with nothing to do makes no request but its notification connection's heartbeat.
//!
//! One daemon per folder: the folder's state file is locked for the daemon's life.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::Notification;
use cairn_client::{chunker_config, Client};
use cairn_core::ServerPath;
use cairn_sync::{Engine, FolderLock, Ignore, LockError, RealEnv, Report, StateDb, SyncError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::output::count;
use crate::client::session::session;
use crate::ClientOpts;

/// How long the watcher waits for more events before a pass starts: editors write a
/// file in several steps, and one pass should see the result.
const DEBOUNCE: Duration = Duration::from_millis(15);
/// A look at the whole folder at least this often, whatever the watcher says; and a
/// full pass as often when the server's notifications cannot be had.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(60);
/// The longest wait between retries when the server cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
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

type SyncEngine = Engine<RealEnv, StateDb>;

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
    let mut engine =
        Engine::new(env, db.clone(), state, device, load_ignore(&dir)).with_cancel(stop.clone());
    let daemon = Daemon {
        dir: &dir,
        db: &db,
        json: args.json,
        relogin: &relogin,
    };

    if args.once {
        return daemon.once(&mut engine).await;
    }
    daemon.run_forever(&mut engine, &client, &stop).await
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

/// What a pass must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// The disk (and the server only if the disk holds something to carry over).
    Disk,
    /// The server and the disk.
    Full,
}

/// Why a pass may be due.
#[derive(Debug)]
enum Trigger {
    /// The watcher saw something change in the folder.
    Disk,
    /// The server says where a namespace stands.
    Server(Notification),
    /// The notification subscription ended for good: the server refused the login
    /// (`true`), or something else.
    NotificationsEnded { unauthorized: bool, why: String },
}

/// One sync folder's daemon (or `--once` run).
struct Daemon<'a> {
    dir: &'a Path,
    db: &'a StateDb,
    json: bool,
    /// How to log in again, for a login the server refuses.
    relogin: &'a str,
}

impl Daemon<'_> {
    /// `--once`: one full reconciliation; exit 1 if something could not be synced.
    async fn once(&self, engine: &mut SyncEngine) -> anyhow::Result<ExitCode> {
        match engine.sync_once().await {
            Ok(report) => {
                let problems = not_synced(&report, engine);
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

    async fn run_forever(
        &self,
        engine: &mut SyncEngine,
        client: &Client,
        stop: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let (tx, mut triggers) = mpsc::channel::<Trigger>(64);
        let _watcher = watch(self.dir, tx.clone())?;
        spawn_remote_listener(client, tx.clone());
        let mut notifications_alive = true;
        let mut backoff = Duration::from_millis(500);
        let mut shown: Vec<Problem> = Vec::new();
        let mut due = Due::Full;
        eprintln!("syncing {} (stop with Ctrl-C)", self.dir.display());
        loop {
            engine.set_ignore(load_ignore(self.dir));
            let result = match due {
                Due::Full => engine.sync_once().await,
                Due::Disk => engine.sync_local().await,
            };
            match result {
                Ok(report) => {
                    backoff = Duration::from_millis(500);
                    let problems = not_synced(&report, engine);
                    if report.rounds > 0 || problems != shown {
                        self.print_report(&report, &problems)?;
                    }
                    self.record_pass(None, &problems).await;
                    shown = problems;
                }
                Err(SyncError::Cancelled) => {
                    self.record_stopped().await;
                    eprintln!("stopped; what was done is saved");
                    return Ok(ExitCode::SUCCESS);
                }
                Err(SyncError::Unavailable(msg)) => {
                    self.record_error(&msg).await;
                    let wait = jitter(backoff);
                    eprintln!(
                        "cannot reach the server ({msg}); trying again in {:.1} s",
                        wait.as_secs_f64()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => {
                            eprintln!("stopped");
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    due = Due::Full;
                    continue;
                }
                Err(err) => {
                    self.record_error(&err.to_string()).await;
                    return Err(self.explain(err));
                }
            }
            // Wait for a reason to look again: a change on disk, a position on the
            // server not read yet, or the periodic look at the whole folder.
            let started = tokio::time::Instant::now();
            due = loop {
                let wait = FULL_SCAN_EVERY.saturating_sub(started.elapsed());
                let first = tokio::select! {
                    trigger = triggers.recv() => trigger,
                    _ = tokio::time::sleep(wait) => {
                        break if notifications_alive { Due::Disk } else { Due::Full };
                    }
                    _ = stop.cancelled() => {
                        eprintln!("stopped");
                        return Ok(ExitCode::SUCCESS);
                    }
                };
                // The queue cannot close while `tx` lives; a full pass if it ever did.
                let Some(first) = first else { break Due::Full };
                tokio::time::sleep(DEBOUNCE).await;
                let mut pending = vec![first];
                while let Ok(more) = triggers.try_recv() {
                    pending.push(more);
                }
                let mut needed: Option<Due> = None;
                for trigger in pending {
                    let due = match trigger {
                        Trigger::Disk => Some(Due::Disk),
                        // Not for a position already read: the engine's own changes
                        // come back as notifications too.
                        Trigger::Server(n) => {
                            let read = engine.state().cursor.as_deref();
                            (!read.is_some_and(|c| n.is_read_by(c))).then_some(Due::Full)
                        }
                        Trigger::NotificationsEnded { unauthorized, why } => {
                            if unauthorized {
                                let err = SyncError::Unauthorized(why);
                                self.record_error(&err.to_string()).await;
                                return Err(self.explain(err));
                            }
                            eprintln!(
                                "notifications stopped: {why}; changes on the server are \
                                 picked up every minute"
                            );
                            notifications_alive = false;
                            Some(Due::Full)
                        }
                    };
                    needed = needed.max(due);
                }
                if let Some(due) = needed {
                    break due;
                }
            };
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

/// What cannot be synced as things stand: operations refused for good, and local
/// entries the scan left out (names the server cannot take, special files).
fn not_synced(report: &Report, engine: &SyncEngine) -> Vec<Problem> {
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
    problems
}

/// Whether a watcher event may mean the folder changed. Opening, reading and closing
/// without writing change nothing, and the daemon's own scans do exactly that: taken
/// for changes, each scan's opening of the folder set off the next pass, about 55 a
/// second. Closing a file written to still counts: it is when a long write ends. A
/// download's temp file is the daemon's own; its rename into place is still reported,
/// under the destination's name.
fn is_change(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    if event.need_rescan() {
        return true;
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    !event.paths.iter().all(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.contains(".cairn-tmp-"))
    }) || event.paths.is_empty()
}

/// Watches the sync folder recursively; every event that may be a change is a trigger.
fn watch(dir: &Path, tx: mpsc::Sender<Trigger>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error (the watcher lost track of something) is worth a look.
        if event.as_ref().map_or(true, is_change) {
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
            let trigger = match notification {
                Ok(n) => Trigger::Server(n),
                Err(err) => Trigger::NotificationsEnded {
                    unauthorized: err.is_unauthorized(),
                    why: err.to_string(),
                },
            };
            let last = matches!(trigger, Trigger::NotificationsEnded { .. });
            if tx.send(trigger).await.is_err() || last {
                return;
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode,
    };

    #[test]
    fn only_events_that_may_change_the_folder_trigger_a_pass() {
        let check = |kind: EventKind, paths: &[&str], expect: bool| {
            let mut event = notify::Event::new(kind);
            for p in paths {
                event = event.add_path(PathBuf::from(p));
            }
            assert_eq!(is_change(&event), expect, "{event:?}");
        };
        // The daemon's own scans and hashing: nothing changed.
        check(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            &["/s"],
            false,
        );
        check(EventKind::Access(AccessKind::Read), &["/s/a"], false);
        check(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            &["/s/a"],
            false,
        );
        // Changes, and the end of a write.
        check(EventKind::Create(CreateKind::File), &["/s/a"], true);
        check(EventKind::Modify(ModifyKind::Any), &["/s/a"], true);
        check(EventKind::Remove(RemoveKind::Any), &["/s/a"], true);
        check(
            EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any)),
            &["/s/a"],
            true,
        );
        check(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &["/s/a"],
            true,
        );
        // A download's temp file is the daemon's own; its rename into place is not.
        check(
            EventKind::Create(CreateKind::File),
            &["/s/.a.cairn-tmp-x1"],
            false,
        );
        check(
            EventKind::Modify(ModifyKind::Any),
            &["/s/.a.cairn-tmp-x1"],
            false,
        );
        check(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/s/.a.cairn-tmp-x1", "/s/a"],
            true,
        );
        check(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &["/s/a"],
            true,
        );
        // Something the watcher could not tell.
        check(EventKind::Any, &[], true);
        let rescan = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(is_change(&rescan));
    }
}
