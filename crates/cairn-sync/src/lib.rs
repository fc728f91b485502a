//! Cairn's sync engine: keeps a folder on disk identical to a folder on the server.
//!
//! Three trees (DESIGN.md §2) describe the state: [`tree`]. The pure [`planner`] turns
//! them into operations; the engine runs those against an environment (the real disk
//! and server, or the simulation's in-memory ones) and records what happened.

pub mod planner;
pub mod tree;

pub use planner::{plan_sync, Operation, PlanContext, Trees};
pub use tree::{Kind, LocalNode, RemoteNode, SyncedNode, Tree};
