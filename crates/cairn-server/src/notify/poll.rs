//! `GET /api/v1/notify/poll?cursor=CURSOR&timeout=SECS`: long-poll, the last resort for
//! clients behind proxies that block WebSockets and buffer event streams.
//!
//! It answers at once when a namespace the cursor names (or one the caller reads that
//! the cursor does not name) is past the cursor; otherwise it waits up to `timeout`
//! seconds (default 30, at most 60, so proxies with a one-minute idle limit pass it)
//! for an advance, and then answers `changed: false`. Without a cursor it answers at
//! once with the current heads. The cursor is a delta cursor and is checked as
//! `/api/v1/delta` checks it: 400 `invalid_cursor`, 410 `cursor_reset`.

use std::time::Duration;

use axum::extract::State;
use cairn_core::JournalSeq;
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{advanced, head, Feed};
use crate::auth::AuthUser;
use crate::delta::{decode_cursor, encode_cursor, reset, Position};
use crate::error::ApiResult;
use crate::extract::{Json, Query};
use crate::state::AppState;

const DEFAULT_TIMEOUT_SECS: u64 = 30;
const MAX_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PollQuery {
    /// What the caller was told last; without one, the heads are answered at once.
    cursor: Option<String>,
    /// Seconds to wait for an advance: 30 when absent, at most 60.
    #[param(maximum = 60)]
    timeout: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/notify/poll",
    params(PollQuery),
    responses(
        (status = 200, description = "What advanced past the cursor, or changed=false at the timeout; without a cursor, the heads at once", body = proto::PollResponse)
    ),
    security(("bearer" = []))
)]
pub(super) async fn poll(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<PollQuery>,
) -> ApiResult<Json<proto::PollResponse>> {
    // A cursor naming a folder the caller left is fine: the position is dropped, as
    // the delta drops it.
    let given = match &q.cursor {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    if let Some(given) = &given {
        if !given.iter().any(|p| p.ns == auth.user.home_ns) {
            return Err(reset("the cursor was not handed out to this account"));
        }
    }
    let timeout = Duration::from_secs(
        q.timeout
            .unwrap_or(DEFAULT_TIMEOUT_SECS)
            .min(MAX_TIMEOUT_SECS),
    );
    let (mut feed, heads) = Feed::open(&state, &auth).await?;

    let Some(given) = given else {
        return Ok(Json(proto::PollResponse {
            changed: true,
            cursor: encode_cursor(&heads),
            notifications: heads.into_iter().map(head).collect(),
        }));
    };
    // Where the caller stands in every namespace it reads: a namespace the cursor does
    // not name (a folder shared since) counts as never read.
    let from: Vec<Position> = heads
        .iter()
        .map(|h| {
            given
                .iter()
                .find(|p| p.ns == h.ns)
                .copied()
                .unwrap_or(Position {
                    ns: h.ns,
                    seq: JournalSeq(0),
                })
        })
        .collect();
    if from.iter().zip(&heads).any(|(p, h)| p.seq > h.seq) {
        return Err(reset(
            "the cursor is ahead of this server's journal (was its database replaced?)",
        ));
    }
    let ahead: Vec<proto::Notification> = from
        .iter()
        .zip(&heads)
        .filter(|(p, h)| h.seq > p.seq)
        .map(|(_, h)| advanced(h.ns, h.seq))
        .collect();
    if !ahead.is_empty() {
        return Ok(Json(answer(&from, ahead)));
    }
    feed.told(&from);
    let notifications = match tokio::time::timeout(timeout, feed.next()).await {
        Ok(Some(n)) => vec![n],
        // Timed out, or the server is shutting down: either way, nothing new.
        Ok(None) | Err(_) => Vec::new(),
    };
    Ok(Json(answer(&from, notifications)))
}

/// The answer: what advanced, and the cursor moved past it.
fn answer(from: &[Position], notifications: Vec<proto::Notification>) -> proto::PollResponse {
    let moved: Vec<Position> = from
        .iter()
        .map(|p| {
            notifications
                .iter()
                .filter(|n| n.ns() == p.ns.0)
                .find_map(|n| n.seq())
                .map_or(*p, |seq| Position {
                    ns: p.ns,
                    seq: JournalSeq(seq),
                })
        })
        .collect();
    proto::PollResponse {
        changed: !notifications.is_empty(),
        cursor: encode_cursor(&moved),
        notifications,
    }
}
