//! Committing a new version of a file, and reading a version's block list.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_core::conflict::{copy_name, format_stamp, CopyReason, NameKind};
use cairn_core::{
    content_hash, BlockHash, ContentHash, EntryId, NamespaceId, ServerPath, VersionId,
};
use sqlx::Row;

use crate::blocks::{add_references, owned_block_sizes};
use crate::db::{corrupt, find_live, row_placeholders, rows_per_statement, NsWrite};
use crate::quota::{check_quota, load_quota, Budget, Quota};
use crate::tree::{ensure_parents, insert_entry, insert_folder, name_of};
use crate::{
    Actor, BatchItem, BlockRef, CommitFile, CommitOutcome, Entry, EntryKind, FileCommit, MetaError,
    MetaStore,
};

/// How many numbered conflict copies (`… HHMMSS 2).EXT`, `… 3).EXT`, …) to try before giving up.
const MAX_CONFLICT_COPIES: u32 = 1000;

/// Where a commit's content goes.
pub(crate) enum Target {
    /// Nowhere: the file already has this content (and mtime), so nothing is written.
    Unchanged(Entry),
    /// A new version of this existing file.
    Update(Entry),
    /// A new file at the requested path.
    Create,
    /// A new file under a conflict-copy name next to the requested path.
    ConflictCopy,
}

impl MetaStore {
    /// Stores a new version of the file at `req.path`, in one transaction.
    ///
    /// * Every block must be one the actor's account possesses, with the size it was
    ///   uploaded with; otherwise [`MetaError::MissingBlocks`] (or
    ///   [`MetaError::BlockSizeMismatch`]) and nothing changes.
    /// * `base_rev: None` requires that no file lives at the path; `Some(r)` requires
    ///   that the file's current version is `r`. Otherwise [`MetaError::RevConflict`],
    ///   or, with `autorename`, the content is stored as
    ///   `NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).EXT` in the same folder
    ///   (`… HHMMSS 2).EXT`, `… 3).EXT`, … if that is taken; the one rule is
    ///   [`cairn_core::conflict::copy_name`]) and `renamed` is true.
    /// * A folder at the path gives [`MetaError::IsAFolder`], or a conflict copy with
    ///   `autorename`.
    /// * With `autorename`, a commit based on a revision of a file that has since been
    ///   deleted or moved away recreates the file at the path (`renamed` false): the
    ///   path is free, so nothing is overwritten, and the edit survives the delete.
    /// * Content identical to the file's current version (same content hash, and the
    ///   same mtime or none given) changes nothing, whatever `base_rev` says: no version
    ///   is added, nothing is journaled, and the current entry is returned. Nobody's
    ///   write is lost, and a client re-sending what is there causes no churn on other
    ///   devices.
    /// * Missing parent folders are created.
    ///
    /// The file's size is the sum of its block sizes; its content hash is computed from
    /// the block list.
    pub async fn commit_file(&self, req: CommitFile) -> Result<CommitOutcome, MetaError> {
        let CommitFile {
            ns,
            path,
            blocks,
            mtime,
            base_rev,
            autorename,
            actor,
        } = req;
        let item = FileCommit {
            path,
            blocks,
            mtime,
            base_rev,
            autorename,
        };
        if item.path.is_root() {
            return Err(MetaError::IsAFolder(item.path));
        }
        let distinct = distinct_blocks(std::slice::from_ref(&item));
        let mut w = NsWrite::begin(self, ns, &actor).await?;
        let owned = owned_block_sizes(w.conn(), actor.user_id, &distinct).await?;
        let (outcome, changed) = commit_in(&mut w, &actor, item, &owned, &mut Quota::Query).await?;
        if changed {
            w.commit().await?;
        }
        Ok(outcome)
    }

    /// Applies many commits and folder creations to one namespace in one transaction,
    /// in order, and journals them as one run of consecutive numbers: the way a sync
    /// client uploads a tree of small files without paying a transaction per file.
    ///
    /// Each item succeeds or fails on its own, as if it were a separate
    /// [`MetaStore::commit_file`] (or, for [`BatchItem::Mkdir`], a `mkdir -p` that finds
    /// an existing folder fine): a refused item (conflict, missing blocks, a folder in
    /// the way, quota, …) is rolled back to a savepoint and reported, and the items
    /// after it still apply and see the effect of those before it. Only a failure that
    /// is not the caller's (the database failing) aborts the whole batch, and then
    /// nothing of it is written.
    ///
    /// The quota is checked item by item against the usage at the start of the batch
    /// plus what the earlier items added, inside the transaction.
    pub async fn commit_batch(
        &self,
        ns: NamespaceId,
        actor: &Actor,
        items: Vec<BatchItem>,
    ) -> Result<Vec<Result<CommitOutcome, MetaError>>, MetaError> {
        let distinct = distinct_blocks(items.iter().filter_map(|item| match item {
            BatchItem::File(file) => Some(file),
            BatchItem::Mkdir(_) => None,
        }));
        let (mut w, owned, budget) = self.begin_batch(ns, actor, &distinct).await?;
        // Most batches (a first sync, a folder of edits) refuse nothing and need no
        // conflict copy: those are written a table at a time. Any other batch goes
        // item by item, with a savepoint each, which gives every refusal its error.
        if let Some(plan) = crate::bulk::plan(&mut w, &items, &owned, budget.clone()).await? {
            match crate::bulk::apply(&mut w, actor, plan).await? {
                Some(outcomes) => {
                    w.commit().await?;
                    return Ok(outcomes.into_iter().map(Ok).collect());
                }
                None => {
                    // A block was collected since the possession check. Start over
                    // (the drop rolls back), so the item naming it is refused alone.
                    drop(w);
                    let (w, owned, budget) = self.begin_batch(ns, actor, &distinct).await?;
                    return commit_items(w, actor, items, &owned, budget).await;
                }
            }
        }
        commit_items(w, actor, items, &owned, budget).await
    }

    /// Begins a batch's transaction and reads what every item is checked against: the
    /// sizes of the named blocks the actor possesses, and the owner's quota budget.
    async fn begin_batch(
        &self,
        ns: NamespaceId,
        actor: &Actor,
        blocks: &[BlockHash],
    ) -> Result<(NsWrite, HashMap<BlockHash, i64>, Budget), MetaError> {
        let mut w = NsWrite::begin(self, ns, actor).await?;
        let owned = owned_block_sizes(w.conn(), actor.user_id, blocks).await?;
        let (quota, used) = load_quota(w.conn(), ns).await?;
        Ok((w, owned, Budget { quota, used }))
    }

    /// A version's blocks, in file order.
    pub async fn version_blocks(&self, version: VersionId) -> Result<Vec<BlockRef>, MetaError> {
        let rows = sqlx::query(
            "SELECT block_hash, size FROM version_blocks WHERE version_id = $1 ORDER BY idx",
        )
        .bind(version.0)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            // An empty file has no blocks; tell it apart from a version that is not there.
            let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM versions WHERE id = $1")
                .bind(version.0)
                .fetch_one(&self.pool)
                .await?;
            if exists == 0 {
                return Err(MetaError::NoSuchVersion(version));
            }
        }
        rows.iter()
            .map(|row| {
                let hash: Vec<u8> = row.try_get("block_hash")?;
                let size: i64 = row.try_get("size")?;
                Ok(BlockRef {
                    hash: BlockHash::from_slice(&hash)
                        .ok_or_else(|| corrupt("block hash length"))?,
                    size: u32::try_from(size).map_err(|_| corrupt("block size"))?,
                })
            })
            .collect()
    }
}

/// Applies a batch item by item, each behind a savepoint (see
/// [`MetaStore::commit_batch`]), and commits.
async fn commit_items(
    mut w: NsWrite,
    actor: &Actor,
    items: Vec<BatchItem>,
    owned: &HashMap<BlockHash, i64>,
    budget: Budget,
) -> Result<Vec<Result<CommitOutcome, MetaError>>, MetaError> {
    let mut quota = Quota::Budget(budget);
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let journaled = w.pending_len();
        w.savepoint().await?;
        let result = match item {
            BatchItem::File(file) if file.path.is_root() => Err(MetaError::IsAFolder(file.path)),
            BatchItem::File(file) => commit_in(&mut w, actor, file, owned, &mut quota)
                .await
                .map(|(outcome, _)| outcome),
            BatchItem::Mkdir(path) => mkdir_in(&mut w, &path).await,
        };
        match result {
            Ok(outcome) => {
                w.release_savepoint().await?;
                results.push(Ok(outcome));
            }
            Err(err) if err.is_callers() => {
                w.rollback_to_savepoint(journaled).await?;
                results.push(Err(err));
            }
            Err(err) => return Err(err),
        }
    }
    w.commit().await?;
    Ok(results)
}

/// The distinct blocks the files name, sorted.
fn distinct_blocks<'a>(files: impl IntoIterator<Item = &'a FileCommit>) -> Vec<BlockHash> {
    let mut all: Vec<BlockHash> = files
        .into_iter()
        .flat_map(|f| f.blocks.iter().map(|b| b.hash))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Fails unless every block `req` names is one the actor possesses (`owned`), with the
/// size it was uploaded with.
pub(crate) fn check_blocks(
    req: &FileCommit,
    owned: &HashMap<BlockHash, i64>,
) -> Result<(), MetaError> {
    let mut reported = HashSet::new();
    let missing: Vec<BlockHash> = req
        .blocks
        .iter()
        .map(|b| b.hash)
        .filter(|h| !owned.contains_key(h) && reported.insert(*h))
        .collect();
    if !missing.is_empty() {
        return Err(MetaError::MissingBlocks(missing));
    }
    for b in &req.blocks {
        let stored = owned[&b.hash];
        if stored != i64::from(b.size) {
            return Err(MetaError::BlockSizeMismatch {
                hash: b.hash,
                claimed: b.size,
                stored,
            });
        }
    }
    Ok(())
}

/// Where a commit of `content` goes, given the live entry at its path now (the rules
/// of [`MetaStore::commit_file`]), or why it is refused.
pub(crate) fn choose_target(
    current: Option<Entry>,
    req: &FileCommit,
    content: ContentHash,
) -> Result<Target, MetaError> {
    Ok(match current {
        Some(e)
            if e.kind == EntryKind::File
                && e.content_hash == Some(content)
                && req.mtime.is_none_or(|m| m == e.mtime) =>
        {
            Target::Unchanged(e)
        }
        Some(e) if e.kind == EntryKind::File && req.base_rev.is_some() && req.base_rev == e.rev => {
            Target::Update(e)
        }
        Some(_) if req.autorename => Target::ConflictCopy,
        Some(e) if e.kind == EntryKind::Folder => return Err(MetaError::IsAFolder(e.path)),
        Some(e) => {
            return Err(MetaError::RevConflict {
                path: req.path.clone(),
                current: Some(e),
            })
        }
        None if req.base_rev.is_some() && !req.autorename => {
            return Err(MetaError::RevConflict {
                path: req.path.clone(),
                current: None,
            })
        }
        None => Target::Create,
    })
}

/// A folder creation inside a batch: like `mkdir -p`, an existing folder is fine.
async fn mkdir_in(w: &mut NsWrite, path: &ServerPath) -> Result<CommitOutcome, MetaError> {
    if path.is_root() {
        return Err(MetaError::RootFolder);
    }
    let ns = w.ns;
    match find_live(w.conn(), ns, &path.key()).await? {
        Some(e) if e.kind == EntryKind::Folder => Ok(CommitOutcome {
            entry: e,
            renamed: false,
        }),
        Some(e) => Err(MetaError::AlreadyExists(e.path)),
        None => {
            let parent = ensure_parents(w, path).await?;
            let path = parent.join(name_of(path))?;
            let entry = insert_folder(w, &path).await?;
            w.record(
                crate::ChangeKind::Mkdir,
                EntryKind::Folder,
                &path,
                entry.id,
                None,
            );
            Ok(CommitOutcome {
                entry,
                renamed: false,
            })
        }
    }
}

/// One commit inside `w`'s transaction (see [`MetaStore::commit_file`] for the rules).
/// `owned` holds the sizes of the blocks the actor possesses, among those the commit
/// names. Returns the outcome and whether anything was written.
async fn commit_in(
    w: &mut NsWrite,
    actor: &Actor,
    req: FileCommit,
    owned: &HashMap<BlockHash, i64>,
    quota: &mut Quota,
) -> Result<(CommitOutcome, bool), MetaError> {
    let size: i64 = req.blocks.iter().map(|b| i64::from(b.size)).sum();
    let content = content_hash(req.blocks.iter().map(|b| &b.hash));
    let mut references: BTreeMap<BlockHash, i64> = BTreeMap::new();
    for b in &req.blocks {
        *references.entry(b.hash).or_insert(0) += 1;
    }

    check_blocks(&req, owned)?;
    let ns = w.ns;
    let current = find_live(w.conn(), ns, &req.path.key()).await?;
    let target = match choose_target(current, &req, content)? {
        Target::Unchanged(entry) => {
            let outcome = CommitOutcome {
                entry,
                renamed: false,
            };
            return Ok((outcome, false));
        }
        target => target,
    };

    // The quota is checked in the transaction that would exceed it, so two commits
    // racing for the last free bytes cannot both win. A commit that does not grow
    // the account's usage (replacing a file by a smaller one) is always allowed, so
    // a user over quota can still make room.
    let replaced = match &target {
        Target::Update(e) => e.size,
        _ => 0,
    };
    match quota {
        Quota::Query if size > replaced => check_quota(w.conn(), ns, size - replaced).await?,
        Quota::Query => {}
        Quota::Budget(budget) => budget.charge(replaced, size)?,
    }

    let now = w.now;
    let mtime = req.mtime.unwrap_or(now);
    let name = req.path.name().ok_or(MetaError::RootFolder)?;
    let (entry_id, path, renamed) = match target {
        Target::Unchanged(_) => unreachable!("returned above"),
        Target::Update(e) => (e.id, e.path, false),
        Target::Create => {
            let parent = ensure_parents(w, &req.path).await?;
            let path = parent.join(name)?;
            let id = insert_entry(w, &path, EntryKind::File, size, Some(content), mtime).await?;
            (id, path, false)
        }
        Target::ConflictCopy => {
            let parent = ensure_parents(w, &req.path).await?;
            let stamp = format_stamp(now.div_euclid(1000));
            let reason = CopyReason::Conflict {
                device: &actor.device_name,
                stamp: &stamp,
            };
            let path = free_conflict_path(w, &parent, name, reason).await?;
            let id = insert_entry(w, &path, EntryKind::File, size, Some(content), mtime).await?;
            (id, path, true)
        }
    };

    // References first, then the block list. Taking the blocks' row locks here, in
    // hash order, means the block list's foreign-key checks below find them held
    // already. The other way round, on PostgreSQL, those checks take weaker locks
    // in file order, and upgrading them here could deadlock with a garbage
    // collection deleting one of the blocks.
    let gone = add_references(w.conn(), &references).await?;
    if !gone.is_empty() {
        // Collected (or claimed for collection) since the possession check; the
        // client must upload them again.
        return Err(MetaError::MissingBlocks(gone));
    }
    let version = insert_version(w, actor, &req.blocks, entry_id, size, &content.0, mtime).await?;
    sqlx::query(
        "UPDATE entries SET size = $1, content_hash = $2, mtime = $3, modified_at = $4, \
         current_version_id = $5 WHERE id = $6",
    )
    .bind(size)
    .bind(content.0.to_vec())
    .bind(mtime)
    .bind(now)
    .bind(version.0)
    .bind(entry_id.0)
    .execute(w.conn())
    .await?;
    w.record(
        crate::ChangeKind::Commit,
        EntryKind::File,
        &path,
        entry_id,
        Some(version),
    );
    tracing::debug!(%ns, %path, rev = %version, size, renamed, "committed");
    let entry = Entry {
        id: entry_id,
        ns,
        path,
        kind: EntryKind::File,
        size,
        rev: Some(version),
        content_hash: Some(content),
        mtime,
        modified_at: now,
    };
    Ok((CommitOutcome { entry, renamed }, true))
}

/// Inserts the version row and its block list.
async fn insert_version(
    w: &mut NsWrite,
    actor: &Actor,
    blocks: &[BlockRef],
    entry_id: EntryId,
    size: i64,
    content: &[u8; 32],
    mtime: i64,
) -> Result<VersionId, MetaError> {
    let (ns, now) = (w.ns, w.now);
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO versions \
         (entry_id, ns_id, size, content_hash, block_count, mtime, created_at, user_id, \
          device_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(entry_id.0)
    .bind(ns.0)
    .bind(size)
    .bind(content.to_vec())
    .bind(blocks.len() as i64)
    .bind(mtime)
    .bind(now)
    .bind(actor.user_id.0)
    .bind(actor.device_id.map(|d| d.0))
    .fetch_one(w.conn())
    .await?;
    let rows = rows_per_statement(4);
    for (chunk_no, chunk) in blocks.chunks(rows).enumerate() {
        let sql = format!(
            "INSERT INTO version_blocks (version_id, idx, block_hash, size) VALUES {}",
            row_placeholders(1, chunk.len(), 4)
        );
        let mut q = sqlx::query(&sql);
        for (i, b) in chunk.iter().enumerate() {
            q = q
                .bind(version)
                .bind((chunk_no * rows + i) as i64)
                .bind(b.hash.0.to_vec())
                .bind(i64::from(b.size));
        }
        q.execute(w.conn()).await?;
    }
    Ok(VersionId(version))
}

/// A free path for a conflict copy of `name` in `parent`.
async fn free_conflict_path(
    w: &mut NsWrite,
    parent: &ServerPath,
    name: &str,
    reason: CopyReason<'_>,
) -> Result<ServerPath, MetaError> {
    let ns = w.ns;
    for n in 1..=MAX_CONFLICT_COPIES {
        let path = parent.join(&copy_name(name, NameKind::File, reason, n))?;
        if find_live(w.conn(), ns, &path.key()).await?.is_none() {
            return Ok(path);
        }
    }
    Err(MetaError::AlreadyExists(parent.join(&copy_name(
        name,
        NameKind::File,
        reason,
        1,
    ))?))
}
