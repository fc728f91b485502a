//! The three trees of the sync engine (DESIGN.md §2): what the disk held when last
//! observed (Local), what the server held (Remote), and the last state known to be equal
//! on both (Synced). Each is a sorted map from a path inside the sync folder — written as
//! a [`ServerPath`], `/` being the sync folder itself — to a node.

use std::collections::BTreeMap;
use std::ops::Bound;

use cairn_core::{ContentHash, ServerPath};

/// File or folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Folder,
}

/// An entry on the local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub kind: Kind,
    /// The inode number (0 where the platform gives none). It survives renames, which is
    /// how a local move is told apart from a delete and a create.
    pub id: u64,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// For a file, the content hash (computed with the server's chunker); `None` for a
    /// folder, or for a file not hashed yet.
    pub hash: Option<ContentHash>,
}

impl LocalNode {
    /// Whether `other` looks like the same, unchanged file or folder: same kind, inode,
    /// size and modification time. A changed file almost always changes one of these;
    /// the engine re-hashes only when one did.
    pub fn same_stat(&self, other: &LocalNode) -> bool {
        self.kind == other.kind
            && self.id == other.id
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
    }
}

/// An entry on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNode {
    pub kind: Kind,
    /// The server's entry id; it survives moves.
    pub id: i64,
    /// For a file, its current revision.
    pub rev: Option<String>,
    /// For a file, its content hash.
    pub hash: Option<ContentHash>,
    pub size: u64,
}

/// An entry known to be equal on the disk and on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedNode {
    pub kind: Kind,
    /// The local inode it had when last synced.
    pub local_id: u64,
    /// The server entry id.
    pub remote_id: i64,
    /// For a file, the revision both sides held.
    pub rev: Option<String>,
    /// For a file, the content both sides held.
    pub hash: Option<ContentHash>,
}

impl SyncedNode {
    /// The node recording that `local` and `remote` hold the same thing.
    pub fn of(local: &LocalNode, remote: &RemoteNode) -> SyncedNode {
        SyncedNode {
            kind: remote.kind,
            local_id: local.id,
            remote_id: remote.id,
            rev: remote.rev.clone(),
            hash: remote.hash,
        }
    }
}

/// One of the three trees: a sorted map from path to node. The root (`/`, the sync
/// folder itself) is never stored; it always exists.
#[derive(Debug, Clone)]
pub struct Tree<N> {
    nodes: BTreeMap<ServerPath, N>,
}

impl<N> Default for Tree<N> {
    fn default() -> Self {
        Tree {
            nodes: BTreeMap::new(),
        }
    }
}

impl<N: Clone> Tree<N> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, path: &ServerPath) -> Option<&N> {
        self.nodes.get(path)
    }

    pub fn get_mut(&mut self, path: &ServerPath) -> Option<&mut N> {
        self.nodes.get_mut(path)
    }

    pub fn insert(&mut self, path: ServerPath, node: N) -> Option<N> {
        if path.is_root() {
            return None;
        }
        self.nodes.insert(path, node)
    }

    pub fn remove(&mut self, path: &ServerPath) -> Option<N> {
        self.nodes.remove(path)
    }

    /// Every node, in path order (a folder before what it holds).
    pub fn iter(&self) -> impl Iterator<Item = (&ServerPath, &N)> {
        self.nodes.iter()
    }

    pub fn paths(&self) -> impl Iterator<Item = &ServerPath> {
        self.nodes.keys()
    }

    /// The nodes strictly below `path`, in path order.
    pub fn descendants<'a>(
        &'a self,
        path: &ServerPath,
    ) -> Box<dyn Iterator<Item = (&'a ServerPath, &'a N)> + 'a> {
        if path.is_root() {
            return Box::new(self.nodes.iter());
        }
        // Below `/a` means keys starting with `/a/`; `0` is the character after `/`.
        let low = format!("{}/", path.as_str());
        let high = format!("{}0", path.as_str());
        Box::new(self.nodes.range::<str, _>((
            Bound::Included(low.as_str()),
            Bound::Excluded(high.as_str()),
        )))
    }

    /// Whether anything is stored below `path`.
    pub fn has_descendants(&self, path: &ServerPath) -> bool {
        self.descendants(path).next().is_some()
    }

    /// Removes `path` and everything below it, returning what was there (the node at
    /// `path` first).
    pub fn remove_subtree(&mut self, path: &ServerPath) -> Vec<(ServerPath, N)> {
        let below: Vec<ServerPath> = self.descendants(path).map(|(p, _)| p.clone()).collect();
        let mut out = Vec::with_capacity(below.len() + 1);
        if let Some(node) = self.nodes.remove(path) {
            out.push((path.clone(), node));
        }
        for p in below {
            if let Some(node) = self.nodes.remove(&p) {
                out.push((p, node));
            }
        }
        out
    }

    /// Moves `from` and everything below it to `to`. Whatever was at `to` or below it is
    /// replaced.
    pub fn move_subtree(&mut self, from: &ServerPath, to: &ServerPath) {
        if from == to {
            return;
        }
        let moved = self.remove_subtree(from);
        if moved.is_empty() {
            return;
        }
        self.remove_subtree(to);
        for (path, node) in moved {
            if let Some(new_path) = path.rebase(from, to) {
                self.insert(new_path, node);
            }
        }
    }
}

/// Whether `path`'s parent is a folder in a tree whose folders `is_folder` tells (the
/// root always is).
pub fn parent_is_folder(path: &ServerPath, is_folder: impl Fn(&ServerPath) -> bool) -> bool {
    match path.parent() {
        None => false,
        Some(parent) if parent.is_root() => true,
        Some(parent) => is_folder(&parent),
    }
}

/// A path from text, for tests and tables.
#[cfg(test)]
pub(crate) fn p(text: &str) -> ServerPath {
    ServerPath::parse(text).expect("test paths are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_segment_wise() {
        let mut tree: Tree<u32> = Tree::new();
        for (i, path) in ["/a", "/a b", "/a/x", "/a/y/z", "/a0", "/b"]
            .iter()
            .enumerate()
        {
            tree.insert(p(path), i as u32);
        }
        let below: Vec<&str> = tree
            .descendants(&p("/a"))
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(below, ["/a/x", "/a/y/z"]);
        assert_eq!(tree.descendants(&p("/")).count(), 6);
        tree.move_subtree(&p("/a"), &p("/c/d"));
        let all: Vec<&str> = tree.paths().map(ServerPath::as_str).collect();
        assert_eq!(all, ["/a b", "/a0", "/b", "/c/d", "/c/d/x", "/c/d/y/z"]);
        assert_eq!(tree.remove_subtree(&p("/c/d")).len(), 3);
    }
}
