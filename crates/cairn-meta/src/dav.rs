//! What WebDAV keeps besides files: locks (`dav_locks`) and dead properties
//! (`dav_props`). Both live in the metadata store rather than in a node's memory, so a
//! lock taken through one node holds on every other and survives a restart.
//!
//! The rules of locking (which locks conflict, which cover a path) are WebDAV's and
//! live in the server's WebDAV module; here a new lock is only inserted in the same
//! transaction as the read of the namespace's live locks it was checked against, with
//! the namespace row locked, so two nodes cannot both grant conflicting locks.

use cairn_core::{EntryId, NamespaceId, ServerPath};
use sqlx::Row;

use crate::db::{now_ms, parse_path, WriteTx};
use crate::{MetaError, MetaStore};

/// One WebDAV lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavLockRow {
    /// The lock token (`urn:uuid:…`), unique.
    pub token: String,
    /// The namespace of the locked path.
    pub ns: NamespaceId,
    /// The locked path, inside `ns`.
    pub path: ServerPath,
    /// The user name that took it.
    pub principal: Option<String>,
    /// The `<D:owner>` element the client sent, as XML.
    pub owner_xml: Option<String>,
    /// The timeout asked for and granted, in seconds; `None` for infinite.
    pub timeout_secs: Option<i64>,
    /// When it expires, Unix ms; `None` for never.
    pub timeout_at: Option<i64>,
    pub shared: bool,
    /// Whether it covers the whole subtree (`Depth: infinity`).
    pub deep: bool,
}

/// One dead property of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadProp {
    /// The XML namespace; empty for none.
    pub namespace: String,
    pub name: String,
    /// The whole element, as the client sent it.
    pub xml: Vec<u8>,
}

const LOCK_COLUMNS: &str =
    "token, ns_id, path, principal, owner_xml, timeout_secs, timeout_at, shared, deep";

fn lock_from_row(row: &sqlx::any::AnyRow) -> Result<DavLockRow, MetaError> {
    Ok(DavLockRow {
        token: row.try_get("token")?,
        ns: NamespaceId(row.try_get("ns_id")?),
        path: parse_path(&row.try_get::<String, _>("path")?)?,
        principal: row.try_get("principal")?,
        owner_xml: row.try_get("owner_xml")?,
        timeout_secs: row.try_get("timeout_secs")?,
        timeout_at: row.try_get("timeout_at")?,
        shared: row.try_get::<i16, _>("shared")? != 0,
        deep: row.try_get::<i16, _>("deep")? != 0,
    })
}

impl MetaStore {
    /// The live locks of namespace `ns`.
    pub async fn dav_locks(&self, ns: NamespaceId) -> Result<Vec<DavLockRow>, MetaError> {
        let rows = sqlx::query(&format!(
            "SELECT {LOCK_COLUMNS} FROM dav_locks \
             WHERE ns_id = $1 AND (timeout_at IS NULL OR timeout_at > $2)"
        ))
        .bind(ns.0)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lock_from_row).collect()
    }

    /// Inserts `lock` unless `conflict`, given the namespace's live locks, names one it
    /// conflicts with: that one is returned instead, and nothing is written. Expired
    /// locks of the namespace are deleted on the way.
    pub async fn dav_lock_create(
        &self,
        lock: &DavLockRow,
        conflict: impl FnOnce(&[DavLockRow]) -> Option<DavLockRow>,
    ) -> Result<Result<(), DavLockRow>, MetaError> {
        let now = now_ms();
        let mut tx = WriteTx::begin(self).await?;
        // Writers of one namespace's locks take turns (the row lock on PostgreSQL;
        // SQLite's write lock is already held).
        let found: Option<i64> = sqlx::query_scalar(
            "UPDATE namespaces SET journal_seq = journal_seq WHERE id = $1 RETURNING id",
        )
        .bind(lock.ns.0)
        .fetch_optional(tx.conn())
        .await?;
        if found.is_none() {
            return Err(MetaError::NoSuchNamespace(lock.ns));
        }
        sqlx::query("DELETE FROM dav_locks WHERE ns_id = $1 AND timeout_at <= $2")
            .bind(lock.ns.0)
            .bind(now)
            .execute(tx.conn())
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {LOCK_COLUMNS} FROM dav_locks WHERE ns_id = $1"
        ))
        .bind(lock.ns.0)
        .fetch_all(tx.conn())
        .await?;
        let live = rows
            .iter()
            .map(lock_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(other) = conflict(&live) {
            return Ok(Err(other));
        }
        sqlx::query(
            "INSERT INTO dav_locks (token, ns_id, path, path_key, principal, owner_xml, \
             timeout_secs, timeout_at, shared, deep, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&lock.token)
        .bind(lock.ns.0)
        .bind(lock.path.as_str())
        .bind(lock.path.key())
        .bind(&lock.principal)
        .bind(&lock.owner_xml)
        .bind(lock.timeout_secs)
        .bind(lock.timeout_at)
        .bind(i16::from(lock.shared))
        .bind(i16::from(lock.deep))
        .bind(now)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// The live lock with this token.
    pub async fn dav_lock(&self, token: &str) -> Result<Option<DavLockRow>, MetaError> {
        let row = sqlx::query(&format!(
            "SELECT {LOCK_COLUMNS} FROM dav_locks \
             WHERE token = $1 AND (timeout_at IS NULL OR timeout_at > $2)"
        ))
        .bind(token)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(lock_from_row).transpose()
    }

    /// Gives the live lock `token` a new timeout; `None` when there is no such lock.
    pub async fn dav_lock_refresh(
        &self,
        token: &str,
        timeout_secs: Option<i64>,
        timeout_at: Option<i64>,
    ) -> Result<Option<DavLockRow>, MetaError> {
        let done = sqlx::query(
            "UPDATE dav_locks SET timeout_secs = $1, timeout_at = $2 \
             WHERE token = $3 AND (timeout_at IS NULL OR timeout_at > $4)",
        )
        .bind(timeout_secs)
        .bind(timeout_at)
        .bind(token)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.dav_lock(token).await
    }

    /// Deletes the locks with these tokens.
    pub async fn dav_locks_remove(&self, tokens: &[String]) -> Result<u64, MetaError> {
        let mut removed = 0;
        for token in tokens {
            removed += sqlx::query("DELETE FROM dav_locks WHERE token = $1")
                .bind(token)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }

    /// The dead properties of entry `entry` of namespace `ns`.
    pub async fn dav_props(
        &self,
        ns: NamespaceId,
        entry: EntryId,
    ) -> Result<Vec<DeadProp>, MetaError> {
        let rows = sqlx::query(
            "SELECT namespace, name, xml FROM dav_props WHERE ns_id = $1 AND entry_id = $2 \
             ORDER BY namespace, name",
        )
        .bind(ns.0)
        .bind(entry.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadProp {
                    namespace: row.try_get("namespace")?,
                    name: row.try_get("name")?,
                    xml: row.try_get("xml")?,
                })
            })
            .collect()
    }

    /// Sets (`true`) and removes (`false`) dead properties of an entry, all or nothing.
    pub async fn dav_props_patch(
        &self,
        ns: NamespaceId,
        entry: EntryId,
        changes: &[(DeadProp, bool)],
    ) -> Result<(), MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        for (prop, set) in changes {
            sqlx::query(
                "DELETE FROM dav_props \
                 WHERE ns_id = $1 AND entry_id = $2 AND namespace = $3 AND name = $4",
            )
            .bind(ns.0)
            .bind(entry.0)
            .bind(&prop.namespace)
            .bind(&prop.name)
            .execute(tx.conn())
            .await?;
            if *set {
                sqlx::query(
                    "INSERT INTO dav_props (ns_id, entry_id, namespace, name, xml) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ns.0)
                .bind(entry.0)
                .bind(&prop.namespace)
                .bind(&prop.name)
                .bind(&prop.xml)
                .execute(tx.conn())
                .await?;
            }
        }
        tx.commit().await
    }

    /// Gives entry `to` a copy of the dead properties of entry `from` (a WebDAV COPY),
    /// replacing any it had.
    pub async fn dav_props_copy(
        &self,
        from: (NamespaceId, EntryId),
        to: (NamespaceId, EntryId),
    ) -> Result<(), MetaError> {
        let props = self.dav_props(from.0, from.1).await?;
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query("DELETE FROM dav_props WHERE ns_id = $1 AND entry_id = $2")
            .bind(to.0 .0)
            .bind(to.1 .0)
            .execute(tx.conn())
            .await?;
        for prop in props {
            sqlx::query(
                "INSERT INTO dav_props (ns_id, entry_id, namespace, name, xml) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(to.0 .0)
            .bind(to.1 .0)
            .bind(&prop.namespace)
            .bind(&prop.name)
            .bind(&prop.xml)
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await
    }
}
