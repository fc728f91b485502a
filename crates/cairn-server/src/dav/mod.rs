//! WebDAV at `/dav/`, class 1 and 2, for the clients that speak it: rclone, davfs2,
//! Windows Explorer, macOS Finder, GNOME Files, Cyberduck, phone file managers.
//!
//! The protocol is `dav-server`'s (requests, multistatus XML, conditional headers,
//! Depth and Overwrite, the LOCK state machine); Cairn gives it a file system
//! ([`fs::CairnFs`]) over the caller's tree, whose every change goes through the same
//! functions as the JSON API's, and a lock system ([`locks::DbLocks`]) over the
//! metadata store. What `dav-server` does not do, this module adds around it:
//!
//! - authentication: HTTP Basic with an app password, never the account's password;
//! - `PROPFIND` with `Depth: infinity` is refused (403 `propfind-finite-depth`), so
//!   one request cannot walk a whole tree;
//! - a folder deleted (or replaced by COPY/MOVE with `Overwrite`) goes to the trash
//!   whole, not file by file (see [`fs::CairnFs::trash_whole`]);
//! - `X-OC-Mtime` on a PUT sets the file's modification time, as ownCloud and
//!   Nextcloud do, and is acknowledged with `X-OC-MTime: accepted`;
//! - an error `dav-server` can only call a 403 or a 500 (a name Cairn refuses, an
//!   unreachable block store) is answered with its real status and message.

mod file;
pub(crate) mod fs;
mod locks;
mod paths;
mod props;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use cairn_core::ServerPath;
use dav_server::davpath::DavPath;
use dav_server::{DavHandler, DavMethod, DavMethodSet};

use crate::access::{Access, Need};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::routes::{BodyLimit, Routes};
use crate::state::AppState;

use fs::CairnFs;
use paths::PREFIX;

/// How much of a file one read hands `dav-server` at most: a whole block, so a
/// download passes the store's buffers on without copying them.
const READ_BUF: usize = 8 << 20;

/// The WebDAV routes. Outside the JSON API's error middleware: WebDAV answers in its
/// own shapes (multistatus XML, bare statuses).
pub fn router() -> Router<AppState> {
    // PUT bodies are chunked as they stream in; XML bodies `dav-server` caps itself.
    Routes::nested_at("")
        .page_limited(PREFIX, BodyLimit::Streamed, any(serve))
        .page_limited("/dav/", BodyLimit::Streamed, any(serve))
        .page_limited("/dav/{*path}", BodyLimit::Streamed, any(serve))
        .build()
}

/// The methods served: all of class 1 and 2, without SabreDAV's partial PATCH (a new
/// version is always a whole file) and without CalDAV/CardDAV's.
const METHODS: [(&str, DavMethod); 12] = [
    ("HEAD", DavMethod::Head),
    ("GET", DavMethod::Get),
    ("PUT", DavMethod::Put),
    ("OPTIONS", DavMethod::Options),
    ("PROPFIND", DavMethod::PropFind),
    ("PROPPATCH", DavMethod::PropPatch),
    ("MKCOL", DavMethod::MkCol),
    ("COPY", DavMethod::Copy),
    ("MOVE", DavMethod::Move),
    ("DELETE", DavMethod::Delete),
    ("LOCK", DavMethod::Lock),
    ("UNLOCK", DavMethod::Unlock),
];

fn methods() -> DavMethodSet {
    let mut set = DavMethodSet::none();
    for (_, method) in METHODS {
        set.add(method);
    }
    set
}

/// Whether `method` is one of [`METHODS`]; anything else is a 405 before credentials
/// are even looked at.
fn served(method: &Method) -> bool {
    METHODS.iter().any(|(name, _)| *name == method.as_str())
}

async fn serve(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    match serve_as_caller(state, addr, request).await {
        Ok(response) => response,
        Err(err) => error_response(err),
    }
}

async fn serve_as_caller(
    state: AppState,
    addr: SocketAddr,
    request: Request,
) -> ApiResult<Response> {
    if !served(request.method()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("WebDAV here does not take {}", request.method()),
        ));
    }
    let auth = AuthUser::from_basic(&state, request.headers(), addr).await?;
    let access = Access::load(&state, auth).await?;
    let headers = request.headers();
    if request.method().as_str() == "PROPFIND" && infinite_depth(headers) {
        return Ok(finite_depth_only());
    }
    let method = request.method().as_str();
    let path = request_path(request.uri().path())?;
    let destination = match method {
        "COPY" | "MOVE" => headers
            .get("destination")
            .and_then(|v| v.to_str().ok())
            .map(destination_path)
            .transpose()?,
        _ => None,
    };
    if path.is_root() {
        match method {
            "PUT" => {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "is_a_folder",
                    "/ is your root folder; a file cannot replace it",
                ))
            }
            "DELETE" | "MOVE" => {
                return Err(ApiError::forbidden(
                    "your root folder cannot be deleted or moved",
                ))
            }
            _ => {}
        }
    }
    check_writable(&access, method, &path, destination.as_ref())?;
    let trash_whole = match method {
        "DELETE" => Some(path),
        _ => destination,
    };
    if let Some(value) = headers.get("if") {
        if !if_header_is_safe(value.as_bytes()) {
            return Err(ApiError::bad_request(
                "invalid_if",
                "the If header has an unterminated <…> or […]",
            ));
        }
    }
    let mtime = oc_mtime(headers)?;
    let is_put = request.method() == Method::PUT;
    let fs = CairnFs {
        state,
        access: Arc::new(access),
        trash_whole,
        mtime,
        failure: Arc::new(Mutex::new(None)),
    };
    let principal = fs.access.auth.user.name.clone();
    let handler = DavHandler::builder()
        .strip_prefix(PREFIX)
        .filesystem(Box::new(fs.clone()))
        .locksystem(Box::new(locks::DbLocks::new(fs.clone())))
        .methods(methods())
        .read_buf_size(READ_BUF)
        // A browser pointed at a folder gets a plain listing.
        .autoindex(true)
        .build_handler();
    let response = handler.handle_guarded(request, principal, ()).await;
    let (mut parts, body) = response.into_parts();
    let failure = fs.failure.lock().ok().and_then(|mut f| f.take());
    if let Some(err) = failure {
        // `dav-server` calls what it cannot name a 403 or a 500; say what it was.
        let vague = matches!(
            parts.status,
            StatusCode::FORBIDDEN | StatusCode::INTERNAL_SERVER_ERROR
        );
        let telling = matches!(
            err.status,
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE
        );
        if vague && telling {
            return Ok(error_response(err));
        }
    }
    // Nothing stored acts in Cairn's origin: a file opened in a browser from here (an
    // HTML file, an SVG) runs nothing, as with every other raw content answer.
    parts.headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::files::SANDBOX_CSP),
    );
    parts.headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if is_put && mtime.is_some() && parts.status.is_success() {
        parts
            .headers
            .insert("x-oc-mtime", HeaderValue::from_static("accepted"));
    }
    Ok(Response::from_parts(parts, axum::body::Body::new(body)))
}

/// Refuses up front, with 403, a change the caller may not make: one asked of a shared
/// folder it only views (`dav-server` would take a LOCK without asking the file
/// system, and a 403 is clearer than a lock that blocks its owner). Deleting or
/// renaming the shared folder's own mount is the caller's to do (it leaves the share,
/// or renames its own folder), as through the JSON API.
fn check_writable(
    access: &Access,
    method: &str,
    path: &ServerPath,
    destination: Option<&ServerPath>,
) -> ApiResult<()> {
    let own_mount = || {
        access
            .resolve(path, Need::Read)
            .is_ok_and(|t| t.is_mount_point())
    };
    match method {
        "PUT" | "MKCOL" | "PROPPATCH" | "LOCK" => {
            access.resolve(path, Need::Write)?;
        }
        "DELETE" | "MOVE" if !own_mount() => {
            access.resolve(path, Need::Write)?;
        }
        _ => {}
    }
    if let Some(destination) = destination {
        access.resolve(destination, Need::Write)?;
    }
    Ok(())
}

/// An error as WebDAV clients read it: the status, and the message as text. A 401
/// names the scheme, so clients ask for the user name and app password.
fn error_response(err: ApiError) -> Response {
    let mut response = (err.status, format!("{}\n", err.message)).into_response();
    if err.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::app_passwords::BASIC_CHALLENGE),
        );
    }
    response
}

fn infinite_depth(headers: &HeaderMap) -> bool {
    headers
        .get("depth")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("infinity"))
}

/// RFC 4918 §9.1: a server may refuse `Depth: infinity`, with this precondition.
fn finite_depth_only() -> Response {
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                <D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n";
    let mut response = (StatusCode::FORBIDDEN, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    response
}

/// Whether `dav-server` can parse an `If` header without running off its end: its
/// tokenizer looks for the `>` or `]` closing a `<` or `[` without checking for the end
/// of the value, so an unterminated one would panic. This walks the value the way that
/// tokenizer does; a value it stops on cleanly (whitespace inside a token) is left to
/// `dav-server` to refuse.
fn if_header_is_safe(value: &[u8]) -> bool {
    let mut i = 0;
    while i < value.len() {
        let close = match value[i] {
            b'<' => b'>',
            b'[' => b']',
            _ => {
                i += 1;
                continue;
            }
        };
        let (mut j, mut quote) = (i + 1, false);
        loop {
            let Some(&c) = value.get(j) else {
                return false;
            };
            if !quote && c == close {
                break;
            }
            if b" \t\r\n".contains(&c) {
                return true;
            }
            if c == b'"' {
                quote = !quote;
            }
            j += 1;
        }
        i = j + 1;
    }
    true
}

/// The caller's path a request URL's path names.
fn request_path(url_path: &str) -> ApiResult<ServerPath> {
    let mut dav = DavPath::new(url_path)
        .map_err(|_| ApiError::bad_request("invalid_path", "the URL's path is not valid"))?;
    dav.set_prefix(PREFIX)
        .map_err(|_| ApiError::bad_request("invalid_path", "WebDAV paths start with /dav/"))?;
    paths::server_path(&dav)
}

/// The caller's path a `Destination` header names (a whole URL or an absolute path).
fn destination_path(value: &str) -> ApiResult<ServerPath> {
    let uri: axum::http::Uri = value
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_destination", "Destination is not a URL"))?;
    request_path(uri.path())
}

/// `X-OC-Mtime`: Unix seconds (a fraction is allowed), as Unix ms.
fn oc_mtime(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get("x-oc-mtime") else {
        return Ok(None);
    };
    let secs: f64 = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|s: &f64| s.is_finite() && (0.0..1e11).contains(s))
        .ok_or_else(|| ApiError::bad_request("invalid_mtime", "X-OC-Mtime must be Unix seconds"))?;
    Ok(Some((secs * 1000.0) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_headers_that_would_trip_the_parser_are_caught() {
        let fine = [
            &b"(<urn:uuid:1-2> [\"abc\"]) (Not <DAV:no-lock>)"[..],
            b"<http://h/dav/a> (<urn:uuid:1>)",
            b"(<a b>)",
            b"",
        ];
        for value in fine {
            assert!(
                if_header_is_safe(value),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        let cut = [
            &b"(<urn:uuid:1> [\"abc"[..],
            b"(<urn:uuid:1",
            b"([\"a]\")",
            b"<",
        ];
        for value in cut {
            assert!(
                !if_header_is_safe(value),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
