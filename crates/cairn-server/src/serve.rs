//! The accept loop: HTTP/1 connections served by hyper, with a header read timeout.
//!
//! `axum::serve` takes no settings, and hyper's header read timeout needs a timer that
//! it does not set, so a client that sent half a request header held its connection
//! for as long as it liked. Here each connection gets one: the whole header of a
//! request must arrive within `header_read_timeout_secs` of the connection's opening
//! (or, on a kept-alive connection, of the previous response: this is also how long an
//! idle connection is kept), or the connection is closed. It does not apply while a response streams (server-sent events, a long
//! download) or after an upgrade (WebSocket), which have heartbeats of their own. The
//! body's idle timeout is the `limits` middleware's.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::HeaderValue;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then stops accepting,
/// lets every connection finish the request it is serving (hyper's graceful shutdown)
/// and returns once all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Connections watch `stop` to begin their graceful shutdown; each holds a `done`
    // receiver until it ends, so the sender sees when the last one has.
    let (stop, stopping) = watch::channel(false);
    let (done, _) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without it, a response written in two parts (a streamed body's head, then
        // its first chunk) waits for the client's delayed ACK of the first: 40 ms on
        // Linux, which was half of a small file's way from one device to another.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%addr, "cannot turn off Nagle's algorithm: {err}");
        }
        let router = router.clone();
        let stopping = stopping.clone();
        let done = done.subscribe();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    connection(stream, addr, false, router, header_read_timeout, stopping).await
                }
                Some(tls) => {
                    // The handshake is held to the same limit as a request's header.
                    match tokio::time::timeout(header_read_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            connection(stream, addr, true, router, header_read_timeout, stopping)
                                .await
                        }
                        Ok(Err(err)) => tracing::debug!(%addr, "TLS handshake failed: {err}"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    done.closed().await;
}

/// Serves one connection until it ends, or until `stopping` asks it to finish the
/// request it is serving. Over TLS (`https`), every request is marked
/// `X-Forwarded-Proto: https`, as a proxy in front would mark it, whatever the client
/// sent: what is served over HTTPS sets `Secure` cookies and makes `https://` links.
async fn connection<I>(
    stream: I,
    addr: SocketAddr,
    https: bool,
    router: Router,
    header_read_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(addr));
        if https {
            request
                .headers_mut()
                .insert("x-forwarded-proto", HeaderValue::from_static("https"));
        }
        router.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let mut asked_to_stop = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%addr, "connection ended: {err}");
                }
                break;
            }
            _ = stopping.wait_for(|stop| *stop), if !asked_to_stop => {
                asked_to_stop = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// An accept that failed: a connection that went away before it was accepted is
/// nobody's concern; anything else (out of file descriptors) is logged, and the loop
/// pauses a second rather than spin.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {err}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
