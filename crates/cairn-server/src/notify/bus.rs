//! The event bus: "namespace N advanced to S", from the write that committed it to every
//! notification connection that reads N.
//!
//! [`EventBus`] is the seam for running several nodes: the shared bus (`shared.rs`,
//! over NATS or PostgreSQL LISTEN/NOTIFY) publishes to the other nodes as well and
//! feeds what they publish into a local [`InProcessBus`], so the connections on each
//! node subscribe the same way.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use cairn_core::{JournalSeq, NamespaceId, UserId};
use tokio::sync::{broadcast, watch};

/// Carries journal advances to subscribers.
pub trait EventBus: Send + Sync + fmt::Debug + 'static {
    /// Says that `ns` advanced to `seq`. Called after the write committed, on the
    /// writer's task: it must not wait. Publishing a number at or below one already
    /// published for `ns` changes nothing (commits can finish out of order).
    fn publish(&self, ns: NamespaceId, seq: JournalSeq);

    /// Says that the uploads in progress into `ns` changed (one started, stored a
    /// block, or ended): streaming sync. Coalesced like advances; must not wait.
    fn uploads_changed(&self, ns: NamespaceId);

    /// Follows `ns` from now on. Advances published before this call are not seen, so
    /// a subscriber reads the namespace's head from the database *after* subscribing.
    fn subscribe(&self, ns: NamespaceId) -> Subscription;

    /// Says that an account's sessions were signed out, to every node's connections.
    /// Like `publish`, it must not wait.
    fn sign_out(&self, sign_out: SignOut);

    /// Follows sign-outs from now on.
    fn sign_outs(&self) -> broadcast::Receiver<SignOut>;

    /// Stops talking to other nodes (at shutdown); local delivery goes on.
    fn close(&self) {}
}

/// Why notification connections must look at their accounts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOut {
    /// An account whose sessions were signed out (its password changed, or it was
    /// disabled or deleted): its open notification connections end, but that of the
    /// token whose hash is `except`.
    User {
        user: UserId,
        /// The hash of the token that stays signed in, if one does.
        except: Option<[u8; 32]>,
    },
    /// Sign-outs may have been missed (the bus between nodes was down): every
    /// connection checks whether its token still works.
    Recheck,
}

/// Told when a namespace gains its first subscriber on this node (`true`) or loses its
/// last (`false`), in that order for each namespace; called with the bus's lock held,
/// so it must return at once.
pub type InterestHook = Arc<dyn Fn(NamespaceId, bool) + Send + Sync>;

/// Where a namespace stands, as the bus carries it: its newest journal number, and a
/// count of changes to its uploads in progress (only ever compared for a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub seq: JournalSeq,
    pub uploads: u64,
}

impl Default for Heads {
    fn default() -> Self {
        Self {
            seq: JournalSeq(0),
            uploads: 0,
        }
    }
}

/// One subscriber's view of one namespace: the newest number published since it
/// subscribed (0 before any).
pub struct Subscription {
    ns: NamespaceId,
    rx: watch::Receiver<Heads>,
    /// Runs on drop, so the bus can forget namespaces nobody follows.
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("ns", &self.ns)
            .field("heads", &*self.rx.borrow())
            .finish()
    }
}

impl Subscription {
    /// The namespace followed.
    pub fn ns(&self) -> NamespaceId {
        self.ns
    }

    /// Waits until a number newer than the last one seen is published, or the uploads
    /// change, and returns where the namespace stands; `None` once the bus is gone.
    pub async fn changed(&mut self) -> Option<Heads> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// The bus inside one process: one `tokio::sync::watch` channel per namespace that
/// somebody follows.
///
/// Why `watch` and not `broadcast`: a watch channel holds one value however many
/// subscribers it has, and a subscriber that falls behind simply sees the newest
/// number next time it looks. That is exactly the promise ("coalesced, never lost"):
/// a notification only says where the journal stands, so skipping intermediate
/// numbers loses nothing, and there is no per-subscriber queue to fill up (broadcast
/// keeps a ring buffer and answers a slow reader with `Lagged`). Per connection the
/// cost is one receiver: a pointer and a version number. This is what keeps 10,000
/// idle connections small.
#[derive(Clone)]
pub struct InProcessBus {
    channels: Arc<Mutex<HashMap<NamespaceId, watch::Sender<Heads>>>>,
    sign_outs: broadcast::Sender<SignOut>,
    interest: Option<InterestHook>,
}

impl fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBus")
            .field("followed", &self.followed_namespaces())
            .finish_non_exhaustive()
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self {
            channels: Arc::default(),
            // Sign-outs are rare; a feed that falls this far behind checks its token.
            sign_outs: broadcast::channel(64).0,
            interest: None,
        }
    }
}

impl InProcessBus {
    /// A bus that tells `hook` when a namespace gains or loses its subscribers here.
    pub fn with_interest(hook: InterestHook) -> Self {
        Self {
            interest: Some(hook),
            ..Self::default()
        }
    }

    /// How many namespaces have subscribers (for tests and debugging).
    pub fn followed_namespaces(&self) -> usize {
        lock(&self.channels).len()
    }

    /// The namespaces that have subscribers on this node.
    pub fn followed(&self) -> Vec<NamespaceId> {
        lock(&self.channels).keys().copied().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing in the critical sections can leave the map inconsistent, so a panic
    // elsewhere while holding the lock is no reason to stop notifying.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventBus for InProcessBus {
    fn publish(&self, ns: NamespaceId, seq: JournalSeq) {
        // Nobody follows the namespace: nobody to tell. A later subscriber reads the
        // head from the database.
        if let Some(tx) = lock(&self.channels).get(&ns) {
            tx.send_if_modified(|current| {
                let newer = seq > current.seq;
                if newer {
                    current.seq = seq;
                }
                newer
            });
        }
    }

    fn uploads_changed(&self, ns: NamespaceId) {
        if let Some(tx) = lock(&self.channels).get(&ns) {
            tx.send_modify(|current| current.uploads = current.uploads.wrapping_add(1));
        }
    }

    fn subscribe(&self, ns: NamespaceId) -> Subscription {
        let rx = {
            let mut map = lock(&self.channels);
            map.entry(ns)
                .or_insert_with(|| {
                    if let Some(hook) = &self.interest {
                        hook(ns, true);
                    }
                    watch::channel(Heads::default()).0
                })
                .subscribe()
        };
        let channels = self.channels.clone();
        let interest = self.interest.clone();
        Subscription {
            ns,
            rx,
            release: Some(Box::new(move || {
                let mut map = lock(&channels);
                // The releasing subscription's receiver is still alive here, so 1 means
                // it was the last; a subscriber arriving meanwhile waits for the lock.
                if map.get(&ns).is_some_and(|tx| tx.receiver_count() <= 1) {
                    map.remove(&ns);
                    if let Some(hook) = &interest {
                        hook(ns, false);
                    }
                }
            })),
        }
    }

    fn sign_out(&self, sign_out: SignOut) {
        // No receiver means no open connection: nothing to end.
        let _ = self.sign_outs.send(sign_out);
    }

    fn sign_outs(&self) -> broadcast::Receiver<SignOut> {
        self.sign_outs.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advances_coalesce_never_go_back_and_idle_namespaces_are_forgotten() {
        let bus = InProcessBus::default();
        let ns = NamespaceId(3);
        // Before anyone follows: dropped, not queued.
        bus.publish(ns, JournalSeq(1));
        let mut a = bus.subscribe(ns);
        let mut b = bus.subscribe(ns);
        bus.publish(ns, JournalSeq(2));
        bus.publish(ns, JournalSeq(5));
        // Out of order: a slower commit finishing after a newer one.
        bus.publish(ns, JournalSeq(4));
        assert_eq!(a.changed().await.map(|h| h.seq), Some(JournalSeq(5)));
        assert_eq!(b.changed().await.map(|h| h.seq), Some(JournalSeq(5)));
        bus.publish(NamespaceId(4), JournalSeq(9));
        bus.publish(ns, JournalSeq(6));
        assert_eq!(a.changed().await.map(|h| h.seq), Some(JournalSeq(6)));
        // An upload's progress wakes the subscriber without moving the journal.
        bus.uploads_changed(ns);
        let heads = a.changed().await.unwrap();
        assert_eq!((heads.seq, heads.uploads), (JournalSeq(6), 1));
        assert_eq!(bus.followed_namespaces(), 1);
        drop(a);
        assert_eq!(bus.followed_namespaces(), 1, "b still follows");
        drop(b);
        assert_eq!(bus.followed_namespaces(), 0);
    }

    #[test]
    fn the_interest_hook_hears_first_and_last_subscribers() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let bus = InProcessBus::with_interest(Arc::new(move |ns, followed| {
            lock(&log).push((ns.0, followed));
        }));
        let a = bus.subscribe(NamespaceId(1));
        let b = bus.subscribe(NamespaceId(1));
        let c = bus.subscribe(NamespaceId(2));
        assert_eq!(*lock(&heard), [(1, true), (2, true)]);
        let mut followed = bus.followed();
        followed.sort();
        assert_eq!(followed, [NamespaceId(1), NamespaceId(2)]);
        drop(a);
        assert_eq!(lock(&heard).len(), 2, "b still follows 1");
        drop((b, c));
        assert_eq!(
            *lock(&heard),
            [(1, true), (2, true), (1, false), (2, false)]
        );
        let _again = bus.subscribe(NamespaceId(1));
        assert_eq!(lock(&heard).last(), Some(&(1, true)));
    }
}
