//! Garbage collection under fire: uploaders, deleters, pruners and collections with no
//! grace period, all at once, on the same few blocks. Whatever interleaving happens, a
//! block that any version references must stay in the store and read back verified.
//!
//! Every task is bounded by an iteration count, not by time, and draws its choices
//! from a seeded generator; the schedule itself is up to the runtime, so a failure
//! prints the seed and the task, and rerunning explores other interleavings.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_core::{BlockHash, ServerPath};
use cairn_meta::{Actor, BlockRef, CommitFile, MetaError, MetaStore, User};
use cairn_server::{AppState, BlockManager};
use cairn_store::{BlockStore, StoreError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{TestServer, WITH_S3};

/// Distinct block contents. Few of them, so that uploads, commits, prunes and
/// collections meet on the same hashes all the time.
const POOL: usize = 10;
const UPLOADERS: u64 = 3;
const UPLOAD_ROUNDS: usize = 30;
const DELETERS: u64 = 2;
const DELETE_ROUNDS: usize = 30;
/// Collections per collector task: at most this many, and none after the other
/// workers finish.
const GC_RUNS: usize = 2000;
const COLLECTORS: usize = 2;
const FILES_PER_UPLOADER: usize = 4;

fn pool() -> Vec<Bytes> {
    (0..POOL)
        .map(|i| {
            let len = 512 + i * 300;
            Bytes::from(
                (0..len)
                    .map(|j| (j as u32).wrapping_mul(31).wrapping_add(i as u32 * 7) as u8)
                    .collect::<Vec<u8>>(),
            )
        })
        .collect()
}

fn path(s: &str) -> ServerPath {
    ServerPath::parse(s).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The block manager `cairn admin gc` would make in its own process, on its own
/// handle of the server's block directory.
async fn other_process(state: &AppState) -> BlockManager {
    BlockManager::new(
        state.meta.clone(),
        cairn_server::open_blocks(&state.config).await.unwrap(),
        state.config.chunker,
    )
}

struct World {
    state: AppState,
    /// A second handle on the server's block directory, as `cairn admin gc` opens in
    /// its own process: it learns of the server's new pack files only from the disk.
    other: BlockManager,
    user: User,
    actor: Actor,
    pool: Vec<Bytes>,
    hashes: Vec<BlockHash>,
}

impl World {
    fn meta(&self) -> &MetaStore {
        &self.state.meta
    }

    fn blocks(&self) -> &BlockManager {
        &self.state.blocks
    }

    fn store(&self) -> &BlockStore {
        self.state.blocks.store()
    }

    /// Uploads through the server's own accept paths (store, record, re-store if the
    /// collector got there in between): several blocks as one batch, as the sync
    /// client sends small files (they go into a pack file), one alone as `cairn put`.
    async fn upload(&self, blocks: &[usize]) {
        let mut distinct = blocks.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            let batch = distinct
                .iter()
                .map(|&i| (self.hashes[i], self.pool[i].clone()))
                .collect();
            self.blocks()
                .accept(&self.user, batch)
                .await
                .unwrap_or_else(|e| panic!("batch upload of blocks {distinct:?} failed: {e:?}"));
            return;
        }
        for &i in blocks {
            self.blocks()
                .accept_one(&self.user, self.hashes[i], self.pool[i].clone())
                .await
                .unwrap_or_else(|e| panic!("upload of block {i} failed: {e:?}"));
        }
    }

    /// Commits these blocks at `file` as a client would: uploads them, and on
    /// "missing blocks" (collected before the commit, as grace 0 allows) or a stale
    /// base, uploads again or rereads the base and retries. Returns whether it
    /// committed within the attempts allowed.
    async fn commit(&self, file: &str, blocks: &[usize]) -> bool {
        let refs: Vec<BlockRef> = blocks
            .iter()
            .map(|&i| BlockRef {
                hash: self.hashes[i],
                size: self.pool[i].len() as u32,
            })
            .collect();
        self.upload(blocks).await;
        for _ in 0..50 {
            let base = self
                .meta()
                .stat(self.user.home_ns, &path(file))
                .await
                .unwrap()
                .and_then(|e| e.rev);
            let req = CommitFile {
                ns: self.user.home_ns,
                path: path(file),
                blocks: refs.clone(),
                mtime: None,
                base_rev: base,
                autorename: false,
                actor: self.actor.clone(),
            };
            match self.meta().commit_file(req).await {
                Ok(_) => return true,
                Err(MetaError::MissingBlocks(_)) => self.upload(blocks).await,
                Err(MetaError::RevConflict { .. }) => {}
                Err(e) => panic!("commit of {file} failed: {e}"),
            }
        }
        false
    }

    /// Every block of the live file's current version reads back verified, unless the
    /// version stopped existing meanwhile (overwritten and pruned). A version that
    /// still exists after one of its blocks failed to read held that reference the
    /// whole time: that is the bug this test hunts. No absence is legitimate, not even
    /// briefly: an upload whose block a collection removed stores it again inside its
    /// record transaction, before anyone may commit it.
    async fn check_live(&self, file: &str) {
        let Some(entry) = self
            .meta()
            .stat(self.user.home_ns, &path(file))
            .await
            .unwrap()
        else {
            return;
        };
        let Some(rev) = entry.rev else { return };
        let blocks = match self.meta().version_blocks(rev).await {
            Ok(b) => b,
            Err(MetaError::NoSuchVersion(_)) => return,
            Err(e) => panic!("{e}"),
        };
        for b in blocks {
            match self.store().get(b.hash).await {
                Ok(data) => assert_eq!(data.len(), b.size as usize),
                Err(StoreError::NotFound(_)) => assert!(
                    self.meta().version_blocks(rev).await.is_err(),
                    "block {} of {file} (version {rev}) was deleted while referenced",
                    b.hash
                ),
                Err(e) => panic!("block {} of {file}: {e}", b.hash),
            }
        }
    }
}

fn file_name(uploader: u64, n: usize) -> String {
    format!("/u{uploader}/f{n}")
}

async fn uploader(world: Arc<World>, seed: u64, id: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed ^ (id << 8));
    let mut committed = 0;
    for _ in 0..UPLOAD_ROUNDS {
        let file = file_name(id, rng.gen_range(0..FILES_PER_UPLOADER));
        let n = rng.gen_range(1..=3);
        let blocks: Vec<usize> = (0..n).map(|_| rng.gen_range(0..POOL)).collect();
        if world.commit(&file, &blocks).await {
            committed += 1;
        }
        world.check_live(&file).await;
    }
    committed
}

async fn deleter(world: Arc<World>, seed: u64, id: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id << 16) ^ 0xde1e7e);
    for _ in 0..DELETE_ROUNDS {
        let file = file_name(
            rng.gen_range(0..UPLOADERS),
            rng.gen_range(0..FILES_PER_UPLOADER),
        );
        match rng.gen_range(0..4) {
            // To the trash: its blocks stay referenced.
            0 => match world
                .meta()
                .delete_entry(world.user.home_ns, &path(&file), &world.actor)
                .await
            {
                Ok(_) | Err(MetaError::NotFound(_)) => {}
                Err(e) => panic!("delete of {file} failed: {e}"),
            },
            // Empty the trash: the deleted files' versions and references go.
            3 => {
                world
                    .meta()
                    .purge_all_trash(world.user.home_ns, &world.actor)
                    .await
                    .unwrap();
            }
            // Replace the content by an empty file: the old content is history only.
            1 => {
                world.commit(&file, &[]).await;
            }
            // Drop history: every version but the current one, or all but the newest.
            _ => {
                let keep = rng.gen_range(0..2);
                world
                    .meta()
                    .prune_versions(now_ms() + 1000, 0, keep)
                    .await
                    .unwrap();
            }
        }
        world.check_live(&file).await;
    }
}

async fn collector(
    world: Arc<World>,
    others_done: Arc<std::sync::atomic::AtomicBool>,
    own_handle: bool,
) -> u64 {
    let mut deleted = 0;
    let blocks = if own_handle {
        &world.other
    } else {
        world.blocks()
    };
    for _ in 0..GC_RUNS {
        if others_done.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let report = blocks.collect_garbage(Duration::ZERO).await.unwrap();
        deleted += report.blocks_deleted;
        tokio::task::yield_now().await;
    }
    deleted
}

/// What the metadata says about each pool block, and whether the store has it.
async fn audit(world: &World) {
    for (i, hash) in world.hashes.iter().enumerate() {
        let info = world.meta().block_info(*hash).await.unwrap();
        if let Some(info) = &info {
            if info.refcount > 0 {
                let data = world.store().get(*hash).await.unwrap_or_else(|e| {
                    panic!("block {i} has {} references but: {e}", info.refcount)
                });
                assert_eq!(data, world.pool[i]);
            }
        }
    }
}

on_each_backend!(
    gc_never_deletes_a_referenced_block_under_concurrency,
    WITH_S3,
    |s| {
        let seed: u64 = std::env::var("CAIRN_GC_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(rand::random);
        eprintln!("gc stress seed {seed} (set CAIRN_GC_SEED to replay the choices)");
        let user = s.state.meta.user_by_name("admin").await.unwrap().unwrap();
        let device = s.state.meta.create_device(user.id, "stress").await.unwrap();
        let pool = pool();
        let world = Arc::new(World {
            state: s.state.clone(),
            other: other_process(&s.state).await,
            actor: Actor {
                user_id: user.id,
                device_id: Some(device.id),
                device_name: device.name,
            },
            user,
            hashes: pool.iter().map(|b| BlockHash::of(b)).collect(),
            pool,
        });

        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..UPLOADERS {
            let w = world.clone();
            tasks.spawn(async move { uploader(w, seed, id).await as u64 });
        }
        for id in 0..DELETERS {
            let w = world.clone();
            tasks.spawn(async move {
                deleter(w, seed, id).await;
                0
            });
        }
        // Two collectors, as when `cairn admin gc` runs beside the server's own task: the
        // second on its own store handle, like the other process.
        let others_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collectors: Vec<_> = (0..COLLECTORS)
            .map(|i| tokio::spawn(collector(world.clone(), others_done.clone(), i == 1)))
            .collect();
        while let Some(done) = tasks.join_next().await {
            done.expect("a worker failed");
        }
        others_done.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut collected = 0;
        for c in collectors {
            collected += c.await.expect("a collector failed");
        }
        eprintln!("collections deleted {collected} blocks while the others worked");

        // Quiet now: every referenced block is there and intact, the metadata is sound.
        audit(&world).await;
        for u in 0..UPLOADERS {
            for n in 0..FILES_PER_UPLOADER {
                world.check_live(&file_name(u, n)).await;
            }
        }
        let problems = world.meta().check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");

        // Delete everything: empty every live file and the trash, drop all history, collect.
        world
            .meta()
            .purge_all_trash(world.user.home_ns, &world.actor)
            .await
            .unwrap();
        for u in 0..UPLOADERS {
            for n in 0..FILES_PER_UPLOADER {
                let file = file_name(u, n);
                if world
                    .meta()
                    .stat(world.user.home_ns, &path(&file))
                    .await
                    .unwrap()
                    .is_some()
                {
                    assert!(world.commit(&file, &[]).await);
                }
            }
        }
        world
            .meta()
            .prune_versions(now_ms() + 1000, 0, 0)
            .await
            .unwrap();
        // Grace 0 takes blocks unreferenced since before now: let the clock move on.
        tokio::time::sleep(Duration::from_millis(5)).await;
        world
            .blocks()
            .collect_garbage(Duration::ZERO)
            .await
            .unwrap();
        audit(&world).await;
        // Nothing references anything any more (every file is empty, the trash and the
        // history are gone), so the store and the block table are empty.
        let stored = world.store().list().await.unwrap();
        let stats = world.meta().stats().await.unwrap();
        assert_eq!((stored.len(), stats.blocks), (0, 0), "the store is empty");
        let gc = world.meta().gc_stats(now_ms() + 1000).await.unwrap();
        assert_eq!(
            gc,
            cairn_meta::GcStats::default(),
            "nothing unreferenced is left"
        );
        for h in &stored {
            assert!(world.meta().block_info(*h).await.unwrap().unwrap().refcount > 0);
        }
        let problems = world.meta().check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
);

on_each_backend!(
    collection_empties_the_store_once_nothing_references_anything,
    WITH_S3,
    |s| {
        let user = s.state.meta.user_by_name("admin").await.unwrap().unwrap();
        let actor = Actor {
            user_id: user.id,
            device_id: None,
            device_name: "test".into(),
        };
        let pool = pool();
        let world = World {
            state: s.state.clone(),
            other: other_process(&s.state).await,
            actor,
            user,
            hashes: pool.iter().map(|b| BlockHash::of(b)).collect(),
            pool,
        };
        assert!(world.commit("/a", &[0, 1, 2]).await);
        assert!(world.commit("/a", &[2, 3]).await);
        assert!(world.commit("/b", &[3, 4]).await);
        world.upload(&[5, 6]).await; // uploaded, never committed
                                     // A stray file: written to the store, never recorded (a crash in between).
        world
            .store()
            .put(world.hashes[7], world.pool[7].clone())
            .await
            .unwrap();
        assert_eq!(world.store().list().await.unwrap().len(), 8);

        let stray_size = world
            .store()
            .stored_size(world.hashes[7])
            .await
            .unwrap()
            .unwrap();

        // With the default grace nothing recent goes, except the stray file, which no
        // upload recorded.
        let report = world
            .blocks()
            .collect_garbage(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!((report.blocks_deleted, report.orphans_adopted), (1, 1));
        assert_eq!(report.bytes_freed, stray_size);
        assert_eq!(world.store().list().await.unwrap().len(), 7);

        // Grace 0: the two uploads nobody committed go; history still holds 0 and 1.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = world
            .blocks()
            .collect_garbage(Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.blocks_deleted, 2);
        assert!(report.bytes_freed > 0);
        assert!(!world.store().contains(world.hashes[5]).await.unwrap());

        // Drop the history and empty both files: nothing references anything, all goes.
        assert!(world.commit("/a", &[]).await);
        assert!(world.commit("/b", &[]).await);
        world
            .meta()
            .prune_versions(now_ms() + 1000, 0, 0)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = world
            .blocks()
            .collect_garbage(Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.blocks_deleted, 5);
        assert_eq!(world.store().list().await.unwrap(), Vec::<BlockHash>::new());
        assert_eq!(world.meta().stats().await.unwrap().blocks, 0);
        let problems = world.meta().check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
);

/// An in-memory block backend that can stop a `put` of a block it already holds, so a
/// test can run a collection in exactly the window the upload path must survive.
#[derive(Debug, Default)]
struct PausingBackend {
    blocks: std::sync::Mutex<std::collections::HashMap<BlockHash, Bytes>>,
    /// When set: announce through the first sender that a put found its block present,
    /// then wait on the receiver before returning.
    pause: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
}

impl cairn_store::BlockBackend for PausingBackend {
    fn put(
        &self,
        hash: BlockHash,
        block: cairn_store::EncodedBlock,
    ) -> cairn_store::BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let created = {
                let mut blocks = self.blocks.lock().unwrap();
                match blocks.entry(hash) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert([block.header, block.payload].concat().into());
                        true
                    }
                }
            };
            if !created {
                let pause = self.pause.lock().unwrap().take();
                if let Some((paused, resume)) = pause {
                    paused.send(()).unwrap();
                    resume.await.unwrap();
                }
            }
            Ok(created)
        })
    }

    fn get(&self, hash: BlockHash) -> cairn_store::BoxFuture<'_, Result<Bytes, StoreError>> {
        let found = self.blocks.lock().unwrap().get(&hash).cloned();
        Box::pin(async move { found.ok_or(StoreError::NotFound(hash)) })
    }

    fn contains(&self, hash: BlockHash) -> cairn_store::BoxFuture<'_, Result<bool, StoreError>> {
        let found = self.blocks.lock().unwrap().contains_key(&hash);
        Box::pin(async move { Ok(found) })
    }

    fn delete(&self, hash: BlockHash) -> cairn_store::BoxFuture<'_, Result<(), StoreError>> {
        self.blocks.lock().unwrap().remove(&hash);
        Box::pin(async { Ok(()) })
    }

    fn quarantine(&self, hash: BlockHash) -> cairn_store::BoxFuture<'_, Result<bool, StoreError>> {
        // Nothing to set aside to: dropping the block is what matters to callers.
        let found = self.blocks.lock().unwrap().remove(&hash).is_some();
        Box::pin(async move { Ok(found) })
    }

    fn list(&self) -> cairn_store::BoxFuture<'_, Result<Vec<BlockHash>, StoreError>> {
        let all = self.blocks.lock().unwrap().keys().copied().collect();
        Box::pin(async move { Ok(all) })
    }

    fn stored_size(
        &self,
        hash: BlockHash,
    ) -> cairn_store::BoxFuture<'_, Result<Option<u64>, StoreError>> {
        let size = self
            .blocks
            .lock()
            .unwrap()
            .get(&hash)
            .map(|b| b.len() as u64);
        Box::pin(async move { Ok(size) })
    }
}

on_each_backend!(
    an_upload_survives_a_collection_between_its_store_and_its_record,
    |s| {
        let backend = Arc::new(PausingBackend::default());
        let state = AppState {
            blocks: BlockManager::new(
                s.state.meta.clone(),
                BlockStore::from_backend(backend.clone()),
                s.state.config.chunker,
            ),
            ..s.state.clone()
        };
        let user = state.meta.user_by_name("admin").await.unwrap().unwrap();
        let data = pool()[0].clone();
        let hash = BlockHash::of(&data);
        state
            .blocks
            .accept_one(&user, hash, data.clone())
            .await
            .unwrap();
        // Unreferenced since "a moment ago", so a collection with no grace takes it.
        tokio::time::sleep(Duration::from_millis(5)).await;

        // The second upload's put finds the block present and stops there.
        let (paused_tx, paused) = tokio::sync::oneshot::channel();
        let (resume, resume_rx) = tokio::sync::oneshot::channel();
        *backend.pause.lock().unwrap() = Some((paused_tx, resume_rx));
        let upload = {
            let (state, user, data) = (state.clone(), user.clone(), data.clone());
            tokio::spawn(async move { state.blocks.accept_one(&user, hash, data).await })
        };
        paused.await.unwrap();

        // Now the collector claims the block and deletes row and file.
        let report = state.blocks.collect_garbage(Duration::ZERO).await.unwrap();
        assert_eq!(report.blocks_deleted, 1);
        assert!(!state.blocks.store().contains(hash).await.unwrap());

        // The upload goes on: it records the block anew and, finding the file gone,
        // stores it again. The client may then commit it.
        resume.send(()).unwrap();
        upload.await.unwrap().unwrap();
        assert_eq!(state.blocks.store().get(hash).await.unwrap(), data);
        let actor = Actor {
            user_id: user.id,
            device_id: None,
            device_name: "test".into(),
        };
        state
            .meta
            .commit_file(CommitFile {
                ns: user.home_ns,
                path: path("/survivor"),
                blocks: vec![BlockRef {
                    hash,
                    size: data.len() as u32,
                }],
                mtime: None,
                base_rev: None,
                autorename: false,
                actor,
            })
            .await
            .unwrap();
        // And a collection now leaves it alone.
        let report = state.blocks.collect_garbage(Duration::ZERO).await.unwrap();
        assert_eq!(report.blocks_deleted, 0);
        assert_eq!(state.blocks.store().get(hash).await.unwrap(), data);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_task_prunes_and_collects() {
    for backend in WITH_S3 {
        let s = TestServer::start_with(backend, |config| {
            config.maintenance.maintenance_interval_secs = 1;
            config.maintenance.gc_grace_secs = 0;
            config.maintenance.version_retention_days = 0;
            config.maintenance.keep_versions = 1;
        })
        .await;
        let metrics = |name: &'static str| {
            let body = cairn_server::metrics::handle().render();
            body.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        let (deleted_before, pruned_before) = (
            metrics("cairn_gc_blocks_deleted_total"),
            metrics("cairn_versions_pruned_total"),
        );
        let pool = pool();
        let (one, two) = (&pool[0], &pool[1]);
        // Two versions of a file (the older one beyond keep_versions) and a block
        // uploaded but never committed.
        for data in [one, two, &pool[2]] {
            let (status, body) = s.put_block_as(&s.token, data).await;
            assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        }
        let block =
            |d: &Bytes| serde_json::json!({"hash": crate::support::hex_hash(d), "size": d.len()});
        let (status, body) = s
            .commit(serde_json::json!({"path": "/f", "blocks": [block(one)]}))
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let rev = body["entry"]["rev"].clone();
        let (status, body) = s
            .commit(serde_json::json!({"path": "/f", "blocks": [block(two)], "base_rev": rev}))
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");

        // Within a few passes only the current version's block is left.
        let hashes: Vec<BlockHash> = pool.iter().map(|b| BlockHash::of(b)).collect();
        let mut left = Vec::new();
        for _ in 0..100 {
            left = s.state.blocks.store().list().await.unwrap();
            if left == vec![hashes[1]] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(left, vec![hashes[1]], "the background task did not collect");
        assert_eq!(s.state.blocks.store().get(hashes[1]).await.unwrap(), *two);
        assert!(metrics("cairn_gc_blocks_deleted_total") >= deleted_before + 2.0);
        assert!(metrics("cairn_versions_pruned_total") >= pruned_before + 1.0);
        let problems = s.state.meta.check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        s.finish().await;
    }
}
