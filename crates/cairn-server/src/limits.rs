//! Request bodies: how large, and how slow, they may be.
//!
//! Without a proxy in front, the server itself must keep a few hostile or broken
//! clients from holding its connections and memory. Each route declares its body limit
//! where it is registered (`routes::BodyLimit`); [`guard_body`] then
//!
//! * refuses a declared `Content-Length` above it with 413 at once, before reading a
//!   byte (a client announcing 10 GB to a JSON endpoint is not waited for);
//! * caps a body without a declared length at the same limit as it streams in;
//! * cuts off a body that sends nothing for `body_idle_timeout_secs` while a handler
//!   waits for it, with 408.
//!
//! Slow headers are the other half, handled where connections are served (`serve.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use crate::error::ApiError;
use crate::routes::{body_limit, BodyLimit};
use crate::state::AppState;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The middleware (see the module's documentation). It runs after routing, so it
/// knows the route, and before any extractor, so nothing has read the body yet.
pub(crate) async fn guard_body(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = match *request.method() {
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS => BodyLimit::Json,
        _ => request
            .extensions()
            .get::<MatchedPath>()
            .map(|path| body_limit(path.as_str()))
            .unwrap_or(BodyLimit::Json),
    }
    .bytes(&state.config);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(limit), Some(declared)) = (limit, declared) {
        if declared > limit {
            return closing(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body is {declared} bytes; this endpoint takes at most {limit}"
                ),
            ));
        }
    }
    let idle = Duration::from_secs(state.config.body_idle_timeout_secs.max(1));
    let stalled = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = IdleTimeout::new(body, idle, stalled.clone());
    let body = match limit {
        Some(limit) => Body::new(http_body_util::Limited::new(
            body,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )),
        None => Body::new(body),
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    if stalled.load(Ordering::Relaxed) {
        // Whatever the handler made of the failed read (a 400, an interrupted upload),
        // the client is told what happened.
        return closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body stopped: nothing arrived for {} seconds",
                idle.as_secs()
            ),
        ));
    }
    response
}

/// An error answered before the request's body was read: the connection closes after
/// it (the rest of the body is still on its way), and says so, so that no client puts
/// it back in its pool and sends its next request into a closed socket.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// A body that fails when its sender has sent nothing for `idle` while it is being
/// read. The clock runs only while a reader waits: a handler busy between reads (a
/// slow disk) never makes its client time out.
struct IdleTimeout {
    inner: Body,
    idle: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl IdleTimeout {
    fn new(inner: Body, idle: Duration, stalled: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            idle,
            sleep: None,
            stalled,
        }
    }
}

/// What a stalled body fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled")]
struct BodyStalled;

impl http_body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            // Something came (or the end): the next wait starts its own clock.
            this.sleep = None;
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let idle = this.idle;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.stalled.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyStalled.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
