//! An account's life after it is made: passwords, disabling, deleting.
//!
//! A *disabled* account keeps everything it has (files, shares, links, tokens); the
//! server refuses its logins, its tokens and its links until an administrator enables
//! it again, and then everything works as before. A *deleted* account is gone for good
//! (see [`MetaStore::delete_user`]); its row stays as a tombstone only so that the
//! versions, trash items and journal rows it left in other accounts' shared folders
//! still say who made them.
//!
//! Whatever is done, one enabled administrator always remains: disabling or deleting
//! the last one is refused with [`MetaError::LastAdmin`].

use cairn_core::{EntryId, NamespaceId, ServerPath, UserId, VersionId};
use sqlx::{AnyConnection, Row};

use crate::db::{now_ms, parse_path, NsWrite, WriteTx};
use crate::versions::delete_versions;
use crate::{Actor, ChangeKind, EntryKind, MetaError, MetaStore, User};

/// What [`MetaStore::delete_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedUser {
    /// The account's id (its tombstone keeps it).
    pub id: UserId,
    /// Files deleted with the account (live ones and those in its trash), in its home
    /// and in the shared folders that went with it.
    pub files_deleted: i64,
    /// Bytes of the current versions of those files. Their blocks are freed by garbage
    /// collection once nothing else references them.
    pub bytes_deleted: i64,
    /// Shared folders the account owned that now belong to another member.
    pub shares_transferred: Vec<TransferredShare>,
    /// Shared folders the account owned that had no editor to take them, deleted for
    /// their members too: the folder's name in the owner's files.
    pub shares_deleted: Vec<String>,
    /// Shared folders of others the account was a member of, left.
    pub memberships_removed: u64,
    /// Public links the account had made, revoked (deleted).
    pub links_revoked: u64,
    /// Login tokens (devices signed in) revoked.
    pub tokens_revoked: u64,
    /// App passwords revoked.
    pub app_passwords_revoked: u64,
}

/// A shared folder that passed to a new owner when its owner was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferredShare {
    /// The shared namespace.
    pub ns: NamespaceId,
    /// The folder's name in the deleted owner's files.
    pub folder: String,
    /// The member who owns it now.
    pub new_owner: String,
}

impl MetaStore {
    /// Replaces a user's password hash and signs out its other sessions: every token
    /// of the account is revoked except `keep` (the token of the request that changed
    /// the password, when the user changed it; `None` when an administrator did), and
    /// every app password, since whoever knew the old password could have made some.
    /// Returns how many tokens and app passwords were revoked.
    pub async fn set_password_hash(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<&[u8; 32]>,
    ) -> Result<u64, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE users SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL \
             RETURNING name",
        )
        .bind(password_hash.to_owned())
        .bind(user.0)
        .fetch_optional(tx.conn())
        .await?;
        if name.is_none() {
            return Err(MetaError::NoSuchUser(format!("#{}", user.0)));
        }
        let revoked = match keep {
            Some(keep) => {
                sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1 AND token_hash <> $2")
                    .bind(user.0)
                    .bind(keep.to_vec())
                    .execute(tx.conn())
                    .await?
                    .rows_affected()
            }
            None => sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1")
                .bind(user.0)
                .execute(tx.conn())
                .await?
                .rows_affected(),
        };
        let app_passwords = sqlx::query("DELETE FROM app_passwords WHERE user_id = $1")
            .bind(user.0)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(revoked + app_passwords)
    }

    /// Disables (or enables) the account named `name` and returns it as it is now.
    /// Disabling changes nothing else: files, shares, links and tokens stay, refused
    /// while the account is disabled and working again once it is enabled. Disabling
    /// the last enabled administrator is refused ([`MetaError::LastAdmin`]); doing what
    /// is already done is not an error.
    pub async fn set_user_disabled(
        &self,
        name: &str,
        disabled: bool,
    ) -> Result<crate::User, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let row = sqlx::query(
            "SELECT id, is_admin, disabled_at FROM users WHERE name = $1 AND deleted_at IS NULL",
        )
        .bind(name.to_owned())
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| MetaError::NoSuchUser(name.to_owned()))?;
        let id: i64 = row.try_get("id")?;
        let is_admin = row.try_get::<i64, _>("is_admin")? != 0;
        let was_disabled = row.try_get::<Option<i64>, _>("disabled_at")?.is_some();
        if disabled && !was_disabled {
            if is_admin {
                ensure_other_admin(tx.conn(), id, name).await?;
            }
            sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(tx.conn())
                .await?;
        } else if !disabled && was_disabled {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        self.user_by_id(UserId(id))
            .await?
            .ok_or_else(|| MetaError::NoSuchUser(name.to_owned()))
    }

    /// Deletes the account named `name`, in one transaction:
    ///
    /// * its home namespace goes with every file, folder, version and trash item in
    ///   it (their blocks lose these references, and garbage collection frees those
    ///   nothing else references after its grace period);
    /// * each shared folder it owns passes to the editor who was added to it first
    ///   (who becomes its owner, so its content counts against that account's quota
    ///   from then on); a shared folder without an editor is deleted like the home,
    ///   and its viewers lose it as if the owner had removed them (the mount folder is
    ///   removed from their files, journaled there);
    /// * it leaves the shared folders of others (its mounts went with its home);
    /// * its public links are revoked, its tokens and app passwords too (every device
    ///   is signed out), and the blocks it proved it holds are forgotten;
    /// * its row stays as a tombstone named `NAME:deleted:ID`, so the name is free
    ///   for a new account, which starts empty and inherits nothing.
    ///
    /// Deleting the last enabled administrator is refused ([`MetaError::LastAdmin`]).
    pub async fn delete_user(&self, name: &str) -> Result<DeletedUser, MetaError> {
        let user = self
            .user_by_name(name)
            .await?
            .ok_or_else(|| MetaError::NoSuchUser(name.to_owned()))?;
        let actor = Actor {
            user_id: user.id,
            device_id: None,
            device_name: String::new(),
        };
        // Begin with the home: a second delete of the same account waits here, then
        // finds the namespace gone.
        let mut w = match NsWrite::begin(self, user.home_ns, &actor).await {
            Ok(w) => w,
            Err(MetaError::NoSuchNamespace(_)) => {
                return Err(MetaError::NoSuchUser(name.to_owned()))
            }
            Err(e) => return Err(e),
        };
        let live: Option<i64> =
            sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL")
                .bind(user.id.0)
                .fetch_optional(w.conn())
                .await?;
        if live.is_none() {
            return Err(MetaError::NoSuchUser(name.to_owned()));
        }
        if user.is_admin {
            ensure_other_admin(w.conn(), user.id.0, name).await?;
        }
        let mut report = DeletedUser {
            id: user.id,
            files_deleted: 0,
            bytes_deleted: 0,
            shares_transferred: Vec::new(),
            shares_deleted: Vec::new(),
            memberships_removed: 0,
            links_revoked: 0,
            tokens_revoked: 0,
            app_passwords_revoked: 0,
        };

        let mut doomed = vec![user.home_ns];
        doomed.extend(hand_on_owned_shares(&mut w, &user, &mut report).await?);

        // It leaves the folders of others, and its own (those just transferred and
        // those about to go): every mount folder it had is an entry of its home, which
        // goes next.
        report.memberships_removed =
            sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND role <> 'owner'")
                .bind(user.id.0)
                .execute(w.conn())
                .await?
                .rows_affected();
        sqlx::query("DELETE FROM memberships WHERE user_id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?;

        report.links_revoked = sqlx::query("DELETE FROM links WHERE user_id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?
            .rows_affected();
        sqlx::query("UPDATE users SET home_ns = NULL WHERE id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?;
        let now = w.now;
        for ns in doomed {
            let (files, bytes) = delete_namespace(w.conn(), ns, now).await?;
            report.files_deleted += files;
            report.bytes_deleted += bytes;
        }

        report.tokens_revoked = sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?
            .rows_affected();
        report.app_passwords_revoked = sqlx::query("DELETE FROM app_passwords WHERE user_id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM user_blocks WHERE user_id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?;
        // Its unfinished resumable uploads go too, releasing their blocks.
        sqlx::query("DELETE FROM tus_uploads WHERE user_id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?;
        sqlx::query("DELETE FROM pending_uploads WHERE user_id = $1")
            .bind(user.id.0)
            .execute(w.conn())
            .await?;
        // Devices stay: versions and trash items in others' folders name them.
        sqlx::query(
            "UPDATE users SET name = $1, password_hash = '', is_admin = 0, quota_bytes = NULL, \
             deleted_at = $2 WHERE id = $3",
        )
        .bind(format!("{}:deleted:{}", user.name, user.id.0))
        .bind(now)
        .bind(user.id.0)
        .execute(w.conn())
        .await?;
        w.commit().await?;
        tracing::info!(
            user = %user.name,
            files = report.files_deleted,
            transferred = report.shares_transferred.len(),
            shares_deleted = report.shares_deleted.len(),
            "deleted account"
        );
        Ok(report)
    }

    /// Bytes charged to each account's quota (see [`MetaStore::usage_bytes`]), for
    /// every account that owns a live file, in one query.
    pub async fn usage_by_user(&self) -> Result<std::collections::HashMap<UserId, i64>, MetaError> {
        let rows = sqlx::query(
            "SELECT n.owner_user_id AS user_id, CAST(COALESCE(SUM(e.size), 0) AS BIGINT) AS bytes \
             FROM namespaces n JOIN entries e ON e.ns_id = n.id \
             WHERE e.kind = 'file' AND e.deleted_at IS NULL GROUP BY n.owner_user_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((UserId(r.try_get("user_id")?), r.try_get("bytes")?)))
            .collect()
    }
}

/// Hands on each shared folder `user` owns to its first editor (one still enabled if
/// any), or, when it has none, unmounts it from everyone; returns the namespaces of
/// the latter, to be deleted with the account.
async fn hand_on_owned_shares(
    w: &mut NsWrite,
    user: &User,
    report: &mut DeletedUser,
) -> Result<Vec<NamespaceId>, MetaError> {
    let owned: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM namespaces WHERE owner_user_id = $1 AND id <> $2 ORDER BY id",
    )
    .bind(user.id.0)
    .bind(user.home_ns.0)
    .fetch_all(w.conn())
    .await?;
    let mut doomed = Vec::new();
    for ns in owned.into_iter().map(NamespaceId) {
        let folder = owner_mount_name(w.conn(), ns, user.id).await?;
        let heir = sqlx::query(
            "SELECT m.user_id, u.name FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.ns_id = $1 AND m.role = 'editor' AND u.deleted_at IS NULL \
             ORDER BY CASE WHEN u.disabled_at IS NULL THEN 0 ELSE 1 END, \
                      m.created_at, m.id",
        )
        .bind(ns.0)
        .fetch_optional(w.conn())
        .await?;
        match heir {
            Some(heir) => {
                let heir_id: i64 = heir.try_get("user_id")?;
                sqlx::query("UPDATE namespaces SET owner_user_id = $1 WHERE id = $2")
                    .bind(heir_id)
                    .bind(ns.0)
                    .execute(w.conn())
                    .await?;
                sqlx::query(
                    "UPDATE memberships SET role = 'owner' WHERE ns_id = $1 AND user_id = $2",
                )
                .bind(ns.0)
                .bind(heir_id)
                .execute(w.conn())
                .await?;
                report.shares_transferred.push(TransferredShare {
                    ns,
                    folder,
                    new_owner: heir.try_get("name")?,
                });
            }
            None => {
                w.lock_other(ns).await?;
                unmount_everyone(w, ns, user.id).await?;
                report.shares_deleted.push(folder);
                doomed.push(ns);
            }
        }
    }
    Ok(doomed)
}

/// Refuses with [`MetaError::LastAdmin`] unless an enabled administrator other than
/// `user` exists. The no-op UPDATE locks the administrators' rows first (on
/// PostgreSQL; SQLite's write transaction already excludes other writers), so two
/// transactions cannot each disable or delete one of the last two.
async fn ensure_other_admin(
    conn: &mut AnyConnection,
    user: i64,
    name: &str,
) -> Result<(), MetaError> {
    sqlx::query("UPDATE users SET is_admin = is_admin WHERE is_admin = 1 AND deleted_at IS NULL")
        .execute(&mut *conn)
        .await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE is_admin = 1 AND deleted_at IS NULL \
         AND disabled_at IS NULL AND id <> $1",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    if others == 0 {
        return Err(MetaError::LastAdmin(name.to_owned()));
    }
    Ok(())
}

/// The name of the shared folder `ns` in its owner's files.
async fn owner_mount_name(
    conn: &mut AnyConnection,
    ns: NamespaceId,
    owner: UserId,
) -> Result<String, MetaError> {
    let path: Option<String> =
        sqlx::query_scalar("SELECT mount_path FROM memberships WHERE ns_id = $1 AND user_id = $2")
            .bind(ns.0)
            .bind(owner.0)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match path {
        Some(path) => crate::tree::name_of(&parse_path(&path)?).to_owned(),
        None => format!("shared folder {ns}"),
    })
}

/// Removes every member but `owner` from the shared namespace `ns`: each member's
/// mount folder leaves its files, journaled in its home as a delete, as
/// [`MetaStore::remove_member`] does for one.
async fn unmount_everyone(
    w: &mut NsWrite,
    ns: NamespaceId,
    owner: UserId,
) -> Result<(), MetaError> {
    let rows = sqlx::query(
        "SELECT m.user_id, m.mount_entry_id, m.mount_path, u.home_ns FROM memberships m \
         JOIN users u ON u.id = m.user_id WHERE m.ns_id = $1 AND m.user_id <> $2 ORDER BY m.id",
    )
    .bind(ns.0)
    .bind(owner.0)
    .fetch_all(w.conn())
    .await?;
    for row in rows {
        let member: i64 = row.try_get("user_id")?;
        let mount = EntryId(row.try_get("mount_entry_id")?);
        let mount_path: ServerPath = parse_path(&row.try_get::<String, _>("mount_path")?)?;
        let home = NamespaceId(
            row.try_get::<Option<i64>, _>("home_ns")?
                .ok_or_else(|| crate::db::corrupt(format!("member {member} has no home")))?,
        );
        sqlx::query("DELETE FROM memberships WHERE ns_id = $1 AND user_id = $2")
            .bind(ns.0)
            .bind(member)
            .execute(w.conn())
            .await?;
        sqlx::query("DELETE FROM entries WHERE id = $1")
            .bind(mount.0)
            .execute(w.conn())
            .await?;
        if !w.has_locked(home) {
            w.lock_other(home).await?;
        }
        w.record_in(
            home,
            ChangeKind::Delete,
            EntryKind::Folder,
            &mount_path,
            mount,
            None,
        )?;
    }
    Ok(())
}

/// Deletes namespace `ns` and everything in it: entries, versions (dropping their
/// block references), trash items, links, memberships and journal. Returns the files
/// it held (live and in the trash) and the bytes of their current versions.
async fn delete_namespace(
    conn: &mut AnyConnection,
    ns: NamespaceId,
    now: i64,
) -> Result<(i64, i64), MetaError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS files, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes \
         FROM entries WHERE ns_id = $1 AND kind = 'file'",
    )
    .bind(ns.0)
    .fetch_one(&mut *conn)
    .await?;
    let counted = (row.try_get("files")?, row.try_get("bytes")?);
    // Versions cannot go while an entry names one as current (a foreign key).
    sqlx::query("UPDATE entries SET current_version_id = NULL WHERE ns_id = $1")
        .bind(ns.0)
        .execute(&mut *conn)
        .await?;
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM versions WHERE ns_id = $1 \
         UNION SELECT v.id FROM versions v JOIN entries e ON e.id = v.entry_id \
         WHERE e.ns_id = $1 ORDER BY id",
    )
    .bind(ns.0)
    .fetch_all(&mut *conn)
    .await?;
    let versions: Vec<VersionId> = versions.into_iter().map(VersionId).collect();
    delete_versions(conn, &versions, now).await?;
    for sql in [
        "DELETE FROM links WHERE ns_id = $1",
        "DELETE FROM memberships WHERE ns_id = $1",
        "DELETE FROM entries WHERE ns_id = $1",
        "DELETE FROM trash WHERE ns_id = $1",
        "DELETE FROM journal WHERE ns_id = $1",
        "DELETE FROM namespaces WHERE id = $1",
    ] {
        sqlx::query(sql).bind(ns.0).execute(&mut *conn).await?;
    }
    Ok(counted)
}
