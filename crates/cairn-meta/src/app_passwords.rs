//! App passwords: the credentials of clients that only speak HTTP Basic (WebDAV),
//! which never take the account password.
//!
//! The server makes each secret and shows it once; the store keeps its hash only (the
//! caller hashes, as with tokens), its name, unique per account, and when it was made
//! and last used. Each one has a device row of its own with the same name, so what is
//! written through it is attributed to it like to a signed-in device; revoking it
//! deletes the app password, never the device, which versions may name.

use cairn_core::{DeviceId, UserId};
use sqlx::Row;

use crate::db::{is_unique_violation, now_ms, user_from_row, WriteTx, USER_COLUMNS};
use crate::users::LAST_USED_GRANULARITY_MS;
use crate::{MetaError, MetaStore, User};

/// An app password as its owner sees it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// Its name, unique among the account's app passwords.
    pub name: String,
    /// When it was made, Unix ms.
    pub created_at: i64,
    /// When a request last signed in with it, Unix ms (known to a minute); `None`
    /// when none has.
    pub last_used_at: Option<i64>,
}

/// Whose an app password is, as a request signing in with it needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPasswordOwner {
    /// The account, disabled or not: the caller decides what a disabled one gets.
    pub user: User,
    /// The app password's name.
    pub name: String,
    /// Its device, which versions written through it name.
    pub device: DeviceId,
}

impl MetaStore {
    /// Stores a new app password of `user` named `name` by the hash of its secret, with
    /// its device. Fails with [`MetaError::AppPasswordExists`] when the account has one
    /// of that name. The name is the caller's to check (the server takes a device's
    /// rules).
    pub async fn create_app_password(
        &self,
        user: UserId,
        name: &str,
        secret_hash: &[u8; 32],
    ) -> Result<AppPassword, MetaError> {
        let now = now_ms();
        let mut tx = WriteTx::begin(self).await?;
        // Asked first, so the usual case of a taken name is an answer rather than an
        // aborted statement; the unique index still decides a race.
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM app_passwords WHERE user_id = $1 AND name = $2")
                .bind(user.0)
                .bind(name.to_owned())
                .fetch_optional(tx.conn())
                .await?;
        if taken.is_some() {
            return Err(MetaError::AppPasswordExists(name.to_owned()));
        }
        let device: i64 = sqlx::query_scalar(
            "INSERT INTO devices (user_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(user.0)
        .bind(name.to_owned())
        .bind(now)
        .fetch_one(tx.conn())
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO app_passwords (user_id, device_id, name, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.0)
        .bind(device)
        .bind(name.to_owned())
        .bind(secret_hash.to_vec())
        .bind(now)
        .execute(tx.conn())
        .await;
        match inserted {
            Ok(_) => {}
            // A secret of ~158 random bits does not collide; the name does, when two
            // requests make the same one at once.
            Err(e) if is_unique_violation(&e) => {
                return Err(MetaError::AppPasswordExists(name.to_owned()))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(AppPassword {
            name: name.to_owned(),
            created_at: now,
            last_used_at: None,
        })
    }

    /// The app passwords of `user`, oldest first.
    pub async fn list_app_passwords(&self, user: UserId) -> Result<Vec<AppPassword>, MetaError> {
        let rows = sqlx::query(
            "SELECT name, created_at, last_used_at FROM app_passwords \
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AppPassword {
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// Revokes `user`'s app password named `name`: the next request that signs in with
    /// it is refused. Fails with [`MetaError::NoSuchAppPassword`] when there is none.
    pub async fn revoke_app_password(&self, user: UserId, name: &str) -> Result<(), MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let deleted = sqlx::query("DELETE FROM app_passwords WHERE user_id = $1 AND name = $2")
            .bind(user.0)
            .bind(name.to_owned())
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        if deleted == 0 {
            return Err(MetaError::NoSuchAppPassword(name.to_owned()));
        }
        Ok(())
    }

    /// Whose the app password with this secret hash is, in one indexed lookup; `None`
    /// when no live account has one (never made, revoked, or its account deleted).
    /// Refreshes its `last_used_at` at most once a minute, and only when that costs no
    /// waiting, as [`MetaStore::token_owner`] does: a Basic client signs in on every
    /// request, and a write per request would queue reads behind uploads.
    pub async fn app_password_owner(
        &self,
        secret_hash: &[u8; 32],
    ) -> Result<Option<AppPasswordOwner>, MetaError> {
        let user_columns = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT a.id AS app_password_id, a.name AS app_password_name, a.device_id, \
             a.last_used_at, {user_columns} \
             FROM app_passwords a JOIN users u ON u.id = a.user_id \
             WHERE a.secret_hash = $1 AND u.deleted_at IS NULL"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(secret_hash.to_vec())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let user = user_from_row(&row)?;
        let id: i64 = row.try_get("app_password_id")?;
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        let now = now_ms();
        if last_used.is_none_or(|at| now - at >= LAST_USED_GRANULARITY_MS) {
            self.touch_app_password(id, now).await;
        }
        Ok(Some(AppPasswordOwner {
            user,
            name: row.try_get("app_password_name")?,
            device: DeviceId(row.try_get("device_id")?),
        }))
    }

    /// Best effort, like `touch_token`: failing to record a use must not fail the
    /// request, and on SQLite a busy writer makes the refresh wait for the next one.
    async fn touch_app_password(&self, id: i64, now: i64) {
        let _guard = match &self.sqlite_writer {
            Some(lock) => match lock.clone().try_lock_owned() {
                Ok(guard) => Some(guard),
                Err(_) => return,
            },
            None => None,
        };
        let result = sqlx::query(
            "UPDATE app_passwords SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - LAST_USED_GRANULARITY_MS)
        .execute(&self.pool)
        .await;
        if let Err(e) = result {
            tracing::warn!("could not record an app password's use: {e}");
        }
    }
}
