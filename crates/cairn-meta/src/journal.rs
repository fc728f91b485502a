//! Reading the per-namespace journal. Rows are written by `db::NsWrite`, in the
//! transaction of the change they describe.

use cairn_core::{DeviceId, EntryId, JournalSeq, NamespaceId, UserId, VersionId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{corrupt, parse_content_hash, parse_path, placeholders, CHUNK};
use crate::{ChangeKind, EntryKind, JournalEntry, MetaError, MetaStore};

impl MetaStore {
    /// The namespace's changes numbered after `after`, oldest first, at most `limit`.
    /// Numbers are consecutive from 1, so a reader that saw up to `n` and gets rows
    /// starting at `n + 1` has missed nothing.
    pub async fn journal_since(
        &self,
        ns: NamespaceId,
        after: JournalSeq,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, MetaError> {
        let rows = sqlx::query(
            "SELECT j.ns_id, j.seq, j.kind, j.entry_kind, j.path, j.from_path, j.entry_id, \
             j.version_id, j.user_id, j.device_id, j.created_at, \
             v.size AS v_size, v.content_hash AS v_content_hash, v.mtime AS v_mtime \
             FROM journal j LEFT JOIN versions v ON v.id = j.version_id \
             WHERE j.ns_id = $1 AND j.seq > $2 ORDER BY j.seq LIMIT $3",
        )
        .bind(ns.0)
        .bind(after.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(journal_from_row).collect()
    }

    /// The number of the namespace's latest change (0 before the first).
    pub async fn journal_head(&self, ns: NamespaceId) -> Result<JournalSeq, MetaError> {
        let head: Option<i64> =
            sqlx::query_scalar("SELECT journal_seq FROM namespaces WHERE id = $1")
                .bind(ns.0)
                .fetch_optional(&self.pool)
                .await?;
        head.map(JournalSeq).ok_or(MetaError::NoSuchNamespace(ns))
    }

    /// The heads of many namespaces at once, in no particular order; a namespace that
    /// does not exist (any more) is left out.
    pub async fn journal_heads(
        &self,
        namespaces: &[NamespaceId],
    ) -> Result<Vec<(NamespaceId, JournalSeq)>, MetaError> {
        let mut heads = Vec::with_capacity(namespaces.len());
        for chunk in namespaces.chunks(CHUNK) {
            let sql = format!(
                "SELECT id, journal_seq FROM namespaces WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
            for ns in chunk {
                query = query.bind(ns.0);
            }
            for (ns, seq) in query.fetch_all(&self.pool).await? {
                heads.push((NamespaceId(ns), JournalSeq(seq)));
            }
        }
        Ok(heads)
    }
}

fn journal_from_row(row: &AnyRow) -> Result<JournalEntry, MetaError> {
    let kind: String = row.try_get("kind")?;
    let from: Option<String> = row.try_get("from_path")?;
    let from = || -> Result<_, MetaError> {
        parse_path(
            from.as_deref()
                .ok_or_else(|| corrupt(format!("{kind} without from_path")))?,
        )
    };
    let kind = match kind.as_str() {
        "commit" => ChangeKind::Commit,
        "mkdir" => ChangeKind::Mkdir,
        "move" => ChangeKind::Move { from: from()? },
        "copy" => ChangeKind::Copy { from: from()? },
        "delete" => ChangeKind::Delete,
        "restore" => ChangeKind::Restore,
        "purge" => ChangeKind::Purge,
        other => return Err(corrupt(format!("journal kind {other:?}"))),
    };
    let entry_kind: String = row.try_get("entry_kind")?;
    Ok(JournalEntry {
        ns: NamespaceId(row.try_get("ns_id")?),
        seq: JournalSeq(row.try_get("seq")?),
        kind,
        entry_kind: EntryKind::from_db(&entry_kind)
            .ok_or_else(|| corrupt(format!("entry kind {entry_kind:?}")))?,
        path: parse_path(&row.try_get::<String, _>("path")?)?,
        entry_id: EntryId(row.try_get("entry_id")?),
        version_id: row.try_get::<Option<i64>, _>("version_id")?.map(VersionId),
        size: row.try_get("v_size")?,
        content_hash: parse_content_hash(row.try_get("v_content_hash")?)?,
        mtime: row.try_get("v_mtime")?,
        user_id: UserId(row.try_get("user_id")?),
        device_id: row.try_get::<Option<i64>, _>("device_id")?.map(DeviceId),
        created_at: row.try_get("created_at")?,
    })
}
