//! A simulated disk: an in-memory file system with inode numbers and modification times
//! from the simulation's logical clock. The operations here are the primitives both the
//! user and the engine's environment use; the checks an engine operation must pass
//! (what it expects to find) live in `env.rs`.

use std::collections::BTreeMap;

use cairn_core::ServerPath;
use cairn_sync::{EnvError, Kind, LocalNode};

use crate::server::{content_hash, content_size, Content};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskNode {
    pub kind: Kind,
    pub inode: u64,
    pub mtime: i64,
    pub content: Option<Content>,
}

impl DiskNode {
    /// As a scan reports it: not hashed.
    pub fn stat(&self) -> LocalNode {
        LocalNode {
            kind: self.kind,
            id: self.inode,
            size: self.content.map_or(0, content_size),
            mtime_ns: self.mtime,
            hash: None,
        }
    }

    pub fn hashed(&self) -> LocalNode {
        LocalNode {
            hash: self.content.map(content_hash),
            ..self.stat()
        }
    }

    pub fn matches(&self, expect: &LocalNode) -> bool {
        self.stat().same_stat(expect)
    }
}

pub fn local_changed(what: impl Into<String>) -> EnvError {
    EnvError::LocalChanged(what.into())
}

#[derive(Debug, Default)]
pub struct Disk {
    /// Everything in the sync folder (the folder itself is implicit and never goes).
    pub nodes: BTreeMap<ServerPath, DiskNode>,
    next_inode: u64,
    /// Inode numbers of removed nodes, which a file system may hand out again.
    pub free_inodes: Vec<u64>,
}

impl Disk {
    pub fn parent_is_folder(&self, path: &ServerPath) -> bool {
        match path.parent() {
            None => false,
            Some(parent) if parent.is_root() => true,
            Some(parent) => self
                .nodes
                .get(&parent)
                .is_some_and(|n| n.kind == Kind::Folder),
        }
    }

    /// A new inode number, or (when `reuse` is given) a freed one.
    pub fn new_inode(&mut self, reuse: Option<usize>) -> u64 {
        match reuse {
            Some(i) if !self.free_inodes.is_empty() => {
                let i = i % self.free_inodes.len();
                self.free_inodes.swap_remove(i)
            }
            _ => {
                self.next_inode += 1;
                self.next_inode
            }
        }
    }

    pub fn subtree(&self, path: &ServerPath) -> Vec<ServerPath> {
        self.nodes
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect()
    }

    pub fn has_children(&self, path: &ServerPath) -> bool {
        self.nodes.keys().any(|p| p != path && p.starts_with(path))
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &ServerPath) -> Vec<DiskNode> {
        let mut out = Vec::new();
        for p in self.subtree(path) {
            let node = self.nodes.remove(&p).expect("listed");
            self.free_inodes.push(node.inode);
            out.push(node);
        }
        out
    }

    /// Renames `from` (with everything below it) to `to`, which must be free, with its
    /// parent folder present, and not inside `from`.
    pub fn rename(&mut self, from: &ServerPath, to: &ServerPath) -> Result<(), EnvError> {
        if !self.nodes.contains_key(from) {
            return Err(local_changed(format!("{from}: gone")));
        }
        if self.nodes.contains_key(to) {
            return Err(local_changed(format!("{to}: taken")));
        }
        if to.starts_with(from) || !self.parent_is_folder(to) {
            return Err(local_changed(format!("{from} -> {to}: no such place")));
        }
        for old in self.subtree(from) {
            let node = self.nodes.remove(&old).expect("listed");
            self.nodes
                .insert(old.rebase(from, to).expect("below"), node);
        }
        Ok(())
    }

    /// The tree as the convergence check compares it, with `keep` choosing the paths.
    pub fn snapshot(
        &self,
        keep: impl Fn(&ServerPath) -> bool,
    ) -> BTreeMap<ServerPath, (Kind, Option<Content>)> {
        self.nodes
            .iter()
            .filter(|(p, _)| keep(p))
            .map(|(p, n)| (p.clone(), (n.kind, n.content)))
            .collect()
    }
}
