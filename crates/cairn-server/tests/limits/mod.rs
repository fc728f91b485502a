//! Slow and oversized requests: a connection that trickles its header is closed, a
//! body announced larger than its route takes is refused before it is sent, a body
//! that stalls is cut off; notification streams outlive all three timeouts.
//!
//! The server's timeouts are set to one second here; the test's own waits are bounded
//! but generous, and nothing asserts on how long anything took.

use std::time::Duration;

use cairn_proto::Notification;
use cairn_server::routes::BodyLimit;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::notify::{open_ws, ws_next, Sse, GAUGE, PATIENCE};
use crate::support::{hex_hash, put_file_as, Backend, TestServer};

/// A server whose header read and body idle timeouts are one second.
async fn impatient_server() -> TestServer {
    TestServer::start_with(Backend::Sqlite, |config| {
        config.header_read_timeout_secs = 1;
        config.body_idle_timeout_secs = 1;
    })
    .await
}

/// What came back on a raw connection before the server closed it (or `PATIENCE`
/// ran out: then `closed` is false).
struct Answer {
    text: String,
    closed: bool,
}

impl Answer {
    fn status(&self) -> Option<u16> {
        self.text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    fn json(&self) -> Value {
        let body = self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
}

/// Sends `head` (and nothing else) on a fresh connection, then reads until the server
/// closes it or has sent a whole response (`Content-Length` bytes after the header).
async fn raw(s: &TestServer, head: &str) -> Answer {
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if is_whole_response(&got) {
                return false;
            }
        }
    };
    let closed = tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("the server answers or closes the connection in time");
    Answer {
        text: String::from_utf8_lossy(&got).into_owned(),
        closed,
    }
}

fn is_whole_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_trickles_its_header_is_closed() {
    let s = impatient_server().await;
    // Half a header, then silence.
    let answer = raw(&s, "GET /healthz HTTP/1.1\r\nHost: cairn\r\nX-Slow: ").await;
    assert!(answer.closed, "the connection is closed: {:?}", answer.text);
    assert!(
        answer.status().is_none_or(|code| code == 408),
        "{}",
        answer.text
    );
    // Whole requests are answered as ever.
    let answer = raw(&s, "GET /healthz HTTP/1.1\r\nHost: cairn\r\n\r\n").await;
    assert_eq!(answer.status(), Some(200), "{}", answer.text);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_too_large_is_refused_before_it_is_sent() {
    let s = impatient_server().await;
    let mut checked = 0;
    for (path, limit) in cairn_server::routes::route_limits() {
        let url = path
            .replace("{hash}", &hex_hash(b"probe"))
            .replace("{token}", "probe")
            .replace("{name}", "bob")
            .replace("{id}", "probe");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let takes_body = matches!(method, "POST" | "PUT" | "PATCH");
            if takes_body && limit == BodyLimit::Streamed {
                continue; // below
            }
            // 10 GB, with a token and with none: refused before anyone looks at who.
            for token in [Some(&s.token), None] {
                let auth =
                    token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
                let head = format!(
                    "{method} {url} HTTP/1.1\r\nHost: cairn\r\n{auth}\
                     Content-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n"
                );
                let answer = raw(&s, &head).await;
                assert_eq!(
                    answer.status(),
                    Some(413),
                    "{method} {path}: {}",
                    answer.text
                );
                assert_eq!(
                    answer.json()["error"]["code"],
                    "body_too_large",
                    "{method} {path}"
                );
                // The rest of the body is on its way: the connection is not kept.
                assert!(
                    answer
                        .text
                        .to_ascii_lowercase()
                        .contains("connection: close"),
                    "{method} {path}: {}",
                    answer.text
                );
                checked += 1;
            }
            // One byte over the route's own limit is refused too.
            if let (true, Some(bytes)) = (takes_body, limit.bytes(s.config())) {
                let head = format!(
                    "{method} {url} HTTP/1.1\r\nHost: cairn\r\nAuthorization: Bearer {}\r\n\
                     Content-Length: {}\r\n\r\n",
                    s.token,
                    bytes + 1
                );
                let answer = raw(&s, &head).await;
                assert_eq!(
                    answer.status(),
                    Some(413),
                    "{method} {path}: {}",
                    answer.text
                );
            }
        }
    }
    assert!(checked > 100, "only {checked} probes");

    // A streamed upload is not refused for its size (the quota is the limit there)…
    let head = format!(
        "PUT /api/v1/files/content?path=/big.bin HTTP/1.1\r\nHost: cairn\r\n\
         Authorization: Bearer {}\r\nContent-Length: 10737418240\r\n\r\nthe first bytes",
        s.token
    );
    let answer = raw(&s, &head).await;
    // …but one that stops sending is cut off.
    assert_eq!(answer.status(), Some(408), "{}", answer.text);
    assert_eq!(answer.json()["error"]["code"], "body_timeout");
    let (_, listing) = s
        .call(reqwest::Method::GET, "/api/v1/files/list?path=/", None)
        .await;
    assert_eq!(
        listing["entries"],
        serde_json::json!([]),
        "nothing was committed"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_off() {
    let s = impatient_server().await;
    // A JSON body announced as 100 bytes, of which 10 come.
    let head = format!(
        "POST /api/v1/files/mkdir HTTP/1.1\r\nHost: cairn\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"path\": ",
        s.token
    );
    let answer = raw(&s, &head).await;
    assert_eq!(answer.status(), Some(408), "{}", answer.text);
    assert_eq!(answer.json()["error"]["code"], "body_timeout");
    // A block, the same.
    let head = format!(
        "PUT /api/v1/blocks/{} HTTP/1.1\r\nHost: cairn\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 1000\r\n\r\nsome bytes",
        hex_hash(b"probe"),
        s.token
    );
    let answer = raw(&s, &head).await;
    assert_eq!(answer.status(), Some(408), "{}", answer.text);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_streams_outlive_the_timeouts() {
    let _gauge = GAUGE.lock().await;
    // The default heartbeat (30 s): the test reads nothing while it waits, and the
    // WebSocket closes on a client that leaves three pings unanswered.
    let s = TestServer::start_with(Backend::Sqlite, |config| {
        config.header_read_timeout_secs = 1;
        config.body_idle_timeout_secs = 1;
    })
    .await;
    let mut ws = open_ws(&s, &s.token).await;
    let mut sse = Sse::open(&s, &s.token).await;
    let Notification::Head { seq: ws_head, .. } = ws_next(&mut ws).await else {
        panic!("a head first");
    };
    let Notification::Head { seq: sse_head, .. } = sse.next().await else {
        panic!("a head first");
    };
    // Several header and body timeouts go by…
    tokio::time::sleep(Duration::from_secs(4)).await;
    // …and both streams still carry the next change.
    put_file_as(&s, &s.token, "/after.txt", b"later").await;
    let told = ws_next(&mut ws).await;
    assert!(matches!(told, Notification::Advanced { .. }), "{told:?}");
    assert!(told.seq().unwrap() > ws_head);
    let told = sse.next().await;
    assert!(matches!(told, Notification::Advanced { .. }), "{told:?}");
    assert!(told.seq().unwrap() > sse_head);
    drop((ws, sse));
    s.finish().await;
}
