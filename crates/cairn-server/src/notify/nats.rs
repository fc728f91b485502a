//! The shared bus over NATS (core publish/subscribe: a lost message is made good by a
//! resync, so JetStream's persistence would buy nothing).
//!
//! One subject per namespace, `cairn.DEPLOYMENT.ns.NS`, which a node subscribes to only
//! while a connection on it follows the namespace, and one subject every node
//! subscribes to, `cairn.DEPLOYMENT.all`, for sign-outs and resyncs. So a node receives
//! the advances of the namespaces its own connections follow and no others: with
//! millions of accounts spread over many nodes, one shared subject would send every
//! commit to every node, and each node would throw nearly all of them away. The price
//! is a NATS subscription per followed namespace (the NATS server matches them in a
//! subject tree; a node with 10,000 connections holds about as many), made and dropped
//! as connections come and go.
//!
//! A new subscription is not active until the NATS server has seen it, and a connection
//! read its heads before that, so after subscribing the node flushes (a round trip that
//! returns once the server has processed the subscription) and reads the namespace's
//! head again; anything committed after that read arrives on the subject.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_nats::{Client, ConnectOptions, Event as NatsEvent, Subscriber};
use cairn_core::NamespaceId;
use cairn_meta::MetaStore;
use futures::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::bus::InProcessBus;
use super::shared::{encode, shared_bus, Event, Inbound, SharedBus};
use crate::metrics::BUS_CONNECTED;

/// The subjects of one deployment (all nodes on one metadata database).
#[derive(Debug, Clone)]
struct Subjects {
    prefix: String,
}

impl Subjects {
    fn namespace(&self, ns: NamespaceId) -> String {
        format!("{}.ns.{}", self.prefix, ns.0)
    }

    fn all(&self) -> String {
        format!("{}.all", self.prefix)
    }

    fn of(&self, event: &Event) -> String {
        match event {
            Event::Advance(ns, _) | Event::Uploads(ns) => self.namespace(*ns),
            Event::SignOut { .. } | Event::Resync { .. } => self.all(),
        }
    }
}

/// Namespaces that gained (`true`) or lost (`false`) their subscribers on this node,
/// in order, for the task that subscribes on NATS.
#[derive(Default)]
struct Interest {
    changes: Mutex<Vec<(NamespaceId, bool)>>,
    changed: Notify,
}

/// A task that ends when its handle is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to NATS at `url` (a failure stops the start) and runs the bus of this node
/// of `deployment` over it.
pub(crate) async fn start(
    url: &str,
    deployment: &str,
    meta: MetaStore,
) -> anyhow::Result<SharedBus> {
    let interest = Arc::new(Interest::default());
    let hook = interest.clone();
    let local = InProcessBus::with_interest(Arc::new(move |ns, followed| {
        hook.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ns, followed));
        hook.changed.notify_one();
    }));
    let (bus, parts) = shared_bus(local, meta);
    let (events_tx, events) = mpsc::unbounded_channel();
    let client = ConnectOptions::new()
        .name("cairn")
        // A node has delivered its own events locally already.
        .no_echo()
        // Reconnect forever, quickly at first: while the bus is down, other nodes'
        // commits reach this node's connections only after the resync that follows.
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50u64 << attempts.min(7)).min(5_000))
        })
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        })
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to the event bus at {url}"))?;
    metrics::gauge!(BUS_CONNECTED).set(1.0);
    let subjects = Subjects {
        prefix: format!("cairn.{deployment}"),
    };
    let all = client
        .subscribe(subjects.all())
        .await
        .context("cannot subscribe on the event bus")?;
    let stop = parts.stop;
    let inbound = parts.inbound;
    tokio::spawn(stopped_by(stop.clone(), forward(all, inbound.clone())));
    tokio::spawn(watch_connection(events, inbound.clone(), stop.clone()));
    tokio::spawn(follow(
        client.clone(),
        subjects.clone(),
        interest,
        inbound.clone(),
        stop.clone(),
    ));
    let flusher = client.clone();
    tokio::spawn(inbound.serve_resyncs(stop.clone(), move || {
        let client = flusher.clone();
        // Once the server answers the flush it has every subscription of this
        // connection again (async-nats sends them first when it reconnects).
        async move {
            let _ = client.flush().await;
        }
    }));
    tokio::spawn(parts.outbound.run(stop, move |batch| {
        let (client, subjects) = (client.clone(), subjects.clone());
        async move {
            for event in &batch {
                let payload = encode(std::slice::from_ref(event));
                if let Err(err) = client.publish(subjects.of(event), payload.into()).await {
                    tracing::warn!(%err, "cannot publish to NATS");
                    return false;
                }
            }
            true
        }
    }));
    Ok(bus)
}

/// Runs `task` until `stop`.
async fn stopped_by(stop: CancellationToken, task: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = task => {}
    }
}

/// Hands every message of `subscriber` to this node.
async fn forward(mut subscriber: Subscriber, inbound: Inbound) {
    while let Some(message) = subscriber.next().await {
        inbound.receive(&message.payload);
    }
}

/// Follows the connection's state: a reconnection after a loss resyncs.
async fn watch_connection(
    mut events: mpsc::UnboundedReceiver<NatsEvent>,
    inbound: Inbound,
    stop: CancellationToken,
) {
    let mut lost = false;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        match event {
            NatsEvent::Disconnected => {
                lost = true;
                inbound.disconnected();
            }
            NatsEvent::Connected if lost => {
                lost = false;
                inbound.reconnected();
            }
            NatsEvent::Connected => {}
            // The client dropped messages a subscription could not take in time: which
            // ones is unknown, so everything is read again.
            NatsEvent::SlowConsumer(_) => {
                tracing::warn!("event bus (NATS): slow consumer; resyncing");
                inbound.resync(true);
            }
            other => tracing::warn!(event = %other, "event bus (NATS)"),
        }
    }
}

/// Subscribes to the subject of each namespace followed here, and unsubscribes when it
/// no longer is; after subscribing, reads the new namespaces' heads again (see the
/// module's doc).
async fn follow(
    client: Client,
    subjects: Subjects,
    interest: Arc<Interest>,
    inbound: Inbound,
    stop: CancellationToken,
) {
    let mut subscribed: HashMap<NamespaceId, AbortOnDrop> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = interest.changed.notified() => {}
        }
        let changes =
            std::mem::take(&mut *interest.changes.lock().unwrap_or_else(|e| e.into_inner()));
        let mut new = Vec::new();
        for (ns, followed) in changes {
            if !followed {
                subscribed.remove(&ns);
                new.retain(|n| *n != ns);
                continue;
            }
            match client.subscribe(subjects.namespace(ns)).await {
                Ok(subscriber) => {
                    let task = tokio::spawn(forward(subscriber, inbound.clone()));
                    subscribed.insert(ns, AbortOnDrop(task));
                    new.push(ns);
                }
                // Only when the client is closed for good: nothing to retry.
                Err(err) => tracing::error!(%err, ns = ns.0, "cannot subscribe on NATS"),
            }
        }
        if new.is_empty() {
            continue;
        }
        let _ = client.flush().await;
        if let Err(err) = inbound.catch_up(&new).await {
            tracing::warn!(%err, "cannot read the heads of newly followed namespaces");
            inbound.resync(false);
        }
    }
}
