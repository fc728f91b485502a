//! Users, devices and login tokens.

use cairn_core::{DeviceId, NamespaceId, UserId};
use sqlx::Row;

use crate::db::{is_unique_violation, now_ms, user_from_row, WriteTx, USER_COLUMNS};
use crate::{Device, MetaError, MetaStore, User};

/// How stale `auth_tokens.last_used_at` may get before a lookup refreshes it. Writing
/// on every request would turn every read into a write (and on SQLite, queue it behind
/// uploads); the column only has to tell an admin roughly when a token was last used.
pub(crate) const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// What kind of credential a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A bearer token (the CLI, the sync client, a script): works until logout.
    Api,
    /// A browser session, carried in a cookie.
    Web {
        /// When it stops working whatever its use, Unix ms.
        expires_at: i64,
        /// How long it may go unused.
        idle_ms: i64,
    },
}

/// Whose a working token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user: User,
    /// The device it was issued to, if any.
    pub device: Option<DeviceId>,
    pub kind: TokenKind,
}

impl MetaStore {
    /// Creates a user and its home namespace. Fails with [`MetaError::UserExists`] when
    /// the name is taken, and [`MetaError::InvalidUserName`] for a name that
    /// [`check_user_name`] refuses.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
        quota_bytes: Option<i64>,
    ) -> Result<User, MetaError> {
        check_user_name(name)?;
        let now = now_ms();
        let mut tx = WriteTx::begin(self).await?;
        // users.home_ns and namespaces.owner_user_id point at each other, so the user
        // row goes in first without its namespace and gets it before the commit.
        let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, is_admin, quota_bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name.to_owned())
        .bind(password_hash.to_owned())
        .bind(i64::from(is_admin))
        .bind(quota_bytes)
        .bind(now)
        .fetch_one(tx.conn())
        .await;
        let id = match inserted {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => return Err(MetaError::UserExists(name.into())),
            Err(e) => return Err(e.into()),
        };
        let ns: i64 = sqlx::query_scalar(
            "INSERT INTO namespaces (owner_user_id, journal_seq, created_at) \
             VALUES ($1, 0, $2) RETURNING id",
        )
        .bind(id)
        .bind(now)
        .fetch_one(tx.conn())
        .await?;
        sqlx::query("UPDATE users SET home_ns = $1 WHERE id = $2")
            .bind(ns)
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(User {
            id: UserId(id),
            name: name.to_owned(),
            password_hash: password_hash.to_owned(),
            is_admin,
            quota_bytes,
            home_ns: NamespaceId(ns),
            created_at: now,
            disabled_at: None,
        })
    }

    /// How many accounts exist, deleted ones aside (the server creates `admin` when
    /// there are none).
    pub async fn user_count(&self) -> Result<i64, MetaError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE deleted_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The user with this exact name (never a deleted account).
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, MetaError> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1 AND deleted_at IS NULL");
        let row = sqlx::query(&sql)
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user with this id (never a deleted account).
    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, MetaError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user, oldest first (deleted accounts are gone from the list).
    pub async fn list_users(&self) -> Result<Vec<User>, MetaError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Sets (or, with `None`, removes) a user's storage quota in bytes. Returns false
    /// when there is no such user.
    pub async fn set_quota(&self, name: &str, quota_bytes: Option<i64>) -> Result<bool, MetaError> {
        let mut tx = crate::db::WriteTx::begin(self).await?;
        let changed =
            sqlx::query("UPDATE users SET quota_bytes = $1 WHERE name = $2 AND deleted_at IS NULL")
                .bind(quota_bytes)
                .bind(name.to_owned())
                .execute(tx.conn())
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(changed > 0)
    }

    /// Registers a device for a user.
    pub async fn create_device(&self, user: UserId, name: &str) -> Result<Device, MetaError> {
        let now = now_ms();
        let mut tx = WriteTx::begin(self).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO devices (user_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(user.0)
        .bind(name.to_owned())
        .bind(now)
        .fetch_one(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Device {
            id: DeviceId(id),
            user_id: user,
            name: name.to_owned(),
            created_at: now,
        })
    }

    /// The device with this id.
    pub async fn device(&self, id: DeviceId) -> Result<Option<Device>, MetaError> {
        let row = sqlx::query("SELECT id, user_id, name, created_at FROM devices WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Device {
                id: DeviceId(r.try_get("id")?),
                user_id: UserId(r.try_get("user_id")?),
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Stores a login token, by its hash (the token itself is never stored).
    pub async fn create_token(
        &self,
        user: UserId,
        device: Option<DeviceId>,
        token_hash: &[u8; 32],
    ) -> Result<(), MetaError> {
        self.insert_token(user, device, token_hash, TokenKind::Api)
            .await
    }

    /// Stores a browser session's token, by its hash: it stops working after `idle_ms`
    /// without use, and `lifetime_ms` after now whatever its use.
    pub async fn create_web_session(
        &self,
        user: UserId,
        token_hash: &[u8; 32],
        idle_ms: i64,
        lifetime_ms: i64,
    ) -> Result<(), MetaError> {
        let expires_at = now_ms().saturating_add(lifetime_ms);
        self.insert_token(
            user,
            None,
            token_hash,
            TokenKind::Web {
                expires_at,
                idle_ms,
            },
        )
        .await
    }

    async fn insert_token(
        &self,
        user: UserId,
        device: Option<DeviceId>,
        token_hash: &[u8; 32],
        kind: TokenKind,
    ) -> Result<(), MetaError> {
        let (name, expires_at, idle_ms) = match kind {
            TokenKind::Api => ("api", None, None),
            TokenKind::Web {
                expires_at,
                idle_ms,
            } => ("web", Some(expires_at), Some(idle_ms)),
        };
        let now = now_ms();
        let mut tx = WriteTx::begin(self).await?;
        sqlx::query(
            "INSERT INTO auth_tokens \
             (user_id, device_id, token_hash, created_at, last_used_at, kind, expires_at, idle_ms) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
        )
        .bind(user.0)
        .bind(device.map(|d| d.0))
        .bind(token_hash.to_vec())
        .bind(now)
        .bind(name)
        .bind(expires_at)
        .bind(idle_ms)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user (and device) a token hash belongs to, while the token works: a web
    /// session that went unused for its idle time or reached its expiry is no owner's
    /// (and is deleted). Refreshes the token's `last_used_at` at most once a minute,
    /// and only when that costs no waiting.
    pub async fn token_owner(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<TokenOwner>, MetaError> {
        let sql = format!(
            "SELECT t.id AS token_id, t.device_id, t.last_used_at, t.kind, t.expires_at, \
             t.idle_ms, {} \
             FROM auth_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND u.deleted_at IS NULL",
            USER_COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some(row) = sqlx::query(&sql)
            .bind(token_hash.to_vec())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let user = user_from_row(&row)?;
        let device = row.try_get::<Option<i64>, _>("device_id")?.map(DeviceId);
        let token_id: i64 = row.try_get("token_id")?;
        let last_used: i64 = row.try_get("last_used_at")?;
        let kind = match row.try_get::<String, _>("kind")?.as_str() {
            "web" => TokenKind::Web {
                expires_at: row.try_get::<Option<i64>, _>("expires_at")?.unwrap_or(0),
                idle_ms: row.try_get::<Option<i64>, _>("idle_ms")?.unwrap_or(0),
            },
            _ => TokenKind::Api,
        };
        let now = now_ms();
        if let TokenKind::Web {
            expires_at,
            idle_ms,
        } = kind
        {
            // The last use is known to a minute, so idle time ends a minute early at worst.
            if now >= expires_at || now >= last_used.saturating_add(idle_ms) {
                self.delete_token(token_hash).await?;
                return Ok(None);
            }
        }
        if now - last_used >= LAST_USED_GRANULARITY_MS {
            self.touch_token(token_id, now).await;
        }
        Ok(Some(TokenOwner { user, device, kind }))
    }

    /// Best effort: a failure to record when a token was used must not fail the
    /// request that used it.
    async fn touch_token(&self, token_id: i64, now: i64) {
        // On SQLite, skip the refresh when a writer is busy rather than queue a read
        // behind an upload; the next request will refresh it.
        let _guard = match &self.sqlite_writer {
            Some(lock) => match lock.clone().try_lock_owned() {
                Ok(guard) => Some(guard),
                Err(_) => return,
            },
            None => None,
        };
        let result = sqlx::query(
            "UPDATE auth_tokens SET last_used_at = $1 WHERE id = $2 AND last_used_at < $3",
        )
        .bind(now)
        .bind(token_id)
        .bind(now - LAST_USED_GRANULARITY_MS)
        .execute(&self.pool)
        .await;
        if let Err(e) = result {
            tracing::warn!("could not record token use: {e}");
        }
    }

    /// Deletes a token (logout). Returns whether it existed.
    pub async fn delete_token(&self, token_hash: &[u8; 32]) -> Result<bool, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let done = sqlx::query("DELETE FROM auth_tokens WHERE token_hash = $1")
            .bind(token_hash.to_vec())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Longest user name, in characters.
pub const MAX_USER_NAME_LEN: usize = 64;

/// Refuses a user name that is empty, longer than [`MAX_USER_NAME_LEN`] characters, or holds
/// `/`, `:` or a control character. `:` is kept out so that HTTP basic auth
/// (`NAME:PASSWORD`) can carry every name, and so that the tombstone names of deleted
/// accounts (`NAME:deleted:ID`) can never be a live account's.
pub fn check_user_name(name: &str) -> Result<(), MetaError> {
    if name.is_empty()
        || name.chars().count() > MAX_USER_NAME_LEN
        || name.chars().any(|c| c.is_control() || c == '/' || c == ':')
    {
        return Err(MetaError::InvalidUserName(format!(
            "a user name must be 1 to {MAX_USER_NAME_LEN} characters without '/', ':' or control \
             characters"
        )));
    }
    Ok(())
}
