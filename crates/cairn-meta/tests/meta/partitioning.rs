//! Every table of the migrated schema is keyed by namespace, or says below why not.
//!
//! Cairn's metadata is partitioned by namespace (`docs/SCALING.md`, "How the metadata
//! is partitioned"): a distributed PostgreSQL such as Citus places every row of one
//! namespace on one node, by its `ns_id`, so that a commit, a listing or a delta touches
//! one node. That works only if every table either carries the namespace where an
//! index can find it, or is deliberately something else. This test reads the schema
//! the migrations made (`sqlite_master`'s pragmas, PostgreSQL's catalog) and fails on
//! a table that is neither, with what to do about it.

use std::collections::BTreeSet;

use cairn_meta::MetaStore;
use sqlx::{AnyConnection, Connection, Executor, Row};

use crate::common::*;

/// The column that names the namespace a row belongs to.
const NAMESPACE_COLUMN: &str = "ns_id";

/// How a table that is not keyed by namespace is partitioned instead.
enum Key {
    /// By this column, which must lead the table's primary key or one of its indexes:
    /// an account's own rows (distributed by user id, co-located with `users`), the
    /// `namespaces` rows themselves, or rows reached through a parent row.
    By(&'static str),
    /// Not partitioned: one small set of rows for the whole deployment (a reference
    /// table under Citus), or a table keyed by something no namespace owns.
    Global,
    /// Not a table of its own data: an index of another table that SQLite keeps as a
    /// virtual table.
    IndexOf(&'static str),
}

/// The tables not keyed by namespace, each with why. Every name here must exist in the
/// schema, so the list cannot outlive what it describes. `docs/SCALING.md` says the
/// same in prose; change both together.
const NOT_BY_NAMESPACE: &[(&str, Key, &str)] = &[
    (
        "namespaces",
        Key::By("id"),
        "the namespaces themselves: a row's id is the namespace id, the distribution \
         column of everything keyed by ns_id",
    ),
    (
        "users",
        Key::By("id"),
        "accounts exist before and beside their namespaces (a user owns a home, belongs \
         to shared ones, and is looked up by name at login): the account group, \
         distributed by user id",
    ),
    (
        "devices",
        Key::By("user_id"),
        "a device is an account's, whatever namespaces it syncs",
    ),
    (
        "auth_tokens",
        Key::By("user_id"),
        "a token is an account's; note that a request finds it by token_hash, which \
         names no account (SCALING.md: what needs care)",
    ),
    (
        "app_passwords",
        Key::By("user_id"),
        "an app password is an account's; like a token, a request finds it by \
         secret_hash, which names no account (SCALING.md: what needs care)",
    ),
    (
        "user_blocks",
        Key::By("user_id"),
        "proof of possession is per account (an account uploaded the block), not per \
         namespace",
    ),
    (
        "tus_uploads",
        Key::By("user_id"),
        "an unfinished upload is its creator's until it completes; its path is resolved \
         to a namespace only then",
    ),
    (
        "tus_upload_blocks",
        Key::By("upload_id"),
        "the blocks of one tus_uploads row, reached only through it",
    ),
    (
        "version_blocks",
        Key::By("version_id"),
        "the block list of one versions row, reached only through it; to be distributed \
         by namespace it needs its own ns_id column (SCALING.md: what needs care)",
    ),
    (
        "blocks",
        Key::Global,
        "a block is named by its content hash and shared by every namespace that holds \
         it (deduplication is global), so its reference count and GC state cannot \
         belong to one namespace",
    ),
    (
        "server_secrets",
        Key::Global,
        "deployment-wide settings: the key that signs link cookies, one for every node",
    ),
    (
        "throttle_failures",
        Key::Global,
        "the password throttle's failures, keyed by account name or client address \
         (`user:`, `addr:`, `link:`, `linkaddr:`): operational state every node shares, \
         kept only for the throttle's window",
    ),
    (
        "fsck_runs",
        Key::Global,
        "the reports of `cairn admin fsck`, which checks the whole block store",
    ),
    (
        "_sqlx_migrations",
        Key::Global,
        "sqlx's record of which migrations ran: one schema per deployment",
    ),
    (
        "entry_names",
        Key::IndexOf("entries"),
        "SQLite only: the FTS5 trigram index of entries.name_key, kept by triggers \
         (PostgreSQL has a GIN index on entries instead)",
    ),
];

/// One table of the schema and the columns that lead its primary key or an index.
struct Table {
    name: String,
    leading: BTreeSet<String>,
}

/// The tables of the store's schema. On SQLite, FTS5's shadow tables (its storage,
/// which it alone writes) and SQLite's own are left out.
async fn tables(conn: &mut AnyConnection, postgres: bool) -> Vec<Table> {
    let (list, leading) = if postgres {
        (
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            // Primary keys and unique constraints are indexes too.
            "SELECT a.attname::text AS col FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE c.relname = $1 \
               AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
        )
    } else {
        (
            "SELECT name FROM pragma_table_list \
             WHERE schema = 'main' AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite_%'",
            // An INTEGER PRIMARY KEY is the rowid and has no index of its own.
            "SELECT name AS col FROM pragma_table_info($1) WHERE pk = 1 \
             UNION SELECT ii.name FROM pragma_index_list($1) AS il, \
                                       pragma_index_info(il.name) AS ii \
             WHERE ii.seqno = 0",
        )
    };
    let names: Vec<String> = sqlx::query(list)
        .fetch_all(&mut *conn)
        .await
        .expect("list the tables")
        .iter()
        .map(|row| row.get("name"))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let leading = sqlx::query(leading)
            .bind(name.clone())
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("read the indexes of {name}: {e}"))
            .iter()
            // An index on an expression leads with no column (NULL on SQLite).
            .filter_map(|row| row.get::<Option<String>, _>("col"))
            .collect();
        out.push(Table { name, leading });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What is wrong with the schema's partitioning, one sentence per problem.
fn problems(tables: &[Table]) -> Vec<String> {
    let mut out = Vec::new();
    for table in tables {
        let leads = |column: &str| table.leading.contains(column);
        match NOT_BY_NAMESPACE
            .iter()
            .find(|(name, ..)| *name == table.name)
        {
            None if leads(NAMESPACE_COLUMN) => {}
            None => out.push(format!(
                "table {t} is not keyed by namespace: give it a `{NAMESPACE_COLUMN}` column \
                 leading its primary key or an index (CREATE INDEX {t}_ns ON {t} \
                 ({NAMESPACE_COLUMN}, …)), so it can be distributed by namespace; or, if its \
                 rows belong to no namespace, add it with the reason to NOT_BY_NAMESPACE in \
                 crates/cairn-meta/tests/meta/partitioning.rs and to docs/SCALING.md \
                 (its columns leading an index: {leading:?})",
                t = table.name,
                leading = table.leading,
            )),
            Some((_, Key::By(column), _)) if leads(column) => {}
            Some((_, Key::By(column), _)) => out.push(format!(
                "table {t} is listed as keyed by {column}, but {column} leads neither its \
                 primary key nor an index (leading columns: {leading:?}): add the index, \
                 or correct its entry in NOT_BY_NAMESPACE",
                t = table.name,
                leading = table.leading,
            )),
            Some((_, Key::Global | Key::IndexOf(_), _)) => {}
        }
    }
    for (name, key, _) in NOT_BY_NAMESPACE {
        let exists = |name: &str| tables.iter().any(|t| t.name == name);
        match key {
            // SQLite's search index has no table on PostgreSQL; its base table must exist.
            Key::IndexOf(base) if !exists(base) => out.push(format!(
                "{name} is an index of {base}, which does not exist"
            )),
            Key::IndexOf(_) => {}
            Key::By(_) | Key::Global if !exists(name) => out.push(format!(
                "NOT_BY_NAMESPACE lists {name}, which is not in the schema: remove it"
            )),
            Key::By(_) | Key::Global => {}
        }
    }
    out
}

async fn every_table_is_keyed_by_namespace(store: MetaStore, url: String) {
    let mut conn = AnyConnection::connect(&url).await.unwrap();
    let tables = tables(&mut conn, store.is_postgres()).await;
    conn.close().await.unwrap();
    // The namespace tables are found, so the query reads the schema the store uses.
    for name in ["entries", "journal", "versions"] {
        assert!(tables.iter().any(|t| t.name == name), "{name} not listed");
    }
    let problems = problems(&tables);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A table added without a namespace is caught, with what to do; one that has it
/// passes.
async fn a_table_without_a_namespace_fails(store: MetaStore, url: String) {
    let mut conn = AnyConnection::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE widgets (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL)",
        "CREATE INDEX widgets_user ON widgets (user_id)",
        "CREATE TABLE gadgets (id BIGINT PRIMARY KEY, ns_id BIGINT NOT NULL)",
        "CREATE INDEX gadgets_ns ON gadgets (ns_id, id)",
    ] {
        conn.execute(sql).await.unwrap();
    }
    let tables = tables(&mut conn, store.is_postgres()).await;
    conn.close().await.unwrap();
    let problems = problems(&tables);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("table widgets is not keyed by namespace")
            && problems[0].contains("NOT_BY_NAMESPACE"),
        "{}",
        problems[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_keyed_by_namespace_sqlite() {
    run_raw(Backend::Sqlite, every_table_is_keyed_by_namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_keyed_by_namespace_postgres() {
    run_raw(Backend::Postgres, every_table_is_keyed_by_namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_namespace_fails_sqlite() {
    run_raw(Backend::Sqlite, a_table_without_a_namespace_fails).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_namespace_fails_postgres() {
    run_raw(Backend::Postgres, a_table_without_a_namespace_fails).await;
}
