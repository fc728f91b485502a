//! The event bus between nodes: every node publishes its commits and sign-outs to the
//! others (over NATS, `nats.rs`, or PostgreSQL LISTEN/NOTIFY, `pg_bus.rs`) and feeds
//! what they publish into its own [`InProcessBus`], which its connections follow.
//!
//! The journal stays the truth and the bus is only a wake-up, so nothing here has to be
//! reliable, only *made good*:
//! * a local commit reaches the local connections at once, whatever the bus does;
//! * what goes out waits in a bounded queue for a background task, so a commit never
//!   waits for the network. When the queue is full (the bus is slow or down), the event
//!   is dropped and the task, once it can send again, asks every node to *resync*;
//! * a node that resyncs (told to, or because its own connection to the bus was lost
//!   and is back) re-reads from the database the head of every namespace that has
//!   subscribers on it and publishes those locally; and, when a sign-out may have been
//!   missed (its connection was lost, or a sign-out was among the events dropped),
//!   tells every connection to check its token. Only then: with many nodes, a resync
//!   that made every connection of every node look its token up would be a storm of
//!   queries for an advance lost.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::{JournalSeq, NamespaceId, UserId};
use cairn_meta::MetaStore;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::bus::{EventBus, InProcessBus, SignOut, Subscription};
use crate::metrics::{
    BUS_CONNECTED, BUS_MESSAGES_DROPPED, BUS_MESSAGES_PUBLISHED, BUS_MESSAGES_RECEIVED,
    BUS_RECONNECTS,
};

/// Events waiting to go out. Past this the bus is far behind (or down) and a resync
/// is cheaper than a longer queue.
const OUTBOX: usize = 4096;

/// How many queued events one send takes at most.
const BATCH: usize = 256;

/// After a failed send or read of the heads, wait this long before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// What travels between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A namespace advanced to this number.
    Advance(NamespaceId, JournalSeq),
    /// The uploads in progress into a namespace changed.
    Uploads(NamespaceId),
    /// An account's sessions were signed out (never [`SignOut::Recheck`], which is what
    /// a resync does on each node).
    SignOut {
        user: UserId,
        except: Option<[u8; 32]>,
    },
    /// Events were lost: every node re-reads the heads it follows, and, if `tokens`
    /// (a sign-out was among them), has every connection check its token.
    Resync { tokens: bool },
}

/// The one text format of events on every transport: items separated by a space,
/// `a:NS:SEQ` (an advance), `u:NS` (its uploads changed), `s:USER` or `s:USER:HASH` (a sign-out, the hash of the
/// token that stays signed in as 64 hex digits), `r` (resync) and `r:t` (resync and
/// check tokens). An advance is 6 bytes
/// plus its two numbers. Items a node does not know are skipped, so a newer node may
/// add some.
pub(crate) fn encode(events: &[Event]) -> String {
    let items: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Advance(ns, seq) => format!("a:{}:{}", ns.0, seq.0),
            Event::Uploads(ns) => format!("u:{}", ns.0),
            Event::SignOut { user, except: None } => format!("s:{}", user.0),
            Event::SignOut {
                user,
                except: Some(hash),
            } => format!("s:{}:{}", user.0, hex::encode(hash)),
            Event::Resync { tokens: false } => "r".to_owned(),
            Event::Resync { tokens: true } => "r:t".to_owned(),
        })
        .collect();
    items.join(" ")
}

/// [`encode`]s `events` into as few messages as hold them in at most `max_len` bytes
/// each (PostgreSQL's NOTIFY takes less than 8,000).
pub(crate) fn encode_within(events: &[Event], max_len: usize) -> Vec<String> {
    let mut messages: Vec<String> = Vec::new();
    for event in events {
        let item = encode(std::slice::from_ref(event));
        match messages.last_mut() {
            Some(last) if last.len() + 1 + item.len() <= max_len => {
                last.push(' ');
                last.push_str(&item);
            }
            _ => messages.push(item),
        }
    }
    messages
}

/// Reads what [`encode`] wrote; unknown or malformed items are left out.
pub(crate) fn decode(text: &str) -> Vec<Event> {
    text.split_ascii_whitespace()
        .filter_map(|item| {
            let mut parts = item.split(':');
            let event = match (parts.next()?, parts.next(), parts.next()) {
                ("a", Some(ns), Some(seq)) => {
                    Event::Advance(NamespaceId(ns.parse().ok()?), JournalSeq(seq.parse().ok()?))
                }
                ("s", Some(user), hash) => Event::SignOut {
                    user: UserId(user.parse().ok()?),
                    except: match hash {
                        None => None,
                        Some(hash) => Some(hex::decode(hash).ok()?.try_into().ok()?),
                    },
                },
                ("u", Some(ns), None) => Event::Uploads(NamespaceId(ns.parse().ok()?)),
                ("r", None, None) => Event::Resync { tokens: false },
                ("r", Some("t"), None) => Event::Resync { tokens: true },
                _ => return None,
            };
            parts.next().is_none().then_some(event)
        })
        .collect()
}

/// Keeps the newest advance of each namespace, and one upload event of each, in the
/// order they first came.
fn coalesce(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    for event in events {
        if let Event::Advance(ns, seq) = event {
            if let Some(Event::Advance(_, newest)) = out
                .iter_mut()
                .find(|e| matches!(e, Event::Advance(n, _) if *n == ns))
            {
                *newest = (*newest).max(seq);
                continue;
            }
        }
        if matches!(event, Event::Uploads(_)) && out.contains(&event) {
            continue;
        }
        out.push(event);
    }
    out
}

/// The bus of a node among several: publishes locally at once and queues the event for
/// the other nodes; follows through the local bus.
#[derive(Debug)]
pub(crate) struct SharedBus {
    local: InProcessBus,
    outbox: mpsc::Sender<Event>,
    /// Events that could not be queued: the publisher asks every node to resync.
    lost: Arc<Lost>,
    stop: CancellationToken,
}

impl SharedBus {
    fn send(&self, event: Event) {
        if self.outbox.try_send(event).is_err() {
            metrics::counter!(BUS_MESSAGES_DROPPED).increment(1);
            self.lost.record(&event);
        }
    }
}

impl EventBus for SharedBus {
    fn publish(&self, ns: NamespaceId, seq: JournalSeq) {
        self.local.publish(ns, seq);
        self.send(Event::Advance(ns, seq));
    }

    fn uploads_changed(&self, ns: NamespaceId) {
        self.local.uploads_changed(ns);
        self.send(Event::Uploads(ns));
    }

    fn subscribe(&self, ns: NamespaceId) -> Subscription {
        self.local.subscribe(ns)
    }

    fn sign_out(&self, sign_out: SignOut) {
        self.local.sign_out(sign_out);
        if let SignOut::User { user, except } = sign_out {
            self.send(Event::SignOut { user, except });
        }
    }

    fn sign_outs(&self) -> broadcast::Receiver<SignOut> {
        self.local.sign_outs()
    }

    fn close(&self) {
        self.stop.cancel();
    }
}

/// What a transport is handed to run the bus: the receiving side ([`Inbound`]), the
/// queue of outgoing events with its lost flag ([`Outbound`]), and the signal to stop.
pub(crate) struct Parts {
    pub inbound: Inbound,
    pub outbound: Outbound,
    pub stop: CancellationToken,
}

/// Makes a shared bus over `local` and the parts a transport runs it with.
pub(crate) fn shared_bus(local: InProcessBus, meta: MetaStore) -> (SharedBus, Parts) {
    let (outbox, rx) = mpsc::channel(OUTBOX);
    let lost = Arc::new(Lost::default());
    let stop = CancellationToken::new();
    let inbound = Inbound {
        local: local.clone(),
        meta,
        resync: Arc::default(),
        recheck_tokens: Arc::default(),
    };
    let bus = SharedBus {
        local,
        outbox,
        lost: lost.clone(),
        stop: stop.clone(),
    };
    let parts = Parts {
        inbound,
        outbound: Outbound { rx, lost },
        stop,
    };
    (bus, parts)
}

/// The receiving side of a node: what other nodes say goes into the local bus.
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    local: InProcessBus,
    meta: MetaStore,
    resync: Arc<Notify>,
    /// A resync asked for must also have every connection check its token.
    recheck_tokens: Arc<AtomicBool>,
}

impl Inbound {
    /// Delivers a message from the bus to this node's subscribers.
    pub fn receive(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            tracing::debug!("ignored a bus message that is not UTF-8");
            return;
        };
        for event in decode(text) {
            metrics::counter!(BUS_MESSAGES_RECEIVED).increment(1);
            match event {
                Event::Advance(ns, seq) => self.local.publish(ns, seq),
                Event::Uploads(ns) => self.local.uploads_changed(ns),
                Event::SignOut { user, except } => {
                    self.local.sign_out(SignOut::User { user, except })
                }
                Event::Resync { tokens } => self.resync(tokens),
            }
        }
    }

    /// Asks for a resync (see the module's doc), with a check of every connection's
    /// token if `tokens`; requests made while one runs are served by one more.
    pub fn resync(&self, tokens: bool) {
        if tokens {
            self.recheck_tokens.store(true, Ordering::Release);
        }
        self.resync.notify_one();
    }

    /// The connection to the bus is back after being lost: counts it and resyncs.
    pub fn reconnected(&self) {
        metrics::counter!(BUS_RECONNECTS).increment(1);
        metrics::gauge!(BUS_CONNECTED).set(1.0);
        tracing::info!("event bus connection is back; re-reading the heads followed here");
        self.resync(true);
    }

    /// The connection to the bus was lost.
    pub fn disconnected(&self) {
        metrics::gauge!(BUS_CONNECTED).set(0.0);
        tracing::warn!("event bus connection lost; local notifications go on");
    }

    /// Re-reads the heads of `namespaces` and publishes them locally.
    pub async fn catch_up(&self, namespaces: &[NamespaceId]) -> Result<(), cairn_meta::MetaError> {
        for (ns, seq) in self.meta.journal_heads(namespaces).await? {
            self.local.publish(ns, seq);
        }
        Ok(())
    }

    /// Serves resync requests until `stop`. `ready` runs first each time: the
    /// transport's way of making sure it is listening again before the heads are read,
    /// so that no advance falls between the two.
    pub async fn serve_resyncs<F, Fut>(self, stop: CancellationToken, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.resync.notified() => {}
            }
            ready().await;
            let followed = self.local.followed();
            if let Err(err) = self.catch_up(&followed).await {
                tracing::warn!(%err, "cannot re-read the journal heads; trying again");
                tokio::time::sleep(RETRY).await;
                self.resync(false);
                continue;
            }
            if self.recheck_tokens.swap(false, Ordering::AcqRel) {
                self.local.sign_out(SignOut::Recheck);
            }
        }
    }
}

/// What the outgoing side could not send since its last resync went out.
#[derive(Debug, Default)]
struct Lost {
    advances: AtomicBool,
    sign_outs: AtomicBool,
}

impl Lost {
    fn record(&self, event: &Event) {
        let flag = match event {
            // A lost upload event only costs a streaming head start: the commit's
            // advance still comes. Counted with advances all the same.
            Event::Advance(..) | Event::Uploads(_) | Event::Resync { tokens: false } => {
                &self.advances
            }
            Event::SignOut { .. } | Event::Resync { tokens: true } => &self.sign_outs,
        };
        flag.store(true, Ordering::Release);
    }

    fn any(&self) -> bool {
        self.advances.load(Ordering::Acquire) || self.sign_outs.load(Ordering::Acquire)
    }

    /// The resync that makes good what was lost, if anything was; forgets it.
    fn take(&self) -> Option<Event> {
        let tokens = self.sign_outs.swap(false, Ordering::AcqRel);
        let advances = self.advances.swap(false, Ordering::AcqRel);
        (tokens || advances).then_some(Event::Resync { tokens })
    }
}

/// The outgoing side: the queue and what was dropped from it.
#[derive(Debug)]
pub(crate) struct Outbound {
    rx: mpsc::Receiver<Event>,
    lost: Arc<Lost>,
}

impl Outbound {
    /// Hands queued events to `send` in batches (advances coalesced per namespace)
    /// until `stop`. When events were dropped, or `send` failed (it says so by
    /// returning `false`), the next batch carries a resync, retried every second until
    /// one goes out.
    pub async fn run<F, Fut>(mut self, stop: CancellationToken, mut send: F)
    where
        F: FnMut(Vec<Event>) -> Fut,
        Fut: Future<Output = bool>,
    {
        loop {
            let lost = self.lost.any();
            let first = tokio::select! {
                () = stop.cancelled() => return,
                event = self.rx.recv() => match event {
                    Some(event) => Some(event),
                    None => return,
                },
                () = tokio::time::sleep(RETRY), if lost => None,
            };
            let mut batch: Vec<Event> = first.into_iter().collect();
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            batch.extend(self.lost.take());
            let batch = coalesce(batch);
            let count = batch.len() as u64;
            let resync = batch.iter().any(|e| matches!(e, Event::Resync { .. }));
            if send(batch.clone()).await {
                metrics::counter!(BUS_MESSAGES_PUBLISHED).increment(count);
            } else {
                metrics::counter!(BUS_MESSAGES_DROPPED).increment(count);
                for event in &batch {
                    self.lost.record(event);
                }
                if !resync {
                    tracing::warn!("cannot publish to the event bus; other nodes resync later");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_strangers_are_skipped() {
        let events = [
            Event::Advance(NamespaceId(7), JournalSeq(123)),
            Event::Uploads(NamespaceId(7)),
            Event::SignOut {
                user: UserId(3),
                except: None,
            },
            Event::SignOut {
                user: UserId(4),
                except: Some([0xab; 32]),
            },
            Event::Resync { tokens: false },
            Event::Resync { tokens: true },
        ];
        let text = encode(&events);
        assert_eq!(
            text,
            format!("a:7:123 u:7 s:3 s:4:{} r r:t", "ab".repeat(32)),
            "the format other nodes read"
        );
        assert_eq!(decode(&text), events);
        assert_eq!(
            decode("x:1 a:1 a:1:2:3 a:x:1 s:1:zz r:1 a:2:5"),
            [Event::Advance(NamespaceId(2), JournalSeq(5))]
        );
    }

    #[test]
    fn a_resync_checks_tokens_only_when_a_sign_out_was_lost() {
        let lost = Lost::default();
        assert_eq!(lost.take(), None);
        lost.record(&Event::Advance(NamespaceId(1), JournalSeq(1)));
        assert!(lost.any());
        assert_eq!(lost.take(), Some(Event::Resync { tokens: false }));
        assert!(!lost.any());
        lost.record(&Event::Advance(NamespaceId(1), JournalSeq(2)));
        lost.record(&Event::SignOut {
            user: UserId(1),
            except: None,
        });
        assert_eq!(lost.take(), Some(Event::Resync { tokens: true }));
        // A resync that could not go out is owed again, as it was.
        lost.record(&Event::Resync { tokens: true });
        assert_eq!(lost.take(), Some(Event::Resync { tokens: true }));
    }

    #[test]
    fn messages_stay_within_their_length() {
        let events: Vec<Event> = (1..=1000)
            .map(|n| Event::Advance(NamespaceId(n), JournalSeq(n * 1000)))
            .collect();
        let messages = encode_within(&events, 100);
        assert!(messages.iter().all(|m| m.len() <= 100));
        let back: Vec<Event> = messages.iter().flat_map(|m| decode(m)).collect();
        assert_eq!(back, events);
    }

    #[test]
    fn a_batch_keeps_the_newest_advance_of_each_namespace() {
        let a = |ns, seq| Event::Advance(NamespaceId(ns), JournalSeq(seq));
        assert_eq!(
            coalesce(vec![
                a(1, 2),
                a(2, 1),
                a(1, 5),
                Event::Resync { tokens: false },
                a(1, 4)
            ]),
            [a(1, 5), a(2, 1), Event::Resync { tokens: false }]
        );
    }
}
