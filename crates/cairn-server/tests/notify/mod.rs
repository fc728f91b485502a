//! Push notifications against a real server: WebSocket, SSE and long-poll carry every
//! committed write to the account's other devices and to nobody else; they need a
//! token; the connection gauge rises and falls; the client reconnects by itself.
//!
//! Waits are bounded but generous (machines are noisy); nothing asserts on timing.

use std::time::Duration;

use cairn_client::proto::{Notification, PollResponse};
use cairn_client::{Client, SubscribeOptions, Transport};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

use crate::support::{block_ref, metric, TestServer};

/// Long enough for any loaded machine; a pass never waits this long.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Tests in this module open notification connections; the gauge is process-wide, so
/// the one that reads it must not see the others'.
pub(crate) static GAUGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn open_ws(s: &TestServer, token: &str) -> Ws {
    let mut request = format!("ws://{}/api/v1/notify/ws", s.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws
}

/// The next notification on a WebSocket (pings are skipped).
pub(crate) async fn ws_next(ws: &mut Ws) -> Notification {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a notification in time")
            .expect("the socket stays open")
            .unwrap();
        if let tungstenite::Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// Reads the WebSocket until it tells of `seq` (earlier advances may come first when
/// commits land close together; later ones never).
async fn ws_until(ws: &mut Ws, seq: i64) -> Notification {
    loop {
        let n = ws_next(ws).await;
        let told = n.seq().expect("an advance");
        assert!(told <= seq, "told of {told} before {seq}");
        if told == seq {
            return n;
        }
    }
}

/// An SSE stream's reader: the next `data:` payload as a notification.
pub(crate) struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Sse {
    pub(crate) async fn open(s: &TestServer, token: &str) -> Sse {
        let resp = s
            .http
            .get(s.url("/api/v1/notify/sse"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Sse {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
        }
    }

    pub(crate) async fn next(&mut self) -> Notification {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if data.is_empty() {
                    continue; // a heartbeat comment
                }
                return serde_json::from_str(&data.join("\n")).unwrap();
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("an event in time")
                .expect("the stream stays open")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn home_ns(s: &TestServer, user: &str) -> i64 {
    s.state
        .meta
        .user_by_name(user)
        .await
        .unwrap()
        .unwrap()
        .home_ns
        .0
}

async fn poll(s: &TestServer, token: &str, query: &str) -> (StatusCode, serde_json::Value) {
    s.call_as(
        Some(token),
        Method::GET,
        &format!("/api/v1/notify/poll?{query}"),
        None,
    )
    .await
}

/// Waits until the server counts `want` open notification connections.
async fn connections_reach(s: &TestServer, want: i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.state.notify.connections() != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections stayed at {} (want {want})",
            s.state.notify.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_each_backend!(
    a_commit_reaches_the_accounts_devices_on_every_transport,
    |s| {
        let _gauge = GAUGE.lock().await;
        let gauge_before = metric(&s, "cairn_notify_connections").await;
        let ns = home_ns(&s, "admin").await;
        let head = s.journal_head().await;
        // Device B of the same account listens; device A (s.token) writes.
        let device_b = s.login("admin").await;
        let bob = s.login("bob").await;

        let mut ws = open_ws(&s, &device_b).await;
        let first = ws_next(&mut ws).await;
        assert_eq!(
            first,
            Notification::Head {
                ns,
                seq: head,
                cursor: format!("v1.{ns}-{head}")
            }
        );
        let mut sse = Sse::open(&s, &device_b).await;
        assert_eq!(sse.next().await, first);
        let waiting_poll = {
            let (http, url, token) = (
                s.http.clone(),
                s.url(&format!(
                    "/api/v1/notify/poll?cursor=v1.{ns}-{head}&timeout=60"
                )),
                device_b.clone(),
            );
            tokio::spawn(async move {
                let resp = http.get(url).bearer_auth(token).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                resp.json::<PollResponse>().await.unwrap()
            })
        };
        let mut bob_ws = open_ws(&s, &bob).await;
        let bob_ns = home_ns(&s, "bob").await;
        assert_eq!(ws_next(&mut bob_ws).await.ns(), bob_ns);
        // WebSocket, SSE, the poll and bob's WebSocket.
        connections_reach(&s, 4).await;
        assert_eq!(
            metric(&s, "cairn_notify_connections").await - gauge_before,
            4.0
        );

        let (status, body) = s
            .call(
                Method::POST,
                "/api/v1/files/mkdir",
                Some(json!({"path": "/new"})),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let seq = head + 1;
        let advanced = Notification::Advanced {
            ns,
            seq,
            cursor: format!("v1.{ns}-{seq}"),
        };
        assert_eq!(ws_next(&mut ws).await, advanced);
        assert_eq!(sse.next().await, advanced);
        let polled = tokio::time::timeout(PATIENCE, waiting_poll)
            .await
            .expect("the poll answers in time")
            .unwrap();
        assert!(polled.changed);
        assert_eq!(polled.notifications, vec![advanced.clone()]);
        assert_eq!(polled.cursor, format!("v1.{ns}-{seq}"));

        // Bob was told nothing of it: the first thing he hears is his own write.
        let (status, _) = s
            .call_as(
                Some(&bob),
                Method::POST,
                "/api/v1/files/mkdir",
                Some(json!({"path": "/bobs"})),
            )
            .await;
        assert!(status.is_success());
        let heard = ws_next(&mut bob_ws).await;
        assert!(
            matches!(heard, Notification::Advanced { ns, .. } if ns == bob_ns),
            "{heard:?}"
        );

        // Every way out gives its count back: a close, a dropped stream, a dropped socket.
        ws.close(None).await.unwrap();
        drop(sse);
        drop(bob_ws);
        connections_reach(&s, 0).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while metric(&s, "cairn_notify_connections").await != gauge_before {
            assert!(tokio::time::Instant::now() < deadline, "the gauge stays up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
);

on_each_backend!(every_write_path_notifies, |s| {
    let _gauge = GAUGE.lock().await;
    let mut ws = open_ws(&s, &s.token).await;
    ws_next(&mut ws).await;
    // Each write, then the notification of exactly the new head.
    macro_rules! step {
        ($what:expr, $write:expr) => {{
            let (status, body) = $write;
            assert!(status.is_success(), "{}: {status} {body}", $what);
            let head = s.journal_head().await;
            ws_until(&mut ws, head).await;
            body
        }};
    }
    let data = b"notified content".to_vec();
    step!("put content", {
        let resp = s
            .http
            .put(s.url("/api/v1/files/content?path=/a.txt"))
            .bearer_auth(&s.token)
            .body(data.clone())
            .send()
            .await
            .unwrap();
        crate::support::decode(resp).await
    });
    let block = b"a block of its own".to_vec();
    s.put_block_as(&s.token, &block).await;
    let committed = step!(
        "commit",
        s.commit(json!({"path": "/b.txt", "blocks": [block_ref(&block)]}))
            .await
    );
    step!(
        "mkdir",
        s.call(
            Method::POST,
            "/api/v1/files/mkdir",
            Some(json!({"path": "/d"}))
        )
        .await
    );
    step!(
        "move",
        s.call(
            Method::POST,
            "/api/v1/files/move",
            Some(json!({"from": "/a.txt", "to": "/d/a.txt"}))
        )
        .await
    );
    step!(
        "copy",
        s.call(
            Method::POST,
            "/api/v1/files/copy",
            Some(json!({"from": "/d", "to": "/e"}))
        )
        .await
    );
    // A second version of /b.txt, so the first can be restored.
    let block2 = b"the second version".to_vec();
    s.put_block_as(&s.token, &block2).await;
    step!(
        "commit again",
        s.commit(json!({"path": "/b.txt", "blocks": [block_ref(&block2)],
                        "base_rev": committed["entry"]["rev"]}))
            .await
    );
    step!(
        "restore version",
        s.call(
            Method::POST,
            "/api/v1/files/restore",
            Some(json!({"path": "/b.txt", "version": committed["entry"]["rev"]}))
        )
        .await
    );
    step!(
        "delete",
        s.call(
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/e"}))
        )
        .await
    );
    step!(
        "trash restore",
        s.call(
            Method::POST,
            "/api/v1/trash/restore",
            Some(json!({"path": "/e"}))
        )
        .await
    );
    step!(
        "delete again",
        s.call(
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/d"}))
        )
        .await
    );
    step!(
        "trash purge",
        s.call(
            Method::POST,
            "/api/v1/trash/purge",
            Some(json!({"path": "/d"}))
        )
        .await
    );
    // The maintenance task's trash expiry goes through the same store.
    step!("expire trash", {
        let (status, body) = s
            .call(
                Method::POST,
                "/api/v1/files/delete",
                Some(json!({"path": "/e"})),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let expired = s.state.meta.expire_trash(i64::MAX).await.unwrap();
        assert_eq!(expired, 1);
        (StatusCode::OK, json!(null))
    });
});

on_each_backend!(notifications_need_a_token_and_check_cursors, |s| {
    let _gauge = GAUGE.lock().await;
    let ns = home_ns(&s, "admin").await;
    let head = s.journal_head().await;
    // No token, or a wrong one: 401 with the JSON error shape, on every transport.
    for token in [None, Some("cairn_not_a_token")] {
        for path in [
            "/api/v1/notify/sse",
            "/api/v1/notify/poll",
            "/api/v1/notify/ws",
        ] {
            let (status, body) = s.call_as(token, Method::GET, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        }
        let mut request = format!("ws://{}/api/v1/notify/ws", s.addr)
            .into_client_request()
            .unwrap();
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
            other => panic!("unauthenticated WebSocket: {other:?}"),
        }
    }
    assert_eq!(s.state.notify.connections(), 0);

    // A browser offers the token as a subprotocol; the server selects its own.
    let mut request = format!("ws://{}/api/v1/notify/ws", s.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("cairn.notify.v1, cairn.bearer.{}", s.token)).unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "cairn.notify.v1"
    );
    assert_eq!(ws_next(&mut ws).await.seq(), Some(head));
    drop(ws);

    // A plain GET of the WebSocket endpoint is a clear 4xx, not a hang.
    let (status, body) = s.call(Method::GET, "/api/v1/notify/ws", None).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(body["error"]["code"], "websocket_required");

    // Long-poll: without a cursor, the heads at once.
    let (status, body) = poll(&s, &s.token, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: PollResponse = serde_json::from_value(body).unwrap();
    assert!(answer.changed);
    assert_eq!(answer.cursor, format!("v1.{ns}-{head}"));
    assert!(matches!(answer.notifications[..], [Notification::Head { seq, .. }] if seq == head));
    // At the head: "no change" when the timeout passes, with the same cursor.
    let (status, body) = poll(&s, &s.token, &format!("cursor=v1.{ns}-{head}&timeout=1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: PollResponse = serde_json::from_value(body).unwrap();
    assert!(!answer.changed);
    assert!(answer.notifications.is_empty());
    assert_eq!(answer.cursor, format!("v1.{ns}-{head}"));
    // Behind the head: at once, without waiting for the (long) timeout.
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/files/mkdir",
            Some(json!({"path": "/x"})),
        )
        .await;
    assert!(status.is_success());
    let (status, body) = tokio::time::timeout(
        PATIENCE,
        poll(&s, &s.token, &format!("cursor=v1.{ns}-{head}&timeout=60")),
    )
    .await
    .expect("a cursor behind the head answers at once");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["notifications"][0]["type"], "advanced");
    assert_eq!(body["notifications"][0]["seq"], head + 1);
    // Bad cursors get what the delta gives them.
    let far = head + 100;
    let other_ns = home_ns(&s, "bob").await;
    for (query, want, code) in [
        (
            "cursor=garbage".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            format!("cursor=v1.{ns}-{far}"),
            StatusCode::GONE,
            "cursor_reset",
        ),
        (
            format!("cursor=v1.{other_ns}-0"),
            StatusCode::GONE,
            "cursor_reset",
        ),
        (
            "timeout=x".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ] {
        let (status, body) = poll(&s, &s.token, &query).await;
        assert_eq!(status, want, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    connections_reach(&s, 0).await;
});

/// The next notification of a client subscription.
async fn next(sub: &mut cairn_client::Subscription) -> Notification {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("a notification in time")
        .expect("the subscription goes on")
        .unwrap()
}

/// A client subscription over each transport survives a server restart, and its first
/// message after reconnecting is the head, including a write made while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_after_a_restart_and_hears_the_head_first() {
    let _gauge = GAUGE.lock().await;
    let mut s = TestServer::start_with(crate::support::Backend::Sqlite, |c| {
        c.notify_heartbeat_secs = 1;
    })
    .await;
    let ns = home_ns(&s, "admin").await;
    let device_b = s.login("admin").await;
    let client = Client::new(&format!("http://{}", s.addr), Some(device_b)).unwrap();
    let options = |transports| SubscribeOptions {
        transports,
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(10),
        poll_timeout: Duration::from_secs(5),
        ..SubscribeOptions::default()
    };
    let mut subs = vec![
        client.subscribe(),
        client.subscribe_with(options(vec![Transport::Sse])),
        client.subscribe_with(options(vec![Transport::LongPoll])),
    ];
    let head = s.journal_head().await;
    for sub in &mut subs {
        let n = next(sub).await;
        assert!(
            matches!(n, Notification::Head { seq, .. } if seq == head),
            "{n:?}"
        );
    }
    assert_eq!(subs[0].transport(), Some(Transport::WebSocket));
    assert_eq!(subs[1].transport(), Some(Transport::Sse));
    assert_eq!(subs[2].transport(), Some(Transport::LongPoll));

    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/files/mkdir",
            Some(json!({"path": "/one"})),
        )
        .await;
    assert!(status.is_success());
    for sub in &mut subs {
        let n = next(sub).await;
        assert_eq!(
            n,
            Notification::Advanced {
                ns,
                seq: head + 1,
                cursor: format!("v1.{ns}-{}", head + 1)
            }
        );
    }

    // The server goes away (its streams must not hold the shutdown up), a write lands
    // while it is down, and it comes back on the same address.
    s.stop().await;
    let user = s.state.meta.user_by_name("admin").await.unwrap().unwrap();
    let actor = cairn_meta::Actor {
        user_id: user.id,
        device_id: None,
        device_name: "test".to_owned(),
    };
    let path = cairn_core::ServerPath::parse("/while-away").unwrap();
    s.state
        .meta
        .mkdir(user.home_ns, &path, &actor)
        .await
        .unwrap();
    s.start_again().await;
    let head = s.journal_head().await;
    for sub in &mut subs {
        // Normally the reconnect's head. The write may also reach a stream the stopping
        // server had not closed yet (a long-poll then simply asks on from there); either
        // way the first message after the write carries the new head.
        let n = next(sub).await;
        assert!(
            matches!(n, Notification::Head { .. } | Notification::Advanced { .. }),
            "{n:?}"
        );
        assert_eq!((n.ns(), n.seq()), (ns, Some(head)));
        assert_eq!(n.cursor(), Some(format!("v1.{ns}-{head}").as_str()));
    }
    assert_eq!(subs[0].transport(), Some(Transport::WebSocket));
    drop(subs);
    connections_reach(&s, 0).await;
    s.finish().await;
}
