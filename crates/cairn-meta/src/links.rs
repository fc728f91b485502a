//! Public links: a random token that lets anyone holding it read a file or folder, or
//! drop files into a folder, with the rights of the account that made it.
//!
//! The store keeps the link and counts its downloads; whether a link may still be used
//! (its creator's rights, the target still there, the password) is the server's to
//! decide at every use. The token is stored as it is, because its creator can list the
//! link's URL again; it carries 256 random bits, so it cannot be guessed.

use cairn_core::{EntryId, NamespaceId, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{now_ms, WriteTx};
use crate::{MetaError, MetaStore};

/// A link's id (not secret: the creator names it to revoke the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub i64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A public link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The link's id.
    pub id: LinkId,
    /// The secret part of its URL.
    pub token: String,
    /// The account that made it; the link reads (or writes) with its rights.
    pub creator: UserId,
    /// The namespace holding the target.
    pub ns: NamespaceId,
    /// The target entry; `None` for the namespace's root (a shared folder's top).
    pub entry: Option<EntryId>,
    /// The argon2id PHC string of the link's password, if it has one.
    pub password_hash: Option<String>,
    /// When the link stops working, Unix ms.
    pub expires_at: Option<i64>,
    /// How many downloads it allows in all.
    pub max_downloads: Option<i64>,
    /// How many it has served.
    pub downloads: i64,
    /// A file drop: it takes uploads into its folder and shows nothing.
    pub upload_only: bool,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// When its creator revoked it, Unix ms.
    pub revoked_at: Option<i64>,
}

impl Link {
    /// Whether the link is revoked, expired at `now` (Unix ms) or out of downloads: in
    /// every such case it answers like a link that never existed.
    pub fn is_dead_at(&self, now: i64) -> bool {
        self.revoked_at.is_some()
            || self.expires_at.is_some_and(|at| at <= now)
            || self.max_downloads.is_some_and(|max| self.downloads >= max)
    }
}

/// What [`MetaStore::create_link`] stores.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// Made by the server from at least 128 random bits.
    pub token: String,
    /// The account making the link.
    pub creator: UserId,
    /// The namespace holding the target.
    pub ns: NamespaceId,
    /// The target entry; `None` for the namespace's root.
    pub entry: Option<EntryId>,
    /// The argon2id PHC string of the password, if any.
    pub password_hash: Option<String>,
    /// Expiry, Unix ms.
    pub expires_at: Option<i64>,
    /// Download limit.
    pub max_downloads: Option<i64>,
    /// A file drop.
    pub upload_only: bool,
}

const LINK_COLUMNS: &str = "id, token, user_id, ns_id, entry_id, password_hash, expires_at, \
     max_downloads, downloads, upload_only, created_at, revoked_at";

fn link_from_row(row: &AnyRow) -> Result<Link, MetaError> {
    Ok(Link {
        id: LinkId(row.try_get("id")?),
        token: row.try_get("token")?,
        creator: UserId(row.try_get("user_id")?),
        ns: NamespaceId(row.try_get("ns_id")?),
        entry: row.try_get::<Option<i64>, _>("entry_id")?.map(EntryId),
        password_hash: row.try_get("password_hash")?,
        expires_at: row.try_get("expires_at")?,
        max_downloads: row.try_get("max_downloads")?,
        downloads: row.try_get("downloads")?,
        upload_only: row.try_get::<i64, _>("upload_only")? != 0,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl MetaStore {
    /// Stores a new link and returns it.
    pub async fn create_link(&self, new: NewLink) -> Result<Link, MetaError> {
        let now = now_ms();
        let mut tx = WriteTx::begin(self).await?;
        let sql = format!(
            "INSERT INTO links (token, user_id, ns_id, entry_id, password_hash, expires_at, \
             max_downloads, downloads, upload_only, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9) RETURNING {LINK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(new.token)
            .bind(new.creator.0)
            .bind(new.ns.0)
            .bind(new.entry.map(|e| e.0))
            .bind(new.password_hash)
            .bind(new.expires_at)
            .bind(new.max_downloads)
            .bind(i64::from(new.upload_only))
            .bind(now)
            .fetch_one(tx.conn())
            .await?;
        let link = link_from_row(&row)?;
        tx.commit().await?;
        Ok(link)
    }

    /// Every link `creator` made, revoked ones included, newest first.
    pub async fn links_of(&self, creator: UserId) -> Result<Vec<Link>, MetaError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE user_id = $1 ORDER BY id DESC");
        let rows = sqlx::query(&sql)
            .bind(creator.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    /// The link with this token, dead or alive.
    pub async fn link_by_token(&self, token: &str) -> Result<Option<Link>, MetaError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE token = $1");
        let row = sqlx::query(&sql)
            .bind(token.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    /// Revokes `creator`'s link `id`. Returns false when `creator` made no such link
    /// (another account's link is not there, as far as this caller is concerned);
    /// revoking a revoked link again keeps its first revocation time.
    pub async fn revoke_link(&self, creator: UserId, id: LinkId) -> Result<bool, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM links WHERE id = $1 AND user_id = $2")
                .bind(id.0)
                .bind(creator.0)
                .fetch_optional(tx.conn())
                .await?;
        if found.is_none() {
            return Ok(false);
        }
        sqlx::query("UPDATE links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Counts one download of link `id`, if it still has one to give: not revoked, not
    /// expired, and under its limit. Returns false (and counts nothing) otherwise. One
    /// statement, so concurrent downloads can never pass the limit together.
    pub async fn count_link_download(&self, id: LinkId) -> Result<bool, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let counted = sqlx::query(
            "UPDATE links SET downloads = downloads + 1 \
             WHERE id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) \
             AND (max_downloads IS NULL OR downloads < max_downloads)",
        )
        .bind(id.0)
        .bind(now_ms())
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(counted > 0)
    }
}
