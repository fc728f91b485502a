//! The event bus: "namespace N advanced to S", from the write that committed it to every
//! notification connection that reads N.
//!
//! [`EventBus`] is the seam for running several nodes: a NATS or PostgreSQL
//! LISTEN/NOTIFY bus would publish to the other nodes as well and feed what they publish
//! into a local [`InProcessBus`], so the connections on each node subscribe the same way.
//! Today there is only the in-process bus.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use cairn_core::{JournalSeq, NamespaceId};
use tokio::sync::watch;

/// Carries journal advances to subscribers.
pub trait EventBus: Send + Sync + fmt::Debug + 'static {
    /// Says that `ns` advanced to `seq`. Called after the write committed, on the
    /// writer's task: it must not wait. Publishing a number at or below one already
    /// published for `ns` changes nothing (commits can finish out of order).
    fn publish(&self, ns: NamespaceId, seq: JournalSeq);

    /// Follows `ns` from now on. Advances published before this call are not seen, so
    /// a subscriber reads the namespace's head from the database *after* subscribing.
    fn subscribe(&self, ns: NamespaceId) -> Subscription;
}

/// One subscriber's view of one namespace: the newest number published since it
/// subscribed (0 before any).
pub struct Subscription {
    ns: NamespaceId,
    rx: watch::Receiver<JournalSeq>,
    /// Runs on drop, so the bus can forget namespaces nobody follows.
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("ns", &self.ns)
            .field("seq", &*self.rx.borrow())
            .finish()
    }
}

impl Subscription {
    /// The namespace followed.
    pub fn ns(&self) -> NamespaceId {
        self.ns
    }

    /// Waits until a number newer than the last one seen is published and returns it;
    /// `None` once the bus is gone.
    pub async fn changed(&mut self) -> Option<JournalSeq> {
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
#[derive(Debug, Clone, Default)]
pub struct InProcessBus {
    channels: Arc<Mutex<HashMap<NamespaceId, watch::Sender<JournalSeq>>>>,
}

impl InProcessBus {
    /// How many namespaces have subscribers (for tests and debugging).
    pub fn followed_namespaces(&self) -> usize {
        lock(&self.channels).len()
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
                let newer = seq > *current;
                if newer {
                    *current = seq;
                }
                newer
            });
        }
    }

    fn subscribe(&self, ns: NamespaceId) -> Subscription {
        let rx = lock(&self.channels)
            .entry(ns)
            .or_insert_with(|| watch::channel(JournalSeq(0)).0)
            .subscribe();
        let channels = self.channels.clone();
        Subscription {
            ns,
            rx,
            release: Some(Box::new(move || {
                let mut map = lock(&channels);
                // The releasing subscription's receiver is still alive here, so 1 means
                // it was the last; a subscriber arriving meanwhile waits for the lock.
                if map.get(&ns).is_some_and(|tx| tx.receiver_count() <= 1) {
                    map.remove(&ns);
                }
            })),
        }
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
        assert_eq!(a.changed().await, Some(JournalSeq(5)));
        assert_eq!(b.changed().await, Some(JournalSeq(5)));
        bus.publish(NamespaceId(4), JournalSeq(9));
        bus.publish(ns, JournalSeq(6));
        assert_eq!(a.changed().await, Some(JournalSeq(6)));
        assert_eq!(bus.followed_namespaces(), 1);
        drop(a);
        assert_eq!(bus.followed_namespaces(), 1, "b still follows");
        drop(b);
        assert_eq!(bus.followed_namespaces(), 0);
    }
}
