//! The tree of a namespace: stat, list, mkdir, move, copy, delete.
//!
//! Paths are matched by key ([`ServerPath::key`], case-insensitive) and stored in the
//! case they were created with. A new entry always takes its parent's stored case for
//! the folders above it: creating `/docs/a.txt` when `/Docs` exists stores
//! `/Docs/a.txt`, so a child's path always starts with its parent's path exactly.

use std::collections::{BTreeMap, HashMap};

use cairn_core::{BlockHash, ContentHash, EntryId, NamespaceId, ServerPath, TrashId, VersionId};
use sqlx::AnyConnection;
use sqlx::Row;

use crate::blocks::{add_references, grant_blocks};
use crate::db::{corrupt, entry_from_row, find_live, placeholders, NsWrite, CHUNK, ENTRY_COLUMNS};
use crate::{Actor, ChangeKind, Entry, EntryKind, MetaError, MetaStore};

impl MetaStore {
    /// The entry at `path`, matched case-insensitively; the returned path is in the
    /// stored case. `/` always exists (as a synthetic folder with id 0) as long as the
    /// namespace does.
    pub async fn stat(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
    ) -> Result<Option<Entry>, MetaError> {
        if path.is_root() {
            let created: Option<i64> =
                sqlx::query_scalar("SELECT created_at FROM namespaces WHERE id = $1")
                    .bind(ns.0)
                    .fetch_optional(&self.pool)
                    .await?;
            return Ok(created.map(|at| root_entry(ns, at)));
        }
        find_live(&self.pool, ns, &path.key()).await
    }

    /// The direct children of the folder at `path`, ordered by path key, starting
    /// strictly after the key `after` (pass the `path.key()` of the last entry of the
    /// previous page), at most `limit` of them.
    pub async fn list_folder(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError> {
        let folder = self
            .stat(ns, path)
            .await?
            .ok_or_else(|| MetaError::NotFound(path.clone()))?;
        if folder.kind != EntryKind::Folder {
            return Err(MetaError::NotAFolder(folder.path));
        }
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries \
             WHERE ns_id = $1 AND parent_key = $2 AND deleted_at IS NULL AND path_key > $3 \
             ORDER BY path_key LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(ns.0)
            .bind(folder.path.key())
            .bind(after.unwrap_or("").to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The entry at `path` and, for a folder, every live entry below it, parents
    /// first; empty when nothing lives there.
    pub async fn subtree(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
    ) -> Result<Vec<Entry>, MetaError> {
        let Some(top) = self.stat(ns, path).await? else {
            return Ok(Vec::new());
        };
        let below = match top.kind {
            EntryKind::Folder => {
                let mut conn = self.pool.acquire().await?;
                let key = if path.is_root() {
                    String::new()
                } else {
                    top.path.key()
                };
                descendants(&mut conn, ns, &key).await?
            }
            EntryKind::File => Vec::new(),
        };
        Ok(std::iter::once(top).chain(below).collect())
    }

    /// Creates a folder and any missing folders above it (like `mkdir -p`).
    ///
    /// Fails with [`MetaError::AlreadyExists`] when anything lives at `path`, and with
    /// [`MetaError::NotAFolder`] when one of the folders above it is a file.
    pub async fn mkdir(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
        actor: &Actor,
    ) -> Result<Entry, MetaError> {
        if path.is_root() {
            return Err(MetaError::AlreadyExists(path.clone()));
        }
        let mut w = NsWrite::begin(self, ns, actor).await?;
        if let Some(existing) = find_live(w.conn(), ns, &path.key()).await? {
            return Err(MetaError::AlreadyExists(existing.path));
        }
        let parent = ensure_parents(&mut w, path).await?;
        let path = parent.join(name_of(path))?;
        let entry = insert_folder(&mut w, &path).await?;
        w.record(ChangeKind::Mkdir, EntryKind::Folder, &path, entry.id, None);
        w.commit().await?;
        Ok(entry)
    }

    /// Moves (renames) a file or a folder with everything below it.
    ///
    /// Missing folders above `to` are created, as a commit would. `to` may differ from
    /// `from` only in case (`/a` → `/A`). Fails with [`MetaError::AlreadyExists`] when
    /// another entry holds `to`, and [`MetaError::InvalidMove`] for the root or a move
    /// of a folder into itself. Moving an entry to the path it already has changes
    /// nothing and journals nothing.
    pub async fn move_entry(
        &self,
        ns: NamespaceId,
        from: &ServerPath,
        to: &ServerPath,
        actor: &Actor,
    ) -> Result<Entry, MetaError> {
        self.move_entry_at(ns, from, to, None, actor).await
    }

    /// [`MetaStore::move_entry`] with a precondition: with `base_rev`, the entry at
    /// `from` must be a file whose current revision is `base_rev`, or the move is
    /// refused with [`MetaError::RevConflict`] (carrying the entry as it is) and nothing
    /// changes. A sync client passes the revision it last saw, so it never moves away
    /// an edit it has not seen.
    pub async fn move_entry_at(
        &self,
        ns: NamespaceId,
        from: &ServerPath,
        to: &ServerPath,
        base_rev: Option<VersionId>,
        actor: &Actor,
    ) -> Result<Entry, MetaError> {
        let from_key = from.key();
        let (mut w, src) = self.begin_transfer(ns, from, to, actor).await?;
        check_base_rev(&src, base_rev)?;
        if from_key != to.key() {
            if let Some(taken) = find_live(w.conn(), ns, &to.key()).await? {
                return Err(MetaError::AlreadyExists(taken.path));
            }
        }
        let parent = ensure_parents(&mut w, to).await?;
        let new_path = parent.join(name_of(to))?;
        if new_path == src.path {
            return Ok(src);
        }
        let below = match src.kind {
            EntryKind::Folder => descendants(w.conn(), ns, &from_key).await?,
            EntryKind::File => Vec::new(),
        };
        set_path(w.conn(), src.id, &new_path).await?;
        // A shared folder's mount moves with its folder.
        sqlx::query(
            "UPDATE memberships SET mount_path = $1, mount_key = $2 WHERE mount_entry_id = $3",
        )
        .bind(new_path.as_str().to_owned())
        .bind(new_path.key())
        .bind(src.id.0)
        .execute(w.conn())
        .await?;
        w.record(
            ChangeKind::Move {
                from: src.path.clone(),
            },
            src.kind,
            &new_path,
            src.id,
            src.rev,
        );
        for entry in below {
            let moved = rebase(&entry.path, &src.path, &new_path)?;
            set_path(w.conn(), entry.id, &moved).await?;
            w.record(
                ChangeKind::Move { from: entry.path },
                entry.kind,
                &moved,
                entry.id,
                entry.rev,
            );
        }
        w.commit().await?;
        Ok(Entry {
            path: new_path,
            ..src
        })
    }

    /// Copies a file (a new entry with a new version naming the same blocks) or a
    /// folder with everything below it. Block reference counts grow by the copied
    /// versions' blocks, and the actor's account is recorded as possessing them.
    ///
    /// Missing folders above `to` are created. Errors as for [`MetaStore::move_entry`].
    pub async fn copy_entry(
        &self,
        ns: NamespaceId,
        from: &ServerPath,
        to: &ServerPath,
        actor: &Actor,
    ) -> Result<Entry, MetaError> {
        let from_key = from.key();
        let (mut w, src) = self.begin_transfer(ns, from, to, actor).await?;
        if let Some(taken) = find_live(w.conn(), ns, &to.key()).await? {
            return Err(MetaError::AlreadyExists(taken.path));
        }
        let parent = ensure_parents(&mut w, to).await?;
        let new_path = parent.join(name_of(to))?;
        let below = match src.kind {
            EntryKind::Folder => descendants(w.conn(), ns, &from_key).await?,
            EntryKind::File => Vec::new(),
        };
        let growth: i64 = std::iter::once(&src)
            .chain(&below)
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .sum();
        if growth > 0 {
            crate::quota::check_quota(w.conn(), ns, growth).await?;
        }
        let mut references = BTreeMap::new();
        let copy = copy_one(&mut w, &src, &new_path, actor, &mut references).await?;
        for entry in &below {
            let target = rebase(&entry.path, &src.path, &new_path)?;
            copy_one(&mut w, entry, &target, actor, &mut references).await?;
        }
        let missing = add_references(w.conn(), &references).await?;
        if !missing.is_empty() {
            // Cannot happen while version_blocks' foreign key holds; refuse rather than
            // leave a count wrong.
            return Err(corrupt(format!(
                "copied versions name {} unknown blocks",
                missing.len()
            )));
        }
        let hashes: Vec<BlockHash> = references.keys().copied().collect();
        let now = w.now;
        grant_blocks(w.conn(), actor.user_id, &hashes, now).await?;
        w.commit().await?;
        Ok(copy)
    }

    /// Deletes a file, or a folder with everything below it, by moving it to the trash:
    /// the entries are marked deleted and tied to one new trash item, in one
    /// transaction. Versions and block references stay, so the item can be restored
    /// until it is purged; the path is free for new entries at once.
    pub async fn delete_entry(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
        actor: &Actor,
    ) -> Result<TrashId, MetaError> {
        self.delete_entry_at(ns, path, None, actor).await
    }

    /// [`MetaStore::delete_entry`] with a precondition: with `base_rev`, the entry must
    /// be a file whose current revision is `base_rev`, or the delete is refused with
    /// [`MetaError::RevConflict`] (carrying the entry as it is) and nothing changes.
    pub async fn delete_entry_at(
        &self,
        ns: NamespaceId,
        path: &ServerPath,
        base_rev: Option<VersionId>,
        actor: &Actor,
    ) -> Result<TrashId, MetaError> {
        if path.is_root() {
            return Err(MetaError::RootFolder);
        }
        let key = path.key();
        let mut w = NsWrite::begin(self, ns, actor).await?;
        let src = find_live(w.conn(), ns, &key)
            .await?
            .ok_or_else(|| MetaError::NotFound(path.clone()))?;
        check_base_rev(&src, base_rev)?;
        let mut victims = match src.kind {
            EntryKind::Folder => descendants(w.conn(), ns, &key).await?,
            EntryKind::File => Vec::new(),
        };
        let files = std::iter::once(&src)
            .chain(&victims)
            .filter(|e| e.kind == EntryKind::File);
        let (size, file_count) = files.fold((0i64, 0i64), |(s, n), e| (s + e.size, n + 1));
        let now = w.now;
        let trash_id: i64 = sqlx::query_scalar(
            "INSERT INTO trash \
             (ns_id, entry_id, kind, path, path_key, size, file_count, deleted_at, user_id, \
              device_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(ns.0)
        .bind(src.id.0)
        .bind(src.kind.as_db())
        .bind(src.path.as_str().to_owned())
        .bind(key.clone())
        .bind(size)
        .bind(file_count)
        .bind(now)
        .bind(actor.user_id.0)
        .bind(actor.device_id.map(|d| d.0))
        .fetch_one(w.conn())
        .await?;
        match src.kind {
            EntryKind::File => {
                sqlx::query("UPDATE entries SET deleted_at = $1, trash_id = $2 WHERE id = $3")
                    .bind(now)
                    .bind(trash_id)
                    .bind(src.id.0)
                    .execute(w.conn())
                    .await?;
            }
            EntryKind::Folder => {
                sqlx::query(
                    "UPDATE entries SET deleted_at = $1, trash_id = $2 \
                     WHERE ns_id = $3 AND deleted_at IS NULL \
                     AND (id = $4 OR (path_key > $5 AND path_key < $6))",
                )
                .bind(now)
                .bind(trash_id)
                .bind(ns.0)
                .bind(src.id.0)
                .bind(subtree_start(&key))
                .bind(subtree_end(&key))
                .execute(w.conn())
                .await?;
            }
        }
        // Deepest first: reversed key order puts every entry before its parent, so a
        // reader replaying the journal only ever removes empty folders.
        victims.reverse();
        victims.push(src);
        for v in &victims {
            w.record(ChangeKind::Delete, v.kind, &v.path, v.id, v.rev);
        }
        w.commit().await?;
        Ok(TrashId(trash_id))
    }
}

/// The synthetic entry for a namespace's root folder.
fn root_entry(ns: NamespaceId, created_at: i64) -> Entry {
    Entry {
        id: EntryId(0),
        ns,
        path: ServerPath::root(),
        kind: EntryKind::Folder,
        size: 0,
        rev: None,
        content_hash: None,
        mtime: created_at,
        modified_at: created_at,
    }
}

/// The last segment of a path known not to be the root.
pub(crate) fn name_of(path: &ServerPath) -> &str {
    path.name().expect("the root was refused earlier")
}

/// Refuses moves and copies of the root, onto the root, and into the source's subtree.
fn check_move(from: &ServerPath, to: &ServerPath) -> Result<(), MetaError> {
    let invalid = || MetaError::InvalidMove {
        from: from.clone(),
        to: to.clone(),
    };
    if from.is_root() || to.is_root() {
        return Err(invalid());
    }
    // By key: `/a` → `/A/b` is a move into itself too.
    if to.key().starts_with(&subtree_start(&from.key())) {
        return Err(invalid());
    }
    Ok(())
}

impl MetaStore {
    /// The common start of a move or copy: checks the two paths, begins the namespace
    /// write and finds the live source entry.
    async fn begin_transfer(
        &self,
        ns: NamespaceId,
        from: &ServerPath,
        to: &ServerPath,
        actor: &Actor,
    ) -> Result<(NsWrite, Entry), MetaError> {
        check_move(from, to)?;
        let mut w = NsWrite::begin(self, ns, actor).await?;
        let src = find_live(w.conn(), ns, &from.key())
            .await?
            .ok_or_else(|| MetaError::NotFound(from.clone()))?;
        Ok((w, src))
    }
}

/// Refuses a change based on `base_rev` when `entry` is not a file at that revision (a
/// folder has no revision, so any `base_rev` refuses it).
fn check_base_rev(entry: &Entry, base_rev: Option<VersionId>) -> Result<(), MetaError> {
    match base_rev {
        Some(rev) if entry.rev != Some(rev) => Err(MetaError::RevConflict {
            path: entry.path.clone(),
            current: Some(entry.clone()),
        }),
        _ => Ok(()),
    }
}

/// The smallest key below the folder with key `key`: every descendant's key starts
/// with `key/`.
pub(crate) fn subtree_start(key: &str) -> String {
    format!("{key}/")
}

/// The bound just past the folder's subtree: `0` is the byte after `/`, so every key
/// starting with `key/` sorts before `key0` (bytewise, as both backends compare keys).
pub(crate) fn subtree_end(key: &str) -> String {
    format!("{key}0")
}

pub(crate) fn rebase(
    path: &ServerPath,
    from: &ServerPath,
    to: &ServerPath,
) -> Result<ServerPath, MetaError> {
    path.rebase(from, to)
        .ok_or_else(|| corrupt(format!("{path} is stored below {from} in another case")))
}

/// The live entries strictly below the folder with key `key`, parents before children.
pub(crate) async fn descendants(
    conn: &mut AnyConnection,
    ns: NamespaceId,
    key: &str,
) -> Result<Vec<Entry>, MetaError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries \
         WHERE ns_id = $1 AND deleted_at IS NULL AND path_key > $2 AND path_key < $3 \
         ORDER BY path_key"
    );
    let rows = sqlx::query(&sql)
        .bind(ns.0)
        .bind(subtree_start(key))
        .bind(subtree_end(key))
        .fetch_all(conn)
        .await?;
    rows.iter().map(entry_from_row).collect()
}

/// The live entries with these keys, by key.
pub(crate) async fn live_by_keys(
    conn: &mut AnyConnection,
    ns: NamespaceId,
    keys: &[String],
) -> Result<HashMap<String, Entry>, MetaError> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "SELECT path_key, {ENTRY_COLUMNS} FROM entries \
             WHERE ns_id = $1 AND deleted_at IS NULL AND path_key IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(ns.0);
        for k in chunk {
            q = q.bind(k.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.insert(row.try_get("path_key")?, entry_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Makes sure every folder above `path` exists, creating the missing ones (each
/// journaled as a mkdir), and returns the parent's stored path. Fails with
/// [`MetaError::NotAFolder`] when one of them is a file.
pub(crate) async fn ensure_parents(
    w: &mut NsWrite,
    path: &ServerPath,
) -> Result<ServerPath, MetaError> {
    let above: Vec<ServerPath> = path
        .ancestors()
        .into_iter()
        .filter(|p| !p.is_root())
        .collect();
    let keys: Vec<String> = above.iter().map(ServerPath::key).collect();
    let ns = w.ns;
    let found = live_by_keys(w.conn(), ns, &keys).await?;
    let mut parent = ServerPath::root();
    for (folder, key) in above.iter().zip(&keys) {
        match found.get(key) {
            Some(e) if e.kind == EntryKind::Folder => parent = e.path.clone(),
            Some(e) => return Err(MetaError::NotAFolder(e.path.clone())),
            None => {
                let created = parent.join(name_of(folder))?;
                let entry = insert_folder(w, &created).await?;
                w.record(
                    ChangeKind::Mkdir,
                    EntryKind::Folder,
                    &created,
                    entry.id,
                    None,
                );
                parent = created;
            }
        }
    }
    Ok(parent)
}

/// Inserts a live entry row (a file's version is attached separately).
pub(crate) async fn insert_entry(
    w: &mut NsWrite,
    path: &ServerPath,
    kind: EntryKind,
    size: i64,
    content_hash: Option<ContentHash>,
    mtime: i64,
) -> Result<EntryId, MetaError> {
    let parent_key = path.parent().map_or_else(|| "/".to_owned(), |p| p.key());
    let (ns, now) = (w.ns, w.now);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO entries \
         (ns_id, path, path_key, parent_key, kind, size, content_hash, mtime, created_at, \
          modified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(ns.0)
    .bind(path.as_str().to_owned())
    .bind(path.key())
    .bind(parent_key)
    .bind(kind.as_db())
    .bind(size)
    .bind(content_hash.map(|h| h.0.to_vec()))
    .bind(mtime)
    .bind(now)
    .fetch_one(w.conn())
    .await?;
    Ok(EntryId(id))
}

pub(crate) async fn insert_folder(w: &mut NsWrite, path: &ServerPath) -> Result<Entry, MetaError> {
    let now = w.now;
    let id = insert_entry(w, path, EntryKind::Folder, 0, None, now).await?;
    Ok(folder_entry(w.ns, id, path, now))
}

/// The entry of a folder made at `now`.
pub(crate) fn folder_entry(ns: NamespaceId, id: EntryId, path: &ServerPath, now: i64) -> Entry {
    Entry {
        id,
        ns,
        path: path.clone(),
        kind: EntryKind::Folder,
        size: 0,
        rev: None,
        content_hash: None,
        mtime: now,
        modified_at: now,
    }
}

pub(crate) async fn set_path(
    conn: &mut AnyConnection,
    id: EntryId,
    path: &ServerPath,
) -> Result<(), MetaError> {
    let parent_key = path.parent().map_or_else(|| "/".to_owned(), |p| p.key());
    sqlx::query("UPDATE entries SET path = $1, path_key = $2, parent_key = $3 WHERE id = $4")
        .bind(path.as_str().to_owned())
        .bind(path.key())
        .bind(parent_key)
        .bind(id.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Copies one entry to `to` (its parent must exist) and journals it. For a file, the
/// new version's blocks are added to `references` (hash → number of new rows), for the
/// caller to count in one sorted pass.
async fn copy_one(
    w: &mut NsWrite,
    src: &Entry,
    to: &ServerPath,
    actor: &Actor,
    references: &mut BTreeMap<BlockHash, i64>,
) -> Result<Entry, MetaError> {
    let from = ChangeKind::Copy {
        from: src.path.clone(),
    };
    if src.kind == EntryKind::Folder {
        let id = insert_entry(w, to, EntryKind::Folder, 0, None, src.mtime).await?;
        w.record(from, EntryKind::Folder, to, id, None);
        return Ok(Entry {
            id,
            ns: w.ns,
            path: to.clone(),
            modified_at: w.now,
            ..src.clone()
        });
    }
    let old_version = src
        .rev
        .ok_or_else(|| corrupt(format!("live file {} has no current version", src.path)))?;
    let id = insert_entry(
        w,
        to,
        EntryKind::File,
        src.size,
        src.content_hash,
        src.mtime,
    )
    .await?;
    let (ns, now) = (w.ns, w.now);
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO versions \
         (entry_id, ns_id, size, content_hash, block_count, mtime, created_at, user_id, \
          device_id) \
         SELECT $1, $2, size, content_hash, block_count, mtime, $3, $4, $5 \
         FROM versions WHERE id = $6 RETURNING id",
    )
    .bind(id.0)
    .bind(ns.0)
    .bind(now)
    .bind(actor.user_id.0)
    .bind(actor.device_id.map(|d| d.0))
    .bind(old_version.0)
    .fetch_one(w.conn())
    .await?;
    sqlx::query(
        "INSERT INTO version_blocks (version_id, idx, block_hash, size) \
         SELECT $1, idx, block_hash, size FROM version_blocks WHERE version_id = $2",
    )
    .bind(version)
    .bind(old_version.0)
    .execute(w.conn())
    .await?;
    let rows = sqlx::query(
        "SELECT block_hash, COUNT(*) AS n FROM version_blocks \
         WHERE version_id = $1 GROUP BY block_hash",
    )
    .bind(version)
    .fetch_all(w.conn())
    .await?;
    for row in rows {
        let hash: Vec<u8> = row.try_get("block_hash")?;
        let hash = BlockHash::from_slice(&hash).ok_or_else(|| corrupt("block hash length"))?;
        *references.entry(hash).or_insert(0) += row.try_get::<i64, _>("n")?;
    }
    sqlx::query("UPDATE entries SET current_version_id = $1 WHERE id = $2")
        .bind(version)
        .bind(id.0)
        .execute(w.conn())
        .await?;
    let version = VersionId(version);
    w.record(from, EntryKind::File, to, id, Some(version));
    Ok(Entry {
        id,
        ns,
        path: to.clone(),
        rev: Some(version),
        modified_at: now,
        ..src.clone()
    })
}
