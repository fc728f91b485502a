//! The planner: a pure function from the three trees to the operations that bring the
//! disk and the server closer together. It does no IO and reads no clock; the engine
//! runs what it returns, updates the trees with the results and asks again, until the
//! plan is empty.
//!
//! Each plan holds only operations that can run now, side by side: a file is not
//! downloaded before its folder exists on disk, and a moved folder's contents wait for
//! the move. Deep trees therefore take a few rounds, one level per round.
//!
//! The rules, in the order they apply:
//! 1. **Moves first.** A synced node whose inode now sits at another path moved on disk;
//!    one whose entry id sits elsewhere on the server moved there. A move is carried to
//!    the other side when its destination is free there. When both sides moved the same
//!    node to different places, the server's move wins (nothing is lost; the file is
//!    just where the other device put it). When moves block each other — A into B here,
//!    B into A there — a local move is undone so the server's can proceed. A move that
//!    can never be carried over falls through to rule 3 as a delete and a create.
//! 2. **Case clashes.** A new local item whose name differs only in case from another
//!    item's is renamed to a conflict copy (see [`case`]): the server would refuse it.
//! 3. **Path by path**, comparing each side with Synced. A change on one side is
//!    carried to the other. Changes on both sides:
//!    - the same content (or two folders) → simply recorded as synced;
//!    - different content → the local file is renamed to a conflict copy, which is
//!      then uploaded, and the server's file comes down in its place;
//!    - deleted on one side, changed on the other → the change wins and the deleted
//!      item comes back, so an edit that races a delete survives.
//!
//!    A folder delete is carried over whole only when nothing below it changed on the
//!    other side; otherwise it is carried over item by item and the folder stays for
//!    what changed.

use std::collections::HashMap;
use std::hash::Hash;

use cairn_core::conflict::{copy_name, CopyReason, NameKind};
use cairn_core::ServerPath;

use crate::tree::{parent_is_folder, Kind, LocalNode, RemoteNode, SyncedNode, Tree};

/// What the engine is to do. Paths are inside the sync folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Record, without any IO, that `path` is in sync as `node` (or gone from both
    /// sides when `None`).
    Record {
        path: ServerPath,
        node: Option<SyncedNode>,
    },
    /// Record that both sides moved the node at `from` to `to`.
    RecordMove { from: ServerPath, to: ServerPath },
    /// Move a node on the server, as it was moved on disk.
    MoveRemote {
        from: ServerPath,
        to: ServerPath,
        /// For a file, the revision the move is based on.
        base_rev: Option<String>,
    },
    /// Move a node on disk: a move made on the server, or undoing a local move that
    /// blocks one.
    MoveLocal {
        from: ServerPath,
        to: ServerPath,
        /// Where Synced holds the node, moved along to `to` once done; `None` when the
        /// move undoes a local move (Synced already has it at `to`).
        synced_from: Option<ServerPath>,
    },
    /// Create a folder on the server.
    MkdirRemote { path: ServerPath },
    /// Create a folder on disk.
    MkdirLocal { path: ServerPath },
    /// Send the local file to the server.
    Upload {
        path: ServerPath,
        /// The revision the local content was based on; `None` for a new file.
        base_rev: Option<String>,
    },
    /// Fetch the server's file into place on disk, provided the disk still holds
    /// `expect_local` there (`None`: nothing).
    Download {
        path: ServerPath,
        remote: RemoteNode,
        expect_local: Option<LocalNode>,
    },
    /// Delete a file or folder on the server (to its trash).
    DeleteRemote {
        path: ServerPath,
        kind: Kind,
        /// For a file, the revision the server was seen holding with the synced
        /// content; a newer one on the server is not deleted.
        base_rev: Option<String>,
    },
    /// Delete from disk a file or a folder with what it holds, each item only if it is
    /// still as listed (children after their folder, as the tree orders them).
    DeleteLocal {
        path: ServerPath,
        expect: Vec<(ServerPath, LocalNode)>,
    },
    /// Rename the local file or folder at `path` to the conflict copy name `to`.
    ConflictLocal { path: ServerPath, to: ServerPath },
}

impl Operation {
    /// The path the operation acts on (for a move, its destination).
    pub fn path(&self) -> &ServerPath {
        match self {
            Operation::Record { path, .. }
            | Operation::MkdirRemote { path }
            | Operation::MkdirLocal { path }
            | Operation::Upload { path, .. }
            | Operation::Download { path, .. }
            | Operation::DeleteRemote { path, .. }
            | Operation::DeleteLocal { path, .. }
            | Operation::ConflictLocal { path, .. } => path,
            Operation::RecordMove { to, .. }
            | Operation::MoveRemote { to, .. }
            | Operation::MoveLocal { to, .. } => to,
        }
    }
}

/// The three trees, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Trees<'a> {
    pub local: &'a Tree<LocalNode>,
    pub remote: &'a Tree<RemoteNode>,
    pub synced: &'a Tree<SyncedNode>,
}

/// What the planner needs besides the trees, so that it reads no clock.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// This device's name, for conflict copies.
    pub device: String,
    /// The time, formatted `YYYY-MM-DD HHMMSS`, for conflict copies.
    pub stamp: String,
}

/// The operations that bring the two sides closer together; empty when they agree.
pub fn plan_sync(trees: Trees<'_>, ctx: &PlanContext) -> Vec<Operation> {
    plan_sync_within(trees, ctx, usize::MAX, &|_| false)
}

/// [`plan_sync`], holding at most `limit` operations and none for which `leave_out`
/// holds (say, what the server refused earlier in this sync). What is not planned
/// waits for a later plan, so a first sync of a large tree never holds an operation
/// per file in memory at once, and work the server refuses never crowds out the rest.
pub fn plan_sync_within(
    trees: Trees<'_>,
    ctx: &PlanContext,
    limit: usize,
    leave_out: &dyn Fn(&Operation) -> bool,
) -> Vec<Operation> {
    let limit = limit.max(1);
    let keep = |mut ops: Vec<Operation>| {
        ops.retain(|op| !leave_out(op));
        ops.truncate(limit);
        ops
    };
    let moves = keep(plan_moves(trees));
    if !moves.is_empty() {
        return moves;
    }
    let clashes = case::plan_case_clashes(trees, ctx);
    let renames = keep(clashes.renames);
    if !renames.is_empty() {
        return renames;
    }
    let mut ops = Ops {
        ops: Vec::new(),
        limit,
        leave_out,
    };
    plan_paths(trees, ctx, &clashes.wait, &mut ops);
    ops.ops
}

/// A plan being built, up to its limit.
struct Ops<'a> {
    ops: Vec<Operation>,
    limit: usize,
    leave_out: &'a dyn Fn(&Operation) -> bool,
}

impl Ops<'_> {
    fn push(&mut self, op: Operation) {
        if self.ops.len() < self.limit && !(self.leave_out)(&op) {
            self.ops.push(op);
        }
    }

    fn is_full(&self) -> bool {
        self.ops.len() >= self.limit
    }
}

/// A node that sits at `from` in Synced and at `to` on one side.
#[derive(Debug, Clone)]
struct Move {
    from: ServerPath,
    to: ServerPath,
}

/// The moves on one side: synced nodes whose identity (`synced_id`) now sits at another
/// path of `side` where Synced has nothing, leaving out moves implied by a moved
/// ancestor. An id held by two nodes at once (hard links) is not trusted.
fn detect_moves<N: Clone, I: Copy + Eq + Hash + Default>(
    synced: &Tree<SyncedNode>,
    side: &Tree<N>,
    synced_id: impl Fn(&SyncedNode) -> I,
    side_id: impl Fn(&N) -> I,
    side_kind: impl Fn(&N) -> Kind,
) -> Vec<Move> {
    let unset = I::default();
    let mut by_id: HashMap<I, Option<&ServerPath>> = HashMap::new();
    for (path, node) in side.iter() {
        let id = side_id(node);
        if id != unset {
            by_id
                .entry(id)
                .and_modify(|seen| *seen = None)
                .or_insert(Some(path));
        }
    }
    let mut moves: Vec<Move> = Vec::new();
    for (from, s) in synced.iter() {
        let id = synced_id(s);
        if id == unset {
            continue;
        }
        if side.get(from).is_some_and(|n| side_id(n) == id) {
            continue;
        }
        let Some(Some(to)) = by_id.get(&id) else {
            continue;
        };
        let node = side.get(to).expect("indexed from this tree");
        if side_kind(node) != s.kind || synced.get(to).is_some() || to.starts_with(from) {
            continue;
        }
        // Synced is walked in path order, so an ancestor's move is already listed.
        let implied = moves
            .iter()
            .any(|m| from.starts_with(&m.from) && from.rebase(&m.from, &m.to).as_ref() == Some(to));
        if !implied {
            moves.push(Move {
                from: from.clone(),
                to: (*to).clone(),
            });
        }
    }
    moves
}

fn plan_moves(t: Trees<'_>) -> Vec<Operation> {
    let local_moves = detect_moves(t.synced, t.local, |s| s.local_id, |n| n.id, |n| n.kind);
    let remote_moves = detect_moves(t.synced, t.remote, |s| s.remote_id, |n| n.id, |n| n.kind);
    if local_moves.is_empty() && remote_moves.is_empty() {
        return Vec::new();
    }
    let local_is_folder = |p: &ServerPath| t.local.get(p).is_some_and(|n| n.kind == Kind::Folder);
    let remote_is_folder = |p: &ServerPath| t.remote.get(p).is_some_and(|n| n.kind == Kind::Folder);
    let local_can_move = |from: &ServerPath, to: &ServerPath| {
        t.local.get(to).is_none() && !to.starts_with(from) && parent_is_folder(to, local_is_folder)
    };
    // The server holds one name per key: `/a` cannot move to `/D/x` beside `/D/X`,
    // though it may move to `/A`.
    let remote_keys = case::KeyIndex::of(t.remote);
    let remote_can_move = |from: &ServerPath, to: &ServerPath| {
        t.remote.get(to).is_none()
            && !to.starts_with(from)
            && parent_is_folder(to, remote_is_folder)
            && !remote_keys.taken(t.remote, to, from)
    };

    let mut ops = Vec::new();
    let mut blocked_remote = false;
    for m in &remote_moves {
        let s = t.synced.get(&m.from).expect("moves start in Synced");
        let local_twin = local_moves.iter().find(|l| l.from == m.from);
        match local_twin {
            Some(l) if l.to == m.to => ops.push(Operation::RecordMove {
                from: m.from.clone(),
                to: m.to.clone(),
            }),
            Some(l) => {
                if local_can_move(&l.to, &m.to) {
                    ops.push(Operation::MoveLocal {
                        from: l.to.clone(),
                        to: m.to.clone(),
                        synced_from: Some(m.from.clone()),
                    });
                } else {
                    blocked_remote = true;
                }
            }
            None => {
                let still_here = t.local.get(&m.from).is_some_and(|n| n.id == s.local_id);
                if still_here && local_can_move(&m.from, &m.to) {
                    ops.push(Operation::MoveLocal {
                        from: m.from.clone(),
                        to: m.to.clone(),
                        synced_from: Some(m.from.clone()),
                    });
                } else if still_here {
                    blocked_remote = true;
                }
            }
        }
    }
    for m in &local_moves {
        if remote_moves.iter().any(|r| r.from == m.from) {
            continue;
        }
        let s = t.synced.get(&m.from).expect("moves start in Synced");
        let there = t.remote.get(&m.from).filter(|n| n.id == s.remote_id);
        if let Some(r) = there.filter(|_| remote_can_move(&m.from, &m.to)) {
            // Based on the revision the server is known to hold, not the synced one: a
            // file edited there since moves all the same (the edit moves along and comes
            // down next round), whereas naming the synced revision would be refused
            // forever.
            ops.push(Operation::MoveRemote {
                from: m.from.clone(),
                to: m.to.clone(),
                base_rev: r.rev.clone(),
            });
        }
    }
    if ops.is_empty() && blocked_remote {
        // Moves that block each other: undo one local move, so the server's can run.
        if let Some(m) = local_moves.iter().find(|m| local_can_move(&m.to, &m.from)) {
            ops.push(Operation::MoveLocal {
                from: m.to.clone(),
                to: m.from.clone(),
                synced_from: None,
            });
        }
    }
    ops
}

/// What one side holds at a path, compared with Synced.
fn local_changed(l: Option<&LocalNode>, s: Option<&SyncedNode>) -> bool {
    match (l, s) {
        (None, None) => false,
        (Some(l), Some(s)) => l.kind != s.kind || (l.kind == Kind::File && l.hash != s.hash),
        _ => true,
    }
}

fn remote_changed(r: Option<&RemoteNode>, s: Option<&SyncedNode>) -> bool {
    match (r, s) {
        (None, None) => false,
        (Some(r), Some(s)) => r.kind != s.kind || (r.kind == Kind::File && r.hash != s.hash),
        _ => true,
    }
}

/// Whether nothing at or below `path` changed locally since it was synced.
fn local_subtree_unchanged(t: Trees<'_>, path: &ServerPath) -> bool {
    let same = |p: &ServerPath| !local_changed(t.local.get(p), t.synced.get(p));
    same(path)
        && t.local.descendants(path).all(|(p, _)| same(p))
        && t.synced.descendants(path).all(|(p, _)| same(p))
}

/// Whether nothing at or below `path` changed on the server since it was synced.
fn remote_subtree_unchanged(t: Trees<'_>, path: &ServerPath) -> bool {
    let same = |p: &ServerPath| !remote_changed(t.remote.get(p), t.synced.get(p));
    same(path)
        && t.remote.descendants(path).all(|(p, _)| same(p))
        && t.synced.descendants(path).all(|(p, _)| same(p))
}

/// One path as the three trees hold it, and whether its parent is a folder on each
/// side (an operation that creates something there waits for its parent until then).
struct At<'t> {
    path: &'t ServerPath,
    l: Option<&'t LocalNode>,
    r: Option<&'t RemoteNode>,
    s: Option<&'t SyncedNode>,
    local_parent: bool,
    remote_parent: bool,
}

/// Rule 3 for every path except those at or below `wait`.
fn plan_paths(t: Trees<'_>, ctx: &PlanContext, wait: &[ServerPath], ops: &mut Ops<'_>) {
    let mut paths: Vec<&ServerPath> = t
        .local
        .paths()
        .chain(t.remote.paths())
        .chain(t.synced.paths())
        .collect();
    paths.sort_unstable();
    paths.dedup();

    let local_is_folder = |p: &ServerPath| t.local.get(p).is_some_and(|n| n.kind == Kind::Folder);
    let remote_is_folder = |p: &ServerPath| t.remote.get(p).is_some_and(|n| n.kind == Kind::Folder);

    // A folder deleted whole: what lies below it needs nothing more this round.
    let mut skip_below: Option<&ServerPath> = None;
    for path in paths {
        if ops.is_full() {
            break;
        }
        if !wait.is_empty() && wait.iter().any(|w| path.starts_with(w)) {
            continue;
        }
        if let Some(done) = skip_below {
            if path.starts_with(done) {
                continue;
            }
            skip_below = None;
        }
        let at = At {
            path,
            l: t.local.get(path),
            r: t.remote.get(path),
            s: t.synced.get(path),
            local_parent: parent_is_folder(path, local_is_folder),
            remote_parent: parent_is_folder(path, remote_is_folder),
        };
        if at
            .l
            .is_some_and(|l| l.kind == Kind::File && l.hash.is_none())
        {
            // Not hashed yet; the engine hashes before it plans, so this is a file that
            // changed while being read. It waits for the next scan.
            continue;
        }
        let done_below = match (local_changed(at.l, at.s), remote_changed(at.r, at.s)) {
            (false, false) => {
                plan_unchanged(&at, ops);
                false
            }
            (true, false) => plan_local_change(t, ctx, &at, ops),
            (false, true) => plan_remote_change(t, ctx, &at, ops),
            (true, true) => plan_both_changed(t, ctx, &at, ops),
        };
        if done_below {
            skip_below = Some(path);
        }
    }
}

/// Equal content on both sides: refresh what identifies it in Synced if that moved on.
fn plan_unchanged(at: &At<'_>, ops: &mut Ops<'_>) {
    if let (Some(l), Some(r), Some(s)) = (at.l, at.r, at.s) {
        let node = SyncedNode::of(l, r);
        if node != *s {
            ops.push(Operation::Record {
                path: at.path.clone(),
                node: Some(node),
            });
        }
    }
}

/// Changed on disk only: carried to the server. True when what lies below the path
/// needs nothing more this round.
///
/// Unchanged on the server means the same content as Synced, not the same revision:
/// another device may have written the same bytes again, or deleted and re-created the
/// file. Operations name the revision the server holds, or they would be refused every
/// round.
fn plan_local_change(t: Trees<'_>, ctx: &PlanContext, at: &At<'_>, ops: &mut Ops<'_>) -> bool {
    let path = at.path;
    match (at.l, at.s.map(|s| (s, base_rev_on_server(at.r, s)))) {
        (None, Some((s, _))) if s.kind == Kind::Folder => {
            if remote_subtree_unchanged(t, path) {
                ops.push(Operation::DeleteRemote {
                    path: path.clone(),
                    kind: Kind::Folder,
                    base_rev: None,
                });
                return true;
            } else if at.local_parent {
                // Something below changed on the server: the folder stays.
                ops.push(Operation::MkdirLocal { path: path.clone() });
            }
        }
        (None, Some((_, base_rev))) => ops.push(Operation::DeleteRemote {
            path: path.clone(),
            kind: Kind::File,
            base_rev,
        }),
        (Some(l), None) => {
            if at.remote_parent {
                ops.push(create_remote(path, l.kind, None));
            }
        }
        (Some(l), Some((s, base_rev))) if l.kind == s.kind => ops.push(Operation::Upload {
            path: path.clone(),
            base_rev,
        }),
        (Some(_), Some((s, base_rev))) => {
            // Replaced by the other kind: delete the old on the server first;
            // the new one is created next round.
            if s.kind == Kind::File || remote_subtree_unchanged(t, path) {
                ops.push(Operation::DeleteRemote {
                    path: path.clone(),
                    kind: s.kind,
                    base_rev,
                });
                return true;
            } else {
                ops.push(conflict_local(t, ctx, path));
            }
        }
        (None, None) => {}
    }
    false
}

/// Changed on the server only: carried to disk. True when what lies below the path
/// needs nothing more this round.
fn plan_remote_change(t: Trees<'_>, ctx: &PlanContext, at: &At<'_>, ops: &mut Ops<'_>) -> bool {
    let path = at.path;
    match (at.r, at.s) {
        (None, Some(s)) => {
            let l = at.l.expect("unchanged locally, so present like Synced");
            if s.kind == Kind::File {
                ops.push(Operation::DeleteLocal {
                    path: path.clone(),
                    expect: vec![(path.clone(), l.clone())],
                });
            } else if local_subtree_unchanged(t, path) {
                ops.push(delete_local_subtree(t, path, l));
                return true;
            } else if at.remote_parent {
                // Something below changed on disk: the folder stays.
                ops.push(Operation::MkdirRemote { path: path.clone() });
            }
        }
        (Some(r), None) => {
            if at.local_parent {
                ops.push(create_local(path, r, None));
            }
        }
        (Some(r), Some(s)) if r.kind == s.kind => ops.push(Operation::Download {
            path: path.clone(),
            remote: r.clone(),
            expect_local: at.l.cloned(),
        }),
        (Some(_), Some(s)) => {
            let l = at.l.expect("unchanged locally, so present like Synced");
            if s.kind == Kind::File || local_subtree_unchanged(t, path) {
                ops.push(delete_local_subtree(t, path, l));
                return true;
            } else {
                ops.push(conflict_local(t, ctx, path));
            }
        }
        (None, None) => {}
    }
    false
}

/// Changed on both sides: the same change is recorded, a delete racing an edit loses to
/// the edit, and anything else keeps a conflict copy of the local side. True when what
/// lies below the path needs nothing more this round.
fn plan_both_changed(t: Trees<'_>, ctx: &PlanContext, at: &At<'_>, ops: &mut Ops<'_>) -> bool {
    let path = at.path;
    match (at.l, at.r) {
        (None, None) => ops.push(Operation::Record {
            path: path.clone(),
            node: None,
        }),
        (None, Some(r)) => {
            // Deleted here, changed on the server: the server's version comes back.
            if at.local_parent {
                ops.push(create_local(path, r, None));
            }
        }
        (Some(l), None) => {
            // Deleted on the server, changed here: the local version goes up.
            if at.remote_parent {
                ops.push(create_remote(path, l.kind, None));
            }
        }
        (Some(l), Some(r)) => {
            let same = l.kind == r.kind && (l.kind == Kind::Folder || l.hash == r.hash);
            if same {
                ops.push(Operation::Record {
                    path: path.clone(),
                    node: Some(SyncedNode::of(l, r)),
                });
            } else {
                ops.push(conflict_local(t, ctx, path));
                return true;
            }
        }
    }
    false
}

/// The revision to base an operation on, for a path whose server side holds what
/// Synced says (content-wise): the server's current revision.
fn base_rev_on_server(r: Option<&RemoteNode>, s: &SyncedNode) -> Option<String> {
    r.filter(|r| r.kind == s.kind)
        .and_then(|r| r.rev.clone())
        .or_else(|| s.rev.clone())
}

fn create_remote(path: &ServerPath, kind: Kind, base_rev: Option<String>) -> Operation {
    match kind {
        Kind::Folder => Operation::MkdirRemote { path: path.clone() },
        Kind::File => Operation::Upload {
            path: path.clone(),
            base_rev,
        },
    }
}

fn create_local(path: &ServerPath, r: &RemoteNode, expect_local: Option<LocalNode>) -> Operation {
    match r.kind {
        Kind::Folder => Operation::MkdirLocal { path: path.clone() },
        Kind::File => Operation::Download {
            path: path.clone(),
            remote: r.clone(),
            expect_local,
        },
    }
}

fn delete_local_subtree(t: Trees<'_>, path: &ServerPath, node: &LocalNode) -> Operation {
    let mut expect = vec![(path.clone(), node.clone())];
    expect.extend(
        t.local
            .descendants(path)
            .map(|(p, n)| (p.clone(), n.clone())),
    );
    Operation::DeleteLocal {
        path: path.clone(),
        expect,
    }
}

/// How many numbered conflict-copy names to try before the stamp-only fallback name.
const MAX_CONFLICT_COPIES: u32 = 10_000;

/// Moves the local item at `path` aside under a conflict copy name free on both sides.
fn conflict_local(t: Trees<'_>, ctx: &PlanContext, path: &ServerPath) -> Operation {
    let name = path.name().unwrap_or_default();
    let parent = path.parent().unwrap_or_else(ServerPath::root);
    let kind = match t.local.get(path).map(|n| n.kind) {
        Some(Kind::File) => NameKind::File,
        _ => NameKind::Folder,
    };
    let taken = |p: &ServerPath| {
        t.local.get(p).is_some() || t.remote.get(p).is_some() || t.synced.get(p).is_some()
    };
    let reason = CopyReason::Conflict {
        device: &ctx.device,
        stamp: &ctx.stamp,
    };
    // `copy_name` always fits the name limit, so only a taken name moves on to the next
    // number; the trees are finite, so a free one comes.
    for n in 1..=MAX_CONFLICT_COPIES {
        match parent.join(&copy_name(name, kind, reason, n)) {
            Ok(to) if !taken(&to) => {
                return Operation::ConflictLocal {
                    path: path.clone(),
                    to,
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let fallback = parent
        .join(&format!("conflicted copy {}", ctx.stamp.replace(' ', "-")))
        .unwrap_or_else(|_| ServerPath::root());
    Operation::ConflictLocal {
        path: path.clone(),
        to: fallback,
    }
}

mod case;
#[cfg(test)]
mod tests;
