//! PostgreSQL's LISTEN/NOTIFY, for the server's event bus between nodes that share one
//! database (`cairn-server::notify::pg_bus`). What the messages say is the server's
//! business; this module only carries text on a channel, since it is SQL.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::{MetaError, MetaStore};

/// How the listening connection names itself in `pg_stat_activity`, so an operator (or
/// a test) can find it.
pub const LISTENER_APPLICATION_NAME: &str = "cairn-events";

/// Longest payload PostgreSQL takes in one NOTIFY (its limit is 8,000 bytes).
pub const MAX_NOTIFY_PAYLOAD: usize = 7_900;

impl MetaStore {
    /// Sends `payload` on `channel` to every session listening on it, this process's
    /// included. PostgreSQL only.
    pub async fn notify_channel(&self, channel: &str, payload: &str) -> Result<(), MetaError> {
        self.require_postgres("NOTIFY")?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Listens on `channel` over a connection of its own. PostgreSQL only.
    pub async fn listen_channel(&self, channel: &str) -> Result<ChannelListener, MetaError> {
        self.require_postgres("LISTEN")?;
        let url = self.url.as_deref().unwrap_or_default();
        let options = PgConnectOptions::from_str(url)?.application_name(LISTENER_APPLICATION_NAME);
        // A pool of one, as `PgListener::connect` makes: it is how the listener
        // reconnects.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(channel).await?;
        Ok(ChannelListener {
            listener,
            broken: false,
        })
    }

    fn require_postgres(&self, what: &str) -> Result<(), MetaError> {
        if self.is_postgres() {
            Ok(())
        } else {
            Err(MetaError::Unsupported(format!(
                "{what} needs PostgreSQL; the metadata database is SQLite"
            )))
        }
    }
}

/// What [`ChannelListener::recv`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A payload sent on the channel.
    Message(String),
    /// The connection was lost and is listening again: whatever was sent in between is
    /// lost.
    Reconnected,
}

/// A connection listening on one channel, reconnecting when it is lost.
#[derive(Debug)]
pub struct ChannelListener {
    listener: PgListener,
    /// The last receive failed: the next one connects again first.
    broken: bool,
}

impl ChannelListener {
    /// The next message, or news that the connection was lost and is back. An error
    /// means it is lost and could not be made again yet; call again (after a pause) to
    /// retry. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Heard, MetaError> {
        if self.broken {
            // Any statement on the listener connects it again first, and listens on its
            // channel again.
            sqlx::query("SELECT 1").execute(&mut self.listener).await?;
            self.broken = false;
            return Ok(Heard::Reconnected);
        }
        match self.listener.try_recv().await {
            Ok(Some(n)) => Ok(Heard::Message(n.payload().to_owned())),
            // Lost, and listening again already (sqlx reconnects eagerly).
            Ok(None) => Ok(Heard::Reconnected),
            Err(err) => {
                self.broken = true;
                Err(err.into())
            }
        }
    }
}
