//! The sync engine's randomized, deterministic simulation (DESIGN.md §7).
//!
//! Each seed builds a world — one server, two or three devices with their own disks,
//! engines and persisted states — and runs two phases:
//! 1. **Faults**: random steps: a user edits a device's disk (files and folders made,
//!    edited in place, saved over, deleted, moved, ignored junk written); users on two
//!    devices move folders into each other (A into B here, B into A there); another
//!    client changes the server (names the engine ignores included); a device syncs; a
//!    device crashes and restarts from what it saved; a device goes offline or comes
//!    back; the fault levels change. Inside a sync, requests and responses are lost,
//!    calls running side by side land in a shuffled order, the server forgets a delta
//!    cursor, the file system hands out freed inode numbers again, the user and other
//!    clients act between the engine's calls and in the middle of its scans and
//!    downloads, and the device may crash at any call (losing what it had not saved).
//! 2. **Quiet**: no faults and no users; every device syncs in turn until a whole round
//!    changes nothing.
//!
//! The invariants:
//! - a sync never fails to settle (`NotSettled`), and never fails at all once faults
//!   stop; it may stop at an emptied folder only when the user removed something since
//!   the scan the engine last saved (the user then starts that device again from an
//!   empty state, as the error suggests);
//! - the devices all end up holding exactly what the server holds, and each engine's
//!   remote tree is exactly the server's;
//! - the engine never destroys a file's content on a disk (removing it, or downloading
//!   over it) unless the server has that content as some version, and the latest
//!   content each device's user wrote is on the server at the end;
//! - the engine touches no ignored path and nothing outside the folder.
//!
//! `CAIRN_SIM_SEEDS=N` runs N seeds (2,000 by default), `CAIRN_SIM_FIRST=N` starts at
//! seed N, `CAIRN_SIM_SEED=N` replays one seed, printing every step.

mod disk;
mod env;
mod server;
mod stream;
mod world;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_sync::{Engine, Ignore, Report, State, SyncError};
use rand::Rng;

use crate::env::{SimEnv, SimPersist};
use crate::world::{Faults, World};

type SimEngine = Engine<SimEnv, SimPersist>;

/// Rounds of the quiet phase after which the devices must have settled.
const QUIET_ROUNDS: usize = 20;

/// What the seeds did, summed.
#[derive(Debug, Default)]
struct Totals {
    steps: u64,
    syncs: u64,
    failed_syncs: u64,
    crashes: u64,
    uploaded: u64,
    downloaded: u64,
    deleted: u64,
    moved: u64,
    conflicts: u64,
    /// Blocks downloads took from what was fetched ahead (streaming sync).
    streamed: u64,
    /// Changed blocks sent as deltas, and sent whole.
    delta_blocks: u64,
    whole_blocks: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.steps += other.steps;
        self.syncs += other.syncs;
        self.failed_syncs += other.failed_syncs;
        self.crashes += other.crashes;
        self.uploaded += other.uploaded;
        self.downloaded += other.downloaded;
        self.deleted += other.deleted;
        self.moved += other.moved;
        self.conflicts += other.conflicts;
        self.streamed += other.streamed;
        self.delta_blocks += other.delta_blocks;
        self.whole_blocks += other.whole_blocks;
    }

    fn count(&mut self, report: &Report) {
        self.uploaded += report.uploaded;
        self.downloaded += report.downloaded;
        self.deleted += report.deleted_local + report.deleted_remote;
        self.moved += report.moved_local + report.moved_remote;
        self.conflicts += report.conflicts;
    }
}

struct Sim {
    world: Arc<Mutex<World>>,
    engines: Vec<SimEngine>,
    parallelism: usize,
    chunk_size: usize,
    /// Files hashed before the first round when a look at the disk finds more.
    first_slice: usize,
    totals: Totals,
}

impl Sim {
    fn new(seed: u64, verbose: bool, record: bool) -> Sim {
        let mut world = World::new(seed, verbose, record);
        let parallelism = world.rng.gen_range(1..=4);
        // A small limit on what a round plans, so that most work takes several rounds.
        let chunk_size = world.rng.gen_range(1..=6);
        // Small, so that looks at the disk are cut into slices with rounds between.
        let first_slice = world.rng.gen_range(1..=8);
        let devices = world.disks.len();
        world.log(|| {
            format!(
                "seed {seed}: {devices} devices, parallelism {parallelism}, rounds of {chunk_size}, slices from {first_slice}, {:?}",
                world.faults
            )
        });
        let world = Arc::new(Mutex::new(world));
        let mut sim = Sim {
            world,
            engines: Vec::new(),
            parallelism,
            chunk_size,
            first_slice,
            totals: Totals::default(),
        };
        sim.engines = (0..devices).map(|dev| sim.start(dev)).collect();
        sim
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An engine for `dev`, starting from what it saved.
    fn start(&self, dev: usize) -> SimEngine {
        let state = self.world().persisted[dev].clone();
        Engine::new(
            SimEnv {
                world: self.world.clone(),
                dev,
            },
            SimPersist {
                world: self.world.clone(),
                dev,
            },
            state,
            format!("dev{dev}"),
            Ignore::default(),
        )
        .with_parallelism(self.parallelism)
        .with_chunk_size(self.chunk_size)
        .with_first_slice(self.first_slice)
    }

    fn restart(&mut self, dev: usize) {
        // A daemon starting removes what an earlier one fetched ahead.
        self.world().prefetch[dev] = stream::Prefetch::default();
        self.world().devices[dev].crashed = false;
        self.engines[dev] = self.start(dev);
        self.totals.crashes += 1;
    }

    fn sync(&mut self, dev: usize) -> Result<Report, SyncError> {
        self.world().log(|| format!("dev{dev} SYNC"));
        let result = futures::executor::block_on(self.engines[dev].sync_once());
        self.totals.syncs += 1;
        let crashed = self.world().devices[dev].crashed;
        {
            let w = self.world();
            w.log(|| {
                format!(
                    "dev{dev} SYNC -> {result:?}{}",
                    if crashed { " (crashed)" } else { "" }
                )
            });
        }
        let mut start_over = false;
        match &result {
            Ok(report) => self.totals.count(report),
            Err(SyncError::RootEmptied(_)) => {
                self.totals.failed_syncs += 1;
                let mut w = self.world();
                if w.removals[dev] > w.removals_saved[dev] {
                    // The guard did its job: the user's deletes (with the engine's own,
                    // of what other devices deleted) left the folder empty. The user
                    // restores it by starting again from an empty state, so everything
                    // comes back from the server.
                    w.log(|| format!("dev{dev} user starts again with an empty state"));
                    w.persisted[dev] = State::default();
                    start_over = true;
                } else {
                    w.violation(format!(
                        "dev{dev}: sync stopped at an emptied folder, but the user removed nothing since the last scan it saved"
                    ));
                }
            }
            Err(_) => self.totals.failed_syncs += 1,
        }
        if crashed || start_over {
            self.restart(dev);
        }
        result
    }

    /// Prints the disks, the server and what each engine believes, for a failing seed.
    fn dump(&self) {
        let w = self.world();
        eprintln!("--- server");
        for (path, entry) in &w.server.live {
            eprintln!("  {path}  {entry:?}");
        }
        for (dev, disk) in w.disks.iter().enumerate() {
            eprintln!("--- dev{dev} disk");
            for (path, node) in &disk.nodes {
                eprintln!("  {path}  {node:?}");
            }
            let state = self.engines[dev].state();
            eprintln!("--- dev{dev} local tree");
            for (path, node) in state.local.iter() {
                eprintln!("  {path}  {node:?}");
            }
            eprintln!("--- dev{dev} remote tree");
            for (path, node) in state.remote.iter() {
                eprintln!("  {path}  {node:?}");
            }
            eprintln!("--- dev{dev} synced tree");
            for (path, node) in state.synced.iter() {
                eprintln!("  {path}  {node:?}");
            }
        }
    }

    /// Invariant failures recorded inside environment calls.
    fn check_violations(&self) -> Result<(), String> {
        let w = self.world();
        match w.violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    fn fault_phase(&mut self) -> Result<(), String> {
        let steps = self.world().rng.gen_range(20..120);
        for _ in 0..steps {
            let (what, dev) = {
                let mut w = self.world();
                w.step += 1;
                let devices = w.disks.len();
                let dev = w.rng.gen_range(0..devices);
                (w.rng.gen_range(0..100), dev)
            };
            self.totals.steps += 1;
            match what {
                0..=29 => {
                    let mut w = self.world();
                    for _ in 0..w.rng.gen_range(1..=3) {
                        let did = w.user_action(dev);
                        w.log(|| format!("dev{dev} user: {did}"));
                    }
                }
                30..=35 => {
                    let mut w = self.world();
                    let did = w.server_action();
                    w.log(|| format!("web: {did}"));
                }
                78..=81 => {
                    let mut w = self.world();
                    let did = stream::prefetch_step(&mut w, dev);
                    w.log(|| did);
                }
                36..=77 => {
                    if let Err(SyncError::NotSettled(failing)) = self.sync(dev) {
                        return Err(format!(
                            "dev{dev}: sync did not settle (still failing: {failing})"
                        ));
                    }
                }
                82..=86 => {
                    self.world().log(|| format!("dev{dev} RESTART"));
                    self.restart(dev);
                }
                87..=89 => {
                    let mut w = self.world();
                    let devices = w.disks.len();
                    let other = (dev + w.rng.gen_range(1..devices)) % devices;
                    let did = w.cross_move(dev, other);
                    w.log(|| format!("users: cross move {did}"));
                }
                90..=93 => {
                    let mut w = self.world();
                    let offline = !w.devices[dev].offline;
                    w.devices[dev].offline = offline;
                    w.log(|| format!("dev{dev} offline: {offline}"));
                }
                _ => {
                    let mut w = self.world();
                    let faults = if w.rng.gen_bool(0.3) {
                        Faults {
                            max_delay: 3,
                            ..Faults::default()
                        }
                    } else {
                        Faults::random(&mut w.rng)
                    };
                    w.log(|| format!("faults: {faults:?}"));
                    w.faults = faults;
                }
            }
            self.check_violations()?;
        }
        Ok(())
    }

    fn quiet_phase(&mut self) -> Result<(), String> {
        let ignore = Ignore::default();
        // The latest content each device's user wrote, wherever it is now.
        let must_survive: BTreeMap<u64, String> = {
            let mut w = self.world();
            w.step += 1;
            w.log(|| "QUIET".to_owned());
            w.faults = Faults::default();
            for d in &mut w.devices {
                d.offline = false;
            }
            let mut survive = BTreeMap::new();
            for (dev, disk) in w.disks.iter().enumerate() {
                for (path, node) in &disk.nodes {
                    match node.content {
                        Some(content)
                            if w.user_written[dev].contains(&content)
                                && !ignore.is_ignored(path) =>
                        {
                            survive.insert(content, format!("dev{dev} {path}"));
                        }
                        _ => {}
                    }
                }
            }
            survive
        };
        let devices = self.engines.len();
        let mut settled = false;
        for _ in 0..QUIET_ROUNDS {
            self.world().step += 1;
            let mut busy = false;
            for dev in 0..devices {
                {
                    let mut w = self.world();
                    let did = stream::prefetch_step(&mut w, dev);
                    w.log(|| did);
                }
                match self.sync(dev) {
                    Ok(report) => busy |= report.rounds > 0,
                    // Started again (or a violation, reported below).
                    Err(SyncError::RootEmptied(_)) => busy = true,
                    Err(err) => return Err(format!("dev{dev}: sync failed without faults: {err}")),
                }
                self.check_violations()?;
            }
            if !busy {
                settled = true;
                break;
            }
        }
        if !settled {
            return Err(format!("no quiet round without changes in {QUIET_ROUNDS}"));
        }

        let w = self.world();
        let server = w.server.snapshot();
        let server: BTreeMap<_, _> = server
            .into_iter()
            .filter(|(p, _)| !ignore.is_ignored(p))
            .collect();
        for (dev, disk) in w.disks.iter().enumerate() {
            let local = disk.snapshot(|p| !ignore.is_ignored(p));
            if local != server {
                let only_here: Vec<_> = local
                    .iter()
                    .filter(|(p, n)| server.get(*p) != Some(n))
                    .collect();
                let only_there: Vec<_> = server
                    .iter()
                    .filter(|(p, n)| local.get(*p) != Some(n))
                    .collect();
                return Err(format!(
                    "dev{dev} did not converge: on disk only {only_here:?}; on the server only {only_there:?}"
                ));
            }
        }
        // Each engine's view of the server is the server, identities and revisions
        // included: the delta and the engine's own operations were applied right.
        let server_nodes: BTreeMap<_, _> = w
            .server
            .live
            .iter()
            .filter(|(p, _)| !ignore.is_ignored(p))
            .map(|(p, e)| (p.clone(), e.node()))
            .collect();
        for (dev, engine) in self.engines.iter().enumerate() {
            let remote: BTreeMap<_, _> = engine
                .state()
                .remote
                .iter()
                .map(|(p, n)| (p.clone(), n.clone()))
                .collect();
            if remote != server_nodes {
                let wrong: Vec<_> = remote
                    .iter()
                    .filter(|(p, n)| server_nodes.get(*p) != Some(n))
                    .collect();
                let missing: Vec<_> = server_nodes
                    .iter()
                    .filter(|(p, n)| remote.get(*p) != Some(n))
                    .collect();
                return Err(format!(
                    "dev{dev}'s remote tree is not the server: wrong {wrong:?}; missing {missing:?}"
                ));
            }
        }
        for (content, where_) in must_survive {
            if !w.server.committed.contains(&content) {
                return Err(format!("#{content} (was {where_}) is lost"));
            }
        }
        drop(w);
        let mut w = self.world();
        stream::check_drained(&mut w)?;
        match w.violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }
}

/// Runs one seed; `Err` says which invariant failed.
fn run_seed(seed: u64, verbose: bool) -> Result<Totals, String> {
    run_seed_traced(seed, verbose, false).0
}

/// Runs one seed, also returning its trace when `record` is set.
fn run_seed_traced(
    seed: u64,
    verbose: bool,
    record: bool,
) -> (Result<Totals, String>, Vec<String>) {
    let mut sim = Sim::new(seed, verbose, record);
    let result = sim.fault_phase().and_then(|()| sim.quiet_phase());
    if verbose && result.is_err() {
        sim.dump();
    }
    let trace = sim
        .world()
        .recorded
        .take()
        .map(RefCell::into_inner)
        .unwrap_or_default();
    let mut totals = sim.totals;
    {
        let w = sim.world.lock().unwrap_or_else(|e| e.into_inner());
        totals.streamed = w.streamed;
        totals.delta_blocks = w.delta_blocks;
        totals.whole_blocks = w.whole_blocks;
    }
    (result.map(|()| totals), trace)
}

fn replay_command(seed: u64) -> String {
    format!("CAIRN_SIM_SEED={seed} cargo test -p cairn-sync --test simulation -- --nocapture")
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

#[test]
fn simulation() {
    if let Some(seed) = env_number("CAIRN_SIM_SEED") {
        match run_seed(seed, true) {
            Ok(totals) => eprintln!("seed {seed} passed: {totals:?}"),
            Err(err) => panic!("seed {seed} failed: {err}"),
        }
        return;
    }
    let first = env_number("CAIRN_SIM_FIRST").unwrap_or(0);
    let count = env_number("CAIRN_SIM_SEEDS").unwrap_or(2_000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let totals = Mutex::new(Totals::default());
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    break;
                }
                let outcome = catch_unwind(AssertUnwindSafe(|| run_seed(seed, false)))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Err(format!("panicked: {message}"))
                    });
                match outcome {
                    Ok(t) => totals.lock().unwrap().add(&t),
                    Err(err) => failures.lock().unwrap().push((seed, err)),
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let totals = totals.into_inner().unwrap();
    eprintln!(
        "simulation: {count} seeds from {first} in {elapsed:.1} s ({:.0} seeds/s, {threads} threads): {totals:?}",
        count as f64 / elapsed
    );
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    if !failures.is_empty() {
        for (seed, err) in &failures {
            eprintln!("seed {seed} failed: {err}");
        }
        panic!(
            "{} of {count} seeds failed; the first: seed {} ({})",
            failures.len(),
            failures[0].0,
            replay_command(failures[0].0)
        );
    }
}

/// A seed is a complete description of a run: two runs of it do the same things in the
/// same order, so a failure printed by CI replays exactly.
#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 17, 4242] {
        let (first, trace) = run_seed_traced(seed, false, true);
        let (second, again) = run_seed_traced(seed, false, true);
        assert!(
            trace.len() > 100,
            "seed {seed} traced only {} lines",
            trace.len()
        );
        assert_eq!(first.is_ok(), second.is_ok(), "seed {seed}");
        if let Some(i) = (0..trace.len().max(again.len())).find(|&i| trace.get(i) != again.get(i)) {
            panic!(
                "seed {seed} went another way at line {i}:\n  {:?}\n  {:?}",
                trace.get(i),
                again.get(i)
            );
        }
    }
}
