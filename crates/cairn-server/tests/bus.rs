//! Notifications across nodes: two servers on one PostgreSQL database, sharing an event
//! bus over NATS (the server at 127.0.0.1:4222, or `CAIRN_TEST_NATS_URL`) or over
//! PostgreSQL LISTEN/NOTIFY. A commit through one node reaches a WebSocket connected to
//! the other; a sign-out on one ends the account's connections on the other; what a
//! node missed while its bus connection was down reaches its connections once it is
//! back.

// Its macro is for tests that run on both backends; these need PostgreSQL.
#[allow(unused_macros)]
mod support;

use std::time::{Duration, Instant};

use cairn_client::proto::Notification;
use cairn_server::config::Events;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use support::{metric, put_file_as, Backend, CutProxy, TestServer};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

/// What a notification from another node may take on a loaded machine; on loopback it
/// takes about a millisecond.
const ACROSS: Duration = Duration::from_secs(5);

/// How long a node may take to notice its bus is back (the NATS client waits at most
/// 5 s between attempts) and resync.
const RECONNECT: Duration = Duration::from_secs(20);

fn nats_url() -> String {
    std::env::var("CAIRN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(s: &TestServer, token: &str) -> Ws {
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

/// The next notification within `limit` (pings skipped); `None` if none came.
async fn ws_next_within(ws: &mut Ws, limit: Duration) -> Option<Notification> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match message.expect("the socket stays open").unwrap() {
            tungstenite::Message::Text(text) => {
                return Some(serde_json::from_str(text.as_str()).unwrap())
            }
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads the heads a new connection is told first (the user's namespaces).
async fn heads(ws: &mut Ws, count: usize) -> Vec<Notification> {
    let mut heads = Vec::new();
    for _ in 0..count {
        let n = ws_next_within(ws, ACROSS).await.expect("a head");
        assert!(matches!(n, Notification::Head { .. }), "{n:?}");
        heads.push(n);
    }
    heads
}

/// Waits (within `limit`) until the WebSocket tells that `ns` reached `seq`.
async fn until_advanced(ws: &mut Ws, ns: i64, seq: i64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = ws_next_within(ws, left)
            .await
            .unwrap_or_else(|| panic!("namespace {ns} at {seq} not told within {limit:?}"));
        assert!(matches!(n, Notification::Advanced { .. }), "{n:?}");
        if n.ns() == ns && n.seq().is_some_and(|s| s >= seq) {
            return;
        }
    }
}

/// Waits (within `limit`) for the WebSocket to close as signed out (1008).
async fn closed_signed_out(ws: &mut Ws, limit: Duration) {
    let closed = tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(tungstenite::Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("a signed-out connection on another node closes in time");
    assert_eq!(u16::from(closed.expect("a close frame").code), 1008);
}

async fn home_ns(s: &TestServer, user: &str) -> i64 {
    let user = s.state.meta.user_by_name(user).await.unwrap().unwrap();
    user.home_ns.0
}

/// Two nodes of one deployment on a fresh PostgreSQL schema, each with the bus
/// `events` makes (called once per node).
async fn two_nodes(events: impl Fn() -> Events) -> (TestServer, TestServer) {
    let first = TestServer::start_with(Backend::Postgres, |c| c.events = events()).await;
    let second = first.start_beside(|c| c.events = events()).await;
    (first, second)
}

async fn finish(first: TestServer, mut second: TestServer) {
    second.stop().await;
    first.finish().await;
}

/// A commit through node 1 reaches node 2's WebSocket; a sign-out on node 1 ends the
/// account's connection on node 2. Prints the latencies seen.
async fn commits_and_sign_outs_cross_nodes(name: &str, events: impl Fn() -> Events) {
    let (n1, n2) = two_nodes(events).await;
    let ns = home_ns(&n1, "admin").await;
    let mut ws = open_ws(&n2, &n2.token).await;
    heads(&mut ws, 1).await;
    let published = metric(&n1, "cairn_bus_messages_published_total").await;

    let mut latencies = Vec::new();
    for i in 0..20 {
        put_file_as(&n1, &n1.token, &format!("/f{i}.txt"), b"hello").await;
        let answered = Instant::now();
        // Nothing else writes to this database.
        let seq = n1.journal_head().await;
        until_advanced(&mut ws, ns, seq, ACROSS).await;
        latencies.push(answered.elapsed());
    }
    latencies.sort();
    eprintln!(
        "{name}: commit answered on node 1 -> told on node 2: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(metric(&n1, "cairn_bus_messages_published_total").await > published);

    // Bob, connected to node 2, is disabled through node 1.
    let bob = n2.login("bob").await;
    let mut bobs = open_ws(&n2, &bob).await;
    heads(&mut bobs, 1).await;
    let (status, body) = n1
        .call(Method::POST, "/api/v1/admin/users/bob/disable", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    closed_signed_out(&mut bobs, ACROSS).await;

    finish(n1, n2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_carries_commits_and_sign_outs_between_nodes() {
    commits_and_sign_outs_cross_nodes("NATS", || Events::Nats(nats_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_carries_commits_and_sign_outs_between_nodes() {
    commits_and_sign_outs_cross_nodes("LISTEN/NOTIFY", || Events::Postgres).await;
}

fn proxy_url(proxy: &CutProxy) -> String {
    format!("nats://{}", proxy.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_catches_up_when_it_is_back() {
    let upstream = nats_url();
    let proxy = CutProxy::start(upstream.trim_start_matches("nats://").to_owned()).await;
    let n1 =
        TestServer::start_with(Backend::Postgres, |c| c.events = Events::Nats(nats_url())).await;
    let n2 = n1
        .start_beside(|c| c.events = Events::Nats(proxy_url(&proxy)))
        .await;
    let ns = home_ns(&n1, "admin").await;
    let mut ws = open_ws(&n2, &n2.token).await;
    heads(&mut ws, 1).await;
    let bob = n2.login("bob").await;
    let mut bobs = open_ws(&n2, &bob).await;
    heads(&mut bobs, 1).await;
    // The bus works through the proxy.
    put_file_as(&n1, &n1.token, "/before.txt", b"1").await;
    let head = n1.journal_head().await;
    until_advanced(&mut ws, ns, head, ACROSS).await;
    let reconnects = metric(&n2, "cairn_bus_reconnects_total").await;

    proxy.cut();
    put_file_as(&n1, &n1.token, "/while-cut.txt", b"2").await;
    let head = n1.journal_head().await;
    // Node 2 cannot hear of it while it is cut off…
    assert_eq!(
        ws_next_within(&mut ws, Duration::from_millis(300)).await,
        None
    );
    // …but local commits still reach its own connections.
    put_file_as(&n2, &n2.token, "/local.txt", b"3").await;
    let local = n2.journal_head().await;
    assert!(local > head);
    until_advanced(&mut ws, ns, local, ACROSS).await;

    // A commit node 2 did not hear of, the newest: only a resync tells it. And a
    // sign-out it did not hear of: only a check of the token tells it.
    put_file_as(&n1, &n1.token, "/missed.txt", b"4").await;
    let missed = n1.journal_head().await;
    let (status, body) = n1
        .call(Method::POST, "/api/v1/admin/users/bob/disable", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    proxy.restore();
    until_advanced(&mut ws, ns, missed, RECONNECT).await;
    closed_signed_out(&mut bobs, RECONNECT).await;
    assert!(metric(&n2, "cairn_bus_reconnects_total").await > reconnects);
    finish(n1, n2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_listener_is_terminated_catches_up() {
    let (n1, n2) = two_nodes(|| Events::Postgres).await;
    let ns = home_ns(&n1, "admin").await;
    let mut ws = open_ws(&n2, &n2.token).await;
    heads(&mut ws, 1).await;
    // A change no bus announces: written by a store with no commit hook, as `cairn
    // admin` writes beside a running server.
    let quiet = cairn_meta::MetaStore::connect(&n1.config().database_url)
        .await
        .unwrap();
    let admin = quiet.user_by_name("admin").await.unwrap().unwrap();
    let actor = cairn_meta::Actor {
        user_id: admin.id,
        device_id: None,
        device_name: "test".into(),
    };
    quiet
        .mkdir(
            admin.home_ns,
            &cairn_core::ServerPath::parse("/quiet").unwrap(),
            &actor,
        )
        .await
        .unwrap();
    let head = quiet.journal_head(admin.home_ns).await.unwrap().0;
    assert_eq!(
        ws_next_within(&mut ws, Duration::from_millis(300)).await,
        None
    );

    // Ends this deployment's listening connections (both nodes').
    let deployment = quiet
        .shared_secret("event_bus_deployment", "unused")
        .await
        .unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&support::postgres_base_url())
        .await
        .unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND query = $2",
    )
    .bind(cairn_meta::LISTENER_APPLICATION_NAME)
    .bind(format!("LISTEN \"cairn_events_{deployment}\""))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(ended, [true, true], "each node listens on one connection");
    until_advanced(&mut ws, ns, head, RECONNECT).await;

    // And the bus works again.
    put_file_as(&n1, &n1.token, "/after.txt", b"1").await;
    until_advanced(&mut ws, ns, n1.journal_head().await, ACROSS).await;
    quiet.close().await;
    finish(n1, n2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bus_stops_the_start_with_its_address() {
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let mut config = cairn_server::Config::for_data_dir(data.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.events = Events::Nats(format!("nats://127.0.0.1:{port}"));
    let err = cairn_server::Application::build(config).await.unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!("event bus at nats://127.0.0.1:{port}")),
        "{err:#}"
    );
    // LISTEN/NOTIFY needs the metadata in PostgreSQL.
    let mut config = cairn_server::Config::for_data_dir(data.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.events = Events::Postgres;
    let err = cairn_server::Application::build(config).await.unwrap_err();
    assert!(format!("{err:#}").contains("needs PostgreSQL"), "{err:#}");
}

#[test]
fn events_url_is_read_and_checked() {
    assert_eq!(Events::parse("").unwrap(), Events::InProcess);
    assert_eq!(Events::parse("pg").unwrap(), Events::Postgres);
    assert_eq!(Events::parse("postgres").unwrap(), Events::Postgres);
    assert_eq!(
        Events::parse("nats://10.0.0.1:4222").unwrap(),
        Events::Nats("nats://10.0.0.1:4222".into())
    );
    let err = Events::parse("redis://x").unwrap_err().to_string();
    assert!(err.contains("nats://HOST:PORT"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cairn.toml");
    std::fs::write(&file, "events_url = \"postgres\"\n").unwrap();
    let err = cairn_server::Config::load(dir.path(), Some(&file))
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs the metadata in PostgreSQL"), "{err}");
    std::fs::write(
        &file,
        "events_url = \"pg\"\ndatabase_url = \"postgres://u@h/db\"\n",
    )
    .unwrap();
    let config = cairn_server::Config::load(dir.path(), Some(&file)).unwrap();
    assert_eq!(config.events, Events::Postgres);
}
