//! Push notifications: "namespace N advanced to S", to every connected device of every
//! account that reads N, so clients read the delta at once instead of polling it.
//!
//! Three transports carry the same [`proto::Notification`]s: a WebSocket (`ws.rs`, the
//! primary), server-sent events (`sse.rs`) and long-poll (`poll.rs`), the last two for
//! proxies that block WebSockets. Each connection is a [`Feed`]: it subscribes to the
//! [`EventBus`] first, then reads the heads from the database, so no commit can fall
//! between the two. Every commit reaches the bus through one hook on the metadata store
//! (`MetaStore::on_commit`, set in `Application::with_stores`), fired after its
//! transaction commits.

mod bus;
mod nats;
mod pg_bus;
mod poll;
mod shared;
mod sse;
mod ws;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use cairn_core::{JournalSeq, NamespaceId, UserId};
use cairn_meta::MetaStore;
use cairn_proto as proto;
use tokio_util::sync::CancellationToken;

pub use bus::{EventBus, Heads, InProcessBus, InterestHook, SignOut, Subscription};

use crate::auth::AuthUser;
use crate::config::Events;
use crate::delta::{encode_cursor, Position};
use crate::error::ApiError;
use crate::metrics::NOTIFY_CONNECTIONS;
use crate::routes::{endpoint, Routes};
use crate::state::AppState;
use poll::{__path_poll, poll};
use sse::{__path_stream, stream};
use ws::{__path_upgrade, upgrade};

/// The bus `events` names: in this process only, or shared with the other nodes of the
/// deployment (every node on the metadata database `meta`). A shared bus that cannot be
/// reached stops the start.
pub async fn open_bus(events: &Events, meta: &MetaStore) -> anyhow::Result<Arc<dyn EventBus>> {
    if *events == Events::InProcess {
        return Ok(Arc::new(InProcessBus::default()));
    }
    // Names this deployment's subjects or channel, so that deployments sharing a NATS
    // server or a PostgreSQL cluster (tests do, one schema each) never hear each other.
    let fresh = hex::encode(rand::random::<[u8; 8]>());
    let deployment = meta.shared_secret("event_bus_deployment", &fresh).await?;
    Ok(match events {
        Events::InProcess => unreachable!("answered above"),
        Events::Nats(url) => Arc::new(nats::start(url, &deployment, meta.clone()).await?),
        Events::Postgres => Arc::new(pg_bus::start(&deployment, meta.clone()).await?),
    })
}

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(upgrade))
        .at(endpoint!(stream))
        .at(endpoint!(poll))
        .build()
}

/// The server's side of notifications: the bus, the count of open connections, and the
/// signals that end them: all of them when the server shuts down, an account's when it
/// is signed out. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    bus: Arc<dyn EventBus>,
    connections: Arc<AtomicI64>,
    shutdown: CancellationToken,
    heartbeat: Duration,
}

impl Notifier {
    /// A notifier over `bus`; WebSocket pings and SSE comments every `heartbeat`.
    pub fn new(bus: Arc<dyn EventBus>, heartbeat: Duration) -> Self {
        Self {
            bus,
            connections: Arc::default(),
            shutdown: CancellationToken::new(),
            heartbeat,
        }
    }

    /// Ends the open notification connections of `user`, except the one opened with
    /// the token whose hash is `except`, on this server and, through the bus, on every
    /// other. The account's tokens were revoked or refused already; this makes its
    /// connections notice at once rather than at their next request. (Changes made by
    /// `cairn admin` on the data directory are noticed at the next request instead.)
    pub(crate) fn sign_out(&self, user: UserId, except: Option<[u8; 32]>) {
        self.bus.sign_out(SignOut::User { user, except });
    }

    /// The bus commits are published to.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// Open notification connections on this server (WebSocket, SSE and waiting polls);
    /// `cairn_notify_connections` is the same count summed over the process.
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Ends every notification connection, now and from now on. Graceful shutdown
    /// calls it: otherwise open streams would keep the server waiting for them forever.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
        self.bus.close();
    }
}

/// Counts one open connection until dropped, on every way out (a normal close, an
/// error, a client that vanished, a cancelled handler).
struct ConnectionGuard {
    connections: Arc<AtomicI64>,
}

impl ConnectionGuard {
    fn new(notifier: &Notifier) -> Self {
        notifier.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(NOTIFY_CONNECTIONS).increment(1.0);
        Self {
            connections: notifier.connections.clone(),
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(NOTIFY_CONNECTIONS).decrement(1.0);
    }
}

/// The namespaces whose advances `user` is told about: those it reads, the home first.
pub(crate) async fn readable_namespaces(
    state: &AppState,
    user: UserId,
    home: NamespaceId,
) -> Result<Vec<NamespaceId>, ApiError> {
    let mut namespaces = vec![home];
    for m in state.meta.memberships_of(user).await? {
        namespaces.push(m.ns);
    }
    Ok(namespaces)
}

/// One connection's stream of notifications.
struct Feed {
    /// Per namespace: its subscription and where this connection was told it stands.
    watches: Vec<(Subscription, Heads)>,
    /// Told next, before waiting again: the uploads notification of a namespace whose
    /// journal advanced in the same wake-up.
    queued: Option<proto::Notification>,
    /// Whose feed this is: when the home advances, the shared folders it reads may
    /// have changed (a mount folder is made or removed in the home), so the feed
    /// follows them again. (Ids only: ten thousand idle feeds hold no more than they
    /// need.)
    user: UserId,
    home: NamespaceId,
    /// The token the connection was opened with, by hash, to tell whether a sign-out
    /// spares it.
    token_hash: [u8; 32],
    sign_outs: tokio::sync::broadcast::Receiver<SignOut>,
    /// Set once the account was signed out: the feed has ended for good.
    signed_out: bool,
    state: AppState,
    shutdown: CancellationToken,
    _guard: ConnectionGuard,
}

impl Feed {
    /// Subscribes to the namespaces `user` reads and then reads their heads, in that
    /// order, so every commit is either in the heads or arrives through the
    /// subscription.
    async fn open(state: &AppState, auth: &AuthUser) -> Result<(Feed, Vec<Position>), ApiError> {
        let user = &auth.user;
        let guard = ConnectionGuard::new(&state.notify);
        let sign_outs = state.notify.bus.sign_outs();
        let namespaces = readable_namespaces(state, user.id, user.home_ns).await?;
        let subscriptions: Vec<Subscription> = namespaces
            .iter()
            .map(|ns| state.notify.bus.subscribe(*ns))
            .collect();
        let mut heads = Vec::with_capacity(namespaces.len());
        for ns in &namespaces {
            heads.push(Position {
                ns: *ns,
                seq: state.meta.journal_head(*ns).await?,
            });
        }
        let watches = subscriptions
            .into_iter()
            .zip(&heads)
            .map(|(sub, head)| {
                (
                    sub,
                    Heads {
                        seq: head.seq,
                        uploads: 0,
                    },
                )
            })
            .collect();
        let feed = Feed {
            watches,
            queued: None,
            user: user.id,
            home: user.home_ns,
            token_hash: auth.token_hash(),
            sign_outs,
            signed_out: false,
            state: state.clone(),
            shutdown: state.notify.shutdown.clone(),
            _guard: guard,
        };
        Ok((feed, heads))
    }

    /// Follows the shared folders the user reads now: subscribes to new ones (their
    /// changes reach the client through the delta the home's advance prompts) and
    /// drops those it left. A failed lookup keeps the old set; the next advance of the
    /// home tries again.
    async fn follow_mounts(&mut self) {
        let Ok(namespaces) = readable_namespaces(&self.state, self.user, self.home).await else {
            return;
        };
        self.watches
            .retain(|(sub, _)| namespaces.contains(&sub.ns()));
        for ns in namespaces {
            if !self.watches.iter().any(|(sub, _)| sub.ns() == ns) {
                let sub = self.state.notify.bus.subscribe(ns);
                let head = self
                    .state
                    .meta
                    .journal_head(ns)
                    .await
                    .unwrap_or(JournalSeq(0));
                self.watches.push((
                    sub,
                    Heads {
                        seq: head,
                        uploads: 0,
                    },
                ));
            }
        }
    }

    /// Whether the feed ended because its account was signed out (not because the
    /// server is shutting down).
    fn signed_out(&self) -> bool {
        self.signed_out
    }

    /// Whether the connection's token still opens the account (a failed lookup counts
    /// as yes: the next request will tell).
    async fn token_works(&self) -> bool {
        match self.state.meta.token_owner(&self.token_hash).await {
            Ok(Some(owner)) => owner.user.is_enabled(),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// From now on, tell only of advances past `positions` (a poll's cursor).
    fn told(&mut self, positions: &[Position]) {
        for (sub, told) in &mut self.watches {
            if let Some(p) = positions.iter().find(|p| p.ns == sub.ns()) {
                told.seq = p.seq;
            }
        }
    }

    /// Waits for a namespace to advance past what this connection was told, and says
    /// so. `None` when the server is shutting down (or the bus is gone), or when the
    /// account was signed out ([`Feed::signed_out`]).
    async fn next(&mut self) -> Option<proto::Notification> {
        loop {
            if self.signed_out {
                return None;
            }
            if let Some(queued) = self.queued.take() {
                return Some(queued);
            }
            let (user, token) = (self.user, self.token_hash);
            let sign_outs = &mut self.sign_outs;
            let signed_out = async move {
                loop {
                    match sign_outs.recv().await {
                        Ok(SignOut::User { user: u, except })
                            if u == user && except != Some(token) =>
                        {
                            return true
                        }
                        Ok(SignOut::User { .. }) => {}
                        // Missed some: the token itself says whether it still works.
                        Ok(SignOut::Recheck)
                        | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return false,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            };
            let woke =
                if self.watches.is_empty() {
                    tokio::select! {
                        () = self.shutdown.cancelled() => return None,
                        out = signed_out => Err(out),
                    }
                } else {
                    let changed =
                        futures::future::select_all(self.watches.iter_mut().enumerate().map(
                            |(i, (sub, _))| Box::pin(async move { (i, sub.changed().await) }),
                        ));
                    tokio::select! {
                        ((i, seq), _, _) = changed => Ok((i, seq?)),
                        () = self.shutdown.cancelled() => return None,
                        out = signed_out => Err(out),
                    }
                };
            let (i, now) = match woke {
                Ok(advance) => advance,
                Err(signed_out) => {
                    self.signed_out = signed_out || !self.token_works().await;
                    continue;
                }
            };
            let (sub, told) = &mut self.watches[i];
            let ns = sub.ns();
            let uploads =
                (now.uploads != told.uploads).then_some(proto::Notification::Uploads { ns: ns.0 });
            told.uploads = now.uploads;
            // The bus may repeat what the heads already said: a commit that finished
            // between subscribing and reading the head.
            if now.seq > told.seq {
                told.seq = now.seq;
                self.queued = uploads;
                if ns == self.home {
                    self.follow_mounts().await;
                }
                return Some(advanced(ns, now.seq));
            }
            if uploads.is_some() {
                return uploads;
            }
        }
    }
}

fn head(p: Position) -> proto::Notification {
    proto::Notification::Head {
        ns: p.ns.0,
        seq: p.seq.0,
        cursor: encode_cursor(&[p]),
    }
}

fn advanced(ns: NamespaceId, seq: JournalSeq) -> proto::Notification {
    proto::Notification::Advanced {
        ns: ns.0,
        seq: seq.0,
        cursor: encode_cursor(&[Position { ns, seq }]),
    }
}

/// A notification as the JSON text every transport sends.
fn to_json(n: &proto::Notification) -> String {
    serde_json::to_string(n).expect("a notification serializes")
}
