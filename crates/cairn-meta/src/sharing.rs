//! Shared folders: a folder becomes a namespace of its own, mounted into the tree of
//! every account that reads it, each with a role.
//!
//! The mount is an ordinary empty folder entry in the member's home namespace; the
//! server sends every path below it to the shared namespace. Making the mount folder
//! and removing it are journaled in the member's home namespace like any mkdir and
//! delete, so a member's devices learn from the delta that the folder appeared or went,
//! and nothing of the owner's is touched when a member is removed.

use cairn_core::{EntryId, NamespaceId, ServerPath, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{corrupt, entry_from_row, find_live, parse_path, NsWrite, ENTRY_COLUMNS};
use crate::tree::{descendants, insert_folder, name_of};
use crate::{Actor, ChangeKind, Entry, EntryKind, MetaError, MetaStore};

/// How many numbered names (" (2)", " (3)", …) to try for a member's mount folder.
const MAX_MOUNT_NAMES: u32 = 1000;

/// What an account may do in a namespace it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads everything; changes nothing.
    Viewer,
    /// Reads and changes everything in it: add, edit, move, delete, restore.
    Editor,
    /// The owner: an editor who also decides who else is a member.
    Owner,
}

impl Role {
    /// The spelling in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    /// The role of this spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Whether the role may change content.
    pub fn can_write(self) -> bool {
        self >= Role::Editor
    }
}

/// One account's membership of a shared namespace, with where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The shared namespace.
    pub ns: NamespaceId,
    /// The member.
    pub user_id: UserId,
    /// The member's name.
    pub user_name: String,
    /// What the member may do.
    pub role: Role,
    /// The mount folder in the member's home namespace.
    pub mount_entry: EntryId,
    /// Where the shared folder appears in the member's tree.
    pub mount_path: ServerPath,
    /// The namespace's owner.
    pub owner_id: UserId,
    /// The owner's name.
    pub owner_name: String,
    /// When the member was added, Unix ms.
    pub created_at: i64,
}

const MEMBERSHIP_SELECT: &str = "SELECT m.ns_id, m.user_id, mu.name AS user_name, m.role, \
     m.mount_entry_id, m.mount_path, n.owner_user_id, ou.name AS owner_name, m.created_at \
     FROM memberships m \
     JOIN users mu ON mu.id = m.user_id \
     JOIN namespaces n ON n.id = m.ns_id \
     JOIN users ou ON ou.id = n.owner_user_id";

fn membership_from_row(row: &AnyRow) -> Result<Membership, MetaError> {
    let role: String = row.try_get("role")?;
    Ok(Membership {
        ns: NamespaceId(row.try_get("ns_id")?),
        user_id: UserId(row.try_get("user_id")?),
        user_name: row.try_get("user_name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("membership role {role:?}")))?,
        mount_entry: EntryId(row.try_get("mount_entry_id")?),
        mount_path: parse_path(&row.try_get::<String, _>("mount_path")?)?,
        owner_id: UserId(row.try_get("owner_user_id")?),
        owner_name: row.try_get("owner_name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl MetaStore {
    /// The shared namespaces `user` reads, with its role and mount in each.
    pub async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>, MetaError> {
        let sql = format!("{MEMBERSHIP_SELECT} WHERE m.user_id = $1 ORDER BY m.mount_path");
        let rows = sqlx::query(&sql).bind(user.0).fetch_all(&self.pool).await?;
        rows.iter().map(membership_from_row).collect()
    }

    /// Everyone who reads the shared namespace `ns`, the owner first.
    pub async fn members_of(&self, ns: NamespaceId) -> Result<Vec<Membership>, MetaError> {
        let sql = format!(
            "{MEMBERSHIP_SELECT} WHERE m.ns_id = $1 \
             ORDER BY CASE m.role WHEN 'owner' THEN 0 ELSE 1 END, mu.name"
        );
        let rows = sqlx::query(&sql).bind(ns.0).fetch_all(&self.pool).await?;
        rows.iter().map(membership_from_row).collect()
    }

    /// Makes the folder at `path` in `owner_home` (a top-level folder) a shared
    /// namespace owned by the home's owner, and returns it. Already shared: returns the
    /// namespace it is.
    ///
    /// Everything below the folder moves to the new namespace in one transaction,
    /// trash items included, keeping entry and version ids, so the owner's devices see
    /// the same files at the same paths with the same revisions. The new namespace's
    /// journal starts with one row per entry (parents first), so a member who reads it
    /// from the start gets the whole tree; the folder itself gets a mkdir row in the
    /// owner's home journal, which tells the owner's devices to read the delta.
    pub async fn share_folder(
        &self,
        owner_home: NamespaceId,
        path: &ServerPath,
        actor: &Actor,
    ) -> Result<NamespaceId, MetaError> {
        if path.is_root() || path.parent().is_some_and(|p| !p.is_root()) {
            return Err(MetaError::NotShareable(format!(
                "only a folder at the top of your files can be shared, and {path} is not; \
                 move it to / first"
            )));
        }
        let mut w = NsWrite::begin(self, owner_home, actor).await?;
        let folder = find_live(w.conn(), owner_home, &path.key())
            .await?
            .ok_or_else(|| MetaError::NotFound(path.clone()))?;
        if folder.kind != EntryKind::Folder {
            return Err(MetaError::NotShareable(format!(
                "{} is a file; only folders can be shared (a file can have a link)",
                folder.path
            )));
        }
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT ns_id FROM memberships WHERE mount_entry_id = $1")
                .bind(folder.id.0)
                .fetch_optional(w.conn())
                .await?;
        if let Some(ns) = existing {
            return Ok(NamespaceId(ns));
        }
        let owner: i64 = sqlx::query_scalar("SELECT owner_user_id FROM namespaces WHERE id = $1")
            .bind(owner_home.0)
            .fetch_one(w.conn())
            .await?;
        let now = w.now;
        let shared = NamespaceId(
            sqlx::query_scalar(
                "INSERT INTO namespaces (owner_user_id, journal_seq, created_at) \
                 VALUES ($1, 0, $2) RETURNING id",
            )
            .bind(owner)
            .bind(now)
            .fetch_one(w.conn())
            .await?,
        );
        w.lock_other(shared).await?;

        move_below(&mut w, owner_home, &folder, shared).await?;
        insert_membership(&mut w, shared, UserId(owner), Role::Owner, &folder, actor).await?;
        w.record(
            ChangeKind::Mkdir,
            EntryKind::Folder,
            &folder.path,
            folder.id,
            None,
        );
        w.commit().await?;
        Ok(shared)
    }

    /// Adds `user` to the shared namespace `ns` with `role`, mounting it at the top of
    /// the user's files under the owner's folder name (or "NAME (2)", "NAME (3)", … when
    /// that is taken). A member already there gets the new role. Returns the mount.
    pub async fn add_member(
        &self,
        ns: NamespaceId,
        user: UserId,
        role: Role,
        actor: &Actor,
    ) -> Result<Membership, MetaError> {
        if role == Role::Owner {
            return Err(MetaError::NotShareable(
                "a shared folder has one owner; add members as editor or viewer".into(),
            ));
        }
        let members = self.members_of(ns).await?;
        let owner = members
            .iter()
            .find(|m| m.role == Role::Owner)
            .ok_or_else(|| corrupt(format!("shared namespace {ns} has no owner")))?;
        if owner.user_id == user {
            return Err(MetaError::NotShareable(format!(
                "{} owns this folder already",
                owner.user_name
            )));
        }
        if members.iter().any(|m| m.user_id == user) {
            let mut tx = crate::db::WriteTx::begin(self).await?;
            sqlx::query("UPDATE memberships SET role = $1 WHERE ns_id = $2 AND user_id = $3")
                .bind(role.as_str())
                .bind(ns.0)
                .bind(user.0)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
        } else {
            let home = home_of(self, user).await?;
            let mut w = NsWrite::begin(self, home, actor).await?;
            let name = name_of(&owner.mount_path).to_owned();
            let mut path = ServerPath::root().join(&name)?;
            let mut n = 1;
            while find_live(w.conn(), home, &path.key()).await?.is_some() {
                n += 1;
                if n > MAX_MOUNT_NAMES {
                    return Err(MetaError::AlreadyExists(path));
                }
                path = ServerPath::root().join(&format!("{name} ({n})"))?;
            }
            let folder = insert_folder(&mut w, &path).await?;
            w.record(ChangeKind::Mkdir, EntryKind::Folder, &path, folder.id, None);
            insert_membership(&mut w, ns, user, role, &folder, actor).await?;
            w.commit().await?;
        }
        self.members_of(ns)
            .await?
            .into_iter()
            .find(|m| m.user_id == user)
            .ok_or_else(|| corrupt("a membership just written is missing"))
    }

    /// Removes `user` from the shared namespace `ns`: the mount folder leaves the
    /// member's tree (journaled as a delete there), and nothing in the shared namespace
    /// changes. The owner cannot be removed. Returns false when `user` was not a member.
    pub async fn remove_member(
        &self,
        ns: NamespaceId,
        user: UserId,
        actor: &Actor,
    ) -> Result<bool, MetaError> {
        let Some(member) = self
            .members_of(ns)
            .await?
            .into_iter()
            .find(|m| m.user_id == user)
        else {
            return Ok(false);
        };
        if member.role == Role::Owner {
            return Err(MetaError::NotShareable(format!(
                "{} owns this folder and cannot be removed from it",
                member.user_name
            )));
        }
        let mut w = NsWrite::begin(self, home_of(self, user).await?, actor).await?;
        let removed = sqlx::query("DELETE FROM memberships WHERE ns_id = $1 AND user_id = $2")
            .bind(ns.0)
            .bind(user.0)
            .execute(w.conn())
            .await?
            .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        // The mount folder is empty in the home namespace (its content lives in the
        // shared one), so it goes for good rather than to the trash: restoring it
        // would give back an empty folder, not the share.
        sqlx::query("DELETE FROM entries WHERE id = $1")
            .bind(member.mount_entry.0)
            .execute(w.conn())
            .await?;
        w.record(
            ChangeKind::Delete,
            EntryKind::Folder,
            &member.mount_path,
            member.mount_entry,
            None,
        );
        w.commit().await?;
        Ok(true)
    }

    /// The live entry with this id in `ns`, or `None` (deleted, purged, elsewhere).
    pub async fn entry_by_id(
        &self,
        ns: NamespaceId,
        id: EntryId,
    ) -> Result<Option<Entry>, MetaError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries \
             WHERE id = $1 AND ns_id = $2 AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(ns.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }
}

/// Moves everything below `folder` (an entry of `home`) into the new namespace
/// `shared`: the live tree, journaled as the namespace's start, parents first; the
/// trash items deleted from below it and their rows; their versions; their links, and
/// those of the folder itself, which now name the namespace's root.
async fn move_below(
    w: &mut NsWrite,
    home: NamespaceId,
    folder: &Entry,
    shared: NamespaceId,
) -> Result<(), MetaError> {
    let root = ServerPath::root();
    let key = folder.path.key();
    // The live tree, parents first, journaled as the new namespace's start.
    let below = descendants(w.conn(), home, &key).await?;
    for entry in &below {
        let moved = crate::tree::rebase(&entry.path, &folder.path, &root)?;
        move_row(w.conn(), entry.id, shared, &moved).await?;
        let kind = match entry.kind {
            EntryKind::Folder => ChangeKind::Mkdir,
            EntryKind::File => ChangeKind::Commit,
        };
        w.record_in(shared, kind, entry.kind, &moved, entry.id, entry.rev)?;
    }
    // Trash items deleted from below the folder go with it, so members can restore
    // them; the rows of their deleted entries follow their item.
    let trash = sqlx::query(
        "SELECT id, path FROM trash WHERE ns_id = $1 AND path_key > $2 AND path_key < $3",
    )
    .bind(home.0)
    .bind(crate::tree::subtree_start(&key))
    .bind(crate::tree::subtree_end(&key))
    .fetch_all(w.conn())
    .await?;
    for row in &trash {
        let id: i64 = row.try_get("id")?;
        let old = parse_path(&row.try_get::<String, _>("path")?)?;
        let moved = crate::tree::rebase(&old, &folder.path, &root)?;
        sqlx::query("UPDATE trash SET ns_id = $1, path = $2, path_key = $3 WHERE id = $4")
            .bind(shared.0)
            .bind(moved.as_str().to_owned())
            .bind(moved.key())
            .bind(id)
            .execute(w.conn())
            .await?;
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE trash_id = $1");
        let deleted = sqlx::query(&sql).bind(id).fetch_all(w.conn()).await?;
        for entry in deleted.iter().map(entry_from_row) {
            let entry = entry?;
            let moved = crate::tree::rebase(&entry.path, &folder.path, &root)?;
            move_row(w.conn(), entry.id, shared, &moved).await?;
        }
    }
    sqlx::query(
        "UPDATE versions SET ns_id = $1 \
         WHERE entry_id IN (SELECT id FROM entries WHERE ns_id = $1)",
    )
    .bind(shared.0)
    .execute(w.conn())
    .await?;
    // Links follow their entries; a link to the folder itself now names the shared
    // namespace's root.
    sqlx::query(
        "UPDATE links SET ns_id = $1 \
         WHERE entry_id IN (SELECT id FROM entries WHERE ns_id = $1)",
    )
    .bind(shared.0)
    .execute(w.conn())
    .await?;
    sqlx::query("UPDATE links SET ns_id = $1, entry_id = NULL WHERE entry_id = $2")
        .bind(shared.0)
        .bind(folder.id.0)
        .execute(w.conn())
        .await?;
    Ok(())
}

async fn insert_membership(
    w: &mut NsWrite,
    ns: NamespaceId,
    user: UserId,
    role: Role,
    mount: &Entry,
    actor: &Actor,
) -> Result<(), MetaError> {
    let now = w.now;
    sqlx::query(
        "INSERT INTO memberships \
         (ns_id, user_id, role, mount_entry_id, mount_path, mount_key, added_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(ns.0)
    .bind(user.0)
    .bind(role.as_str())
    .bind(mount.id.0)
    .bind(mount.path.as_str().to_owned())
    .bind(mount.path.key())
    .bind(actor.user_id.0)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Moves one entry row to another namespace at `path`.
async fn move_row(
    conn: &mut sqlx::AnyConnection,
    id: EntryId,
    ns: NamespaceId,
    path: &ServerPath,
) -> Result<(), MetaError> {
    sqlx::query("UPDATE entries SET ns_id = $1 WHERE id = $2")
        .bind(ns.0)
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    crate::tree::set_path(conn, id, path).await
}

/// The home namespace of `user`.
async fn home_of(store: &MetaStore, user: UserId) -> Result<NamespaceId, MetaError> {
    let home: Option<i64> = sqlx::query_scalar("SELECT home_ns FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_one(&store.pool)
        .await?;
    home.map(NamespaceId)
        .ok_or_else(|| corrupt(format!("user {} has no home namespace", user.0)))
}
