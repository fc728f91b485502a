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
    /// Uploads announced for streaming sync.
    pub uploads: crate::stream::Uploads,
    next_id: i64,
    next_rev: u64,
}

impl Server {
    /// The live entry whose path matches `path` whatever its case, with its stored
    /// path: like the real server, this one holds one entry per name regardless of case.
    /// (A linear scan: simulated trees are small.)
    fn find(&self, path: &ServerPath) -> Option<(&ServerPath, &Entry)> {
        if let Some(found) = self.live.get_key_value(path) {
            return Some(found);
        }
        let key = path.key();
        self.live.iter().find(|(p, _)| p.key() == key)
    }

    /// The stored path of the folder `path` would go in, if that is a folder.
    fn parent_folder(&self, path: &ServerPath) -> Option<ServerPath> {
        match path.parent() {
            None => None,
            Some(parent) if parent.is_root() => Some(parent),
            Some(parent) => self
                .find(&parent)
                .filter(|(_, e)| e.kind == Kind::Folder)
                .map(|(stored, _)| stored.clone()),
        }
    }

    /// Where a new entry asked for at `path` is stored: in its parent's stored case.
    fn new_path(&self, path: &ServerPath) -> Option<ServerPath> {
        let parent = self.parent_folder(path)?;
        parent.join(path.name()?).ok()
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
        let found = self.find(path).map(|(p, e)| (p.clone(), e.clone()));
        let stored = match &found {
            Some((stored, _)) => stored.clone(),
            None => match self.new_path(path) {
                Some(stored) => stored,
                None => return Err(changed(format!("{path}: no parent folder"))),
            },
        };
        let entry = match found.map(|(_, e)| e) {
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
            None => Entry {
                id: self.new_id(),
                kind: Kind::File,
                rev: Some(self.new_rev()),
                content: Some(content),
            },
        };
        self.committed.insert(content);
        let node = entry.node();
        self.live.insert(stored.clone(), entry);
        self.journal.push(RemoteChange::Upsert {
            path: stored,
            node: node.clone(),
        });
        Ok(node)
    }

    /// Creates a folder; an existing folder is fine.
    pub fn mkdir(&mut self, path: &ServerPath) -> Result<RemoteNode, EnvError> {
        match self.find(path) {
            Some((_, e)) if e.kind == Kind::Folder => return Ok(e.node()),
            Some(_) => return Err(changed(format!("{path}: a file is there"))),
            None => {}
        }
        let Some(stored) = self.new_path(path) else {
            return Err(changed(format!("{path}: no parent folder")));
        };
        let entry = Entry {
            id: self.new_id(),
            kind: Kind::Folder,
            rev: None,
            content: None,
        };
        let node = entry.node();
        self.live.insert(stored.clone(), entry);
        self.journal.push(RemoteChange::Upsert {
            path: stored,
            node: node.clone(),
        });
        Ok(node)
    }

    /// The entry at `path` (whatever its case) with its stored path, if `base_rev`
    /// (for a file) is its current revision.
    fn check_base(
        &self,
        path: &ServerPath,
        base_rev: Option<&str>,
    ) -> Result<(ServerPath, &Entry), EnvError> {
        let Some((stored, e)) = self.find(path) else {
            return Err(changed(format!("{path}: gone")));
        };
        if e.kind == Kind::File && base_rev.is_some() && base_rev != e.rev.map(rev_text).as_deref()
        {
            return Err(changed(format!(
                "{path}: base {base_rev:?}, now r{:?}",
                e.rev
            )));
        }
        Ok((stored.clone(), e))
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
        let (from, _) = self.check_base(from, base_rev)?;
        let from = &from;
        // By key: `/a` into `/A/b` is a move into itself too. A move to the same name in
        // another case (`/a` to `/A`) is a rename like any other.
        if to.key() != from.key() && to.key().starts_with(&format!("{}/", from.key())) {
            return Err(changed(format!("{from} -> {to}: into itself")));
        }
        if to.key() != from.key() && self.find(to).is_some() {
            return Err(changed(format!("{to}: taken")));
        }
        let Some(to) = self.new_path(to) else {
            return Err(changed(format!("{to}: no parent folder")));
        };
        let to = &to;
        if to == from {
            return Ok(self.live[to].node());
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
        let (path, e) = self.check_base(path, base_rev)?;
        let id = e.id;
        for p in self.subtree(&path) {
            self.live.remove(&p);
        }
        self.journal.push(RemoteChange::Delete { path, id });
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
