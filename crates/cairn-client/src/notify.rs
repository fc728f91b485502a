//! Push notifications: [`Client::subscribe`] keeps one connection to the server's
//! notification endpoints open and yields what it hears.
//!
//! It tries a WebSocket first, then server-sent events, then long-poll: a transport
//! that something between client and server refuses (a proxy answering the upgrade
//! with 200 or 404, say) is dropped for the rest of the subscription, while one that
//! merely failed (connection refused, 5xx, a dropped stream) is tried again after a
//! backoff with jitter, so a thousand clients of a restarted server do not all return in
//! the same instant. After every (re)connect the first notifications are the current
//! heads ([`Notification::Head`]), so a caller that reads the delta from its cursor when
//! told misses nothing that happened while it was away.

use std::time::Duration;

use bytes::BytesMut;
use cairn_proto::{Notification, PollResponse};
use futures::StreamExt;
use rand::Rng;
use reqwest::{Method, StatusCode};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

use crate::client::{api_error, api_error_from};
use crate::{Client, ClientError};

/// The WebSocket subprotocol of Cairn's notifications.
const WS_PROTOCOL: &str = "cairn.notify.v1";
/// Largest event-stream line or WebSocket message accepted; notifications are small.
const MAX_MESSAGE: usize = 64 << 10;
/// How long opening a connection may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection that lasted this long was healthy: the backoff starts over after it.
const STABLE: Duration = Duration::from_secs(10);

/// How notifications reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET /api/v1/notify/ws`.
    WebSocket,
    /// `GET /api/v1/notify/sse`.
    Sse,
    /// `GET /api/v1/notify/poll`, again and again.
    LongPoll,
}

/// Settings of a subscription; the defaults suit a sync daemon.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Transports to try, best first. Default: WebSocket, SSE, long-poll.
    pub transports: Vec<Transport>,
    /// The first wait before reconnecting; it doubles on each failure in a row…
    pub min_backoff: Duration,
    /// …up to this. Each wait is drawn between half of it and all of it.
    pub max_backoff: Duration,
    /// A WebSocket or event stream that says nothing (not even a heartbeat) for this
    /// long is taken for dead and replaced. Default 90 s: three of the server's default
    /// heartbeats.
    pub idle_timeout: Duration,
    /// How long each long-poll asks the server to wait (the server caps it at 60 s).
    pub poll_timeout: Duration,
    /// After falling back to a lesser transport, how long to use it before trying the
    /// better ones again: the proxy that blocked them may be gone (a laptop that left
    /// the office network, a proxy fixed). Default 10 minutes.
    pub retry_better_after: Duration,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            transports: vec![Transport::WebSocket, Transport::Sse, Transport::LongPoll],
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            poll_timeout: Duration::from_secs(30),
            retry_better_after: Duration::from_secs(600),
        }
    }
}

/// A running subscription. Dropping it stops the background task and closes the
/// connection.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<Notification, ClientError>>,
    transport: watch::Receiver<Option<Transport>>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// The next notification. Connection failures are retried, not reported; an
    /// `Err` means the subscription cannot go on (the server refused the token) and is
    /// the last item. `None` after that.
    pub async fn next(&mut self) -> Option<Result<Notification, ClientError>> {
        self.rx.recv().await
    }

    /// The transport of the open connection; `None` while reconnecting.
    pub fn transport(&self) -> Option<Transport> {
        *self.transport.borrow()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Subscribes to push notifications with the default [`SubscribeOptions`]. Must be
    /// called inside a Tokio runtime: the connection lives in a task of its own.
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_with(SubscribeOptions::default())
    }

    /// Subscribes to push notifications; see [`Client::subscribe`].
    pub fn subscribe_with(&self, options: SubscribeOptions) -> Subscription {
        // A small queue: notifications only say where a namespace stands, so a caller
        // that falls behind holds back the connection rather than a pile of messages.
        let (tx, rx) = mpsc::channel(16);
        let (transport_tx, transport) = watch::channel(None);
        let task = tokio::spawn(run(self.clone(), options, tx, transport_tx));
        Subscription {
            rx,
            transport,
            task,
        }
    }
}

type Sender = mpsc::Sender<Result<Notification, ClientError>>;

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// The subscriber is gone: stop.
    Unsubscribed,
    /// The server refused us (401, 403): stop and say why.
    Refused(ClientError),
    /// Something between us and the server does not pass this transport.
    Unsupported,
    /// The connection failed or dropped; `connected` says whether it had got as far as
    /// the first notification.
    Lost { connected: bool },
}

async fn run(
    client: Client,
    options: SubscribeOptions,
    tx: Sender,
    transport: watch::Sender<Option<Transport>>,
) {
    let mut all = options.transports.clone();
    if all.is_empty() {
        all = SubscribeOptions::default().transports;
    }
    let mut usable = all.clone();
    // Since when a better transport than `usable[0]` has been skipped.
    let mut fell_back: Option<Instant> = None;
    let mut failures: u32 = 0;
    loop {
        let current = usable[0];
        let started = Instant::now();
        let on_connect = || {
            transport.send_replace(Some(current));
        };
        let connection = async {
            match current {
                Transport::WebSocket => websocket(&client, &options, &tx, on_connect).await,
                Transport::Sse => sse(&client, &options, &tx, on_connect).await,
                Transport::LongPoll => long_poll(&client, &options, &tx, on_connect).await,
            }
        };
        let ended = match fell_back {
            None => connection.await,
            Some(since) => {
                let left = options.retry_better_after.saturating_sub(since.elapsed());
                match tokio::time::timeout(left, connection).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        // Time to try the better transports again. Nothing is missed:
                        // every new connection starts with where each namespace stands.
                        transport.send_replace(None);
                        usable = all.clone();
                        fell_back = None;
                        continue;
                    }
                }
            }
        };
        transport.send_replace(None);
        match ended {
            Ended::Unsubscribed => return,
            Ended::Refused(err) => {
                let _ = tx.send(Err(err)).await;
                return;
            }
            Ended::Unsupported if usable.len() > 1 => {
                usable.remove(0);
                fell_back.get_or_insert_with(Instant::now);
                continue;
            }
            // The last transport left is kept and retried: the refusal may pass.
            Ended::Unsupported => {}
            Ended::Lost { connected } => {
                if connected && started.elapsed() >= STABLE {
                    failures = 0;
                }
            }
        }
        failures = failures.saturating_add(1);
        let wait = backoff(failures, options.min_backoff, options.max_backoff);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
    }
}

/// Exponential backoff with jitter: the `failures`-th wait in a row is drawn from the
/// upper half of `min · 2^(failures-1)`, capped at `max`.
fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let doubled = min.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let ceiling = doubled.min(max).max(Duration::from_millis(1));
    let floor = ceiling / 2;
    rand::thread_rng().gen_range(floor..=ceiling)
}

/// A transport's `on_connect`, called once, on the first message the server sends: only
/// then is the connection known to work (a proxy may accept and then say nothing).
struct FirstMessage<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> FirstMessage<F> {
    fn seen(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }

    fn connected(&self) -> bool {
        self.0.is_none()
    }
}

/// Passes one notification on; false when the subscriber is gone.
async fn emit(tx: &Sender, n: Notification) -> bool {
    tx.send(Ok(n)).await.is_ok()
}

/// How a refused request ends the connection: a bad token ends the subscription; a
/// server error or rate limit is a failure to retry; anything else means the path is
/// not served as this transport expects.
fn refused(err: ClientError) -> Ended {
    match err.status() {
        Some(401 | 403) => Ended::Refused(err),
        Some(s) if s >= 500 || s == 429 || s == 408 => Ended::Lost { connected: false },
        Some(_) => Ended::Unsupported,
        None => Ended::Lost { connected: false },
    }
}

async fn websocket(
    client: &Client,
    options: &SubscribeOptions,
    tx: &Sender,
    on_connect: impl FnOnce(),
) -> Ended {
    let url = format!(
        "{}/api/{}/notify/ws",
        client.base_url(),
        cairn_proto::API_VERSION
    );
    let url = match url.strip_prefix("http") {
        // https → wss, http → ws
        Some(rest) => format!("ws{rest}"),
        None => return Ended::Unsupported,
    };
    let Ok(mut request) = url.into_client_request() else {
        return Ended::Unsupported;
    };
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(WS_PROTOCOL),
    );
    if let Some(token) = client.token() {
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(value) => {
                headers.insert("authorization", value);
            }
            Err(_) => return Ended::Unsupported,
        }
    }
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let tls = client.tls().map(tokio_tungstenite::Connector::Rustls);
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, tls);
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => return Ended::Lost { connected: false },
        Ok(Ok((stream, _response))) => stream,
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = response.body().clone().unwrap_or_default();
            return refused(api_error_from(status, &body));
        }
        // An answer that is not a WebSocket handshake at all (a proxy's 200 page).
        Ok(Err(tungstenite::Error::Protocol(_))) => return Ended::Unsupported,
        Ok(Err(_)) => return Ended::Lost { connected: false },
    };
    let mut first = FirstMessage(Some(on_connect));
    loop {
        let message = match tokio::time::timeout(options.idle_timeout, stream.next()).await {
            Ok(Some(Ok(message))) => message,
            // Silent too long, closed, or broken.
            Err(_) | Ok(None) | Ok(Some(Err(_))) => {
                return Ended::Lost {
                    connected: first.connected(),
                }
            }
        };
        match message {
            tungstenite::Message::Text(text) => {
                // A message type this client does not know is skipped: newer servers
                // may say more.
                let Ok(n) = serde_json::from_str::<Notification>(text.as_str()) else {
                    continue;
                };
                first.seen();
                if !emit(tx, n).await {
                    return Ended::Unsubscribed;
                }
            }
            tungstenite::Message::Close(_) => {
                return Ended::Lost {
                    connected: first.connected(),
                }
            }
            // Pings are answered by tungstenite itself as it reads.
            _ => {}
        }
    }
}

async fn sse(
    client: &Client,
    options: &SubscribeOptions,
    tx: &Sender,
    on_connect: impl FnOnce(),
) -> Ended {
    let request = client
        .request(Method::GET, "notify/sse")
        .header(reqwest::header::ACCEPT, "text/event-stream");
    let response = match tokio::time::timeout(CONNECT_TIMEOUT, request.send()).await {
        Err(_) | Ok(Err(_)) => return Ended::Lost { connected: false },
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return refused(api_error(response).await);
    }
    let is_event_stream = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_event_stream {
        return Ended::Unsupported;
    }
    let mut body = response.bytes_stream();
    let mut buffer = BytesMut::new();
    let mut data = String::new();
    let mut first = FirstMessage(Some(on_connect));
    loop {
        let chunk = match tokio::time::timeout(options.idle_timeout, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Err(_) | Ok(None) | Ok(Some(Err(_))) => {
                return Ended::Lost {
                    connected: first.connected(),
                }
            }
        };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line = buffer.split_to(end + 1);
            let Ok(line) = std::str::from_utf8(&line) else {
                return Ended::Lost {
                    connected: first.connected(),
                };
            };
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                // The end of an event: dispatch what its data lines said.
                let event = std::mem::take(&mut data);
                let Ok(n) = serde_json::from_str::<Notification>(&event) else {
                    continue;
                };
                first.seen();
                if !emit(tx, n).await {
                    return Ended::Unsubscribed;
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
            // Comments (heartbeats), event names and ids carry nothing we need.
        }
        if buffer.len() > MAX_MESSAGE || data.len() > MAX_MESSAGE {
            return Ended::Lost {
                connected: first.connected(),
            };
        }
    }
}

async fn long_poll(
    client: &Client,
    options: &SubscribeOptions,
    tx: &Sender,
    on_connect: impl FnOnce(),
) -> Ended {
    let timeout = options.poll_timeout.as_secs().max(1).to_string();
    let mut cursor: Option<String> = None;
    let mut first = FirstMessage(Some(on_connect));
    // Each round either waits up to the poll timeout on the server or returns at once
    // with news; a failure leaves the loop, and the caller's backoff paces the retry.
    loop {
        let mut query = vec![("timeout", timeout.as_str())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.as_str()));
        }
        let request = client.request(Method::GET, "notify/poll").query(&query);
        let asked = Instant::now();
        let answer: PollResponse = match client.send_once(request).await {
            Ok(response) => match response.json().await {
                Ok(answer) => answer,
                Err(_) => {
                    return Ended::Lost {
                        connected: first.connected(),
                    }
                }
            },
            // The server's journal was replaced: start over from its heads.
            Err(err) if err.code() == Some("cursor_reset") && cursor.is_some() => {
                cursor = None;
                continue;
            }
            Err(err) => {
                return match refused(err) {
                    Ended::Lost { .. } => Ended::Lost {
                        connected: first.connected(),
                    },
                    other => other,
                }
            }
        };
        first.seen();
        for n in answer.notifications {
            if !emit(tx, n).await {
                return Ended::Unsubscribed;
            }
        }
        // "No change" long before the timeout (a server shutting down, a proxy that
        // cuts requests short) must not turn this into a busy loop.
        if !answer.changed && asked.elapsed() < options.poll_timeout / 2 {
            tokio::time::sleep(options.min_backoff).await;
        }
        cursor = Some(answer.cursor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(30));
        for _ in 0..100 {
            let first = backoff(1, min, max);
            assert!(
                first >= Duration::from_millis(250) && first <= min,
                "{first:?}"
            );
            let third = backoff(3, min, max);
            assert!(third >= Duration::from_secs(1) && third <= Duration::from_secs(2));
            let late = backoff(40, min, max);
            assert!(late >= Duration::from_secs(15) && late <= max, "{late:?}");
        }
    }
}
