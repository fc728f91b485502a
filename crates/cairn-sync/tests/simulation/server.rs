//! The simulated server: an in-memory model of what the Cairn server does with a sync
//! client's requests (cairn-meta's commit and tree operations), with the journal the
//! delta is read from. It keeps every content ever committed, trashed or not, so the
//! simulation can tell whether something the engine destroyed on a disk was safe.

use std::collections::{BTreeMap, HashSet};

use cairn_core::{ContentHash, ServerPath};
use cairn_sync::{EnvError, Kind, RemoteChange, RemoteDelta, RemoteNode};

/// A file's content, as a number: every user write makes a new one, so "is this content
/// on the server" is an exact question.
pub type Content = u64;

/// An injective stand-in for the content hash.
pub fn content_hash(content: Content) -> ContentHash {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&content.to_le_bytes());
    bytes[31] = 0x5a;
    ContentHash(bytes)
}

/// Sizes repeat, so only the modification time tells some edits apart, as on a disk.
pub fn content_size(content: Content) -> u64 {
    1 + content % 7
}

/// A live entry on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub kind: Kind,
    /// For a file, its current revision.
    pub rev: Option<u64>,
    pub content: Option<Content>,
}

fn rev_text(rev: u64) -> String {
    format!("r{rev}")
}

impl Entry {
    pub fn node(&self) -> RemoteNode {
        RemoteNode {
            kind: self.kind,
            id: self.id,
            rev: self.rev.map(rev_text),
            hash: self.content.map(content_hash),
            size: self.content.map_or(0, content_size),
        }
    }
}

fn changed(what: impl Into<String>) -> EnvError {
    EnvError::RemoteChanged(what.into())
}

/// The server's state.
#[derive(Debug, Default)]
pub struct Server {
    /// The live tree (the root is implicit).
    pub live: BTreeMap<ServerPath, Entry>,
    /// The journal; a change's sequence number is its index + 1, a cursor the number of
    /// changes it has seen.
    journal: Vec<RemoteChange>,
    /// Every content ever committed; versions and trash are never purged here.
    pub committed: HashSet<Content>,
    next_id: i64,
    next_rev: u64,
}

impl Server {
    fn parent_is_folder(&self, path: &ServerPath) -> bool {
        match path.parent() {
            None => false,
            Some(parent) if parent.is_root() => true,
            Some(parent) => self
                .live
                .get(&parent)
                .is_some_and(|e| e.kind == Kind::Folder),
        }
    }

    fn new_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn new_rev(&mut self) -> u64 {
        self.next_rev += 1;
        self.next_rev
    }

    /// Commits `content` at `path` as a new version based on `base_rev` (`None`: a new
    /// file). As the real server does, content equal to the current version changes
    /// nothing and succeeds whatever `base_rev` says.
    pub fn commit(
        &mut self,
        path: &ServerPath,
        content: Content,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError> {
        let entry = match self.live.get(path) {
            Some(e) if e.kind == Kind::File && e.content == Some(content) => {
                return Ok(e.node());
            }
            Some(e)
                if e.kind == Kind::File
                    && base_rev.is_some()
                    && base_rev == e.rev.map(rev_text).as_deref() =>
            {
                let id = e.id;
                Entry {
                    id,
                    kind: Kind::File,
                    rev: Some(self.new_rev()),
                    content: Some(content),
                }
            }
            Some(e) => {
                return Err(changed(format!(
                    "{path}: base {base_rev:?}, server has {:?}",
                    e.node()
                )))
            }
            None if base_rev.is_some() => {
                return Err(changed(format!("{path}: gone, base {base_rev:?}")))
            }
            None if !self.parent_is_folder(path) => {
                return Err(changed(format!("{path}: no parent folder")))
            }
            None => Entry {
                id: self.new_id(),
                kind: Kind::File,
                rev: Some(self.new_rev()),
                content: Some(content),
            },
        };
        self.committed.insert(content);
        let node = entry.node();
        self.live.insert(path.clone(), entry);
        self.journal.push(RemoteChange::Upsert {
            path: path.clone(),
            node: node.clone(),
        });
        Ok(node)
    }

    /// Creates a folder; an existing folder is fine.
    pub fn mkdir(&mut self, path: &ServerPath) -> Result<RemoteNode, EnvError> {
        match self.live.get(path) {
            Some(e) if e.kind == Kind::Folder => return Ok(e.node()),
            Some(_) => return Err(changed(format!("{path}: a file is there"))),
            None if !self.parent_is_folder(path) => {
                return Err(changed(format!("{path}: no parent folder")))
            }
            None => {}
        }
        let entry = Entry {
            id: self.new_id(),
            kind: Kind::Folder,
            rev: None,
            content: None,
        };
        let node = entry.node();
        self.live.insert(path.clone(), entry);
        self.journal.push(RemoteChange::Upsert {
            path: path.clone(),
            node: node.clone(),
        });
        Ok(node)
    }

    fn check_base(&self, path: &ServerPath, base_rev: Option<&str>) -> Result<&Entry, EnvError> {
        let Some(e) = self.live.get(path) else {
            return Err(changed(format!("{path}: gone")));
        };
        if e.kind == Kind::File && base_rev.is_some() && base_rev != e.rev.map(rev_text).as_deref()
        {
            return Err(changed(format!(
                "{path}: base {base_rev:?}, now r{:?}",
                e.rev
            )));
        }
        Ok(e)
    }

    fn subtree(&self, path: &ServerPath) -> Vec<ServerPath> {
        self.live
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect()
    }

    /// Moves an entry with everything below it; the journal lists the entry and then
    /// each one below it, as cairn-meta's does.
    pub fn rename(
        &mut self,
        from: &ServerPath,
        to: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<RemoteNode, EnvError> {
        self.check_base(from, base_rev)?;
        if to.starts_with(from) {
            return Err(changed(format!("{from} -> {to}: into itself")));
        }
        if self.live.contains_key(to) {
            return Err(changed(format!("{to}: taken")));
        }
        if !self.parent_is_folder(to) {
            return Err(changed(format!("{to}: no parent folder")));
        }
        for old in self.subtree(from) {
            let entry = self.live.remove(&old).expect("listed");
            let new = old.rebase(from, to).expect("below");
            self.journal.push(RemoteChange::Move {
                from: old,
                to: new.clone(),
                id: entry.id,
            });
            self.live.insert(new, entry);
        }
        Ok(self.live[to].node())
    }

    /// Deletes an entry with everything below it (to the trash: its contents stay in
    /// `committed`).
    pub fn delete(&mut self, path: &ServerPath, base_rev: Option<&str>) -> Result<(), EnvError> {
        let id = self.check_base(path, base_rev)?.id;
        for p in self.subtree(path) {
            self.live.remove(&p);
        }
        self.journal.push(RemoteChange::Delete {
            path: path.clone(),
            id,
        });
        Ok(())
    }

    pub fn list(&self) -> (Vec<(ServerPath, RemoteNode)>, String) {
        let nodes = self
            .live
            .iter()
            .map(|(p, e)| (p.clone(), e.node()))
            .collect();
        (nodes, format!("c{}", self.journal.len()))
    }

    pub fn delta(&self, cursor: &str, page: usize) -> Result<RemoteDelta, EnvError> {
        let seen: usize = cursor
            .strip_prefix('c')
            .and_then(|n| n.parse().ok())
            .filter(|&n| n <= self.journal.len())
            .ok_or(EnvError::CursorReset)?;
        let end = (seen + page.max(1)).min(self.journal.len());
        Ok(RemoteDelta {
            changes: self.journal[seen..end].to_vec(),
            cursor: format!("c{end}"),
            has_more: end < self.journal.len(),
        })
    }

    /// The live tree as the convergence check compares it.
    pub fn snapshot(&self) -> BTreeMap<ServerPath, (Kind, Option<Content>)> {
        self.live
            .iter()
            .map(|(p, e)| (p.clone(), (e.kind, e.content)))
            .collect()
    }
}
