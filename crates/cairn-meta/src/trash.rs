//! The trash: listing what was deleted, restoring it, purging it for good, and expiring
//! old items.
//!
//! A delete (`MetaStore::delete_entry`) marks the entries deleted and ties them to one
//! `trash` row; their versions and block references stay. A restore makes the same
//! rows live again, so entry ids and version histories survive the round trip. A purge
//! removes the rows with their versions and drops the block references those versions
//! held; garbage collection reclaims blocks that no longer have any.
//!
//! Every operation runs in one namespace write, so it is journaled with the change, and
//! a bulk purge takes one transaction per item, so none grows without bound.

use cairn_core::conflict::{copy_name, CopyReason, NameKind};
use cairn_core::{DeviceId, EntryId, NamespaceId, ServerPath, TrashId, UserId, VersionId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::{corrupt, entry_from_row, find_live, parse_path, NsWrite, ENTRY_COLUMNS};
use crate::quota::check_quota;
use crate::tree::{ensure_parents, name_of, rebase, set_path};
use crate::versions::delete_versions;
use crate::{Actor, ChangeKind, Entry, EntryKind, MetaError, MetaStore, TrashItem};

/// How many "(restored N)" names to try before giving up.
const MAX_RESTORED_NAMES: u32 = 1000;

/// The columns [`item_from_row`] reads, over `trash t` joined with its user and device.
const ITEM_SELECT: &str = "SELECT t.id, t.ns_id, t.entry_id, t.kind, t.path, t.size, \
     t.file_count, t.deleted_at, t.user_id, u.name AS user_name, t.device_id, \
     d.name AS device_name \
     FROM trash t JOIN users u ON u.id = t.user_id LEFT JOIN devices d ON d.id = t.device_id";

impl MetaStore {
    /// The namespace's trash, newest first: at most `limit` items deleted before the
    /// item `after` (pass the id of the last item of the previous page).
    pub async fn list_trash(
        &self,
        ns: NamespaceId,
        after: Option<TrashId>,
        limit: u32,
    ) -> Result<Vec<TrashItem>, MetaError> {
        self.list_trash_of(&[ns], after, limit).await
    }

    /// [`MetaStore::list_trash`] over several namespaces at once (a user's home and
    /// the shared folders it reads), newest first.
    pub async fn list_trash_of(
        &self,
        namespaces: &[NamespaceId],
        after: Option<TrashId>,
        limit: u32,
    ) -> Result<Vec<TrashItem>, MetaError> {
        if namespaces.is_empty() {
            return Ok(Vec::new());
        }
        let n = namespaces.len();
        let sql = format!(
            "{ITEM_SELECT} WHERE t.ns_id IN ({}) AND t.id < ${} ORDER BY t.id DESC LIMIT ${}",
            crate::db::placeholders(1, n),
            n + 1,
            n + 2
        );
        let mut q = sqlx::query(&sql);
        for ns in namespaces {
            q = q.bind(ns.0);
        }
        let rows = q
            .bind(after.map_or(i64::MAX, |a| a.0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// One item of the namespace's trash, if it is there.
    pub async fn trash_item(
        &self,
        ns: NamespaceId,
        id: TrashId,
    ) -> Result<Option<TrashItem>, MetaError> {
        let mut conn = self.pool.acquire().await?;
        load_item(&mut conn, ns, id).await
    }

    /// Brings a trash item back and returns its top entry where it now lives.
    ///
    /// The entries become live again with their ids and versions. The item returns to
    /// the path it was deleted from, re-creating missing folders above it (journaled as
    /// mkdirs); when something live holds that path, it comes back beside it as
    /// `NAME (restored).EXT`, `NAME (restored 2).EXT`, …, so nothing is overwritten.
    /// Every restored entry is journaled as a restore, parents first.
    ///
    /// Fails with [`MetaError::NoSuchTrashItem`] when the namespace has no such item,
    /// [`MetaError::QuotaExceeded`] when the item's files would take the owner past
    /// their quota, and [`MetaError::NotAFolder`] when a file now holds the place of a
    /// folder above the original path.
    pub async fn restore_trash(
        &self,
        ns: NamespaceId,
        id: TrashId,
        actor: &Actor,
    ) -> Result<Entry, MetaError> {
        let mut w = NsWrite::begin(self, ns, actor).await?;
        let item = load_item(w.conn(), ns, id)
            .await?
            .ok_or(MetaError::NoSuchTrashItem(id))?;
        let entry = restore_item(&mut w, &item).await?;
        w.commit().await?;
        Ok(entry)
    }

    /// Restores the most recently deleted item that was deleted from `path` (matched
    /// case-insensitively), as [`MetaStore::restore_trash`] does. Fails with
    /// [`MetaError::NotFound`] when the trash holds nothing deleted from there.
    pub async fn restore_trash_path(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
        actor: &Actor,
    ) -> Result<Entry, MetaError> {
        let mut w = NsWrite::begin(self, ns, actor).await?;
        let newest = ids_at_path(w.conn(), ns, path).await?.into_iter().last();
        let id = newest.ok_or_else(|| MetaError::NotFound(path.clone()))?;
        let item = load_item(w.conn(), ns, id)
            .await?
            .ok_or_else(|| corrupt(format!("trash item {id} vanished inside a transaction")))?;
        let entry = restore_item(&mut w, &item).await?;
        w.commit().await?;
        Ok(entry)
    }

    /// Removes a trash item for good: its entries, all their versions, and the block
    /// references those versions held (blocks left with none start their grace period
    /// for garbage collection). Journals one purge row. Returns what was purged.
    ///
    /// Fails with [`MetaError::NoSuchTrashItem`] when the namespace has no such item.
    pub async fn purge_trash(
        &self,
        ns: NamespaceId,
        id: TrashId,
        actor: &Actor,
    ) -> Result<TrashItem, MetaError> {
        self.purge_one(ns, id, actor)
            .await?
            .ok_or(MetaError::NoSuchTrashItem(id))
    }

    /// Purges every item deleted from `path` (matched case-insensitively), oldest
    /// first, one transaction each, and returns them. Fails with
    /// [`MetaError::NotFound`] when the trash holds nothing deleted from there.
    pub async fn purge_trash_path(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
        actor: &Actor,
    ) -> Result<Vec<TrashItem>, MetaError> {
        let ids = {
            let mut conn = self.pool.acquire().await?;
            ids_at_path(&mut conn, ns, path).await?
        };
        if ids.is_empty() {
            return Err(MetaError::NotFound(path.clone()));
        }
        self.purge_each(ns, ids, actor).await
    }

    /// Empties the namespace's trash, one transaction per item, and returns what was
    /// purged (oldest first). Items deleted while this runs may stay.
    pub async fn purge_all_trash(
        &self,
        ns: NamespaceId,
        actor: &Actor,
    ) -> Result<Vec<TrashItem>, MetaError> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM trash WHERE ns_id = $1 ORDER BY id")
            .bind(ns.0)
            .fetch_all(&self.pool)
            .await?;
        self.purge_each(ns, ids.into_iter().map(TrashId).collect(), actor)
            .await
    }

    /// Purges every item, in every namespace, deleted before `cutoff` (Unix ms), each
    /// in its own transaction, and returns how many went. The namespace's owner is
    /// journaled as the actor, with no device: the server does this on their behalf
    /// when their trash retention runs out.
    pub async fn expire_trash(&self, cutoff: i64) -> Result<u64, MetaError> {
        let rows = sqlx::query(
            "SELECT t.id, t.ns_id, n.owner_user_id FROM trash t \
             JOIN namespaces n ON n.id = t.ns_id WHERE t.deleted_at < $1 ORDER BY t.id",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        let mut purged = 0;
        for row in rows {
            let id = TrashId(row.try_get("id")?);
            let ns = NamespaceId(row.try_get("ns_id")?);
            let actor = Actor {
                user_id: UserId(row.try_get("owner_user_id")?),
                device_id: None,
                device_name: String::new(),
            };
            // Restored or purged since the list was read: nothing to do.
            if self.purge_one(ns, id, &actor).await?.is_some() {
                purged += 1;
            }
        }
        Ok(purged)
    }

    async fn purge_each(
        &self,
        ns: NamespaceId,
        ids: Vec<TrashId>,
        actor: &Actor,
    ) -> Result<Vec<TrashItem>, MetaError> {
        let mut purged = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(item) = self.purge_one(ns, id, actor).await? {
                purged.push(item);
            }
        }
        Ok(purged)
    }

    /// Purges one item in its own transaction; `None` when the namespace has no such
    /// item (any more).
    async fn purge_one(
        &self,
        ns: NamespaceId,
        id: TrashId,
        actor: &Actor,
    ) -> Result<Option<TrashItem>, MetaError> {
        let mut w = NsWrite::begin(self, ns, actor).await?;
        let Some(item) = load_item(w.conn(), ns, id).await? else {
            return Ok(None);
        };
        purge_item(&mut w, &item).await?;
        w.commit().await?;
        tracing::debug!(%ns, trash = %id, path = %item.path, files = item.file_count, "purged");
        Ok(Some(item))
    }
}

fn item_from_row(row: &AnyRow) -> Result<TrashItem, MetaError> {
    let kind: String = row.try_get("kind")?;
    Ok(TrashItem {
        id: TrashId(row.try_get("id")?),
        ns: NamespaceId(row.try_get("ns_id")?),
        entry_id: EntryId(row.try_get("entry_id")?),
        kind: EntryKind::from_db(&kind).ok_or_else(|| corrupt(format!("entry kind {kind:?}")))?,
        path: parse_path(&row.try_get::<String, _>("path")?)?,
        size: row.try_get("size")?,
        file_count: row.try_get("file_count")?,
        deleted_at: row.try_get("deleted_at")?,
        user_id: UserId(row.try_get("user_id")?),
        user_name: row.try_get("user_name")?,
        device_id: row.try_get::<Option<i64>, _>("device_id")?.map(DeviceId),
        device_name: row.try_get("device_name")?,
    })
}

/// The namespace's item `id`, if it has one. Checking the namespace here is what keeps
/// one account from reaching another's items by id.
async fn load_item(
    conn: &mut AnyConnection,
    ns: NamespaceId,
    id: TrashId,
) -> Result<Option<TrashItem>, MetaError> {
    let sql = format!("{ITEM_SELECT} WHERE t.id = $1 AND t.ns_id = $2");
    let row = sqlx::query(&sql)
        .bind(id.0)
        .bind(ns.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(item_from_row).transpose()
}

/// The items deleted from `path` (by key), oldest first.
async fn ids_at_path(
    conn: &mut AnyConnection,
    ns: NamespaceId,
    path: &ServerPath,
) -> Result<Vec<TrashId>, MetaError> {
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM trash WHERE ns_id = $1 AND path_key = $2 ORDER BY id")
            .bind(ns.0)
            .bind(path.key())
            .fetch_all(conn)
            .await?;
    Ok(ids.into_iter().map(TrashId).collect())
}

/// The entries of a trash item, the top one first, then the rest parents first.
async fn item_entries(w: &mut NsWrite, item: &TrashItem) -> Result<Vec<Entry>, MetaError> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE trash_id = $1 ORDER BY path_key");
    let rows = sqlx::query(&sql)
        .bind(item.id.0)
        .fetch_all(w.conn())
        .await?;
    let mut entries = rows
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let top = entries
        .iter()
        .position(|e| e.id == item.entry_id)
        .ok_or_else(|| corrupt(format!("trash item {} has lost its top entry", item.id)))?;
    // The top entry has the shortest key of its subtree, so it is already first; the
    // move only matters if that ever stops being so.
    let top = entries.remove(top);
    entries.insert(0, top);
    Ok(entries)
}

async fn restore_item(w: &mut NsWrite, item: &TrashItem) -> Result<Entry, MetaError> {
    let entries = item_entries(w, item).await?;
    let growth: i64 = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.size)
        .sum();
    if growth > 0 {
        // Usage counts live files only, so a restore grows it like a commit would.
        let ns = w.ns;
        check_quota(w.conn(), ns, growth).await?;
    }
    let top = &entries[0];
    let parent = ensure_parents(w, &top.path).await?;
    let target = free_restore_path(w, &parent, name_of(&top.path), top.kind).await?;
    // Paths change while the rows are still deleted: the live-path unique index would
    // refuse an entry made live at a path that is taken.
    if target != top.path {
        for e in &entries {
            let moved = rebase(&e.path, &top.path, &target)?;
            set_path(w.conn(), e.id, &moved).await?;
        }
    }
    sqlx::query("UPDATE entries SET deleted_at = NULL, trash_id = NULL WHERE trash_id = $1")
        .bind(item.id.0)
        .execute(w.conn())
        .await?;
    sqlx::query("DELETE FROM trash WHERE id = $1")
        .bind(item.id.0)
        .execute(w.conn())
        .await?;
    for e in &entries {
        let path = rebase(&e.path, &top.path, &target)?;
        w.record(ChangeKind::Restore, e.kind, &path, e.id, e.rev);
    }
    tracing::debug!(ns = %w.ns, trash = %item.id, %target, entries = entries.len(), "restored");
    Ok(Entry {
        path: target,
        ..entries[0].clone()
    })
}

/// `parent/name` if nothing live holds it, else the first free "(restored N)" name.
async fn free_restore_path(
    w: &mut NsWrite,
    parent: &ServerPath,
    name: &str,
    kind: EntryKind,
) -> Result<ServerPath, MetaError> {
    let ns = w.ns;
    let original = parent.join(name)?;
    if find_live(w.conn(), ns, &original.key()).await?.is_none() {
        return Ok(original);
    }
    let kind = match kind {
        EntryKind::File => NameKind::File,
        EntryKind::Folder => NameKind::Folder,
    };
    for n in 1..=MAX_RESTORED_NAMES {
        let path = parent.join(&copy_name(name, kind, CopyReason::Restored, n))?;
        if find_live(w.conn(), ns, &path.key()).await?.is_none() {
            return Ok(path);
        }
    }
    Err(MetaError::AlreadyExists(parent.join(&copy_name(
        name,
        kind,
        CopyReason::Restored,
        1,
    ))?))
}

async fn purge_item(w: &mut NsWrite, item: &TrashItem) -> Result<(), MetaError> {
    let id = item.id.0;
    // Versions cannot go while an entry names one as current (a foreign key).
    sqlx::query("UPDATE entries SET current_version_id = NULL WHERE trash_id = $1")
        .bind(id)
        .execute(w.conn())
        .await?;
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT v.id FROM versions v JOIN entries e ON e.id = v.entry_id \
         WHERE e.trash_id = $1 ORDER BY v.id",
    )
    .bind(id)
    .fetch_all(w.conn())
    .await?;
    let versions: Vec<VersionId> = versions.into_iter().map(VersionId).collect();
    let now = w.now;
    delete_versions(w.conn(), &versions, now).await?;
    sqlx::query("DELETE FROM entries WHERE trash_id = $1")
        .bind(id)
        .execute(w.conn())
        .await?;
    sqlx::query("DELETE FROM trash WHERE id = $1")
        .bind(id)
        .execute(w.conn())
        .await?;
    w.record(
        ChangeKind::Purge,
        item.kind,
        &item.path,
        item.entry_id,
        None,
    );
    Ok(())
}
