//! The sync daemon: when to run a pass of the [`Engine`] over a real folder, for as long
//! as `cairn sync DIR` runs (DESIGN.md §3).
//!
//! A full pass (server and disk, [`Engine::sync_once`]) runs at start, whenever the
//! server announces a position this device has not read, and after a failure to reach
//! the server (retried with exponential backoff and jitter). A look at the disk
//! ([`Engine::sync_local`]) runs when the watcher reports a change in the folder (after
//! a short debounce) and every [`FULL_SCAN_EVERY`], which catches anything the watcher
//! missed; it goes on to the server only if the disk holds something to carry over. So
//! a daemon with nothing to do makes no request but its notification connection's
//! heartbeat. Cancelling the engine's token stops it: a pass in progress at a safe
//! point, a wait at once.
//!
//! The daemon prints nothing: [`Daemon::next_event`] says what happened, and the
//! caller tells the user and records it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_client::proto::Notification;
use cairn_client::Client;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ignore::{IgnoreError, IGNORE_FILE};
use crate::{Engine, Ignore, Prefetcher, RealEnv, Report, StateDb, SyncError};

/// How long the disk must be quiet (no watcher event) before a pass starts: editors
/// write a file in several steps, which come within microseconds of each other, and
/// one pass should see the result.
pub const QUIET: Duration = Duration::from_millis(4);
/// The longest a pass waits for the disk to be quiet after the first event: a file
/// being written for a long time is looked at meanwhile (its upload notices if it is
/// still changing).
pub const DEBOUNCE: Duration = Duration::from_millis(15);
/// A look at the whole folder at least this often, whatever the watcher says; and a
/// full pass as often when the server's notifications cannot be had.
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(60);
/// The first wait before a retry when the server cannot be reached.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between retries when the server cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The engine over the real disk and server, with its state file.
pub type RealEngine = Engine<RealEnv, StateDb>;

/// Something that cannot be synced as things stand, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSynced {
    pub path: String,
    pub reason: String,
}

/// What happened, as [`Daemon::next_event`] tells it.
#[derive(Debug)]
pub enum Event {
    /// A pass ended. `news` is true when it did something, or when what cannot be
    /// synced differs from what the last pass said: a pass worth telling about.
    Synced {
        report: Report,
        not_synced: Vec<NotSynced>,
        news: bool,
    },
    /// `.cairnignore` does not parse; the built-in rules apply until it does.
    IgnoreRulesInvalid(IgnoreError),
    /// The server cannot be reached; a full pass follows after `retry_in`.
    Unavailable { reason: String, retry_in: Duration },
    /// The server's notifications stopped for good (but not for a refused login):
    /// from now on the periodic pass is a full one.
    NotificationsStopped { why: String },
    /// The token was cancelled: during a pass (`during_pass`, what it did is saved), or
    /// between passes. The daemon is done.
    Stopped { during_pass: bool },
    /// A pass failed in a way retrying does not mend, or the server refused the login
    /// on the notification connection ([`SyncError::Unauthorized`]). The daemon is done.
    Failed(SyncError),
}

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the file-system watcher")]
    Watcher(#[source] notify::Error),
    #[error("cannot watch {}", dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        err: notify::Error,
    },
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

/// What the daemon does next.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Run a pass.
    Pass(Due),
    /// Wait this long, then run a full pass.
    Retry(Duration),
    /// Wait for a reason to look again.
    Wait,
    /// Stopped or failed.
    Done,
}

/// One sync folder's daemon: the engine, the watcher on the folder and the server's
/// notifications.
#[derive(Debug)]
pub struct Daemon {
    engine: RealEngine,
    dir: PathBuf,
    stop: CancellationToken,
    triggers: mpsc::Receiver<Trigger>,
    /// Kept so that the queue never closes while the daemon lives.
    _sender: mpsc::Sender<Trigger>,
    _watcher: notify::RecommendedWatcher,
    next: Next,
    /// Whether the ignore rules were read again for the pass in `next`.
    ignore_read: bool,
    notifications_alive: bool,
    backoff: Duration,
    /// What cannot be synced, as the last pass said.
    shown: Vec<NotSynced>,
}

impl Daemon {
    /// Starts watching `dir` (the engine's folder) and following the server's
    /// notifications through `client`; the first event is that of a full pass.
    /// `stop` should be the token the engine was given ([`Engine::with_cancel`]).
    pub fn start(
        engine: RealEngine,
        client: &Client,
        dir: PathBuf,
        stop: CancellationToken,
    ) -> Result<Daemon, StartError> {
        let (sender, triggers) = mpsc::channel::<Trigger>(64);
        let watcher = watch(&dir, sender.clone())?;
        let prefetch = engine.env().prefetcher().clone();
        tokio::spawn(prefetch.clone().run(stop.clone()));
        spawn_remote_listener(client, sender.clone(), prefetch);
        Ok(Daemon {
            engine,
            dir,
            stop,
            triggers,
            _sender: sender,
            _watcher: watcher,
            next: Next::Pass(Due::Full),
            ignore_read: false,
            notifications_alive: true,
            backoff: FIRST_BACKOFF,
            shown: Vec::new(),
        })
    }

    /// The engine, for its state.
    pub fn engine(&self) -> &RealEngine {
        &self.engine
    }

    /// Waits for the next thing worth telling, running passes as they fall due. After
    /// [`Event::Stopped`] or [`Event::Failed`] it only says `Stopped` again.
    pub async fn next_event(&mut self) -> Event {
        loop {
            match self.next {
                Next::Pass(due) => return self.pass(due).await,
                Next::Retry(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.cancelled() => return self.stopped(false),
                    }
                    self.next = Next::Pass(Due::Full);
                }
                Next::Wait => {
                    if let Some(event) = self.wait().await {
                        return event;
                    }
                }
                Next::Done => return Event::Stopped { during_pass: false },
            }
        }
    }

    /// Runs one pass, the ignore rules read again first (their failure to parse is an
    /// event of its own, after which the pass runs with the built-in rules).
    async fn pass(&mut self, due: Due) -> Event {
        if !self.ignore_read {
            self.ignore_read = true;
            match load_ignore(&self.dir) {
                Ok(ignore) => self.engine.set_ignore(ignore),
                Err(err) => {
                    self.engine.set_ignore(Ignore::default());
                    return Event::IgnoreRulesInvalid(err);
                }
            }
        }
        self.ignore_read = false;
        let result = match due {
            Due::Full => self.engine.sync_once().await,
            Due::Disk => self.engine.sync_local().await,
        };
        match result {
            Ok(report) => {
                self.backoff = FIRST_BACKOFF;
                let problems = not_synced(&report, &self.engine);
                let news = report.rounds > 0 || problems != self.shown;
                self.shown = problems.clone();
                self.next = Next::Wait;
                Event::Synced {
                    report,
                    not_synced: problems,
                    news,
                }
            }
            Err(SyncError::Cancelled) => self.stopped(true),
            Err(SyncError::Unavailable(reason)) => {
                let retry_in = jitter(self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.next = Next::Retry(retry_in);
                Event::Unavailable { reason, retry_in }
            }
            Err(err) => self.failed(err),
        }
    }

    /// Waits for a reason to look again: a change on disk, a position on the server
    /// not read yet, or the periodic look at the whole folder. Sets the pass that is
    /// due; returns what to tell first, if anything.
    async fn wait(&mut self) -> Option<Event> {
        let started = tokio::time::Instant::now();
        loop {
            let wait = FULL_SCAN_EVERY.saturating_sub(started.elapsed());
            let first = tokio::select! {
                trigger = self.triggers.recv() => trigger,
                _ = tokio::time::sleep(wait) => {
                    let due = if self.notifications_alive { Due::Disk } else { Due::Full };
                    self.next = Next::Pass(due);
                    return None;
                }
                _ = self.stop.cancelled() => return Some(self.stopped(false)),
            };
            // The queue cannot close while `_sender` lives; a full pass if it ever did.
            let Some(first) = first else {
                self.next = Next::Pass(Due::Full);
                return None;
            };
            // A server's notification is acted on at once (they arrive coalesced); a
            // change on disk once the disk has been quiet a moment.
            let on_disk = matches!(first, Trigger::Disk);
            let mut pending = vec![first];
            if on_disk {
                let until = tokio::time::Instant::now() + DEBOUNCE;
                loop {
                    let quiet = tokio::time::Instant::now() + QUIET;
                    match tokio::time::timeout_at(quiet.min(until), self.triggers.recv()).await {
                        Ok(Some(more)) => pending.push(more),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            while let Ok(more) = self.triggers.try_recv() {
                pending.push(more);
            }
            let mut needed: Option<Due> = None;
            let mut notifications_stopped = None;
            for trigger in pending {
                let due = match trigger {
                    Trigger::Disk => Some(Due::Disk),
                    // Not for a position already read: the engine's own changes come
                    // back as notifications too.
                    Trigger::Server(n) => {
                        let read = self.engine.state().cursor.as_deref();
                        (!read.is_some_and(|c| n.is_read_by(c))).then_some(Due::Full)
                    }
                    Trigger::NotificationsEnded { unauthorized, why } => {
                        if unauthorized {
                            return Some(self.failed(SyncError::Unauthorized(why)));
                        }
                        self.notifications_alive = false;
                        notifications_stopped = Some(why);
                        Some(Due::Full)
                    }
                };
                needed = needed.max(due);
            }
            if let Some(due) = needed {
                self.next = Next::Pass(due);
                return notifications_stopped.map(|why| Event::NotificationsStopped { why });
            }
        }
    }

    fn stopped(&mut self, during_pass: bool) -> Event {
        self.next = Next::Done;
        Event::Stopped { during_pass }
    }

    fn failed(&mut self, err: SyncError) -> Event {
        self.next = Next::Done;
        Event::Failed(err)
    }
}

/// What cannot be synced as things stand: operations refused for good, and local
/// entries the scan left out (names the server cannot take, special files).
pub fn not_synced(report: &Report, engine: &RealEngine) -> Vec<NotSynced> {
    let mut problems: Vec<NotSynced> = report
        .problems
        .iter()
        .map(|(path, reason)| NotSynced {
            path: path.as_str().to_owned(),
            reason: reason.clone(),
        })
        .collect();
    for (path, reason) in engine.env().skipped() {
        problems.push(NotSynced {
            path: path.display().to_string(),
            reason,
        });
    }
    problems
}

/// The ignore rules of the folder `dir`: the built-in ones, and those of its
/// `.cairnignore` if it has one that can be read.
pub fn load_ignore(dir: &Path) -> Result<Ignore, IgnoreError> {
    match std::fs::read_to_string(dir.join(IGNORE_FILE)) {
        Ok(text) => Ignore::parse(&text),
        Err(_) => Ok(Ignore::default()),
    }
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
fn watch(dir: &Path, tx: mpsc::Sender<Trigger>) -> Result<notify::RecommendedWatcher, StartError> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error (the watcher lost track of something) is worth a look.
        if event.as_ref().map_or(true, is_change) {
            // A full queue already holds triggers enough for one more pass.
            let _ = tx.try_send(Trigger::Disk);
        }
    })
    .map_err(StartError::Watcher)?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .map_err(|err| StartError::Watch {
            dir: dir.to_owned(),
            err,
        })?;
    Ok(watcher)
}

/// Listens to the server's notifications (WebSocket, falling back to SSE and long-poll;
/// the subscription reconnects by itself) and turns each into a trigger, or for uploads
/// in progress a poke of the prefetcher, for as long as the daemon runs; it ends on its
/// own when the trigger queue is gone.
fn spawn_remote_listener(client: &Client, tx: mpsc::Sender<Trigger>, prefetch: Prefetcher) {
    let mut subscription = client.subscribe();
    tokio::spawn(async move {
        while let Some(notification) = subscription.next().await {
            let trigger = match notification {
                // Another device's upload moved on: not a reason for a pass.
                Ok(Notification::Uploads { .. }) => {
                    prefetch.poke();
                    continue;
                }
                Ok(n) => {
                    // A new connection: uploads may be in progress already.
                    if matches!(n, Notification::Head { .. }) {
                        prefetch.poke();
                    }
                    Trigger::Server(n)
                }
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

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let wait = jitter(Duration::from_millis(1000));
            assert!((750..=1250).contains(&wait.as_millis()), "{wait:?}");
        }
    }
}
