//! `GET /api/v1/notify/sse`: notifications as server-sent events, for proxies that
//! block WebSockets. Each event's `data:` is the same JSON a WebSocket message carries;
//! a comment line every heartbeat keeps proxies from closing an idle stream.

use cairn_proto as proto;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::{head, to_json, Feed};
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/notify/sse",
    responses(
        (status = 200, description = "Server-sent events: one Notification as JSON per data line; heartbeat comments", body = proto::Notification, content_type = "text/event-stream")
    ),
    security(("bearer" = []))
)]
pub(super) async fn stream(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Response> {
    let (feed, heads) = Feed::open(&state, &auth).await?;
    let first = futures::stream::iter(heads.into_iter().map(head));
    // The feed (and with it the connection's count) lives as long as the body: until
    // the client goes away, hyper drops the body, or the server shuts down.
    let rest = futures::stream::unfold(feed, |mut feed| async move {
        let n = feed.next().await?;
        Some((n, feed))
    });
    let events = futures::StreamExt::map(futures::StreamExt::chain(first, rest), |n| {
        Ok::<_, Infallible>(Event::default().data(to_json(&n)))
    });
    let keep_alive = KeepAlive::new()
        .interval(state.notify.heartbeat)
        .text("heartbeat");
    let mut response = Sse::new(events).keep_alive(keep_alive).into_response();
    // Ask buffering proxies (nginx) to pass events through as they come.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}
