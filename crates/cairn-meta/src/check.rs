//! Whole-database consistency checks (the metadata half of `cairn admin fsck`) and
//! row counts.

use std::fmt;

use cairn_core::{BlockHash, JournalSeq, NamespaceId, TrashId, VersionId};
use futures::TryStreamExt;
use sqlx::Row;

use crate::db::corrupt;
use crate::{MetaError, MetaStats, MetaStore};

/// A broken invariant found by [`MetaStore::check_consistency`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    /// A block's reference count differs from the number of version_blocks rows
    /// naming it.
    RefcountMismatch {
        /// The block.
        hash: BlockHash,
        /// The stored count.
        refcount: i64,
        /// The rows that name it.
        references: i64,
    },
    /// `zero_since` is set on a referenced block, or missing on an unreferenced one
    /// (which garbage collection would then never reclaim).
    ZeroSinceMismatch {
        /// The block.
        hash: BlockHash,
        /// Its reference count.
        refcount: i64,
    },
    /// A namespace's journal is not numbered 1..=head without gaps.
    JournalGap {
        /// The namespace.
        ns: NamespaceId,
        /// `namespaces.journal_seq`.
        head: JournalSeq,
        /// How many rows the journal has.
        rows: i64,
        /// The lowest and highest numbers present.
        lowest: JournalSeq,
        /// The highest number present.
        highest: JournalSeq,
    },
    /// A live entry whose parent is not a live folder, or whose path does not start
    /// with its parent's stored path.
    Orphan {
        /// The namespace.
        ns: NamespaceId,
        /// The entry's stored path.
        path: String,
    },
    /// A live entry's stored keys do not match its path.
    KeyMismatch {
        /// The namespace.
        ns: NamespaceId,
        /// The entry's stored path.
        path: String,
    },
    /// A live file whose current version is missing, belongs to another entry, or
    /// disagrees with it on size or content hash (or a folder with a version).
    CurrentVersionMismatch {
        /// The namespace.
        ns: NamespaceId,
        /// The entry's stored path.
        path: String,
    },
    /// A version whose block list disagrees with its block count or size, or whose
    /// indexes are not 0..count.
    VersionBlocksMismatch {
        /// The version.
        version: VersionId,
    },
    /// A deleted entry that belongs to no trash item of its namespace (so nothing could
    /// restore or purge it), or a live entry still tied to one.
    TrashMismatch {
        /// The namespace.
        ns: NamespaceId,
        /// The entry's stored path.
        path: String,
    },
    /// A trash item whose deleted entry is not among its entries.
    EmptyTrashItem {
        /// The namespace.
        ns: NamespaceId,
        /// The item.
        id: TrashId,
    },
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inconsistency::RefcountMismatch {
                hash,
                refcount,
                references,
            } => write!(
                f,
                "block {hash} has reference count {refcount} but {references} references"
            ),
            Inconsistency::ZeroSinceMismatch { hash, refcount } => write!(
                f,
                "block {hash} (reference count {refcount}) has a wrong zero_since"
            ),
            Inconsistency::JournalGap {
                ns,
                head,
                rows,
                lowest,
                highest,
            } => write!(
                f,
                "namespace {ns}: journal head {head} but {rows} rows numbered {lowest}..={highest}"
            ),
            Inconsistency::Orphan { ns, path } => {
                write!(f, "namespace {ns}: {path} has no live parent folder")
            }
            Inconsistency::KeyMismatch { ns, path } => {
                write!(f, "namespace {ns}: {path} has wrong path keys")
            }
            Inconsistency::CurrentVersionMismatch { ns, path } => write!(
                f,
                "namespace {ns}: {path} disagrees with its current version"
            ),
            Inconsistency::VersionBlocksMismatch { version } => write!(
                f,
                "version {version}: block list disagrees with its size or block count"
            ),
            Inconsistency::TrashMismatch { ns, path } => write!(
                f,
                "namespace {ns}: {path} is deleted outside the trash, or live inside it"
            ),
            Inconsistency::EmptyTrashItem { ns, id } => {
                write!(f, "namespace {ns}: trash item {id} has lost its entry")
            }
        }
    }
}

fn hash_of(bytes: Vec<u8>) -> Result<BlockHash, MetaError> {
    BlockHash::from_slice(&bytes).ok_or_else(|| corrupt("block hash length"))
}

impl MetaStore {
    /// Checks the store's invariants over the whole database and lists what is broken
    /// (empty when all is well). Reads everything; meant for fsck and tests, not for
    /// the request path. Run it while no writes are in flight, or it may report a
    /// change half-seen.
    pub async fn check_consistency(&self) -> Result<Vec<Inconsistency>, MetaError> {
        let mut found = Vec::new();
        self.check_refcounts(&mut found).await?;
        self.check_journals(&mut found).await?;
        self.check_orphans(&mut found).await?;
        self.check_keys(&mut found).await?;
        self.check_current_versions(&mut found).await?;
        self.check_version_blocks(&mut found).await?;
        self.check_trashed_entries(&mut found).await?;
        self.check_trash_items(&mut found).await?;
        Ok(found)
    }

    /// Every block's reference count is the number of version blocks naming it, and
    /// `zero_since` is set exactly when it is zero.
    async fn check_refcounts(&self, found: &mut Vec<Inconsistency>) -> Result<(), MetaError> {
        let rows = sqlx::query(
            "SELECT b.hash, b.refcount, COALESCE(c.n, 0) AS refs, b.zero_since \
             FROM blocks b LEFT JOIN \
               (SELECT block_hash, COUNT(*) AS n FROM version_blocks GROUP BY block_hash) c \
               ON c.block_hash = b.hash \
             WHERE b.refcount <> COALESCE(c.n, 0) \
                OR (b.refcount = 0 AND b.zero_since IS NULL) \
                OR (b.refcount > 0 AND b.zero_since IS NOT NULL)",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let hash = hash_of(row.try_get("hash")?)?;
            let refcount: i64 = row.try_get("refcount")?;
            let references: i64 = row.try_get("refs")?;
            if refcount != references {
                found.push(Inconsistency::RefcountMismatch {
                    hash,
                    refcount,
                    references,
                });
            } else {
                found.push(Inconsistency::ZeroSinceMismatch { hash, refcount });
            }
        }
        Ok(())
    }

    /// Each namespace's journal is numbered from 1 to its head, without a gap.
    async fn check_journals(&self, found: &mut Vec<Inconsistency>) -> Result<(), MetaError> {
        let rows = sqlx::query(
            "SELECT n.id, n.journal_seq, COALESCE(j.cnt, 0) AS cnt, COALESCE(j.lo, 0) AS lo, \
                    COALESCE(j.hi, 0) AS hi \
             FROM namespaces n LEFT JOIN \
               (SELECT ns_id, COUNT(*) AS cnt, MIN(seq) AS lo, MAX(seq) AS hi \
                FROM journal GROUP BY ns_id) j ON j.ns_id = n.id",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let head: i64 = row.try_get("journal_seq")?;
            let rows: i64 = row.try_get("cnt")?;
            let lowest: i64 = row.try_get("lo")?;
            let highest: i64 = row.try_get("hi")?;
            // Numbers are unique (primary key), so count == highest == head and a
            // lowest of 1 mean exactly 1..=head.
            let contiguous = rows == highest && highest == head && (rows == 0 || lowest == 1);
            if !contiguous {
                found.push(Inconsistency::JournalGap {
                    ns: NamespaceId(row.try_get("id")?),
                    head: JournalSeq(head),
                    rows,
                    lowest: JournalSeq(lowest),
                    highest: JournalSeq(highest),
                });
            }
        }
        Ok(())
    }

    /// Every live entry outside the root has a live folder for a parent.
    async fn check_orphans(&self, found: &mut Vec<Inconsistency>) -> Result<(), MetaError> {
        let rows = sqlx::query(
            "SELECT e.ns_id, e.path FROM entries e \
             WHERE e.deleted_at IS NULL AND e.parent_key <> '/' AND NOT EXISTS ( \
               SELECT 1 FROM entries p \
               WHERE p.ns_id = e.ns_id AND p.path_key = e.parent_key \
                 AND p.deleted_at IS NULL AND p.kind = 'dir' \
                 AND substr(e.path, 1, length(p.path) + 1) = p.path || '/')",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            found.push(Inconsistency::Orphan {
                ns: NamespaceId(row.try_get("ns_id")?),
                path: row.try_get("path")?,
            });
        }
        Ok(())
    }

    /// Every live entry's path is canonical, with the path and parent keys computed from it.
    async fn check_keys(&self, found: &mut Vec<Inconsistency>) -> Result<(), MetaError> {
        // Keys are computed in Rust, so they are checked in Rust, one row at a time.
        let mut stream = sqlx::query(
            "SELECT ns_id, path, path_key, parent_key FROM entries WHERE deleted_at IS NULL",
        )
        .fetch(&self.pool);
        while let Some(row) = stream.try_next().await? {
            let path: String = row.try_get("path")?;
            let path_key: String = row.try_get("path_key")?;
            let parent_key: String = row.try_get("parent_key")?;
            let ok = match cairn_core::ServerPath::parse(&path) {
                Ok(p) => {
                    p.as_str() == path
                        && p.key() == path_key
                        && p.parent().map(|q| q.key()).as_deref() == Some(parent_key.as_str())
                }
                Err(_) => false,
            };
            if !ok {
                found.push(Inconsistency::KeyMismatch {
                    ns: NamespaceId(row.try_get("ns_id")?),
                    path,
                });
            }
        }
        drop(stream);
        Ok(())
    }

    /// A folder has no version; a file's current version is its own, of its size and
    /// content hash.
    async fn check_current_versions(
        &self,
        found: &mut Vec<Inconsistency>,
    ) -> Result<(), MetaError> {
        let rows = sqlx::query(
            "SELECT e.ns_id, e.path FROM entries e \
             LEFT JOIN versions v ON v.id = e.current_version_id \
             WHERE e.deleted_at IS NULL AND ( \
               (e.kind = 'dir' AND e.current_version_id IS NOT NULL) \
               OR (e.kind = 'file' AND (v.id IS NULL OR v.entry_id <> e.id OR v.size <> e.size \
                   OR e.content_hash IS NULL OR v.content_hash <> e.content_hash)))",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            found.push(Inconsistency::CurrentVersionMismatch {
                ns: NamespaceId(row.try_get("ns_id")?),
                path: row.try_get("path")?,
            });
        }
        Ok(())
    }

    /// Every version's block list is numbered from 0 without a gap and adds up to its size.
    async fn check_version_blocks(&self, found: &mut Vec<Inconsistency>) -> Result<(), MetaError> {
        let rows = sqlx::query(
            "SELECT v.id FROM versions v LEFT JOIN version_blocks vb ON vb.version_id = v.id \
             GROUP BY v.id, v.block_count, v.size \
             HAVING COUNT(vb.idx) <> v.block_count \
                OR CAST(COALESCE(SUM(vb.size), 0) AS BIGINT) <> v.size \
                OR COALESCE(MAX(vb.idx), -1) <> COUNT(vb.idx) - 1 \
                OR COALESCE(MIN(vb.idx), 0) <> 0",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            found.push(Inconsistency::VersionBlocksMismatch {
                version: VersionId(row.try_get("id")?),
            });
        }
        Ok(())
    }

    /// An entry is deleted exactly when a trash item of its namespace holds it.
    async fn check_trashed_entries(&self, found: &mut Vec<Inconsistency>) -> Result<(), MetaError> {
        let rows = sqlx::query(
            "SELECT e.ns_id, e.path FROM entries e LEFT JOIN trash t ON t.id = e.trash_id \
             WHERE (e.deleted_at IS NULL AND e.trash_id IS NOT NULL) \
                OR (e.deleted_at IS NOT NULL AND (t.id IS NULL OR t.ns_id <> e.ns_id))",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            found.push(Inconsistency::TrashMismatch {
                ns: NamespaceId(row.try_get("ns_id")?),
                path: row.try_get("path")?,
            });
        }
        Ok(())
    }

    /// Every trash item still holds its entry.
    async fn check_trash_items(&self, found: &mut Vec<Inconsistency>) -> Result<(), MetaError> {
        let rows = sqlx::query(
            "SELECT t.ns_id, t.id FROM trash t WHERE NOT EXISTS ( \
               SELECT 1 FROM entries e WHERE e.id = t.entry_id AND e.trash_id = t.id)",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            found.push(Inconsistency::EmptyTrashItem {
                ns: NamespaceId(row.try_get("ns_id")?),
                id: TrashId(row.try_get("id")?),
            });
        }
        Ok(())
    }

    /// Row counts across the whole database.
    pub async fn stats(&self) -> Result<MetaStats, MetaError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM users WHERE deleted_at IS NULL) AS users, \
               (SELECT COUNT(*) FROM entries WHERE deleted_at IS NULL AND kind = 'file') AS files, \
               (SELECT COUNT(*) FROM entries WHERE deleted_at IS NULL AND kind = 'dir') AS folders, \
               (SELECT COUNT(*) FROM versions) AS versions, \
               (SELECT COUNT(*) FROM blocks) AS blocks, \
               (SELECT CAST(COALESCE(SUM(refcount), 0) AS BIGINT) FROM blocks) AS refs, \
               (SELECT COUNT(*) FROM journal) AS journal_rows",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(MetaStats {
            users: row.try_get("users")?,
            live_files: row.try_get("files")?,
            live_folders: row.try_get("folders")?,
            versions: row.try_get("versions")?,
            blocks: row.try_get("blocks")?,
            block_references: row.try_get("refs")?,
            journal_rows: row.try_get("journal_rows")?,
        })
    }
}
