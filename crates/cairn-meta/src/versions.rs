//! A file's version history: listing the versions a file has had, and restoring one.

use cairn_core::{DeviceId, NamespaceId, ServerPath, UserId, VersionId};
use sqlx::Row;

use crate::db::{find_live, parse_content_hash, placeholders, CHUNK};
use crate::{Actor, CommitFile, CommitOutcome, EntryKind, MetaError, MetaStore, VersionInfo};

impl MetaStore {
    /// Which of `versions` still exist (live, old or in the trash): what is derived from a
    /// version, such as the server's cached thumbnails, goes when it has gone.
    pub async fn existing_versions(
        &self,
        versions: &[VersionId],
    ) -> Result<std::collections::HashSet<VersionId>, MetaError> {
        let mut found = std::collections::HashSet::new();
        for chunk in versions.chunks(CHUNK) {
            let sql = format!(
                "SELECT id FROM versions WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for v in chunk {
                query = query.bind(v.0);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(VersionId(row.try_get("id")?));
            }
        }
        Ok(found)
    }

    /// Every version of the live file at `path`, newest first. Old versions share their
    /// unchanged blocks with newer ones, so keeping them costs only what changed.
    pub async fn list_versions(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
    ) -> Result<Vec<VersionInfo>, MetaError> {
        let entry = find_live(&self.pool, ns, &path.key())
            .await?
            .ok_or_else(|| MetaError::NotFound(path.clone()))?;
        if entry.kind == EntryKind::Folder {
            return Err(MetaError::IsAFolder(entry.path));
        }
        let rows = sqlx::query(
            "SELECT v.id, v.size, v.content_hash, v.mtime, v.created_at, v.user_id, \
                    u.name AS user_name, v.device_id, d.name AS device_name \
             FROM versions v \
             JOIN users u ON u.id = v.user_id \
             LEFT JOIN devices d ON d.id = v.device_id \
             WHERE v.entry_id = $1 ORDER BY v.id DESC",
        )
        .bind(entry.id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VersionInfo {
                    id: VersionId(r.try_get("id")?),
                    size: r.try_get("size")?,
                    content_hash: parse_content_hash(Some(r.try_get("content_hash")?))?
                        .ok_or_else(|| MetaError::Corrupt("version without content hash".into()))?,
                    mtime: r.try_get("mtime")?,
                    created_at: r.try_get("created_at")?,
                    user_id: UserId(r.try_get("user_id")?),
                    user_name: r.try_get("user_name")?,
                    device_id: r.try_get::<Option<i64>, _>("device_id")?.map(DeviceId),
                    device_name: r.try_get("device_name")?,
                })
            })
            .collect()
    }

    /// Makes the content of `version` the current content of the file at `path`, as a
    /// new version, so a restore can itself be undone. The version must be one of this
    /// file's ([`MetaError::NoSuchVersion`] otherwise). Restoring the content the file
    /// already has changes nothing.
    pub async fn restore_version(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
        version: VersionId,
        actor: &Actor,
    ) -> Result<CommitOutcome, MetaError> {
        let entry = find_live(&self.pool, ns, &path.key())
            .await?
            .ok_or_else(|| MetaError::NotFound(path.clone()))?;
        if entry.kind == EntryKind::Folder {
            return Err(MetaError::IsAFolder(entry.path));
        }
        let row = sqlx::query("SELECT mtime FROM versions WHERE id = $1 AND entry_id = $2")
            .bind(version.0)
            .bind(entry.id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(MetaError::NoSuchVersion(version))?;
        let mtime: i64 = row.try_get("mtime")?;
        let blocks = self.version_blocks(version).await?;
        // The commit's base revision is the one read above: if the file changes between
        // that read and the commit, the restore fails as a conflict instead of
        // overwriting the newer content.
        self.commit_file(CommitFile {
            ns,
            path: entry.path.clone(),
            blocks,
            mtime: Some(mtime),
            base_rev: entry.rev,
            autorename: false,
            actor: actor.clone(),
        })
        .await
    }
}

/// Deletes these versions with their block lists and drops the block references they
/// held, in the caller's transaction, and returns how many were still there to delete.
/// The caller makes sure no entry still names one of them as its current version.
pub(crate) async fn delete_versions(
    conn: &mut sqlx::AnyConnection,
    versions: &[VersionId],
    now: i64,
) -> Result<u64, MetaError> {
    use std::collections::BTreeMap;

    use crate::db::{corrupt, placeholders, CHUNK};

    // Lock the rows first and keep those still there. On PostgreSQL another
    // transaction (a retention pass, a purge, possibly in another process) may be
    // deleting some of the same versions; counting their block lists and deleting them
    // again would remove their references twice. The no-op UPDATE waits for such a
    // transaction and then skips the rows it deleted. One row at a time, in id order,
    // so two deleters never lock in opposite orders. On SQLite the write transaction
    // already excludes every other writer.
    let mut sorted = versions.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut still = Vec::with_capacity(sorted.len());
    for v in sorted {
        let row =
            sqlx::query("UPDATE versions SET block_count = block_count WHERE id = $1 RETURNING id")
                .bind(v.0)
                .fetch_optional(&mut *conn)
                .await?;
        if row.is_some() {
            still.push(v);
        }
    }
    let versions = &still[..];

    let mut references: BTreeMap<cairn_core::BlockHash, i64> = BTreeMap::new();
    for chunk in versions.chunks(CHUNK) {
        let list = placeholders(1, chunk.len());
        let sql = format!(
            "SELECT block_hash, COUNT(*) AS n FROM version_blocks \
             WHERE version_id IN ({list}) GROUP BY block_hash"
        );
        let mut q = sqlx::query(&sql);
        for v in chunk {
            q = q.bind(v.0);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let hash: Vec<u8> = row.try_get("block_hash")?;
            let hash = cairn_core::BlockHash::from_slice(&hash)
                .ok_or_else(|| corrupt("block hash length"))?;
            *references.entry(hash).or_insert(0) += row.try_get::<i64, _>("n")?;
        }
        for table_sql in [
            format!("DELETE FROM version_blocks WHERE version_id IN ({list})"),
            format!("DELETE FROM versions WHERE id IN ({list})"),
        ] {
            let mut q = sqlx::query(&table_sql);
            for v in chunk {
                q = q.bind(v.0);
            }
            q.execute(&mut *conn).await?;
        }
    }
    crate::blocks::remove_references(conn, &references, now).await?;
    Ok(versions.len() as u64)
}
