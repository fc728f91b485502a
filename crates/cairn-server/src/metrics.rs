//! Prometheus metrics: the process-wide recorder, the request middleware, `/metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Block payload bytes received from clients.
pub const BLOCK_BYTES_RECEIVED: &str = "cairn_block_bytes_received_total";
/// Block payload bytes sent to clients.
pub const BLOCK_BYTES_SENT: &str = "cairn_block_bytes_sent_total";
/// Blocks written to the block store for the first time.
pub const BLOCKS_STORED: &str = "cairn_blocks_stored_total";
/// Blocks received that the store already held.
pub const BLOCKS_DEDUPLICATED: &str = "cairn_blocks_deduplicated_total";
/// Successful file commits.
pub const COMMITS: &str = "cairn_commits_total";
/// Open notification connections (gauge).
pub const NOTIFY_CONNECTIONS: &str = "cairn_notify_connections";
/// Blocks garbage collection deleted (rows and files).
pub const GC_BLOCKS_DELETED: &str = "cairn_gc_blocks_deleted_total";
/// Block-store bytes garbage collection freed.
pub const GC_BYTES_FREED: &str = "cairn_gc_bytes_freed_total";
/// Old file versions dropped by retention.
pub const VERSIONS_PRUNED: &str = "cairn_versions_pruned_total";
/// Blocks that failed verification on read, or that metadata references and the store
/// lacks (counted by cairn-store).
pub const BLOCK_VERIFY_FAILURES: &str = "cairn_block_verify_failures_total";
/// Damaged (corrupt or missing) blocks the background scrub found.
pub const SCRUB_DAMAGED_BLOCKS: &str = "cairn_scrub_damaged_blocks_total";
/// Events (advances, sign-outs, resyncs) this node sent to the other nodes over the
/// event bus.
pub const BUS_MESSAGES_PUBLISHED: &str = "cairn_bus_messages_published_total";
/// Events this node received from the event bus.
pub const BUS_MESSAGES_RECEIVED: &str = "cairn_bus_messages_received_total";
/// Events that could not go out (the bus was slow or down); each loss is made good by
/// a resync of every node.
pub const BUS_MESSAGES_DROPPED: &str = "cairn_bus_messages_dropped_total";
/// Times the connection to the event bus came back after it was lost.
pub const BUS_RECONNECTS: &str = "cairn_bus_reconnects_total";
/// 1 while this node is connected to a shared event bus, 0 while it is not (or has
/// none: a single node).
pub const BUS_CONNECTED: &str = "cairn_bus_connected";

/// Installs the global recorder once per process and returns its handle. Several servers
/// in one test process share it, so tests read deltas, not absolute values.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .expect("static buckets are valid")
                .install_recorder()
                .expect("the metrics recorder is installed once");
            // Register every counter at zero so scrapers see them from the start.
            for name in [
                BLOCK_BYTES_RECEIVED,
                BLOCK_BYTES_SENT,
                BLOCKS_STORED,
                BLOCKS_DEDUPLICATED,
                COMMITS,
                BLOCK_VERIFY_FAILURES,
                SCRUB_DAMAGED_BLOCKS,
                GC_BLOCKS_DELETED,
                GC_BYTES_FREED,
                VERSIONS_PRUNED,
                BUS_MESSAGES_PUBLISHED,
                BUS_MESSAGES_RECEIVED,
                BUS_MESSAGES_DROPPED,
                BUS_RECONNECTS,
            ] {
                metrics::counter!(name).increment(0);
            }
            metrics::gauge!(NOTIFY_CONNECTIONS).set(0.0);
            metrics::gauge!(BUS_CONNECTED).set(0.0);
            handle
        })
        .clone()
}

/// Counts and times every request by route template (never the raw path, which would
/// let clients create unbounded label values).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("cairn_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("cairn_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
