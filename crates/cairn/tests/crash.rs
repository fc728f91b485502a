//! Crash safety: concurrent uploads, edits and deletes against a real `cairn serve`
//! process, which is killed with SIGKILL at a random moment, restarted, and checked.
//!
//! After every restart:
//! * every change the server acknowledged is there: an acknowledged commit is the
//!   file's content (bit-identical on download), an acknowledged delete left no file;
//! * a change that was in flight at the kill either happened entirely or not at all:
//!   the file is one of the contents it could have, never a mix, and downloads whole.
//!
//! At the end, `cairn admin fsck` finds nothing wrong, `cairn admin gc --grace 0`
//! leaves only blocks that some version references, and every file still reads back.
//!
//! The server runs its maintenance (retention, trash expiry, GC) every second with a
//! one-second grace period, so kills also land in the middle of garbage collections.
//!
//! `CAIRN_CRASH_CYCLES` sets the number of kills per backend (default 150). Each run
//! prints its seed; `CAIRN_CRASH_SEED` replays the same workload choices (the kill
//! moments depend on timing and cannot replay exactly).

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Client, UploadOptions};
use cairn_core::chunk::chunk_and_hash_slice;
use cairn_core::ChunkerConfig;
use cairn_proto::LoginRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use support::BIN;
const PASSWORD: &str = "crash test password";
const WORKERS: usize = 4;
/// Paths per worker; each worker only touches its own, so the model of what must be
/// there stays exact while the server sees concurrent writers.
const PATHS_PER_WORKER: usize = 8;
/// Small chunks, so that files have several blocks and edits share most of them.
const CHUNKER: ChunkerConfig = ChunkerConfig {
    min_size: 4 << 10,
    avg_size: 16 << 10,
    max_size: 64 << 10,
};

/// What a path may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Content {
    Absent,
    Present { hash: String, data: Arc<Vec<u8>> },
}

impl Content {
    fn of(data: Vec<u8>) -> Content {
        let hash = chunk_and_hash_slice(&data, &CHUNKER).content_hash.to_hex();
        Content::Present {
            hash,
            data: Arc::new(data),
        }
    }

    fn hash(&self) -> Option<&str> {
        match self {
            Content::Absent => None,
            Content::Present { hash, .. } => Some(hash),
        }
    }
}

/// The test's knowledge of one path.
#[derive(Clone, Debug)]
struct PathState {
    /// What the last acknowledged change left (or what was last observed).
    acked: Content,
    /// The revision to base the next edit on.
    rev: Option<String>,
    /// What an unacknowledged change in flight at the kill would have left.
    in_flight: Option<Content>,
}

/// A `cairn serve` process on a data directory that outlives it.
struct ServerProcess {
    data_dir: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl ServerProcess {
    fn start(&mut self) -> String {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir)
            .arg("--config")
            .arg(&self.config)
            .env("CAIRN_ADMIN_PASSWORD", PASSWORD)
            .env("CAIRN_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (child, url) = support::spawn_serve(cmd);
        self.child = Some(child);
        url
    }

    /// SIGKILL: no chance to flush or clean up.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn admin(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("running cairn admin")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn worker_path(worker: usize, slot: usize) -> String {
    format!("/w{worker}/f{slot}.bin")
}

/// Random bytes, sometimes built from a few shared pieces so blocks repeat across files.
fn new_content(rng: &mut StdRng, shared: &[Vec<u8>]) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0 => Vec::new(),
        1..=4 => {
            let mut data = Vec::new();
            for _ in 0..rng.gen_range(1..4) {
                data.extend_from_slice(&shared[rng.gen_range(0..shared.len())]);
            }
            data
        }
        _ => {
            let len = rng.gen_range(1..300_000);
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            data
        }
    }
}

/// An edit of `old`: a few bytes changed or inserted, so most blocks stay the same.
fn edit(rng: &mut StdRng, old: &[u8]) -> Vec<u8> {
    let mut data = old.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let at = rng.gen_range(0..=data.len());
        if rng.gen_bool(0.5) && at < data.len() {
            data[at] ^= 0x5a;
        } else {
            let bytes: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
            data.splice(at..at, bytes);
        }
    }
    data
}

/// One change a worker makes: the path, what it leaves if it happens, and how to make it.
enum Change {
    Write { data: Vec<u8>, whole_file: bool },
    Delete,
}

/// Runs one worker until the server is killed: picks a path, changes it, and records
/// the outcome in `states`. Returns the states, with the change in flight at the kill
/// (if any) recorded as `in_flight`.
/// What a worker task needs besides the states of its paths.
struct Worker {
    client: Client,
    id: usize,
    seed: u64,
    shared: Arc<Vec<Vec<u8>>>,
    scratch: PathBuf,
    /// Set just before the kill, so an error after it is expected.
    killed: Arc<AtomicBool>,
    /// Counts acknowledged changes, for the summary.
    acks: Arc<AtomicUsize>,
    kill_signal: tokio::sync::watch::Receiver<bool>,
}

async fn worker(w: Worker, mut states: Vec<PathState>) -> Vec<PathState> {
    let Worker {
        client,
        id: worker,
        seed,
        shared,
        scratch,
        killed,
        acks,
        mut kill_signal,
    } = w;
    let mut rng = StdRng::seed_from_u64(seed);
    let local = scratch.join(format!("w{worker}.bin"));
    loop {
        if killed.load(Ordering::SeqCst) {
            return states;
        }
        let slot = rng.gen_range(0..PATHS_PER_WORKER);
        let path = worker_path(worker, slot);
        let state = &states[slot];
        let change = match &state.acked {
            Content::Absent => Change::Write {
                data: new_content(&mut rng, &shared),
                whole_file: rng.gen_bool(0.2),
            },
            Content::Present { data, .. } => match rng.gen_range(0..10) {
                0..=2 => Change::Delete,
                3..=7 => Change::Write {
                    data: edit(&mut rng, data),
                    whole_file: rng.gen_bool(0.2),
                },
                _ => Change::Write {
                    data: new_content(&mut rng, &shared),
                    whole_file: false,
                },
            },
        };
        let (outcome, request) = match change {
            Change::Delete => (Content::Absent, {
                let client = client.clone();
                let path = path.clone();
                tokio::spawn(async move { client.delete(&path).await.map(|()| None) })
            }),
            Change::Write { data, whole_file } => {
                let content = Content::of(data.clone());
                let client = client.clone();
                let path = path.clone();
                let base_rev = state.rev.clone();
                let local = local.clone();
                let task = tokio::spawn(async move {
                    let commit = if whole_file {
                        client
                            .put_content(&path, data.into(), base_rev.as_deref(), false)
                            .await?
                    } else {
                        tokio::fs::write(&local, &data).await.expect("scratch file");
                        let options = UploadOptions {
                            base_rev,
                            ..UploadOptions::default()
                        };
                        client.upload_file(&local, &path, options).await?.commit
                    };
                    Ok(Some(commit))
                });
                (content, task)
            }
        };
        let mut request = request;
        let result = tokio::select! {
            result = &mut request => Some(result.expect("request task")),
            _ = kill_signal.changed() => {
                // Cancel it for good (its retries included), so that no stale request
                // can reach the restarted server.
                request.abort();
                let _ = request.await;
                None
            }
        };
        match result {
            Some(Ok(commit)) => {
                let state = &mut states[slot];
                if let Some(commit) = &commit {
                    assert!(!commit.renamed, "{path}: a commit was renamed");
                    assert_eq!(
                        commit.entry.content_hash.as_deref(),
                        outcome.hash(),
                        "{path}: the server acknowledged other content than was sent"
                    );
                }
                state.rev = commit.and_then(|c| c.entry.rev);
                state.acked = outcome;
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(err)) if !killed.load(Ordering::SeqCst) => {
                panic!("worker {worker}: {path}: {err:#} while the server was up")
            }
            // Failed because of the kill, or cut off by it: it may or may not have
            // happened.
            _ => {
                states[slot].in_flight = Some(outcome);
                return states;
            }
        }
    }
}

/// How the changes cut off by kills turned out.
#[derive(Debug, Default)]
struct InFlightTally {
    /// Changes that had happened although their answer never arrived.
    happened: usize,
    /// Changes that left no trace.
    vanished: usize,
}

/// Checks every path against the model after a restart, and settles what was in flight.
async fn verify(
    client: &Client,
    states: &mut [Vec<PathState>],
    cycle: usize,
    download_all: bool,
    tally: &mut InFlightTally,
) {
    for (w, worker_states) in states.iter_mut().enumerate() {
        let listing = match client.list(&format!("/w{w}")).await {
            Ok(entries) => entries,
            Err(err) if err.is_not_found() => Vec::new(),
            Err(err) => panic!("cycle {cycle}: listing /w{w}: {err:#}"),
        };
        let found: BTreeMap<String, (Option<String>, Option<String>)> = listing
            .into_iter()
            .map(|e| (e.path, (e.content_hash, e.rev)))
            .collect();
        for (slot, state) in worker_states.iter_mut().enumerate() {
            let path = worker_path(w, slot);
            let (observed_hash, rev) = match found.get(&path) {
                Some((hash, rev)) => (
                    Some(hash.clone().expect("a file has a content hash")),
                    rev.clone(),
                ),
                None => (None, None),
            };
            let candidates: Vec<&Content> = std::iter::once(&state.acked)
                .chain(state.in_flight.as_ref())
                .collect();
            let Some(matched) = candidates
                .iter()
                .find(|c| c.hash() == observed_hash.as_deref())
            else {
                panic!(
                    "cycle {cycle}: {path} holds {observed_hash:?}, but the acknowledged state \
                     is {:?} and the change in flight would give {:?}",
                    state.acked.hash(),
                    state.in_flight.as_ref().map(|c| c.hash()),
                );
            };
            let matched = (*matched).clone();
            if let Some(in_flight) = &state.in_flight {
                if *in_flight == state.acked {
                    // Both outcomes look the same; nothing to learn.
                } else if matched == *in_flight {
                    tally.happened += 1;
                } else {
                    tally.vanished += 1;
                }
            }
            let touched = state.in_flight.is_some() || download_all;
            state.acked = matched;
            state.rev = rev;
            state.in_flight = None;
            if let (true, Content::Present { data, .. }) = (touched, &state.acked) {
                let body = client
                    .get_content(&path)
                    .await
                    .unwrap_or_else(|err| panic!("cycle {cycle}: downloading {path}: {err:#}"))
                    .bytes()
                    .await
                    .unwrap_or_else(|err| panic!("cycle {cycle}: reading {path}: {err:#}"));
                assert!(
                    body[..] == data[..],
                    "cycle {cycle}: {path} does not read back bit-identical"
                );
            }
        }
    }
}

async fn login(url: &str) -> Client {
    let anonymous = Client::new(url, None).unwrap();
    let response = anonymous
        .login(&LoginRequest {
            username: "admin".into(),
            password: PASSWORD.into(),
            device_name: Some("crash-test".into()),
        })
        .await
        .expect("login");
    anonymous.with_token(response.token)
}

fn check_admin(out: Output, what: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cairn admin {what} failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("cairn admin {what} --json printed no JSON ({err}): {stdout}"))
}

/// Block files in the local block store.
fn stored_block_files(data_dir: &Path) -> usize {
    fn walk(dir: &Path, count: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, count);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 64)
            {
                *count += 1;
            }
        }
    }
    let mut count = 0;
    walk(&data_dir.join("blocks"), &mut count);
    count
}

fn crash_cycles() -> usize {
    std::env::var("CAIRN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

async fn run(env: Vec<(String, String)>) {
    let cycles = crash_cycles();
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test: {cycles} kills, seed {seed} (CAIRN_CRASH_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "chunk_min_size = {}\nchunk_avg_size = {}\nchunk_max_size = {}\n\
             maintenance_interval_secs = 1\ngc_grace_secs = 1\n",
            CHUNKER.min_size, CHUNKER.avg_size, CHUNKER.max_size
        ),
    )
    .unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut server = ServerProcess {
        data_dir: data_dir.clone(),
        config,
        env,
        child: None,
    };
    let shared: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..8)
            .map(|_| {
                let mut piece = vec![0u8; rng.gen_range(1_000..40_000)];
                rng.fill(&mut piece[..]);
                piece
            })
            .collect(),
    );
    let mut states: Vec<Vec<PathState>> = (0..WORKERS)
        .map(|_| {
            vec![
                PathState {
                    acked: Content::Absent,
                    rev: None,
                    in_flight: None,
                };
                PATHS_PER_WORKER
            ]
        })
        .collect();

    let acks = Arc::new(AtomicUsize::new(0));
    let mut tally = InFlightTally::default();
    let mut token: Option<String> = None;
    for cycle in 0..cycles {
        let url = server.start();
        let client = match &token {
            Some(t) => Client::new(&url, Some(t.clone())).unwrap(),
            None => {
                let c = login(&url).await;
                token = c.token().map(str::to_owned);
                c
            }
        };
        verify(&client, &mut states, cycle, cycle % 25 == 0, &mut tally).await;

        let killed = Arc::new(AtomicBool::new(false));
        let (kill_tx, kill_rx) = tokio::sync::watch::channel(false);
        let tasks: Vec<_> = states
            .drain(..)
            .enumerate()
            .map(|(w, worker_states)| {
                let w = Worker {
                    client: client.clone(),
                    id: w,
                    seed: rng.gen(),
                    shared: shared.clone(),
                    scratch: scratch.clone(),
                    killed: killed.clone(),
                    acks: acks.clone(),
                    kill_signal: kill_rx.clone(),
                };
                tokio::spawn(worker(w, worker_states))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..400))).await;
        killed.store(true, Ordering::SeqCst);
        server.kill();
        let _ = kill_tx.send(true);
        for task in tasks {
            states.push(task.await.expect("worker panicked"));
        }
    }

    // Settle the last cycle, then check the store offline.
    let url = server.start();
    let client = Client::new(&url, token.clone()).unwrap();
    verify(&client, &mut states, cycles, true, &mut tally).await;
    eprintln!(
        "{} changes acknowledged across {cycles} kills; of those cut off, {} had happened \
         and {} left no trace",
        acks.load(Ordering::Relaxed),
        tally.happened,
        tally.vanished
    );
    server.kill();

    let report = check_admin(server.admin(&["fsck", "--json"]), "fsck");
    eprintln!("fsck after {cycles} kills: {report}");
    check_admin(server.admin(&["gc", "--grace", "0", "--json"]), "gc");
    check_admin(server.admin(&["fsck", "--json"]), "fsck after gc");

    // GC kept what is referenced: every file still reads back (deleted files are in the
    // trash, whose versions still hold their blocks), and the store holds a file for
    // every block row and no other.
    let url = server.start();
    let client = Client::new(&url, token).unwrap();
    verify(&client, &mut states, cycles + 1, true, &mut tally).await;
    server.kill();
    let stats = {
        let meta_url = server
            .env
            .iter()
            .find(|(k, _)| k == "CAIRN_DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                format!("sqlite://{}?mode=rwc", data_dir.join("cairn.db").display())
            });
        let meta = cairn_meta::MetaStore::connect(&meta_url).await.unwrap();
        let blocks = meta.stats().await.unwrap().blocks;
        meta.close().await;
        blocks
    };
    let stored = match server.env.iter().find(|(k, _)| k == "CAIRN_BLOCKS_URL") {
        None => stored_block_files(&data_dir),
        Some((_, url)) => {
            let prefix = cairn_store::S3Config::from_url(url).unwrap().prefix;
            let s3 = cairn_store::S3Config::for_tests(&prefix);
            let store = cairn_store::BlockStore::s3(&s3).await.unwrap();
            store.list().await.unwrap().len()
        }
    };
    assert_eq!(
        stored as i64, stats,
        "after gc --grace 0 the store holds exactly each recorded block"
    );
    let present: HashSet<String> = states
        .iter()
        .flatten()
        .filter_map(|s| s.acked.hash().map(str::to_owned))
        .collect();
    eprintln!(
        "crash test done: {cycles} kills, {} distinct file contents present, {stats} blocks",
        present.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_sqlite() {
    run(Vec::new()).await;
}

/// A fresh PostgreSQL schema: the connection that made it, its name and the URL that
/// uses it.
async fn fresh_schema() -> (sqlx::PgConnection, String, String) {
    use sqlx::Connection;

    let base = std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("cairn_crash_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (set CAIRN_TEST_POSTGRES_URL to use another)");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options[search_path]={schema}");
    (conn, schema, url)
}

async fn drop_schema(mut conn: sqlx::PgConnection, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_postgres() {
    let (conn, schema, url) = fresh_schema().await;
    run(vec![("CAIRN_DATABASE_URL".to_owned(), url)]).await;
    drop_schema(conn, &schema).await;
}

/// As several nodes run: metadata in PostgreSQL, blocks in S3 (the test server that
/// `.ci/s3-up.sh` starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_postgres_s3() {
    let (conn, schema, url) = fresh_schema().await;
    let s3 = cairn_store::S3Config::for_tests(&format!("crash-tests/{schema}"));
    let mut env = s3.to_env();
    env.push(("CAIRN_DATABASE_URL".to_owned(), url));
    run(env).await;
    drop_schema(conn, &schema).await;
    s3.delete_everything().await;
}
