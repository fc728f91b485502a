//! `GET /api/v1/notify/ws`: notifications over a WebSocket, one JSON text message each,
//! with a ping every heartbeat.
//!
//! Authentication: the usual `Authorization: Bearer TOKEN` header, or, for browsers
//! (whose WebSocket API cannot set headers), the token offered as a subprotocol,
//! `cairn.bearer.TOKEN`, beside `cairn.notify.v1`, which the server selects. We do not
//! A browser signed in to the web interface needs neither: its session cookie comes
//! with the upgrade request (checked against the request's Origin). We do not
//! take the token from the query string: URLs end up in proxy and access logs, and a
//! bearer token there is a leaked session. The subprotocol header is not logged by
//! default, and the server never echoes it back.

use cairn_proto as proto;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use tokio::time::Instant;

use super::{head, to_json, Feed};
use crate::auth::{AuthUser, SESSION_COOKIE};
use crate::delta::Position;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The subprotocol the server speaks; selected when the client offers it.
pub const PROTOCOL: &str = "cairn.notify.v1";
/// A subprotocol of this prefix carries the bearer token.
const BEARER_PROTOCOL: &str = "cairn.bearer.";

/// Clients send nothing but pongs and a close; anything bigger is not ours.
const MAX_INCOMING: usize = 16 << 10;
/// tungstenite reserves its read buffer up front (128 KiB by default): at 10,000 idle
/// connections that alone would be 1.3 GB. Notifications are a few hundred bytes.
const READ_BUFFER: usize = 4 << 10;

/// The caller, from the Authorization header or the bearer subprotocol.
pub(super) struct WsAuth(AuthUser);

impl FromRequestParts<AppState> for WsAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(AUTHORIZATION) {
            return AuthUser::from_request_parts(parts, state).await.map(WsAuth);
        }
        let offered = parts
            .headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL).map(str::to_owned));
        match offered {
            Some(token) => AuthUser::from_token(state, &token).await.map(WsAuth),
            // A browser session's cookie, whose Origin check keeps other sites out.
            None if crate::cookies::values(&parts.headers, SESSION_COOKIE)
                .next()
                .is_some() =>
            {
                AuthUser::from_request_parts(parts, state).await.map(WsAuth)
            }
            None => Err(ApiError::unauthorized(
                "missing Authorization header (or a cairn.bearer.TOKEN subprotocol); \
                 log in to get a bearer token",
            )),
        }
    }
}

#[utoipa::path(
    get,
    path = "/notify/ws",
    responses(
        (status = 101, description = "A WebSocket of Notification messages (JSON text): a head per namespace, then each advance; a ping every heartbeat. The token goes in the Authorization header or as the subprotocol cairn.bearer.TOKEN beside cairn.notify.v1", body = proto::Notification)
    ),
    security(("bearer" = []))
)]
pub(super) async fn upgrade(
    State(state): State<AppState>,
    WsAuth(auth): WsAuth,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "websocket_required",
            format!(
                "this endpoint speaks WebSocket only ({}); use /api/v1/notify/sse or \
                 /api/v1/notify/poll otherwise",
                rejection.body_text()
            ),
        )
    })?;
    // Open the feed before upgrading, so a failure is still an HTTP error.
    let (feed, heads) = Feed::open(&state, &auth).await?;
    let heartbeat = state.notify.heartbeat;
    Ok(upgrade
        .protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        // Each message is written at once; nothing is worth holding back.
        .write_buffer_size(0)
        .max_write_buffer_size(64 << 10)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| serve(socket, feed, heads, heartbeat)))
}

async fn serve(mut socket: WebSocket, mut feed: Feed, heads: Vec<Position>, heartbeat: Duration) {
    // A peer that has not answered three pings is gone (a laptop closed, a NAT entry
    // expired); the same bound keeps a send to a peer that stopped reading from
    // hanging the connection forever.
    let patience = heartbeat * 3;
    for p in heads {
        if send(
            &mut socket,
            Message::Text(to_json(&head(p)).into()),
            patience,
        )
        .await
        .is_err()
        {
            return;
        }
    }
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            notification = feed.next() => {
                let Some(n) = notification else {
                    let close = if feed.signed_out() {
                        // 1008, policy violation: the account's credentials no longer
                        // hold; reconnecting gets the reason as an HTTP error.
                        CloseFrame { code: 1008, reason: "signed out; log in again".into() }
                    } else {
                        CloseFrame { code: 1001, reason: "server shutting down".into() }
                    };
                    let _ = send(&mut socket, Message::Close(Some(close)), heartbeat).await;
                    return;
                };
                if send(&mut socket, Message::Text(to_json(&n).into()), patience).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > patience
                    || send(&mut socket, Message::Ping(Bytes::new()), patience).await.is_err()
                {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                // Pongs (and anything else a client says, which is ignored) show that
                // it is alive.
                Some(Ok(_)) => last_heard = Instant::now(),
            },
        }
    }
}

/// Sends one message, giving up after `limit`.
async fn send(socket: &mut WebSocket, message: Message, limit: Duration) -> Result<(), ()> {
    match tokio::time::timeout(limit, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
