//! Cairn's sync engine: keeps a folder on disk identical to a folder on the server.
//!
//! Three trees (DESIGN.md §2) describe the state: [`tree`]. The pure [`planner`] turns
//! them into operations; the [`engine`] runs those against an [`env::Env`] (the real
//! disk and server, or the simulation's in-memory ones) and records what happened in a
//! [`state::State`] it saves as it goes. The [`daemon`] runs the engine over a real
//! folder for as long as `cairn sync` runs: the watcher, the server's notifications,
//! retries.

pub mod daemon;
pub mod engine;
pub mod env;
pub mod ignore;
pub mod lock;
pub mod planner;
pub mod prefetch;
pub mod real;
pub mod state;
pub mod state_db;
pub mod tree;

pub use daemon::{Daemon, Event, NotSynced, RealEngine};
pub use engine::{Engine, Report, SyncError};
pub use env::{DownloadItem, Env, EnvError, RacyFrom, RemoteChange, RemoteDelta, UploadItem};
pub use ignore::Ignore;
pub use lock::{FolderLock, LockError};
pub use planner::{plan_sync, plan_sync_within, Operation, PlanContext, Trees};
pub use prefetch::Prefetcher;
pub use real::RealEnv;
pub use state::{NoPersist, Persist, State, StateChange, Which};
pub use state_db::StateDb;
pub use tree::{Kind, LocalNode, RemoteNode, SyncedNode, Tree};
