//! The engine's environment on one simulated device: its disk and the shared server,
//! reached through a network that loses requests and responses, with the user and other
//! clients acting in between the engine's calls. Every call made here comes from the
//! engine, so this is also where the invariants about what the engine may do are
//! checked: no ignored path is touched, and no content is destroyed on a disk unless
//! the server has it.

use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_trait::async_trait;
use cairn_core::conflict::format_stamp;
use cairn_core::delta::Form;
use cairn_core::{ContentHash, ServerPath};
use cairn_sync::{
    Env, EnvError, Kind, LocalNode, Persist, RacyFrom, RemoteDelta, RemoteNode, StateChange,
};
use rand::Rng;

use crate::disk::{local_changed, DiskNode};
use crate::stream;
use crate::world::World;

/// Returns `Pending` a given number of times (waking itself at once), so that calls the
/// engine runs side by side land in an order the seed decides.
struct Yield(u32);

impl Future for Yield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            Poll::Ready(())
        } else {
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn unavailable(what: &str) -> EnvError {
    EnvError::Unavailable(what.to_owned())
}

#[derive(Clone)]
pub struct SimEnv {
    pub world: Arc<Mutex<World>>,
    pub dev: usize,
}

impl std::fmt::Debug for SimEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimEnv(dev{})", self.dev)
    }
}

impl SimEnv {
    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn delay(&self) {
        let n = {
            let mut w = self.lock();
            let max = w.faults.max_delay;
            if max == 0 {
                0
            } else {
                w.rng.gen_range(0..=max)
            }
        };
        Yield(n).await;
    }

    /// Asks the server to forget an announced upload; a failure leaves it to expire.
    async fn end_upload(&self, id: &str) {
        let _ = self
            .call(
                || format!("end upload {id}"),
                true,
                |w, _| {
                    w.server.uploads.pending.remove(id);
                    Ok(())
                },
            )
            .await;
    }

    /// Runs one call: after a random delay, and perhaps a user's edit or another
    /// client's change, or a crash; `remote` calls also cross the network.
    async fn call<T: std::fmt::Debug>(
        &self,
        what: impl FnOnce() -> String,
        remote: bool,
        body: impl FnOnce(&mut World, usize) -> Result<T, EnvError>,
    ) -> Result<T, EnvError> {
        self.delay().await;
        let mut guard = self.lock();
        let w = &mut *guard;
        let dev = self.dev;
        let result = (|| {
            interfere(w, dev)?;
            if remote {
                if w.devices[dev].offline {
                    return Err(unavailable("offline"));
                }
                if w.chance(w.faults.drop_request) {
                    return Err(unavailable("request lost"));
                }
            }
            let result = body(w, dev);
            if remote && w.chance(w.faults.drop_response) {
                w.log(|| format!("dev{dev}   (response lost: {result:?})"));
                return Err(unavailable("response lost"));
            }
            result
        })();
        w.log(|| format!("dev{dev} {} -> {result:?}", what()));
        result
    }
}

/// What may happen before a call: the device crashes, the user edits its disk, another
/// client changes the server.
fn interfere(w: &mut World, dev: usize) -> Result<(), EnvError> {
    if w.devices[dev].crashed {
        return Err(unavailable("crashed"));
    }
    if w.chance(w.faults.crash) {
        w.log(|| format!("dev{dev} CRASH"));
        w.devices[dev].crashed = true;
        return Err(unavailable("crashed"));
    }
    if w.chance(w.faults.user_race) {
        let did = w.user_action(dev);
        w.log(|| format!("dev{dev} user (racing): {did}"));
    }
    if w.chance(w.faults.server_race) {
        let did = w.server_action();
        w.log(|| format!("web (racing): {did}"));
    }
    if w.chance(w.faults.prefetch_race) {
        let devices = w.devices.len();
        let other = (dev + w.rng.gen_range(1..devices)) % devices;
        let did = stream::prefetch_step(w, other);
        w.log(|| format!("{did} (racing)"));
    }
    Ok(())
}

/// The engine touches only valid paths below the sync folder, never an ignored one.
fn check_path(w: &mut World, dev: usize, op: &str, path: &ServerPath) {
    if path.is_root() || ServerPath::parse(path.as_str()).as_ref() != Ok(path) {
        w.violation(format!("dev{dev} {op}: the engine touched {path:?}"));
    }
    if w.ignore.is_ignored(path) {
        w.violation(format!(
            "dev{dev} {op}: the engine touched the ignored {path}"
        ));
    }
}

/// The engine is about to destroy `node` on a disk: a file's content must already be
/// on the server, as some version.
fn check_destroy(w: &mut World, dev: usize, op: &str, path: &ServerPath, node: &DiskNode) {
    if let Some(content) = node.content {
        if !w.server.committed.contains(&content) {
            w.violation(format!(
                "dev{dev} {op}: the engine destroyed {path} = #{content}, which the server never had"
            ));
        }
    }
}

#[async_trait]
impl Env for SimEnv {
    async fn scan_local(&self) -> Result<Option<Vec<(ServerPath, LocalNode)>>, EnvError> {
        self.delay().await;
        let mut guard = self.lock();
        let w = &mut *guard;
        let dev = self.dev;
        interfere(w, dev)?;
        w.removals_at_scan[dev] = w.removals[dev];
        // A scan is not atomic: the user may change things while it walks the tree.
        let race_at = if w.chance(w.faults.user_race) {
            Some(w.rng.gen_range(0..=w.disks[dev].nodes.len()))
        } else {
            None
        };
        let mut out = Vec::new();
        let mut last: Option<ServerPath> = None;
        loop {
            if race_at == Some(out.len()) {
                let did = w.user_action(dev);
                w.log(|| format!("dev{dev} user (during scan): {did}"));
            }
            let nodes = &w.disks[dev].nodes;
            let next = match &last {
                None => nodes.iter().next(),
                Some(last) => nodes
                    .range::<ServerPath, _>((Bound::Excluded(last), Bound::Unbounded))
                    .next(),
            };
            let Some((path, node)) = next else { break };
            out.push((path.clone(), node.stat()));
            last = Some(path.clone());
        }
        w.log(|| format!("dev{dev} scan -> {} items", out.len()));
        Ok(Some(out))
    }

    async fn hash_local(
        &self,
        path: &ServerPath,
        node: &LocalNode,
    ) -> Result<Option<ContentHash>, EnvError> {
        self.call(
            || format!("hash {path}"),
            false,
            |w, dev| {
                check_path(w, dev, "hash_local", path);
                Ok(w.disks[dev]
                    .nodes
                    .get(path)
                    .filter(|n| n.kind == Kind::File && n.matches(node))
                    .and_then(|n| n.hashed().hash))
            },
        )
        .await
    }

    async fn mkdir_local(&self, path: &ServerPath) -> Result<LocalNode, EnvError> {
        self.call(
            || format!("mkdir_local {path}"),
            false,
            |w, dev| {
                check_path(w, dev, "mkdir_local", path);
                match w.disks[dev].nodes.get(path) {
                    Some(n) if n.kind == Kind::Folder => return Ok(n.stat()),
                    Some(_) => return Err(local_changed(format!("{path}: a file is there"))),
                    None if !w.disks[dev].parent_is_folder(path) => {
                        return Err(local_changed(format!("{path}: no parent folder")))
                    }
                    None => {}
                }
                let node = DiskNode {
                    kind: Kind::Folder,
                    inode: w.new_inode(dev),
                    mtime: w.tick(),
                    content: None,
                };
                let stat = node.stat();
                w.disks[dev].nodes.insert(path.clone(), node);
                Ok(stat)
            },
        )
        .await
    }

    async fn move_local(&self, from: &ServerPath, to: &ServerPath) -> Result<(), EnvError> {
        self.call(
            || format!("move_local {from} -> {to}"),
            false,
            |w, dev| {
                check_path(w, dev, "move_local", from);
                check_path(w, dev, "move_local", to);
                w.disks[dev].rename(from, to)
            },
        )
        .await
    }

    async fn remove_local(
        &self,
        path: &ServerPath,
        expect: &LocalNode,
        check_content: bool,
    ) -> Result<(), EnvError> {
        self.call(
            || format!("remove_local {path}"),
            false,
            |w, dev| {
                check_path(w, dev, "remove_local", path);
                let disk = &w.disks[dev];
                match disk.nodes.get(path) {
                    Some(n) if n.kind == Kind::File && still_holds(n, expect, check_content) => {
                        let node = n.clone();
                        check_destroy(w, dev, "remove_local", path, &node);
                    }
                    Some(n)
                        if n.kind == Kind::Folder
                            && expect.kind == Kind::Folder
                            && !disk.has_children(path) => {}
                    Some(_) => return Err(local_changed(format!("{path}: not as expected"))),
                    None => return Err(local_changed(format!("{path}: gone"))),
                }
                w.disks[dev].remove_subtree(path);
                Ok(())
            },
        )
        .await
    }

    async fn list_remote(&self) -> Result<(Vec<(ServerPath, RemoteNode)>, String), EnvError> {
        self.call(
            || "list_remote".to_owned(),
            true,
            |w, _| Ok(w.server.list()),
        )
        .await
    }

    async fn remote_delta(&self, cursor: &str) -> Result<RemoteDelta, EnvError> {
        self.call(
            || format!("delta {cursor}"),
            true,
            |w, _| {
                if w.chance(w.faults.cursor_reset) {
                    return Err(EnvError::CursorReset);
                }
                w.server.delta(cursor, w.page)
            },
        )
        .await
    }

    async fn upload(
        &self,
        path: &ServerPath,
        local: &LocalNode,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError> {
        // A file of several blocks may be announced first and its blocks stored in
        // steps (streaming sync); a failed announcement only loses the head start.
        let announced = self
            .call(
                || format!("announce {path}"),
                true,
                |w, dev| {
                    let content = match w.disks[dev].nodes.get(path) {
                        Some(n) if n.kind == Kind::File && n.matches(local) => {
                            n.content.expect("a file")
                        }
                        _ => return Ok(None),
                    };
                    let blocks = stream::blocks(content).len();
                    if blocks < 2 || !w.rng.gen_bool(0.6) {
                        return Ok(None);
                    }
                    let now = w.clock * 1_000;
                    let id = w.server.uploads.announce(dev, path, content, now);
                    Ok(Some((id, w.rng.gen_range(1..blocks), blocks)))
                },
            )
            .await
            .unwrap_or(None);
        if let Some((id, part, all)) = &announced {
            for upto in [*part, *all] {
                let stored = self
                    .call(
                        || format!("store blocks of {id} up to {upto}"),
                        true,
                        |w, _| {
                            let now = w.clock * 1_000;
                            w.server.uploads.store(id, upto, now);
                            Ok(())
                        },
                    )
                    .await;
                if let Err(err) = stored {
                    self.end_upload(id).await;
                    return Err(err);
                }
            }
        }
        let committed = self
            .call(
                || format!("upload {path} base {base_rev:?}"),
                true,
                |w, dev| {
                    check_path(w, dev, "upload", path);
                    // The file is read as it is now; it must still be the one the
                    // engine looked at.
                    let content = match w.disks[dev].nodes.get(path) {
                        Some(n) if n.kind == Kind::File && n.matches(local) => {
                            n.content.expect("a file")
                        }
                        _ => return Err(local_changed(format!("{path}: changed before upload"))),
                    };
                    // A new version's changed blocks go as rsync deltas from the old.
                    let old = w.server.live.get(path).and_then(|e| e.content);
                    if let Some(old) = old.filter(|old| *old != content && base_rev.is_some()) {
                        let (deltas, whole) = stream::replace(w, Form::Rsync, old, content);
                        w.delta_blocks += deltas as u64;
                        w.whole_blocks += whole as u64;
                    }
                    w.server.commit(path, content, base_rev)
                },
            )
            .await;
        if let Some((id, ..)) = &announced {
            self.end_upload(id).await;
        }
        committed
    }

    async fn download(
        &self,
        path: &ServerPath,
        remote: &RemoteNode,
        expect_local: Option<&LocalNode>,
        check_content: bool,
    ) -> Result<LocalNode, EnvError> {
        self.call(
            || format!("download {path} {:?} over {expect_local:?}", remote.rev),
            true,
            |w, dev| {
                check_path(w, dev, "download", path);
                let content = match w.server.live.get(path) {
                    Some(e) if e.kind == Kind::File && e.node() == *remote => {
                        e.content.expect("a file")
                    }
                    _ => return Err(EnvError::RemoteChanged(format!("{path}: not {remote:?}"))),
                };
                // What was fetched ahead of the commit, then the changed blocks as
                // patches against the copy being replaced.
                w.streamed += stream::claim(w, dev, path, content) as u64;
                let old = w.disks[dev].nodes.get(path).and_then(|n| n.content);
                if let Some(old) = old.filter(|old| *old != content) {
                    let (deltas, whole) = stream::replace(w, Form::Patch, old, content);
                    w.delta_blocks += deltas as u64;
                    w.whole_blocks += whole as u64;
                }
                // The temp file is written; the user may act before it is renamed in.
                if w.chance(w.faults.user_race) {
                    let did = w.user_action(dev);
                    w.log(|| format!("dev{dev} user (during download): {did}"));
                }
                let disk = &w.disks[dev];
                if !disk.parent_is_folder(path) {
                    return Err(local_changed(format!("{path}: no parent folder")));
                }
                match (disk.nodes.get(path), expect_local) {
                    (None, None) => {}
                    (Some(n), Some(expect))
                        if n.kind == Kind::File && still_holds(n, expect, check_content) =>
                    {
                        let old = n.clone();
                        check_destroy(w, dev, "download", path, &old);
                    }
                    _ => return Err(local_changed(format!("{path}: not as expected"))),
                }
                let node = DiskNode {
                    kind: Kind::File,
                    inode: w.new_inode(dev),
                    mtime: w.tick(),
                    content: Some(content),
                };
                let local = node.hashed();
                if let Some(old) = w.disks[dev].nodes.insert(path.clone(), node) {
                    w.disks[dev].free_inodes.push(old.inode);
                }
                Ok(local)
            },
        )
        .await
    }

    async fn mkdir_remote(&self, path: &ServerPath) -> Result<RemoteNode, EnvError> {
        self.call(
            || format!("mkdir_remote {path}"),
            true,
            |w, dev| {
                check_path(w, dev, "mkdir_remote", path);
                w.server.mkdir(path)
            },
        )
        .await
    }

    async fn move_remote(
        &self,
        from: &ServerPath,
        to: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError> {
        self.call(
            || format!("move_remote {from} -> {to} base {base_rev:?}"),
            true,
            |w, dev| {
                check_path(w, dev, "move_remote", from);
                check_path(w, dev, "move_remote", to);
                w.server.rename(from, to, base_rev)
            },
        )
        .await
    }

    async fn delete_remote(
        &self,
        path: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<(), EnvError> {
        self.call(
            || format!("delete_remote {path} base {base_rev:?}"),
            true,
            |w, dev| {
                check_path(w, dev, "delete_remote", path);
                w.server.delete(path, base_rev)
            },
        )
        .await
    }

    fn racy_from(&self) -> Option<RacyFrom> {
        // The next write may get the current tick again.
        let now = self.lock().clock * 1_000;
        Some(RacyFrom {
            fine: now,
            whole_seconds: now,
        })
    }

    fn stamp(&self) -> String {
        // Coarse on purpose: conflicts made in the same step share a stamp.
        format_stamp(1_800_000_000 + self.lock().step as i64 * 61)
    }
}

/// Whether the file `n` is still what `expect` recorded, checked as `RealEnv` checks
/// before it deletes or replaces a file: by stat, and by content if asked.
fn still_holds(n: &DiskNode, expect: &LocalNode, check_content: bool) -> bool {
    n.matches(expect) && (!check_content || n.hashed().hash == expect.hash)
}

/// Keeps what the engine saved in the world, where a restart finds it; a crashed
/// device saves nothing.
#[derive(Clone)]
pub struct SimPersist {
    pub world: Arc<Mutex<World>>,
    pub dev: usize,
}

impl std::fmt::Debug for SimPersist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimPersist(dev{})", self.dev)
    }
}

#[async_trait]
impl Persist for SimPersist {
    async fn save(&self, changes: &[StateChange]) -> Result<(), EnvError> {
        let mut w = self.world.lock().unwrap_or_else(|e| e.into_inner());
        if w.devices[self.dev].crashed {
            return Err(unavailable("crashed"));
        }
        for change in changes {
            w.persisted[self.dev].apply(change);
        }
        w.removals_saved[self.dev] = w.removals_at_scan[self.dev];
        Ok(())
    }
}
