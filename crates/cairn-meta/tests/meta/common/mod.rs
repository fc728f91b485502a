//! The backend harness and fixtures shared by all tests.
//!
//! PostgreSQL tests use the server at `CAIRN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each in a fresh schema dropped at the
//! end. When the server is unreachable they fail, unless `CAIRN_TEST_POSTGRES=skip`.

#![allow(dead_code)]

use std::future::Future;

use cairn_core::{BlockHash, JournalSeq, NamespaceId, ServerPath};
use cairn_meta::{Actor, BlockRef, CommitFile, CommitOutcome, MetaStore, User};
use sqlx::{Connection, Executor};

/// Which database a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Defines tests that each run on both backends:
///
/// ```ignore
/// backend_tests! {
///     async fn name(store) { ... }
/// }
/// ```
/// generates `name::sqlite` and `name::postgres`.
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($store:ident) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                $(#[$meta])*
                async fn body($store: cairn_meta::MetaStore) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::common::run(crate::common::Backend::Sqlite, body).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::common::run(crate::common::Backend::Postgres, body).await
                }
            }
        )*
    };
}

enum Cleanup {
    Dir(tempfile::TempDir),
    Schema { admin_url: String, schema: String },
}

/// Opens a fresh store on `backend`, with its URL; `None` when the backend is to be
/// skipped.
async fn open(backend: Backend) -> Option<(MetaStore, String, Cleanup)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/meta.db?mode=rwc", dir.path().display());
            let store = MetaStore::connect(&url).await.expect("open SQLite store");
            Some((store, url, Cleanup::Dir(dir)))
        }
        Backend::Postgres => {
            if std::env::var("CAIRN_TEST_POSTGRES").as_deref() == Ok("skip") {
                eprintln!("skipping PostgreSQL test: CAIRN_TEST_POSTGRES=skip");
                return None;
            }
            let admin_url = std::env::var("CAIRN_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
            let schema = format!("cairn_test_{:016x}", rand::random::<u64>());
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {admin_url} is unreachable ({e}). Start it, point \
                         CAIRN_TEST_POSTGRES_URL at one, or set CAIRN_TEST_POSTGRES=skip"
                    )
                });
            admin
                .execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .expect("create test schema");
            admin.close().await.ok();
            let sep = if admin_url.contains('?') { '&' } else { '?' };
            let url = format!("{admin_url}{sep}options[search_path]={schema}");
            let store = MetaStore::connect(&url)
                .await
                .expect("open PostgreSQL store");
            assert!(store.is_postgres());
            Some((store, url, Cleanup::Schema { admin_url, schema }))
        }
    }
}

async fn cleanup(store: MetaStore, cleanup: Cleanup) {
    store.close().await;
    match cleanup {
        Cleanup::Dir(dir) => drop(dir),
        Cleanup::Schema { admin_url, schema } => {
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("reconnect to drop the test schema");
            admin
                .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
                .await
                .expect("drop test schema");
            admin.close().await.ok();
        }
    }
}

/// Runs `body` on a fresh store, then checks the store's invariants, then removes the
/// database, whether the body passed or panicked.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(MetaStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, _url, guard)) = open(backend).await else {
        return;
    };
    // A spawned task turns a panic into a JoinError, so the schema is dropped anyway.
    let outcome = tokio::spawn(body(store.clone())).await;
    let problems = match &outcome {
        Ok(()) => store.check_consistency().await.map_err(|e| e.to_string()),
        Err(_) => Ok(Vec::new()),
    };
    cleanup(store, guard).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    let problems = problems.expect("consistency check ran");
    assert!(
        problems.is_empty(),
        "inconsistent after test on {backend:?}:\n{}",
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs `body` on a fresh store and the store's URL, for tests that reach around the
/// store to damage the database on purpose. No consistency check afterwards.
pub async fn run_raw<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(MetaStore, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, url, guard)) = open(backend).await else {
        return;
    };
    let outcome = tokio::spawn(body(store.clone(), url)).await;
    cleanup(store, guard).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Parses a path, for brevity.
pub fn p(s: &str) -> ServerPath {
    ServerPath::parse(s).unwrap()
}

/// A user and an actor for it on a device named `laptop`.
pub async fn user(store: &MetaStore, name: &str) -> (User, Actor) {
    let user = store
        .create_user(name, "$argon2id$fake", false, None)
        .await
        .unwrap();
    let device = store.create_device(user.id, "laptop").await.unwrap();
    let actor = Actor {
        user_id: user.id,
        device_id: Some(device.id),
        device_name: device.name,
    };
    (user, actor)
}

/// The block reference for some content (not uploaded).
pub fn block(content: &str) -> BlockRef {
    BlockRef {
        hash: BlockHash::of(content.as_bytes()),
        size: content.len() as u32,
    }
}

/// Records uploads of blocks with these contents by `user`, and returns their refs.
pub async fn upload(store: &MetaStore, user: &User, contents: &[&str]) -> Vec<BlockRef> {
    let mut out = Vec::new();
    for c in contents {
        let b = block(c);
        store
            .record_block_upload(user.id, b.hash, b.size, i64::from(b.size))
            .await
            .unwrap();
        out.push(b);
    }
    out
}

/// A commit request.
pub fn req(
    user: &User,
    actor: &Actor,
    path: &str,
    blocks: Vec<BlockRef>,
    base_rev: Option<cairn_core::VersionId>,
) -> CommitFile {
    CommitFile {
        ns: user.home_ns,
        path: p(path),
        blocks,
        mtime: Some(1_700_000_000_000),
        base_rev,
        autorename: false,
        actor: actor.clone(),
    }
}

/// Uploads blocks with these contents and commits them as a new file at `path`.
pub async fn put(
    store: &MetaStore,
    user: &User,
    actor: &Actor,
    path: &str,
    contents: &[&str],
) -> CommitOutcome {
    let blocks = upload(store, user, contents).await;
    store
        .commit_file(req(user, actor, path, blocks, None))
        .await
        .unwrap()
}

/// Every live path below `path` (recursively), stored case, sorted by key.
pub async fn tree(store: &MetaStore, ns: NamespaceId, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![p(path)];
    while let Some(dir) = stack.pop() {
        for e in store.list_folder(ns, &dir, None, 10_000).await.unwrap() {
            if e.kind == cairn_meta::EntryKind::Folder {
                stack.push(e.path.clone());
            }
            out.push(e.path.as_str().to_owned());
        }
    }
    out.sort_by_key(|s| s.to_lowercase());
    out
}

/// The whole journal of a namespace.
pub async fn journal(store: &MetaStore, ns: NamespaceId) -> Vec<cairn_meta::JournalEntry> {
    store
        .journal_since(ns, JournalSeq(0), u32::MAX)
        .await
        .unwrap()
}

/// A compact view of journal rows after `after`: "kind path" or "kind from -> path".
pub async fn changes(store: &MetaStore, ns: NamespaceId, after: JournalSeq) -> Vec<String> {
    store
        .journal_since(ns, after, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|j| match j.kind.from_path() {
            Some(from) => format!("{} {from} -> {}", j.kind.as_str(), j.path),
            None => format!("{} {}", j.kind.as_str(), j.path),
        })
        .collect()
}

/// A block's reference count.
pub async fn refcount(store: &MetaStore, b: &BlockRef) -> i64 {
    store.block_info(b.hash).await.unwrap().unwrap().refcount
}
