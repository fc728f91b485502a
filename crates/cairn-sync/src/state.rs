//! The engine's persistent state: the three trees and the delta cursor, and the changes
//! by which it moves on. The engine applies each change in memory and hands the list to
//! a [`Persist`] at the end of every round, so that after a crash the engine starts from
//! a state it really was in. Whatever happened between the last save and the crash is
//! found again by looking: the planner treats a change it already made as "both sides
//! agree" and just records it.

use async_trait::async_trait;
use cairn_core::ServerPath;

use crate::env::EnvError;
use crate::tree::{LocalNode, RemoteNode, SyncedNode, Tree};

/// The three trees and where the engine is in the server's journal.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub local: Tree<LocalNode>,
    pub remote: Tree<RemoteNode>,
    pub synced: Tree<SyncedNode>,
    /// The delta cursor the remote tree is current with; `None` before the first
    /// listing.
    pub cursor: Option<String>,
}

/// Which tree a change touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Local,
    Remote,
    Synced,
}

/// One change to the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    Local(ServerPath, Option<LocalNode>),
    Remote(ServerPath, Option<RemoteNode>),
    Synced(ServerPath, Option<SyncedNode>),
    /// Move a node and everything below it.
    MoveSubtree(Which, ServerPath, ServerPath),
    /// Remove a node and everything below it.
    RemoveSubtree(Which, ServerPath),
    /// Empty the remote tree (before a full listing).
    ClearRemote,
    Cursor(Option<String>),
}

impl State {
    /// Applies one change.
    pub fn apply(&mut self, change: &StateChange) {
        match change {
            StateChange::Local(path, node) => set(&mut self.local, path, node),
            StateChange::Remote(path, node) => set(&mut self.remote, path, node),
            StateChange::Synced(path, node) => set(&mut self.synced, path, node),
            StateChange::MoveSubtree(which, from, to) => match which {
                Which::Local => self.local.move_subtree(from, to),
                Which::Remote => self.remote.move_subtree(from, to),
                Which::Synced => self.synced.move_subtree(from, to),
            },
            StateChange::RemoveSubtree(which, path) => {
                match which {
                    Which::Local => drop(self.local.remove_subtree(path)),
                    Which::Remote => drop(self.remote.remove_subtree(path)),
                    Which::Synced => drop(self.synced.remove_subtree(path)),
                };
            }
            StateChange::ClearRemote => self.remote = Tree::new(),
            StateChange::Cursor(cursor) => self.cursor.clone_from(cursor),
        }
    }
}

fn set<N: Clone>(tree: &mut Tree<N>, path: &ServerPath, node: &Option<N>) {
    match node {
        Some(node) => {
            tree.insert(path.clone(), node.clone());
        }
        None => {
            tree.remove(path);
        }
    }
}

/// Where the state is kept between runs.
#[async_trait]
pub trait Persist: Send + Sync {
    /// Stores the changes, all or none, durably.
    async fn save(&self, changes: &[StateChange]) -> Result<(), EnvError>;
}

/// Keeps nothing: for a one-off reconciliation and for tests.
#[derive(Debug, Default)]
pub struct NoPersist;

#[async_trait]
impl Persist for NoPersist {
    async fn save(&self, _changes: &[StateChange]) -> Result<(), EnvError> {
        Ok(())
    }
}
