//! Backend plumbing: connecting, migrations, write transactions, row decoding.
//!
//! Both backends go through sqlx's `Any` driver with one set of SQL strings. The rules
//! that keep those strings portable:
//! * placeholders are `$1, $2, …` (sqlx's SQLite driver reads the number from the name);
//! * integers are bound and read as `i64`, booleans are stored as 0/1;
//! * an aggregate that PostgreSQL would type as NUMERIC (`SUM` of BIGINT) is cast back
//!   to BIGINT, because the Any driver cannot decode NUMERIC;
//! * no SQL computes a path key: keys come from [`ServerPath::key`], so both backends
//!   agree on case folding, and key columns compare bytewise on both (BINARY in SQLite,
//!   `COLLATE "C"` in PostgreSQL).

use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_core::{
    ContentHash, DeviceId, EntryId, JournalSeq, NamespaceId, ServerPath, UserId, VersionId,
};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{Actor, ChangeKind, Entry, EntryKind, MetaError, MetaStore, User};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How many values go into one `IN (…)` list or one multi-row `VALUES`. Far below
/// SQLite's limit of 32,766 bound parameters and PostgreSQL's 65,535, and small enough
/// that a statement stays cheap to prepare.
pub(crate) const CHUNK: usize = 256;

/// Most parameters a multi-row `VALUES` (or `CASE`) statement binds. sqlx's SQLite
/// driver asks SQLite for the name of every parameter it binds, and SQLite finds a
/// name by scanning the statement's list of them, so binding costs the square of their
/// number: at 2,560 (256 rows of 10 columns) it took about 10 ms a statement, most of
/// a thousand-file batch commit. At 128, a statement costs less to bind than to run.
const MAX_ROW_PARAMS: usize = 128;

/// How many rows of `cols` columns one multi-row statement takes.
pub(crate) fn rows_per_statement(cols: usize) -> usize {
    (MAX_ROW_PARAMS / cols).max(1)
}

/// Which database is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `$start, $start+1, …` — `n` placeholders for an `IN (…)` list.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2), ($3, $4), …` — placeholders for a multi-row `VALUES`.
pub(crate) fn row_placeholders(start: usize, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(start + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn connect(url: &str) -> Result<MetaStore, MetaError> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);

    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Backend::Postgres
    } else {
        return Err(MetaError::UnsupportedUrl(url.to_owned()));
    };

    let pool = match backend {
        Backend::Sqlite => {
            // sqlx opens a separate in-memory database per connection of an `Any`
            // pool, so an in-memory store must live on exactly one connection.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            AnyPoolOptions::new()
                .max_connections(if in_memory { 1 } else { 8 })
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(1800))
                })
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // Acknowledged writes must survive power loss: FULL syncs the
                        // WAL on every commit (NORMAL would not). Foreign keys and the
                        // busy timeout are per connection too; sqlx sets both by
                        // default, but the store depends on them, so say so here.
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await?
        }
    };

    if backend == Backend::Sqlite {
        // WAL lets readers proceed while one writer commits. The mode is stored in the
        // database file, so setting it once per open is enough; an in-memory database
        // has no WAL and keeps its own mode.
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(&pool)
            .await?;
        tracing::debug!(journal_mode = %mode, "opened SQLite metadata store");
    }

    match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
        Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
    }

    Ok(MetaStore {
        pool,
        backend,
        url: (backend == Backend::Postgres).then(|| Arc::from(url)),
        // SQLite allows one writer at a time. Queuing writers here, in FIFO order,
        // means a write transaction waits its turn instead of sleeping in SQLite's busy
        // handler (and failing after the timeout) while holding a pooled connection.
        // BEGIN IMMEDIATE still guards against writers in other processes.
        sqlite_writer: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
        upload_queue: Arc::default(),
        commit_hook: Arc::default(),
    })
}

/// A write transaction. On SQLite it holds the write lock from its first statement
/// (`BEGIN IMMEDIATE`), so it can never fail later with SQLITE_BUSY when a deferred
/// transaction tries to upgrade its read lock after another writer committed.
pub(crate) struct WriteTx {
    // Field order matters: the transaction (rolled back on drop) goes before the guard
    // that lets the next writer in.
    tx: Transaction<'static, Any>,
    _sqlite_writer: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn begin(store: &MetaStore) -> Result<Self, MetaError> {
        // Take the in-process lock before a connection, so waiting writers do not
        // hold connections that readers could use.
        let guard = match &store.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = match store.backend {
            Backend::Sqlite => store.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => store.pool.begin().await?,
        };
        Ok(Self {
            tx,
            _sqlite_writer: guard,
        })
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub(crate) async fn commit(self) -> Result<(), MetaError> {
        let WriteTx { tx, _sqlite_writer } = self;
        tx.commit().await?;
        Ok(())
    }
}

/// A change waiting to be written to the journal when its transaction commits.
struct PendingChange {
    kind: ChangeKind,
    entry_kind: EntryKind,
    path: ServerPath,
    entry_id: EntryId,
    version_id: Option<VersionId>,
}

/// A write transaction on one namespace. Beginning it locks the namespace row (an
/// UPDATE … RETURNING of `journal_seq`), so writers of one namespace take turns and the
/// journal numbers they hand out are consecutive. Changes recorded with
/// [`NsWrite::record`] get the next numbers and are written in the same transaction as
/// the change itself.
pub(crate) struct NsWrite {
    tx: WriteTx,
    /// Told about the new head once the transaction has committed.
    store: MetaStore,
    pub(crate) ns: NamespaceId,
    user: UserId,
    device: Option<DeviceId>,
    /// The transaction's clock: every row it writes carries the same time.
    pub(crate) now: i64,
    head: i64,
    pending: Vec<PendingChange>,
    /// Other namespaces this transaction locked and journals into (making a folder a
    /// shared namespace writes two), with their heads and queued rows.
    others: Vec<(NamespaceId, i64, Vec<PendingChange>)>,
}

impl NsWrite {
    pub(crate) async fn begin(
        store: &MetaStore,
        ns: NamespaceId,
        actor: &Actor,
    ) -> Result<Self, MetaError> {
        let mut tx = WriteTx::begin(store).await?;
        // A no-op update rather than a SELECT: it takes PostgreSQL's row lock (SQLite
        // is already locked by BEGIN IMMEDIATE) and is valid SQL on both.
        let head: Option<i64> = sqlx::query_scalar(
            "UPDATE namespaces SET journal_seq = journal_seq WHERE id = $1 RETURNING journal_seq",
        )
        .bind(ns.0)
        .fetch_optional(tx.conn())
        .await?;
        let head = head.ok_or(MetaError::NoSuchNamespace(ns))?;
        Ok(Self {
            tx,
            store: store.clone(),
            ns,
            user: actor.user_id,
            device: actor.device_id,
            now: now_ms(),
            head,
            pending: Vec::new(),
            others: Vec::new(),
        })
    }

    /// Locks a second namespace for this transaction, so [`NsWrite::record_in`] can
    /// journal into it. Locks are taken in the order of the calls; callers lock the
    /// namespace they begin with first and a newly created one second, which no other
    /// transaction can hold.
    pub(crate) async fn lock_other(&mut self, ns: NamespaceId) -> Result<(), MetaError> {
        let head: Option<i64> = sqlx::query_scalar(
            "UPDATE namespaces SET journal_seq = journal_seq WHERE id = $1 RETURNING journal_seq",
        )
        .bind(ns.0)
        .fetch_optional(self.tx.conn())
        .await?;
        let head = head.ok_or(MetaError::NoSuchNamespace(ns))?;
        self.others.push((ns, head, Vec::new()));
        Ok(())
    }

    /// Whether this transaction holds `ns`'s lock (it began with it or locked it since).
    pub(crate) fn has_locked(&self, ns: NamespaceId) -> bool {
        self.ns == ns || self.others.iter().any(|(n, _, _)| *n == ns)
    }

    /// Queues one journal row in a namespace locked with [`NsWrite::lock_other`].
    pub(crate) fn record_in(
        &mut self,
        ns: NamespaceId,
        kind: ChangeKind,
        entry_kind: EntryKind,
        path: &ServerPath,
        entry_id: EntryId,
        version_id: Option<VersionId>,
    ) -> Result<(), MetaError> {
        let (_, _, pending) = self
            .others
            .iter_mut()
            .find(|(n, _, _)| *n == ns)
            .ok_or_else(|| corrupt(format!("namespace {ns} journaled without its lock")))?;
        pending.push(PendingChange {
            kind,
            entry_kind,
            path: path.clone(),
            entry_id,
            version_id,
        });
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        self.tx.conn()
    }

    /// Queues one journal row for a changed entry.
    pub(crate) fn record(
        &mut self,
        kind: ChangeKind,
        entry_kind: EntryKind,
        path: &ServerPath,
        entry_id: EntryId,
        version_id: Option<VersionId>,
    ) {
        self.pending.push(PendingChange {
            kind,
            entry_kind,
            path: path.clone(),
            entry_id,
            version_id,
        });
    }

    /// How many journal rows are queued so far.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Marks a point to roll back to if the next step fails (a batch item). Both
    /// backends take `SAVEPOINT`; on PostgreSQL it also keeps a failed statement from
    /// aborting the whole transaction.
    pub(crate) async fn savepoint(&mut self) -> Result<(), MetaError> {
        sqlx::query("SAVEPOINT batch_item")
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    /// Keeps what was done since [`NsWrite::savepoint`].
    pub(crate) async fn release_savepoint(&mut self) -> Result<(), MetaError> {
        sqlx::query("RELEASE SAVEPOINT batch_item")
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    /// Undoes what was done since [`NsWrite::savepoint`], and drops the journal rows
    /// queued since, when there were `journaled`.
    pub(crate) async fn rollback_to_savepoint(
        &mut self,
        journaled: usize,
    ) -> Result<(), MetaError> {
        sqlx::query("ROLLBACK TO SAVEPOINT batch_item")
            .execute(self.tx.conn())
            .await?;
        self.release_savepoint().await?;
        self.pending.truncate(journaled);
        Ok(())
    }

    /// Writes the queued journal rows, advances the namespace's head and commits.
    /// Returns the new head. Once committed, a write that changed anything tells the
    /// store's commit hook (never before: a listener must find the rows it is told of).
    pub(crate) async fn commit(mut self) -> Result<JournalSeq, MetaError> {
        let pending = std::mem::take(&mut self.pending);
        let others = std::mem::take(&mut self.others);
        let mut advanced = Vec::new();
        let head = self.append(self.ns, self.head, &pending).await?;
        if !pending.is_empty() {
            advanced.push((self.ns, head));
        }
        for (ns, other_head, rows) in &others {
            let new_head = self.append(*ns, *other_head, rows).await?;
            if !rows.is_empty() {
                advanced.push((*ns, new_head));
            }
        }
        self.tx.commit().await?;
        for (ns, head) in advanced {
            self.store.committed(ns, head);
        }
        Ok(head)
    }

    /// Writes `rows` to `ns`'s journal after `head` and moves the namespace's head past
    /// them; returns the new head.
    async fn append(
        &mut self,
        ns: NamespaceId,
        head: i64,
        rows: &[PendingChange],
    ) -> Result<JournalSeq, MetaError> {
        const COLS: usize = 11;
        let per_statement = rows_per_statement(COLS);
        for (chunk_no, chunk) in rows.chunks(per_statement).enumerate() {
            let sql = format!(
                "INSERT INTO journal (ns_id, seq, kind, entry_kind, path, from_path, entry_id, \
                 version_id, user_id, device_id, created_at) VALUES {}",
                row_placeholders(1, chunk.len(), COLS)
            );
            let mut q = sqlx::query(&sql);
            for (i, c) in chunk.iter().enumerate() {
                let seq = head + 1 + (chunk_no * per_statement + i) as i64;
                q = q
                    .bind(ns.0)
                    .bind(seq)
                    .bind(c.kind.as_str())
                    .bind(c.entry_kind.as_db())
                    .bind(c.path.as_str().to_owned())
                    .bind(c.kind.from_path().map(|p| p.as_str().to_owned()))
                    .bind(c.entry_id.0)
                    .bind(c.version_id.map(|v| v.0))
                    .bind(self.user.0)
                    .bind(self.device.map(|d| d.0))
                    .bind(self.now);
            }
            q.execute(self.tx.conn()).await?;
        }
        let new_head = head + rows.len() as i64;
        if !rows.is_empty() {
            sqlx::query("UPDATE namespaces SET journal_seq = $1 WHERE id = $2")
                .bind(new_head)
                .bind(ns.0)
                .execute(self.tx.conn())
                .await?;
        }
        Ok(JournalSeq(new_head))
    }
}

/// Whether a database error is a unique-key violation (a name or path already taken).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> MetaError {
    MetaError::Corrupt(what.to_string())
}

pub(crate) fn parse_path(s: &str) -> Result<ServerPath, MetaError> {
    ServerPath::parse(s).map_err(|e| corrupt(format!("stored path {s:?}: {e}")))
}

pub(crate) fn parse_content_hash(bytes: Option<Vec<u8>>) -> Result<Option<ContentHash>, MetaError> {
    bytes
        .map(|b| ContentHash::from_slice(&b).ok_or_else(|| corrupt("content hash of wrong length")))
        .transpose()
}

/// The columns [`entry_from_row`] reads, in a form that works with or without a table
/// alias.
pub(crate) const ENTRY_COLUMNS: &str =
    "id, ns_id, path, kind, size, current_version_id, content_hash, mtime, modified_at";

pub(crate) fn entry_from_row(row: &AnyRow) -> Result<Entry, MetaError> {
    let kind: String = row.try_get("kind")?;
    Ok(Entry {
        id: EntryId(row.try_get("id")?),
        ns: NamespaceId(row.try_get("ns_id")?),
        path: parse_path(&row.try_get::<String, _>("path")?)?,
        kind: EntryKind::from_db(&kind).ok_or_else(|| corrupt(format!("entry kind {kind:?}")))?,
        size: row.try_get("size")?,
        rev: row
            .try_get::<Option<i64>, _>("current_version_id")?
            .map(VersionId),
        content_hash: parse_content_hash(row.try_get("content_hash")?)?,
        mtime: row.try_get("mtime")?,
        modified_at: row.try_get("modified_at")?,
    })
}

/// The columns [`user_from_row`] reads. Queries that return users also say
/// `deleted_at IS NULL`: a deleted account is a tombstone, never a [`User`].
pub(crate) const USER_COLUMNS: &str =
    "id, name, password_hash, is_admin, quota_bytes, home_ns, created_at, disabled_at";

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User, MetaError> {
    let home_ns: Option<i64> = row.try_get("home_ns")?;
    Ok(User {
        id: UserId(row.try_get("id")?),
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        quota_bytes: row.try_get("quota_bytes")?,
        home_ns: NamespaceId(home_ns.ok_or_else(|| corrupt("user without home namespace"))?),
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

/// The live entry whose path has this key, if any.
pub(crate) async fn find_live<'e, E>(
    exec: E,
    ns: NamespaceId,
    key: &str,
) -> Result<Option<Entry>, MetaError>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries \
         WHERE ns_id = $1 AND path_key = $2 AND deleted_at IS NULL"
    );
    let row = sqlx::query(&sql)
        .bind(ns.0)
        .bind(key.to_owned())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(entry_from_row).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durability depends on these settings holding on every pooled connection, not
    /// just the first; sqlx's defaults have changed between releases before.
    #[tokio::test]
    async fn sqlite_connections_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/m.db?mode=rwc", dir.path().display());
        let store = connect(&url).await.unwrap();
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut c = store.pool.acquire().await.unwrap();
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            assert_eq!(
                (sync, fk, busy, mode.as_str()),
                (2, 1, 5000, "wal"),
                "FULL, on, 5 s, WAL"
            );
            conns.push(c);
        }
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(row_placeholders(1, 2, 2), "($1, $2), ($3, $4)");
    }
}
