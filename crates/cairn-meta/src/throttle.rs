//! Throttles of password guesses (`throttle_failures`), shared by every process on one
//! metadata database, so that wrong passwords sent to one node count on every other.
//!
//! A throttle is a set of keys (a login's account and client address, a link and its
//! visitor's address), each with its limit of failures within a sliding window. A row
//! is one failure of one key, alive until it leaves the window (`expires_at`).
//!
//! # Why a guess is recorded before its password is checked
//!
//! Checking a password takes a while (argon2), so "count, verify, then record the
//! failure" would let a burst of parallel guesses all pass the count before any of them
//! is recorded, on one node or many. [`MetaStore::throttle_attempt`] instead records the
//! guess as a failure first (committed), then counts: every guess's count includes all
//! the guesses committed before its own, so of any burst at most the limit's number are
//! let through, whatever the nodes. A guess let through whose password turns out right
//! (or that was no guess, a malformed request) is withdrawn
//! ([`MetaStore::throttle_withdraw`]); a wrong one simply stays, and a process that dies
//! in between leaves it counted as a failure. A refused guess leaves nothing, so a
//! guesser who keeps knocking does not push the window on.
//!
//! # What bounds the table
//!
//! Only guesses that reach a password check write rows (a throttled key is refused by
//! one indexed count), at most one per key of the throttle, and each such guess costs
//! an argon2 verification: so the live rows are at most the keys per guess times the
//! verifications the servers can do within a window. Expired rows are dead weight: each
//! new guess deletes up to [`PRUNE_PER_GUESS`] of them in its own transaction, so they
//! go at least as fast as new rows come, and the maintenance pass deletes the rest
//! ([`MetaStore::prune_throttle`]), so an idle deployment keeps none beyond one
//! interval.

use crate::db::{placeholders, WriteTx};
use crate::{MetaError, MetaStore};

/// How many expired rows each recorded guess deletes, at most.
const PRUNE_PER_GUESS: i64 = 64;

/// One key of a throttle and the failures it allows within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleKey<'a> {
    /// The key (`user:NAME`, `addr:IP`, `link:ID`, `linkaddr:IP`).
    pub key: &'a str,
    /// How many failures within the window it allows before refusing.
    pub limit: u32,
}

/// A guess let through by [`MetaStore::throttle_attempt`]: its rows, which count as
/// failures until [`MetaStore::throttle_withdraw`] withdraws them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a guess counts as a failure unless it is withdrawn"]
pub struct Guess {
    ids: Vec<i64>,
}

impl MetaStore {
    /// Lets a guess through if none of `keys` had its limit of failures by `now`
    /// (Unix ms), and records it as a failure of each key until `expires_at`; `None`,
    /// with nothing recorded, when one of them is throttled.
    pub async fn throttle_attempt(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
        expires_at: i64,
    ) -> Result<Option<Guess>, MetaError> {
        // A throttled key costs one read, whatever the guesser sends.
        if self.throttle_exceeded(keys, now, 0).await? {
            return Ok(None);
        }
        let mut tx = WriteTx::begin(self).await?;
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO throttle_failures (throttle_key, expires_at) VALUES ($1, $2) \
                 RETURNING id",
            )
            .bind(key.key)
            .bind(expires_at)
            .fetch_one(tx.conn())
            .await?;
            ids.push(id);
        }
        sqlx::query(
            "DELETE FROM throttle_failures WHERE id IN \
             (SELECT id FROM throttle_failures WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(PRUNE_PER_GUESS)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        // Counted after the commit, outside its transaction: see the module's comment.
        let guess = Guess { ids };
        if self.throttle_exceeded(keys, now, 1).await? {
            self.throttle_withdraw(guess).await?;
            return Ok(None);
        }
        Ok(Some(guess))
    }

    /// Whether one of `keys` had its limit of failures by `now` (Unix ms), recording
    /// nothing: one indexed count per key. For a credential checked before it is
    /// counted (an app password, whose check is one lookup and which a Basic client
    /// sends with every request), so a right one costs no write and is still refused
    /// while its keys are throttled.
    pub async fn throttle_refuses(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
    ) -> Result<bool, MetaError> {
        self.throttle_exceeded(keys, now, 0).await
    }

    /// Withdraws a guess let through: it was right, or it was no guess.
    pub async fn throttle_withdraw(&self, guess: Guess) -> Result<(), MetaError> {
        if guess.ids.is_empty() {
            return Ok(());
        }
        let mut tx = WriteTx::begin(self).await?;
        let sql = format!(
            "DELETE FROM throttle_failures WHERE id IN ({})",
            placeholders(1, guess.ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in &guess.ids {
            query = query.bind(*id);
        }
        query.execute(tx.conn()).await?;
        tx.commit().await
    }

    /// Deletes every failure that left its window by `now` (Unix ms); how many. Run by
    /// the maintenance pass.
    pub async fn prune_throttle(&self, now: i64) -> Result<u64, MetaError> {
        let mut tx = WriteTx::begin(self).await?;
        let deleted = sqlx::query("DELETE FROM throttle_failures WHERE expires_at <= $1")
            .bind(now)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// Whether one of `keys` has more than its limit of failures alive at `now`, not
    /// counting `own` of them (the guess being checked, once recorded).
    async fn throttle_exceeded(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
        own: i64,
    ) -> Result<bool, MetaError> {
        for key in keys {
            let failures: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM throttle_failures \
                 WHERE throttle_key = $1 AND expires_at > $2",
            )
            .bind(key.key)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
            if failures - own >= i64::from(key.limit) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
