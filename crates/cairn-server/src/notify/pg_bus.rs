//! The shared bus over PostgreSQL's LISTEN/NOTIFY on the metadata database, for
//! operators without NATS.
//!
//! One channel per deployment, `cairn_events_DEPLOYMENT`, which every node listens on:
//! PostgreSQL has no subject matching, and a channel per namespace would cost a LISTEN
//! per followed namespace on one connection. Each NOTIFY carries a batch of events (up
//! to `MAX_NOTIFY_PAYLOAD` bytes, about 400 advances), so a burst of commits costs few
//! notifications. Every node receives every event and keeps those its connections
//! follow; PostgreSQL serializes NOTIFYs through one queue per cluster, which is why
//! NATS is the bus for many nodes.

use std::time::Duration;

use anyhow::Context;
use cairn_meta::{Heard, MetaStore, MAX_NOTIFY_PAYLOAD};
use tokio_util::sync::CancellationToken;

use super::bus::InProcessBus;
use super::shared::{encode_within, shared_bus, Inbound, SharedBus};
use crate::metrics::BUS_CONNECTED;

/// After a failed attempt to listen again, wait this long before the next.
const RETRY: Duration = Duration::from_millis(500);

/// Listens on the deployment's channel (a failure stops the start) and runs the bus
/// of this node over it.
pub(crate) async fn start(deployment: &str, meta: MetaStore) -> anyhow::Result<SharedBus> {
    let channel = format!("cairn_events_{deployment}");
    let listener = meta
        .listen_channel(&channel)
        .await
        .context("cannot LISTEN on the metadata database for the event bus")?;
    metrics::gauge!(BUS_CONNECTED).set(1.0);
    let (bus, parts) = shared_bus(InProcessBus::default(), meta.clone());
    let stop = parts.stop;
    tokio::spawn(listen(listener, parts.inbound.clone(), stop.clone()));
    // LISTEN is in place again before the listener says it reconnected.
    tokio::spawn(parts.inbound.serve_resyncs(stop.clone(), || async {}));
    tokio::spawn(parts.outbound.run(stop, move |batch| {
        let (meta, channel) = (meta.clone(), channel.clone());
        async move {
            for payload in encode_within(&batch, MAX_NOTIFY_PAYLOAD) {
                if let Err(err) = meta.notify_channel(&channel, &payload).await {
                    tracing::warn!(%err, "cannot NOTIFY the event bus");
                    return false;
                }
            }
            true
        }
    }));
    Ok(bus)
}

/// Hands what the channel carries to this node; a lost connection is made again, and
/// then resyncs.
async fn listen(
    mut listener: cairn_meta::ChannelListener,
    inbound: Inbound,
    stop: CancellationToken,
) {
    let mut down = false;
    loop {
        let heard = tokio::select! {
            () = stop.cancelled() => return,
            heard = listener.recv() => heard,
        };
        match heard {
            Ok(Heard::Message(payload)) => inbound.receive(payload.as_bytes()),
            Ok(Heard::Reconnected) => {
                down = false;
                inbound.reconnected();
            }
            Err(err) => {
                if !down {
                    down = true;
                    tracing::warn!(%err, "event bus (LISTEN) connection lost");
                    inbound.disconnected();
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
