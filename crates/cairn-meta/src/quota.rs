//! Quotas: the one place that says how much an account is charged for and whether a
//! write fits.
//!
//! A file is charged to the owner of the namespace it lives in: a member's upload into
//! someone's shared folder counts against the folder's owner, never the member. Usage is
//! the size of the current versions of the live files in every namespace the owner
//! owns (history and the trash are free, as on Dropbox, so expiring them never changes
//! what an account may store). A change that does not grow the usage is always allowed,
//! so an account over its quota can still make room.
//!
//! The authority is the check inside the transaction that would exceed the quota
//! ([`check_quota`] for a commit, a copy or a restore; a [`Budget`] for a batch), so
//! concurrent writers cannot overshoot it together. [`MetaStore::space_of`] and
//! [`MetaStore::check_quota_of`] answer the same question early, outside any
//! transaction, so an upload can be refused before its bytes travel; they can only be
//! out of date by what others wrote meanwhile, which the commit then catches.

use cairn_core::{NamespaceId, UserId};

use crate::{MetaError, MetaStore, User};

/// How much room the owner of a namespace has: what [`MetaStore::space_of`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    /// The account charged for what is stored in the namespace: its owner.
    pub owner: UserId,
    /// That account's name.
    pub owner_name: String,
    /// Its quota in bytes; `None` when it has none.
    pub quota_bytes: Option<i64>,
    /// What it is charged with now, in bytes (see the module's comment).
    pub usage_bytes: i64,
}

impl Space {
    /// Bytes that may still be added; `None` when there is no quota. Never negative: an
    /// account over its quota (lowered by an administrator) has 0.
    pub fn available_bytes(&self) -> Option<i64> {
        self.quota_bytes
            .map(|quota| quota.saturating_sub(self.usage_bytes).max(0))
    }

    /// Fails with [`MetaError::QuotaExceeded`] when `growth` more bytes would pass the
    /// quota. Growth of 0 or less always fits.
    pub fn check(&self, growth: i64) -> Result<(), MetaError> {
        match self.quota_bytes {
            Some(quota) if growth > 0 && self.usage_bytes.saturating_add(growth) > quota => {
                Err(MetaError::QuotaExceeded {
                    quota,
                    used: self.usage_bytes,
                    needed: growth,
                })
            }
            _ => Ok(()),
        }
    }
}

impl MetaStore {
    /// Who is charged for what is stored in namespace `ns`, with their quota and usage.
    pub async fn space_of(&self, ns: NamespaceId) -> Result<Space, MetaError> {
        let mut conn = self.pool.acquire().await?;
        let (owner, owner_name, quota_bytes): (i64, String, Option<i64>) = sqlx::query_as(
            "SELECT u.id, u.name, u.quota_bytes FROM namespaces n \
             JOIN users u ON u.id = n.owner_user_id WHERE n.id = $1",
        )
        .bind(ns.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(MetaError::NoSuchNamespace(ns))?;
        let usage_bytes = owner_usage(&mut conn, UserId(owner)).await?;
        Ok(Space {
            owner: UserId(owner),
            owner_name,
            quota_bytes,
            usage_bytes,
        })
    }

    /// Bytes the user's quota is charged with: the sizes of the current versions of the
    /// live files in the namespaces the user owns (the home and the folders it shares;
    /// what others add to those counts too). Old versions and the trash are free, as on
    /// Dropbox, so expiring them never changes what a user may store.
    pub async fn usage_bytes(&self, user: UserId) -> Result<i64, MetaError> {
        let mut conn = self.pool.acquire().await?;
        owner_usage(&mut conn, user).await
    }

    /// Whether `growth` more bytes fit in the quota of the owner of namespace `ns`: the
    /// commit's rule, asked early (see the module's comment). Growth of 0 or less (a
    /// file replaced by one no larger) always fits, and asks nothing of the database.
    pub async fn check_quota_of(&self, ns: NamespaceId, growth: i64) -> Result<(), MetaError> {
        if growth <= 0 {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        check_quota(&mut conn, ns, growth).await
    }

    /// Whether `user` may store blocks at all: a block is not yet anybody's file, and
    /// may end in any namespace the user can write to, so it is refused only when none
    /// of their owners has a byte left (the home's, and those of the shared folders the
    /// user edits). This stops blocks piling up for an account that cannot commit them;
    /// the exact check, with the file's size, is the commit's.
    pub async fn check_room_for_blocks(&self, user: &User) -> Result<(), MetaError> {
        let mut conn = self.pool.acquire().await?;
        let namespaces: Vec<i64> = sqlx::query_scalar(
            "SELECT ns_id FROM memberships WHERE user_id = $1 AND role IN ('owner', 'editor') \
             ORDER BY ns_id",
        )
        .bind(user.id.0)
        .fetch_all(&mut *conn)
        .await?;
        let mut refusal = match check_quota(&mut conn, user.home_ns, 1).await {
            Ok(()) => return Ok(()),
            Err(err @ MetaError::QuotaExceeded { .. }) => err,
            Err(other) => return Err(other),
        };
        for ns in namespaces {
            match check_quota(&mut conn, NamespaceId(ns), 1).await {
                Ok(()) => return Ok(()),
                Err(MetaError::QuotaExceeded { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        // The home's refusal: it names the user's own quota, which is theirs to act on.
        if let MetaError::QuotaExceeded { needed, .. } = &mut refusal {
            *needed = 1;
        }
        Err(refusal)
    }
}

/// Fails with [`MetaError::QuotaExceeded`] when adding `growth` bytes to the usage of the
/// namespace's owner would pass their quota. Run inside the writing transaction, this
/// is the authority.
pub(crate) async fn check_quota(
    conn: &mut sqlx::AnyConnection,
    ns: NamespaceId,
    growth: i64,
) -> Result<(), MetaError> {
    let (quota, used) = load_quota(conn, ns).await?;
    Budget { quota, used }.check(growth)
}

/// The quota of the namespace's owner and the bytes its live files take now. Usage is a
/// sum over every live file, so it is only computed for an owner who has a quota: the
/// common unlimited account pays one indexed lookup per commit, not a scan of its tree.
pub(crate) async fn load_quota(
    conn: &mut sqlx::AnyConnection,
    ns: NamespaceId,
) -> Result<(Option<i64>, i64), MetaError> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT u.id, u.quota_bytes FROM namespaces n JOIN users u ON u.id = n.owner_user_id \
         WHERE n.id = $1",
    )
    .bind(ns.0)
    .fetch_optional(&mut *conn)
    .await?;
    let (owner, quota) = row.ok_or(MetaError::NoSuchNamespace(ns))?;
    if quota.is_none() {
        return Ok((None, 0));
    }
    Ok((quota, owner_usage(conn, UserId(owner)).await?))
}

/// What `owner` is charged with: every namespace it owns counts, the home and the
/// folders it shares.
pub(crate) async fn owner_usage(
    conn: &mut sqlx::AnyConnection,
    owner: UserId,
) -> Result<i64, MetaError> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(e.size), 0) AS BIGINT) \
         FROM namespaces n JOIN entries e ON e.ns_id = n.id \
         WHERE n.owner_user_id = $1 AND e.kind = 'file' AND e.deleted_at IS NULL",
    )
    .bind(owner.0)
    .fetch_one(&mut *conn)
    .await?)
}

/// How a commit checks the quota.
pub(crate) enum Quota {
    /// Ask the database each time (a single commit).
    Query,
    /// A batch's running account.
    Budget(Budget),
}

/// A batch's running account of the quota: the owner's quota and the usage so far in
/// this transaction.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    pub(crate) quota: Option<i64>,
    pub(crate) used: i64,
}

impl Budget {
    /// Fails with [`MetaError::QuotaExceeded`] when `growth` more bytes do not fit.
    fn check(&self, growth: i64) -> Result<(), MetaError> {
        match self.quota {
            Some(quota) if growth > 0 && self.used.saturating_add(growth) > quota => {
                Err(MetaError::QuotaExceeded {
                    quota,
                    used: self.used,
                    needed: growth,
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts a file of `replaced` bytes becoming `size` bytes, or fails with
    /// [`MetaError::QuotaExceeded`] if the growth does not fit. A change that does not
    /// grow the usage (replacing a file by a smaller one) is always allowed, so a user
    /// over quota can still make room.
    pub(crate) fn charge(&mut self, replaced: i64, size: i64) -> Result<(), MetaError> {
        let growth = size - replaced;
        self.check(growth)?;
        self.used += growth;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_and_budget_apply_one_rule() {
        let space = |quota: Option<i64>, usage: i64| Space {
            owner: UserId(1),
            owner_name: "alice".to_owned(),
            quota_bytes: quota,
            usage_bytes: usage,
        };
        /// Quota, usage, growth; whether it fits, and the bytes available.
        type Case = (Option<i64>, i64, i64, bool, Option<i64>);
        let cases: &[Case] = &[
            (None, 5_000, 1 << 40, true, None),
            (Some(1024), 0, 1024, true, Some(1024)),
            (Some(1024), 0, 1025, false, Some(1024)),
            (Some(1024), 1000, 25, false, Some(24)),
            // Over quota (lowered by an administrator): nothing left, but shrinking fits.
            (Some(100), 150, 1, false, Some(0)),
            (Some(100), 150, 0, true, Some(0)),
            (Some(100), 150, -50, true, Some(0)),
        ];
        for &(quota, usage, growth, fits, available) in cases {
            let s = space(quota, usage);
            let budget = Budget { quota, used: usage };
            assert_eq!(s.check(growth).is_ok(), fits, "{quota:?} {usage} {growth}");
            assert_eq!(
                budget.check(growth).is_ok(),
                fits,
                "{quota:?} {usage} {growth}"
            );
            assert_eq!(s.available_bytes(), available, "{quota:?} {usage}");
        }
    }
}
