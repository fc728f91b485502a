//! The engine: observe both sides, plan, execute, record, until the plan is empty.
//!
//! One [`Engine::sync_once`] call is one reconciliation:
//! 1. look at the disk (a full scan, hashing only files whose stat changed) and read the
//!    server's delta (or list the whole tree the first time, or after a reset);
//! 2. plan; run the plan's operations, up to `parallelism` at a time; apply each
//!    result to the trees; save the changes;
//! 3. repeat from the plan, looking again at whichever side an operation found changed,
//!    until the plan is empty.
//!
//! An operation refused for good (a name the server will not take, no space left) is
//! reported and left out of the following rounds of this call; the engine remembers it,
//! and [`Engine::sync_local`] does not try the very same operation again (the next
//! [`Engine::sync_once`] does).
//!
//! A reconciliation can be stopped ([`Engine::with_cancel`]): it stops at the next safe
//! point (between two reads of the server, between two groups of files hashed, or in
//! the middle of a round's transfers, which are dropped: a download's temp file goes
//! with it), records what the operations that finished did, saves the state and
//! returns [`SyncError::Cancelled`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use cairn_core::ServerPath;
use futures::future::Either;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::env::{DownloadItem, Env, EnvError, RacyFrom, RemoteChange, UploadItem};
use crate::ignore::Ignore;
use crate::planner::{plan_sync, plan_sync_within, Operation, PlanContext, Trees};
use crate::state::{Persist, State, StateChange, Which};
use crate::tree::{Kind, LocalNode, RemoteNode, SyncedNode, Tree};

/// Rounds after which a reconciliation gives up: far more than any real tree needs (one
/// per folder level, plus a few per conflict), so reaching it means a bug, which is
/// reported rather than looped on forever.
const MAX_ROUNDS: usize = 10_000;

/// The most operations a round plans, runs and saves together: enough for every
/// transfer batch in flight to be full, few enough that a round of a 100,000-file first
/// sync does not hold its whole plan, outcomes and unsaved changes at once.
const ROUND_CHUNK: usize = 4_000;

/// Files up to this size are uploaded and downloaded in batches: one request carries
/// many of them, so a tree of small files costs a few round trips rather than two or
/// three per file.
const SMALL_FILE: u64 = 1 << 20;
// A small file must fit one `content_batch` record, or every download of one would
// be refused by the batch and fetched again alone.
const _: () = assert!(SMALL_FILE <= cairn_proto::MAX_CONTENT_BATCH_FILE);
/// The most files in one batch.
const TRANSFER_BATCH: usize = 500;
/// The most bytes of content in one batch (a batch is held in memory whole).
const TRANSFER_BATCH_BYTES: u64 = 16 << 20;

/// The most small files hashed in one run on one thread during a scan, and the most
/// bytes such a run reads. Runs are many more than the cores, so the cores stay busy.
const HASH_RUN: usize = 64;
const HASH_RUN_BYTES: u64 = 4 << 20;
/// Runs hashed before their results are applied and, past a round's worth of changes,
/// saved.
const HASH_GROUP: usize = 64;
/// Files hashed before a reconciliation starts on them when a look at the disk finds
/// more to hash (a first sync, a tree copied in): they are on their way, and the other
/// devices download them, while the rest are read. Then the rest are hashed in one
/// more look at the disk (each look stats the whole tree: slices that doubled took 7
/// looks for 100,000 files, and the first sync of that tree half again as long).
const FIRST_SLICE: usize = 1_000;

/// Splits files to hash into runs: small files together, up to `run_files` files (at
/// most [`HASH_RUN`]) or [`HASH_RUN_BYTES`] bytes, and each larger file alone (so big
/// files still hash in parallel with each other).
/// `picked` indexes `files`; the runs are of indexes too, so a rescan that hashes a
/// whole tree again holds no second copy of its paths.
fn hash_runs(
    files: &[(ServerPath, LocalNode)],
    picked: &[usize],
    run_files: usize,
) -> Vec<Vec<usize>> {
    let run_files = run_files.clamp(1, HASH_RUN);
    let mut runs = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for &i in picked {
        let size = files[i].1.size;
        if size > SMALL_FILE {
            runs.push(vec![i]);
            continue;
        }
        bytes += size;
        run.push(i);
        if run.len() >= run_files || bytes >= HASH_RUN_BYTES {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// The first few of `failures`, path and error, sorted, for an error message.
fn describe_failures(failures: &HashMap<ServerPath, String>) -> String {
    let mut all: Vec<_> = failures.iter().collect();
    all.sort();
    let mut out: Vec<String> = all
        .iter()
        .take(5)
        .map(|(path, err)| format!("{path}: {err}"))
        .collect();
    if all.len() > 5 {
        out.push(format!("and {} more", all.len() - 5));
    }
    if out.is_empty() {
        "nothing".to_owned()
    } else {
        out.join("; ")
    }
}

/// Why a reconciliation stopped before the two sides agreed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("the sync folder is missing; sync stopped so nothing is deleted on the server (re-create it, or start again with an empty state)")]
    RootMissing,
    #[error("the sync folder is empty but {0} items were synced; sync stopped so nothing is deleted on the server (restore the folder, or delete the items on the server yourself)")]
    RootEmptied(usize),
    #[error("cannot reach the server: {0}")]
    Unavailable(String),
    /// The server refused this device's login (revoked, expired, or the account
    /// disabled): retrying will not help; the user must log in again.
    #[error("the server no longer accepts this device's login: {0}")]
    Unauthorized(String),
    /// Stopped at a safe point because [`Engine::with_cancel`]'s token was cancelled;
    /// what was done until then is saved.
    #[error("sync was stopped")]
    Cancelled,
    #[error("could not save the sync state: {0}")]
    Persist(String),
    /// Names the operations that failed in the last round, with their errors.
    #[error("sync did not settle after {MAX_ROUNDS} rounds (still failing: {0}); this is a bug, please report it")]
    NotSettled(String),
}

/// What a reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub uploaded: u64,
    pub downloaded: u64,
    pub deleted_local: u64,
    pub deleted_remote: u64,
    pub moved_local: u64,
    pub moved_remote: u64,
    pub folders_created: u64,
    pub conflicts: u64,
    pub rounds: u64,
    /// Operations refused for good, with the reason, by path.
    pub problems: BTreeMap<ServerPath, String>,
}

impl Report {
    /// Adds what a later reconciliation of the same pass did; its problems are the
    /// ones that stand.
    fn add(&mut self, later: Report) {
        self.uploaded += later.uploaded;
        self.downloaded += later.downloaded;
        self.deleted_local += later.deleted_local;
        self.deleted_remote += later.deleted_remote;
        self.moved_local += later.moved_local;
        self.moved_remote += later.moved_remote;
        self.folders_created += later.folders_created;
        self.conflicts += later.conflicts;
        self.rounds += later.rounds;
        self.problems = later.problems;
    }
}

/// The sync engine for one folder.
pub struct Engine<E, P> {
    env: E,
    persist: P,
    state: State,
    pending: Vec<StateChange>,
    device: String,
    ignore: Ignore,
    parallelism: usize,
    chunk_size: usize,
    /// Files hashed before the first round of a look at the disk that finds many.
    first_slice: usize,
    /// Files whose recorded hash was read while their mtime was too recent to trust
    /// (`Env::racy_from`): an edit in the same timestamp granule, of the same size,
    /// would leave their stat as recorded, so the next scan hashes them again whatever
    /// their stat says. They are saved without their hash, so that after a restart the
    /// first scan hashes them again too.
    racy: Tree<()>,
    /// `Env::racy_from` as read before the current look at the disk or round.
    racy_from: Option<RacyFrom>,
    /// Operations refused for good (see [`EnvError::Refused`]), with why, by path.
    /// [`Engine::sync_local`] does not run an operation identical to the one refused
    /// (nothing it depends on changed, so it would be refused again);
    /// [`Engine::sync_once`] tries them all again.
    refused: BTreeMap<ServerPath, (Operation, String)>,
    /// Stops a reconciliation at its next safe point.
    cancel: CancellationToken,
}

impl<E, P> std::fmt::Debug for Engine<E, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("device", &self.device)
            .field("local", &self.state.local.len())
            .field("remote", &self.state.remote.len())
            .field("synced", &self.state.synced.len())
            .finish()
    }
}

/// How one operation ended.
enum Outcome {
    Done(Vec<StateChange>),
    /// Part of a folder delete happened before something refused.
    Partial(Vec<StateChange>, EnvError),
    Failed(EnvError),
}

impl<E: Env, P: Persist> Engine<E, P> {
    /// An engine starting from `state` (empty for a new sync folder).
    pub fn new(env: E, persist: P, state: State, device: String, ignore: Ignore) -> Self {
        Engine {
            env,
            persist,
            state,
            pending: Vec::new(),
            device,
            ignore,
            parallelism: 8,
            chunk_size: ROUND_CHUNK,
            first_slice: FIRST_SLICE,
            racy: Tree::new(),
            racy_from: None,
            refused: BTreeMap::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Stops reconciling, at the next safe point, once `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// What cannot be synced as things stand (operations refused for good), with why,
    /// by path. Kept until the operation changes, is no longer needed, or a
    /// [`Engine::sync_once`] finds it accepted.
    pub fn refused(&self) -> BTreeMap<ServerPath, String> {
        self.refused
            .iter()
            .map(|(path, (_, why))| (path.clone(), why.clone()))
            .collect()
    }

    /// The most operations a round plans, runs and saves together before the next
    /// round is planned (at least 1).
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self
    }

    /// Files hashed before reconciling starts when a look at the disk finds more to
    /// hash (at least 1); the rest are hashed after that reconciliation.
    pub fn with_first_slice(mut self, first_slice: usize) -> Self {
        self.first_slice = first_slice.max(1);
        self
    }

    /// Operations in flight at once (at least 1).
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Replaces the ignore rules (after `.cairnignore` changed). What the new rules
    /// ignore is forgotten on all three trees at once: were it forgotten only on the
    /// disk side, it would look deleted there, and the delete would be carried over.
    pub fn set_ignore(&mut self, ignore: Ignore) {
        self.ignore = ignore;
        let ignored = |paths: &mut dyn Iterator<Item = &ServerPath>| -> Vec<ServerPath> {
            paths
                .filter(|p| self.ignore.is_ignored(p))
                .cloned()
                .collect()
        };
        let local = ignored(&mut self.state.local.paths());
        let remote = ignored(&mut self.state.remote.paths());
        let synced = ignored(&mut self.state.synced.paths());
        for path in local {
            self.change(StateChange::Local(path, None));
        }
        for path in remote {
            self.change(StateChange::Remote(path, None));
        }
        for path in synced {
            self.change(StateChange::Synced(path, None));
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn env(&self) -> &E {
        &self.env
    }

    /// Takes the engine apart, for a test that restarts it from what was persisted.
    pub fn into_parts(self) -> (E, P, State) {
        (self.env, self.persist, self.state)
    }

    /// The operations the engine would run now, from the trees as last observed.
    pub fn pending_plan(&self) -> Vec<Operation> {
        plan_sync(self.trees(), &self.plan_context())
    }

    fn trees(&self) -> Trees<'_> {
        Trees {
            local: &self.state.local,
            remote: &self.state.remote,
            synced: &self.state.synced,
        }
    }

    fn plan_context(&self) -> PlanContext {
        PlanContext {
            device: self.device.clone(),
            stamp: self.env.stamp(),
        }
    }

    fn change(&mut self, change: StateChange) {
        let racy = self.track_racy(&change);
        self.state.apply(&change);
        self.pending.push(match change {
            StateChange::Local(path, Some(node)) if racy => {
                StateChange::Local(path, Some(LocalNode { hash: None, ..node }))
            }
            other => other,
        });
    }

    /// Keeps `racy` in step with the local tree; true if `change` records a racy hash.
    fn track_racy(&mut self, change: &StateChange) -> bool {
        match change {
            StateChange::Local(path, Some(node))
                if node.hash.is_some()
                    && self
                        .racy_from
                        .is_some_and(|from| from.covers(node.mtime_ns)) =>
            {
                self.racy.insert(path.clone(), ());
                return true;
            }
            StateChange::Local(path, _) => {
                self.racy.remove(path);
            }
            StateChange::MoveSubtree(Which::Local, from, to) => self.racy.move_subtree(from, to),
            StateChange::RemoveSubtree(Which::Local, path) => {
                self.racy.remove_subtree(path);
            }
            _ => {}
        }
        false
    }

    async fn save(&mut self) -> Result<(), SyncError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.persist
            .save(&self.pending)
            .await
            .map_err(|err| SyncError::Persist(err.to_string()))?;
        // A fresh vector rather than `clear`: after a first listing of a large tree
        // the old one had room for 100,000 changes (15 MB), kept for the whole run.
        self.pending = Vec::new();
        Ok(())
    }

    /// One full reconciliation: returns once both sides agree (apart from what was
    /// refused, listed in the report). Reads the server and the disk, and tries again
    /// operations refused before.
    pub async fn sync_once(&mut self) -> Result<Report, SyncError> {
        self.refused.clear();
        let result = self.sync_once_inner().await;
        self.finish(result).await
    }

    async fn sync_once_inner(&mut self) -> Result<Report, SyncError> {
        // The server first: the emptied-folder guard in `refresh_local` asks whether
        // what vanished from the disk is still on the server, and after a crash the
        // saved remote tree can predate the very remote delete the engine carried out
        // locally before crashing.
        self.refresh_remote().await?;
        let more = self.refresh_local_upto(Some(self.first_slice)).await?;
        self.reconcile_slices(more).await
    }

    /// Reconciles; if the last look at the disk left files unhashed (`more`), hashes
    /// the rest and reconciles again.
    async fn reconcile_slices(&mut self, more: bool) -> Result<Report, SyncError> {
        let mut report = self.reconcile().await?;
        if more {
            self.refresh_local().await?;
            report.add(self.reconcile().await?);
        }
        Ok(report)
    }

    /// A reconciliation for a change on disk: looks at the disk, and goes on to the
    /// server only if that found something to do. When the disk holds what was last
    /// seen (the watcher reported the engine's own reads and writes, or a file saved
    /// unchanged), it makes no request at all and returns an empty report; the server's
    /// changes are the notifications' business. An operation refused before is not
    /// tried again unless it changed.
    pub async fn sync_local(&mut self) -> Result<Report, SyncError> {
        let result = self.sync_local_inner().await;
        self.finish(result).await
    }

    async fn sync_local_inner(&mut self) -> Result<Report, SyncError> {
        let more = match self.refresh_local_upto(Some(self.first_slice)).await {
            // The folder looks emptied as measured against the remote tree last read;
            // a delete made on the server since may explain it, so read the server and
            // judge again, as a full reconciliation would.
            Err(SyncError::RootEmptied(_)) => {
                self.refresh_remote().await?;
                self.refresh_local_upto(Some(self.first_slice)).await?
            }
            other => other?,
        };
        if !more && self.settled_but_refused() {
            self.save().await?;
            return Ok(Report {
                problems: self.refused(),
                ..Report::default()
            });
        }
        self.refresh_remote().await?;
        self.reconcile_slices(more).await
    }

    /// Whether the plan holds nothing but operations refused before, exactly as they
    /// were; forgets the refusals of operations no longer planned.
    fn settled_but_refused(&mut self) -> bool {
        let still: RefCell<HashSet<ServerPath>> = RefCell::default();
        let ops = plan_sync_within(self.trees(), &self.plan_context(), 1, &|op| {
            let same = self.refused_before(op);
            if same {
                still.borrow_mut().insert(op.path().clone());
            }
            same
        });
        if !ops.is_empty() {
            return false;
        }
        let still = still.into_inner();
        self.refused.retain(|path, _| still.contains(path));
        true
    }

    /// Whether `op` is exactly an operation refused before.
    fn refused_before(&self, op: &Operation) -> bool {
        self.refused
            .get(op.path())
            .is_some_and(|(refused, _)| refused == op)
    }

    /// Saves what a stopped reconciliation did before it returns.
    async fn finish(&mut self, result: Result<Report, SyncError>) -> Result<Report, SyncError> {
        if matches!(result, Err(SyncError::Cancelled)) {
            self.save().await?;
        }
        result
    }

    /// Plans and runs rounds until the plan is empty, from trees just refreshed.
    async fn reconcile(&mut self) -> Result<Report, SyncError> {
        let mut report = Report::default();
        // Paths refused in this reconciliation: left out of its following rounds
        // whatever their operation, so a refusal can never make it loop.
        let mut refused_now: HashSet<ServerPath> = HashSet::new();
        // Paths whose operation failed last round. They sit out one round, so that a
        // plan cut short at the round's limit cannot fill up with the same failing
        // operations round after round while the work that would unblock them waits.
        let mut retry_later: HashMap<ServerPath, String> = HashMap::new();
        // The last round's failures, named if the reconciliation never settles.
        let mut last_failures = String::new();
        for _ in 0..MAX_ROUNDS {
            stopped(&self.cancel)?;
            // One chunk's worth at a time: a plan for a whole first sync of a large
            // tree held an operation per file (22 MB for 100,000 files).
            let still_refused: RefCell<HashSet<ServerPath>> = RefCell::default();
            let ops =
                plan_sync_within(self.trees(), &self.plan_context(), self.chunk_size, &|op| {
                    if refused_now.contains(op.path()) || retry_later.contains_key(op.path()) {
                        return true;
                    }
                    let same = self.refused_before(op);
                    if same {
                        still_refused.borrow_mut().insert(op.path().clone());
                    }
                    same
                });
            if ops.is_empty() && !retry_later.is_empty() {
                last_failures = describe_failures(&retry_later);
                retry_later.clear();
                continue;
            }
            if ops.is_empty() {
                // What was refused and is still wanted stays known; the rest is
                // forgotten (a file reverted, a folder the user deleted).
                let still = still_refused.into_inner();
                self.refused
                    .retain(|path, _| refused_now.contains(path) || still.contains(path));
                report.problems = self.refused();
                self.save().await?;
                return Ok(report);
            }
            retry_later.clear();
            report.rounds += 1;
            // Each round's operations are applied and saved before the next round is
            // planned, so what a round holds in memory (outcomes, unsaved changes)
            // stays bounded however large a first sync is.
            let mut local_changed = false;
            // Downloads record the stat of what they wrote.
            self.racy_from = self.env.racy_from();
            let outcomes = self.execute(&ops).await;
            let stop = self.apply(
                &ops,
                outcomes,
                &mut report,
                &mut refused_now,
                &mut retry_later,
                &mut local_changed,
            );
            self.save().await?;
            if let Some(err) = stop {
                return Err(err);
            }
            stopped(&self.cancel)?;
            if local_changed {
                self.refresh_local().await?;
            }
            // Always: one cheap request when nothing changed, and it picks up what other
            // devices did while this round ran (and what refused an operation).
            self.refresh_remote().await?;
        }
        if !retry_later.is_empty() {
            last_failures = describe_failures(&retry_later);
        }
        Err(SyncError::NotSettled(last_failures))
    }

    /// Applies what `ops` did (`outcomes`, in the same order; `None` for one not run
    /// because the reconciliation was stopped) to the trees and the report, and adds
    /// the paths of those that failed to `refused` (refused for this reconciliation,
    /// and remembered in `self.refused`) or `failed` (to try again later). Returns why
    /// the reconciliation cannot go on (the server cannot be reached, or refuses the
    /// login), if an operation found that.
    fn apply(
        &mut self,
        ops: &[Operation],
        outcomes: Vec<Option<Outcome>>,
        report: &mut Report,
        refused: &mut HashSet<ServerPath>,
        failed: &mut HashMap<ServerPath, String>,
        local_changed: &mut bool,
    ) -> Option<SyncError> {
        let mut stop = None;
        for (op, outcome) in ops.iter().zip(outcomes) {
            let err = match outcome {
                None => continue,
                Some(Outcome::Done(changes)) => {
                    count(report, op);
                    changes.into_iter().for_each(|c| self.change(c));
                    continue;
                }
                Some(Outcome::Partial(changes, err)) => {
                    changes.into_iter().for_each(|c| self.change(c));
                    err
                }
                Some(Outcome::Failed(err)) => err,
            };
            tracing::debug!(?op, %err, "operation did not happen");
            match err {
                EnvError::LocalChanged(msg) => {
                    *local_changed = true;
                    failed.insert(op.path().clone(), msg);
                }
                EnvError::RemoteChanged(msg) => {
                    failed.insert(op.path().clone(), msg);
                }
                EnvError::CursorReset => {
                    failed.insert(op.path().clone(), "the server's cursor was reset".into());
                }
                EnvError::Unavailable(msg) => {
                    stop.get_or_insert(SyncError::Unavailable(msg));
                }
                // Worse than unavailable: the whole reconciliation is over.
                EnvError::Unauthorized(msg) => stop = Some(SyncError::Unauthorized(msg)),
                EnvError::Refused(msg) => {
                    refused.insert(op.path().clone());
                    self.refused.insert(op.path().clone(), (op.clone(), msg));
                }
            }
        }
        stop
    }

    /// Scans the disk and updates the local tree, hashing files that are new or whose
    /// stat changed.
    pub async fn refresh_local(&mut self) -> Result<(), SyncError> {
        self.refresh_local_upto(None).await.map(|_| ())
    }

    /// [`Engine::refresh_local`], hashing at most about `limit` files (whole groups of
    /// runs): the rest stay in the local tree unhashed, which the planner leaves alone
    /// until a later look hashes them. Returns whether it stopped at the limit.
    async fn refresh_local_upto(&mut self, limit: Option<usize>) -> Result<bool, SyncError> {
        self.racy_from = self.env.racy_from();
        let scanned = until_stopped(&self.cancel, self.env.scan_local())
            .await?
            .map_err(server_error)?;
        let Some(scanned) = scanned else {
            return Err(SyncError::RootMissing);
        };
        let mut scanned: Vec<(ServerPath, LocalNode)> = scanned
            .into_iter()
            .filter(|(path, _)| !self.ignore.is_ignored(path))
            .collect();
        if scanned.is_empty() && self.emptied_under_us() {
            return Err(SyncError::RootEmptied(self.state.synced.len()));
        }

        // Indexes into `scanned` rather than copies: after a first sync's downloads every
        // file is racy and hashed again, and a copy of each path and node for that (and
        // another for the set of paths seen) raised the daemon's peak.
        let mut to_hash: Vec<usize> = Vec::new();
        for (i, (path, node)) in scanned.iter_mut().enumerate() {
            if node.kind == Kind::File {
                match self.state.local.get(path) {
                    Some(old) if old.same_stat(node) && old.hash.is_some() => {
                        node.hash = old.hash;
                        if self.racy.get(path).is_some() {
                            // Its stat cannot vouch for its hash: hashed again below,
                            // and kept as it is unless that finds otherwise.
                            to_hash.push(i);
                        }
                    }
                    _ => {
                        node.hash = None;
                        to_hash.push(i);
                    }
                }
            }
            if self.state.local.get(path) != Some(&*node) {
                self.change(StateChange::Local(path.clone(), Some(node.clone())));
            }
        }
        let gone: Vec<ServerPath> = {
            let seen: HashSet<&ServerPath> = scanned.iter().map(|(path, _)| path).collect();
            self.state
                .local
                .paths()
                .filter(|p| !seen.contains(*p))
                .cloned()
                .collect()
        };
        for path in gone {
            self.change(StateChange::Local(path, None));
        }

        // A group of runs at a time, saved as it goes, so that hashing a whole tree
        // again (after a first sync's downloads, all racy) never holds every result and
        // change at once.
        // Within a limit, runs no longer than it, so that it can cut between them.
        let run_files = limit.unwrap_or(HASH_RUN);
        let mut runs = hash_runs(&scanned, &to_hash, run_files)
            .into_iter()
            .peekable();
        drop(to_hash);
        let mut hashed_files = 0usize;
        while runs.peek().is_some() {
            if limit.is_some_and(|limit| hashed_files >= limit) {
                self.save().await?;
                return Ok(true);
            }
            // Within a limit, no more runs than it leaves room for.
            let room = limit.map_or(HASH_GROUP, |limit| {
                (limit.saturating_sub(hashed_files) / run_files.min(HASH_RUN)).clamp(1, HASH_GROUP)
            });
            let group: Vec<Vec<(ServerPath, LocalNode)>> = runs
                .by_ref()
                .take(room)
                .map(|run| run.into_iter().map(|i| scanned[i].clone()).collect())
                .collect();
            let env = &self.env;
            let hashing = futures::stream::iter(group)
                .map(|run| async move {
                    let hashes = env.hash_local_many(run.clone()).await;
                    run.into_iter()
                        .zip(hashes)
                        .map(|((path, node), hash)| (path, node, hash))
                        .collect::<Vec<_>>()
                })
                .buffered(self.parallelism)
                .collect::<Vec<_>>();
            // Stopped: what this look found so far is kept (files not hashed yet are
            // recorded without a hash, so the next look hashes them).
            let hashed = until_stopped(&self.cancel, hashing).await?;
            hashed_files += hashed.iter().map(Vec::len).sum::<usize>();
            for (path, mut node, hash) in hashed.into_iter().flatten() {
                match hash {
                    Ok(Some(hash)) => {
                        node.hash = Some(hash);
                        let still_racy = self
                            .racy_from
                            .is_some_and(|from| from.covers(node.mtime_ns));
                        // A racy file found as recorded and still racy: nothing to note.
                        if self.state.local.get(&path) != Some(&node)
                            || (self.racy.get(&path).is_some() && !still_racy)
                        {
                            self.change(StateChange::Local(path, Some(node)));
                        }
                    }
                    // Changed while being read: a new file stays unhashed, and the
                    // planner leaves it alone until a later scan sees it settle; a racy
                    // one keeps its record, which the next scan finds stale by its stat.
                    Ok(None) => {}
                    Err(EnvError::Unavailable(msg)) => return Err(SyncError::Unavailable(msg)),
                    Err(err) => tracing::debug!(%path, %err, "could not hash"),
                }
            }
            if self.pending.len() >= self.chunk_size {
                self.save().await?;
            }
        }
        Ok(false)
    }

    /// Whether an empty folder means it was emptied (or unmounted) since the last look:
    /// something the last scan saw is synced and still on the server, so syncing on
    /// would delete it there. An item the engine deleted itself is not counted: it left
    /// the local tree when it went, or (after a crash) it is gone from the server too.
    /// Counting it stopped sync for good when the engine's own delete of a remote
    /// delete emptied the folder.
    fn emptied_under_us(&self) -> bool {
        self.state.local.paths().any(|p| {
            // The same entry, not merely something at that path: what stands there
            // now may be another item that took the place of one the engine deleted.
            self.state.synced.get(p).is_some_and(|s| {
                self.state
                    .remote
                    .get(p)
                    .is_some_and(|r| r.id == s.remote_id)
            })
        })
    }

    /// Reads the server's changes since the cursor (or lists everything) into the
    /// remote tree.
    pub async fn refresh_remote(&mut self) -> Result<(), SyncError> {
        loop {
            let Some(cursor) = self.state.cursor.clone() else {
                let (nodes, cursor) = until_stopped(&self.cancel, self.env.list_remote())
                    .await?
                    .map_err(server_error)?;
                self.change(StateChange::ClearRemote);
                for (path, node) in nodes {
                    if !self.ignore.is_ignored(&path) {
                        self.change(StateChange::Remote(path, Some(node)));
                    }
                }
                self.change(StateChange::Cursor(Some(cursor)));
                return Ok(());
            };
            let delta = match until_stopped(&self.cancel, self.env.remote_delta(&cursor)).await? {
                Ok(delta) => delta,
                Err(EnvError::CursorReset) => {
                    self.change(StateChange::Cursor(None));
                    continue;
                }
                Err(err) => return Err(server_error(err)),
            };
            let mut relist = false;
            for change in delta.changes {
                relist |= self.apply_remote_change(change);
            }
            if relist {
                self.change(StateChange::Cursor(None));
                continue;
            }
            self.change(StateChange::Cursor(Some(delta.cursor)));
            if !delta.has_more {
                return Ok(());
            }
        }
    }

    /// Applies one change of the delta; `true` when the tree must be listed again
    /// instead.
    fn apply_remote_change(&mut self, change: RemoteChange) -> bool {
        match change {
            RemoteChange::Upsert { path, node } => {
                if !self.ignore.is_ignored(&path) {
                    self.change(StateChange::Remote(path, Some(node)));
                }
            }
            RemoteChange::Move { from, to, id } => {
                if self.state.remote.get(&from).is_some_and(|n| n.id == id) {
                    self.change(StateChange::MoveSubtree(Which::Remote, from, to.clone()));
                    if self.ignore.is_ignored(&to) {
                        self.change(StateChange::RemoveSubtree(Which::Remote, to));
                    }
                } else if self.ignore.is_ignored(&from) && !self.ignore.is_ignored(&to) {
                    // An ignored item renamed into view (`x.swp` to `notes.txt`): the
                    // tree never held it, and the delta does not say what it holds.
                    return true;
                }
            }
            RemoteChange::Delete { path, id } => {
                if self.state.remote.get(&path).is_some_and(|n| n.id == id) {
                    self.change(StateChange::RemoveSubtree(Which::Remote, path));
                }
            }
        }
        false
    }

    /// Runs the operations, up to `parallelism` at a time, returning their outcomes in
    /// the operations' order (so that applying them is deterministic). If the
    /// reconciliation is stopped meanwhile, the operations still running are dropped
    /// (a download takes its temp file with it) and their outcome is `None`.
    async fn execute(&self, ops: &[Operation]) -> Vec<Option<Outcome>> {
        let state = &self.state;
        let env = &self.env;
        let racy = &self.racy;
        // Small transfers travel together (`Env::upload_many`, `Env::download_many`);
        // everything else alone.
        let mut jobs: Vec<Job> = Vec::new();
        let mut uploads = Batcher::default();
        let mut downloads = Batcher::default();
        for (i, op) in ops.iter().enumerate() {
            let job = match op {
                Operation::Upload { path, .. } => match state.local.get(path) {
                    Some(local) if local.size <= SMALL_FILE => {
                        uploads.add(i, local.size).map(Job::Uploads)
                    }
                    _ => Some(Job::One(i)),
                },
                Operation::Download { remote, .. } if remote.size <= SMALL_FILE => {
                    downloads.add(i, remote.size).map(Job::Downloads)
                }
                _ => Some(Job::One(i)),
            };
            jobs.extend(job);
        }
        if let Some(rest) = uploads.finish() {
            jobs.push(Job::Uploads(rest));
        }
        if let Some(rest) = downloads.finish() {
            jobs.push(Job::Downloads(rest));
        }
        let mut running = futures::stream::iter(jobs)
            .map(|job| async move {
                match job {
                    Job::One(i) => vec![(i, run(env, state, racy, &ops[i]).await)],
                    Job::Uploads(batch) => upload_batch(env, state, ops, &batch).await,
                    Job::Downloads(batch) => download_batch(env, racy, ops, &batch).await,
                }
            })
            .buffer_unordered(self.parallelism);
        let mut outcomes: Vec<Option<Outcome>> = ops.iter().map(|_| None).collect();
        while let Ok(Some(done)) = until_stopped(&self.cancel, running.next()).await {
            for (i, outcome) in done {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
    }
}

/// Gathers small transfers into batches of at most [`TRANSFER_BATCH`] files and
/// [`TRANSFER_BATCH_BYTES`] bytes, which bounds the memory a batch in flight holds.
#[derive(Default)]
struct Batcher {
    items: Vec<usize>,
    bytes: u64,
}

impl Batcher {
    /// Adds operation `i` of `size` bytes; returns the batch once it is full.
    fn add(&mut self, i: usize, size: u64) -> Option<Vec<usize>> {
        self.items.push(i);
        self.bytes += size;
        (self.items.len() >= TRANSFER_BATCH || self.bytes >= TRANSFER_BATCH_BYTES).then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.items)
        })
    }

    fn finish(self) -> Option<Vec<usize>> {
        (!self.items.is_empty()).then_some(self.items)
    }
}

/// A unit of work of [`Engine::execute`]: indices into the round's operations.
enum Job {
    One(usize),
    Uploads(Vec<usize>),
    Downloads(Vec<usize>),
}

/// What a failed read of the server (or a failed scan) means for the reconciliation.
fn server_error(err: EnvError) -> SyncError {
    match err {
        EnvError::Unauthorized(msg) => SyncError::Unauthorized(msg),
        other => SyncError::Unavailable(other.to_string()),
    }
}

/// `Err(Cancelled)` once `cancel` is cancelled: a safe point.
fn stopped(cancel: &CancellationToken) -> Result<(), SyncError> {
    if cancel.is_cancelled() {
        Err(SyncError::Cancelled)
    } else {
        Ok(())
    }
}

/// Runs `work` unless `cancel` is cancelled first, in which case `work` is dropped
/// where it stands. Only for work that leaves nothing half done when dropped: reads,
/// and transfers whose temp files go with them.
async fn until_stopped<T>(
    cancel: &CancellationToken,
    work: impl Future<Output = T>,
) -> Result<T, SyncError> {
    stopped(cancel)?;
    let work = std::pin::pin!(work);
    let cancelled = std::pin::pin!(cancel.cancelled());
    match futures::future::select(work, cancelled).await {
        Either::Left((out, _)) => Ok(out),
        Either::Right(_) => Err(SyncError::Cancelled),
    }
}

fn count(report: &mut Report, op: &Operation) {
    match op {
        Operation::Record { .. } | Operation::RecordMove { .. } => {}
        Operation::MoveRemote { .. } => report.moved_remote += 1,
        Operation::MoveLocal { .. } => report.moved_local += 1,
        Operation::MkdirRemote { .. } | Operation::MkdirLocal { .. } => report.folders_created += 1,
        Operation::Upload { .. } => report.uploaded += 1,
        Operation::Download { .. } => report.downloaded += 1,
        Operation::DeleteRemote { .. } => report.deleted_remote += 1,
        Operation::DeleteLocal { .. } => report.deleted_local += 1,
        Operation::ConflictLocal { .. } => report.conflicts += 1,
    }
}

/// Runs the small uploads `batch` (indices into `ops`) as one `Env::upload_many`.
async fn upload_batch<E: Env>(
    env: &E,
    state: &State,
    ops: &[Operation],
    batch: &[usize],
) -> Vec<(usize, Outcome)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    let mut sent = Vec::with_capacity(batch.len());
    for &i in batch {
        let Operation::Upload { path, base_rev } = &ops[i] else {
            unreachable!("only uploads are batched");
        };
        match state.local.get(path) {
            Some(local) => {
                items.push(UploadItem {
                    path: path.clone(),
                    local: local.clone(),
                    base_rev: base_rev.clone(),
                });
                sent.push(i);
            }
            None => out.push((
                i,
                Outcome::Failed(EnvError::LocalChanged(format!("{path} is gone"))),
            )),
        }
    }
    let results = env.upload_many(&items).await;
    for ((i, item), result) in sent.into_iter().zip(&items).zip(results) {
        let outcome = match result {
            Ok(remote) => Outcome::Done(vec![StateChange::Synced(
                item.path.clone(),
                Some(SyncedNode::of(&item.local, &remote)),
            )]),
            Err(err) => Outcome::Failed(err),
        };
        out.push((i, outcome));
    }
    out
}

/// Runs the small downloads `batch` (indices into `ops`) as one `Env::download_many`.
async fn download_batch<E: Env>(
    env: &E,
    racy: &Tree<()>,
    ops: &[Operation],
    batch: &[usize],
) -> Vec<(usize, Outcome)> {
    let items: Vec<DownloadItem> = batch
        .iter()
        .map(|&i| {
            let Operation::Download {
                path,
                remote,
                expect_local,
            } = &ops[i]
            else {
                unreachable!("only downloads are batched here");
            };
            DownloadItem {
                path: path.clone(),
                remote: remote.clone(),
                expect_local: expect_local.clone(),
                check_content: racy.get(path).is_some(),
            }
        })
        .collect();
    let results = env.download_many(&items).await;
    batch
        .iter()
        .zip(items)
        .zip(results)
        .map(|((&i, item), result)| {
            let outcome = match result {
                Ok(local) => Outcome::Done(downloaded(&item.path, local, &item.remote)),
                Err(err) => Outcome::Failed(err),
            };
            (i, outcome)
        })
        .collect()
}

/// How the state changes once `path` was downloaded as `local`.
fn downloaded(path: &ServerPath, local: LocalNode, remote: &RemoteNode) -> Vec<StateChange> {
    let synced = SyncedNode::of(&local, remote);
    vec![
        StateChange::Local(path.clone(), Some(local)),
        StateChange::Synced(path.clone(), Some(synced)),
    ]
}

/// Runs one operation against the environment and says how the state changes.
///
/// What an operation did on the server reaches the remote tree only through the delta,
/// which every round reads before the next plan. Applied here as well, it would put the
/// tree ahead of its cursor, and the delta's older changes would then land on the new
/// layout: a file another device made in a folder this device has just moved would be
/// put back under the old path, and the one at the new path never seen.
///
/// A file about to be removed or replaced whose recorded hash is racy (in `racy`) has
/// its content checked too, not only its stat.
async fn run<E: Env>(env: &E, state: &State, racy: &Tree<()>, op: &Operation) -> Outcome {
    use StateChange as C;
    let result = match op {
        Operation::Record { path, node } => Ok(vec![C::Synced(path.clone(), node.clone())]),
        Operation::RecordMove { from, to } => Ok(vec![C::MoveSubtree(
            Which::Synced,
            from.clone(),
            to.clone(),
        )]),
        Operation::MoveRemote { from, to, base_rev } => env
            .move_remote(from, to, base_rev.as_deref())
            .await
            .map(|_| vec![C::MoveSubtree(Which::Synced, from.clone(), to.clone())]),
        Operation::MoveLocal {
            from,
            to,
            synced_from,
        } => env.move_local(from, to).await.map(|()| {
            let mut changes = vec![C::MoveSubtree(Which::Local, from.clone(), to.clone())];
            if let Some(s) = synced_from {
                changes.push(C::MoveSubtree(Which::Synced, s.clone(), to.clone()));
            }
            changes
        }),
        Operation::MkdirRemote { path } => env.mkdir_remote(path).await.map(|remote| {
            let mut changes = Vec::new();
            if let Some(local) = state.local.get(path).filter(|l| l.kind == Kind::Folder) {
                changes.push(C::Synced(
                    path.clone(),
                    Some(SyncedNode::of(local, &remote)),
                ));
            }
            changes
        }),
        Operation::MkdirLocal { path } => env.mkdir_local(path).await.map(|local| {
            let mut changes = Vec::new();
            if let Some(remote) = state.remote.get(path).filter(|r| r.kind == Kind::Folder) {
                changes.push(C::Synced(
                    path.clone(),
                    Some(SyncedNode::of(&local, remote)),
                ));
            }
            changes.insert(0, C::Local(path.clone(), Some(local)));
            changes
        }),
        Operation::Upload { path, base_rev } => {
            let Some(local) = state.local.get(path) else {
                return Outcome::Failed(EnvError::LocalChanged(format!("{path} is gone")));
            };
            env.upload(path, local, base_rev.as_deref())
                .await
                .map(|remote| {
                    vec![C::Synced(
                        path.clone(),
                        Some(SyncedNode::of(local, &remote)),
                    )]
                })
        }
        Operation::Download {
            path,
            remote,
            expect_local,
        } => env
            .download(
                path,
                remote,
                expect_local.as_ref(),
                racy.get(path).is_some(),
            )
            .await
            .map(|local| downloaded(path, local, remote)),
        Operation::DeleteRemote {
            path,
            kind: _,
            base_rev,
        } => env
            .delete_remote(path, base_rev.as_deref())
            .await
            .map(|()| vec![C::RemoveSubtree(Which::Synced, path.clone())]),
        Operation::DeleteLocal { path: _, expect } => {
            // Deepest first, so each folder is empty when its turn comes.
            let mut changes = Vec::new();
            for (p, node) in expect.iter().rev() {
                if let Err(err) = env.remove_local(p, node, racy.get(p).is_some()).await {
                    if node.kind == Kind::Folder && matches!(err, EnvError::LocalChanged(_)) {
                        // What it held that the engine knows of is gone, so the folder
                        // holds something new or something never synced (ignored
                        // files). Either way it stays: forgetting that it was synced
                        // makes it a local folder like any other, kept on the server
                        // (or moved aside, if a file took its place there). Otherwise
                        // the same delete would be planned, and refused, forever.
                        changes.push(C::Synced(p.clone(), None));
                    }
                    return Outcome::Partial(changes, err);
                }
                changes.push(C::Local(p.clone(), None));
                changes.push(C::Synced(p.clone(), None));
            }
            Ok(changes)
        }
        Operation::ConflictLocal { path, to } => env.move_local(path, to).await.map(|()| {
            vec![
                C::MoveSubtree(Which::Local, path.clone(), to.clone()),
                // The copy is a new item, and the server's comes down in its place.
                // Were Synced left holding the local inode at `path`, the rename would
                // look like a local move to carry to the server.
                C::RemoveSubtree(Which::Synced, path.clone()),
            ]
        }),
    };
    match result {
        Ok(changes) => Outcome::Done(changes),
        Err(err) => Outcome::Failed(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use cairn_core::{content_hash, BlockHash, ContentHash};

    use crate::env::RemoteDelta;
    use crate::state::Persist;

    fn path(p: &str) -> ServerPath {
        ServerPath::parse(p).unwrap()
    }

    fn hash_of(text: &str) -> ContentHash {
        content_hash([&BlockHash::of(text.as_bytes())])
    }

    /// Files larger than a batch's, so each transfer is a job of its own.
    const BIG: u64 = SMALL_FILE + 1;

    /// A disk and a server in memory that count the requests made to the server. A
    /// download of `/hang` stops the reconciliation (cancels `cancel`) and never ends;
    /// an upload of `/refused` is refused.
    #[derive(Default, Clone)]
    struct StubEnv {
        disk: Arc<Mutex<BTreeMap<ServerPath, (u64, ContentHash)>>>,
        server: Arc<Mutex<BTreeMap<ServerPath, ContentHash>>>,
        /// Uploads, as the delta reports them; a cursor is `v1.1-N` after N of them.
        journal: Arc<Mutex<Vec<RemoteChange>>>,
        requests: Arc<AtomicUsize>,
        uploads: Arc<AtomicUsize>,
        cancel: CancellationToken,
    }

    impl StubEnv {
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn local_node(id: u64, hash: Option<ContentHash>) -> LocalNode {
            LocalNode {
                kind: Kind::File,
                id,
                size: BIG,
                mtime_ns: id as i64,
                hash,
            }
        }

        fn remote_node(id: i64, hash: ContentHash) -> RemoteNode {
            RemoteNode {
                kind: Kind::File,
                id,
                rev: Some(format!("r{id}")),
                hash: Some(hash),
                size: BIG,
            }
        }

        fn write(&self, p: &str, text: &str) {
            let mut disk = self.disk.lock().unwrap();
            let id = disk.len() as u64 + 100;
            disk.insert(path(p), (id, hash_of(text)));
        }
    }

    #[async_trait]
    impl Env for StubEnv {
        async fn scan_local(&self) -> Result<Option<Vec<(ServerPath, LocalNode)>>, EnvError> {
            let disk = self.disk.lock().unwrap();
            Ok(Some(
                disk.iter()
                    .map(|(p, (id, _))| (p.clone(), Self::local_node(*id, None)))
                    .collect(),
            ))
        }

        async fn hash_local(
            &self,
            path: &ServerPath,
            _node: &LocalNode,
        ) -> Result<Option<ContentHash>, EnvError> {
            Ok(self.disk.lock().unwrap().get(path).map(|(_, hash)| *hash))
        }

        async fn mkdir_local(&self, _path: &ServerPath) -> Result<LocalNode, EnvError> {
            unreachable!("no folders here")
        }

        async fn move_local(&self, _from: &ServerPath, _to: &ServerPath) -> Result<(), EnvError> {
            unreachable!("no moves here")
        }

        async fn remove_local(
            &self,
            _path: &ServerPath,
            _expect: &LocalNode,
            _check_content: bool,
        ) -> Result<(), EnvError> {
            unreachable!("no deletes here")
        }

        async fn list_remote(&self) -> Result<(Vec<(ServerPath, RemoteNode)>, String), EnvError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let server = self.server.lock().unwrap();
            let nodes = server
                .iter()
                .enumerate()
                .map(|(i, (p, hash))| (p.clone(), Self::remote_node(i as i64 + 1, *hash)))
                .collect();
            let seen = self.journal.lock().unwrap().len();
            Ok((nodes, format!("v1.1-{seen}")))
        }

        async fn remote_delta(&self, cursor: &str) -> Result<RemoteDelta, EnvError> {
            // The engine's own uploads reach its remote tree through the delta, as in
            // the real world; nobody else writes to this server.
            self.requests.fetch_add(1, Ordering::SeqCst);
            let from: usize = cursor.trim_start_matches("v1.1-").parse().unwrap();
            let journal = self.journal.lock().unwrap();
            Ok(RemoteDelta {
                changes: journal[from..].to_vec(),
                cursor: format!("v1.1-{}", journal.len()),
                has_more: false,
            })
        }

        async fn upload(
            &self,
            path: &ServerPath,
            local: &LocalNode,
            _base_rev: Option<&str>,
        ) -> Result<RemoteNode, EnvError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.uploads.fetch_add(1, Ordering::SeqCst);
            if path.as_str() == "/refused" {
                return Err(EnvError::Refused("you are a viewer here".to_owned()));
            }
            let hash = local.hash.expect("uploads are hashed");
            self.server.lock().unwrap().insert(path.clone(), hash);
            let mut journal = self.journal.lock().unwrap();
            let node = Self::remote_node(50 + journal.len() as i64, hash);
            journal.push(RemoteChange::Upsert {
                path: path.clone(),
                node: node.clone(),
            });
            Ok(node)
        }

        async fn download(
            &self,
            path: &ServerPath,
            remote: &RemoteNode,
            _expect_local: Option<&LocalNode>,
            _check_content: bool,
        ) -> Result<LocalNode, EnvError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            if path.as_str() == "/hang" {
                self.cancel.cancel();
                futures::future::pending::<()>().await;
            }
            let hash = remote.hash.expect("files have a hash");
            let mut disk = self.disk.lock().unwrap();
            let id = disk.len() as u64 + 100;
            disk.insert(path.clone(), (id, hash));
            Ok(Self::local_node(id, Some(hash)))
        }

        async fn mkdir_remote(&self, _path: &ServerPath) -> Result<RemoteNode, EnvError> {
            unreachable!("no folders here")
        }

        async fn move_remote(
            &self,
            _from: &ServerPath,
            _to: &ServerPath,
            _base_rev: Option<&str>,
        ) -> Result<RemoteNode, EnvError> {
            unreachable!("no moves here")
        }

        async fn delete_remote(
            &self,
            _path: &ServerPath,
            _base_rev: Option<&str>,
        ) -> Result<(), EnvError> {
            unreachable!("no deletes here")
        }

        fn stamp(&self) -> String {
            "2026-01-01 000000".to_owned()
        }
    }

    /// Keeps what was saved, to start another engine from.
    #[derive(Default, Clone)]
    struct Saved(Arc<Mutex<State>>);

    #[async_trait]
    impl Persist for Saved {
        async fn save(&self, changes: &[StateChange]) -> Result<(), EnvError> {
            let mut state = self.0.lock().unwrap();
            changes.iter().for_each(|c| state.apply(c));
            Ok(())
        }
    }

    fn engine(env: &StubEnv, saved: &Saved) -> Engine<StubEnv, Saved> {
        let state = saved.0.lock().unwrap().clone();
        Engine::new(
            env.clone(),
            saved.clone(),
            state,
            "test".to_owned(),
            Ignore::default(),
        )
        .with_cancel(env.cancel.clone())
    }

    #[test]
    fn a_look_at_an_unchanged_disk_makes_no_request() {
        let env = StubEnv::default();
        let saved = Saved::default();
        env.write("/a", "a");
        let mut engine = engine(&env, &saved);
        let report = futures::executor::block_on(engine.sync_once()).unwrap();
        assert_eq!(report.uploaded, 1);
        let after_first = env.requests();

        // Nothing changed: the disk is looked at, the server is not.
        let report = futures::executor::block_on(engine.sync_local()).unwrap();
        assert_eq!((report.rounds, env.requests()), (0, after_first));

        // A change: the server is read, the file goes up.
        env.write("/b", "b");
        let report = futures::executor::block_on(engine.sync_local()).unwrap();
        assert_eq!(report.uploaded, 1);
        assert!(env.requests() > after_first);
    }

    #[test]
    fn a_refused_operation_is_not_tried_again_until_a_full_pass() {
        let env = StubEnv::default();
        let saved = Saved::default();
        env.write("/refused", "mine");
        let mut engine = engine(&env, &saved);
        let report = futures::executor::block_on(engine.sync_once()).unwrap();
        assert_eq!(
            report
                .problems
                .keys()
                .map(ServerPath::as_str)
                .collect::<Vec<_>>(),
            ["/refused"]
        );
        assert_eq!(env.uploads.load(Ordering::SeqCst), 1);
        let requests = env.requests();

        let report = futures::executor::block_on(engine.sync_local()).unwrap();
        assert_eq!(report.problems.len(), 1, "still listed");
        assert_eq!(env.requests(), requests, "not tried again, no request");

        let report = futures::executor::block_on(engine.sync_once()).unwrap();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(
            env.uploads.load(Ordering::SeqCst),
            2,
            "a full pass tries again"
        );
    }

    #[test]
    fn a_stopped_reconciliation_keeps_what_finished_and_the_next_one_does_the_rest() {
        let env = StubEnv::default();
        let saved = Saved::default();
        env.server
            .lock()
            .unwrap()
            .insert(path("/done"), hash_of("done"));
        env.server
            .lock()
            .unwrap()
            .insert(path("/hang"), hash_of("hang"));
        let mut first = engine(&env, &saved);
        let result = futures::executor::block_on(first.sync_once());
        assert_eq!(result, Err(SyncError::Cancelled));
        // The download that finished is saved as synced; the other is not.
        {
            let state = saved.0.lock().unwrap();
            assert!(state.synced.get(&path("/done")).is_some());
            assert!(state.synced.get(&path("/hang")).is_none());
            assert_eq!(state.cursor.as_deref(), Some("v1.1-0"));
        }

        // The next run, from what was saved, finishes the job (no longer hanging).
        let env2 = StubEnv {
            disk: Arc::new(Mutex::new(env.disk.lock().unwrap().clone())),
            ..StubEnv::default()
        };
        *env2.server.lock().unwrap() = env.server.lock().unwrap().clone();
        env2.server.lock().unwrap().remove(&path("/hang"));
        env2.server
            .lock()
            .unwrap()
            .insert(path("/later"), hash_of("later"));
        let mut second = engine(&env2, &saved);
        // Files put on the stub server directly are not in its delta: list afresh.
        second.change(StateChange::Cursor(None));
        let report = futures::executor::block_on(second.sync_once()).unwrap();
        assert_eq!(report.downloaded, 1, "only /later: /done was kept");
        assert!(saved.0.lock().unwrap().synced.get(&path("/done")).is_some());
    }

    fn file(name: &str, size: u64) -> (ServerPath, LocalNode) {
        let node = LocalNode {
            kind: Kind::File,
            id: 1,
            size,
            mtime_ns: 0,
            hash: None,
        };
        (ServerPath::parse(&format!("/{name}")).unwrap(), node)
    }

    #[test]
    fn small_files_hash_in_runs_and_big_ones_alone() {
        let mut files: Vec<_> = (0..150).map(|i| file(&format!("s{i}"), 4096)).collect();
        files.insert(70, file("big", SMALL_FILE + 1));
        for i in 0..5 {
            files.push(file(&format!("m{i}"), SMALL_FILE));
        }
        let all: Vec<usize> = (0..files.len()).collect();
        let runs = hash_runs(&files, &all, HASH_RUN);
        let sizes: Vec<usize> = runs.iter().map(Vec::len).collect();
        // 64 small; the big file alone; 64 small (6 before it, 58 after); the last 22
        // small with four 1 MiB files, cut there at 4 MiB; the fifth.
        assert_eq!(sizes, vec![64, 1, 64, 26, 1]);
        assert_eq!(runs[1][0], 70);
        let flat: Vec<_> = runs.into_iter().flatten().collect();
        assert_eq!(flat.len(), files.len(), "every file is hashed once");
    }
}
