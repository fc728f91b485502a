//! What anyone holding a link gets at `/s/TOKEN`, without an account.
//!
//! * `GET /s/TOKEN[?path=/sub]`: a file's page, a folder's listing (`path` walks below
//!   it), a file drop's upload form, or the password form.
//! * `POST /s/TOKEN`: the password form; the right password sets a cookie proving it.
//!   Scripts may send the password in `X-Cairn-Link-Password` with any request instead.
//! * `GET /s/TOKEN/download[?path=/sub/file]`: a file's bytes.
//! * `GET /s/TOKEN/zip[?path=/sub]`: a folder as a zip.
//! * `POST /s/TOKEN/upload` (multipart form) and `PUT /s/TOKEN/upload?name=FILE` (the
//!   raw body): a file drop's uploads.
//!
//! Every link that does not work, for whatever reason, and every path in a link that is
//! not there gets the same 404 page. Each use re-checks the creator's rights.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{ConnectInfo, Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Form;
use cairn_core::ServerPath;
use cairn_meta::{Actor, BlockRef, CommitFile, Entry, EntryKind, Link, User};
use futures::TryStreamExt;
use serde::Deserialize;

use super::html::{self, Page};
use super::{below, is_token, now_ms, reach_as_creator, Reached};
use crate::access::Need;
use crate::auth::PasswordGuess;
use crate::error::ApiError;
use crate::extract::Query;
use crate::metrics::COMMITS;
use crate::routes::{BodyLimit, Routes};
use crate::state::AppState;

/// Wrong passwords allowed per link, and per client address, in [`PASSWORD_WINDOW`];
/// the next is refused with 429 before the password is even checked.
const PASSWORD_FAILURES: u32 = 10;
const PASSWORD_WINDOW: Duration = Duration::from_secs(60);
/// Longest password checked; a longer one is wrong without costing an argon2 run.
const MAX_PASSWORD_LEN: usize = 1024;
/// The cookie proving the password was given (one per link: its path is the link's).
const COOKIE: &str = "cairn_link";
/// The header scripts send the password in.
const PASSWORD_HEADER: &str = "x-cairn-link-password";
/// The most children a folder page lists; the zip holds them all.
const MAX_LISTED: u32 = 2000;
/// The device name a file drop's uploads carry (it appears in conflict-copy names).
const DROP_DEVICE: &str = "public link";

pub fn router() -> axum::Router<AppState> {
    Routes::nested_at("")
        .page("/s/{token}", get(show).post(give_password))
        .page("/s/{token}/download", get(download))
        .page("/s/{token}/zip", get(zip_folder))
        // Uploads are chunked as they stream in, so their size needs no cap here.
        .page_limited(
            "/s/{token}/upload",
            BodyLimit::Streamed,
            axum::routing::post(upload_form).put(upload_raw),
        )
        .build()
}

/// What a request does with a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Opens its page: any link.
    View,
    /// Downloads: not a file drop.
    Read,
    /// Uploads: a file drop only.
    Drop,
}

/// A working link and its target, reached with its creator's rights.
struct Found {
    link: Link,
    creator: User,
    reached: Reached,
}

/// An internal failure, as a page that says nothing about it (it was logged).
fn failed(err: ApiError) -> Page {
    if err.status.is_server_error() {
        return html::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on the server. Try again later.",
        );
    }
    // Only server errors are expected here; anything else still must not leak.
    html::not_found()
}

/// The link `token` names, if it works for `what`; otherwise the 404 page.
async fn find(state: &AppState, token: &str, what: Use) -> Result<Found, Page> {
    if !is_token(token) {
        return Err(html::not_found());
    }
    let Some(link) = state
        .meta
        .link_by_token(token)
        .await
        .map_err(|e| failed(e.into()))?
    else {
        return Err(html::not_found());
    };
    if link.is_dead_at(now_ms()) {
        return Err(html::not_found());
    }
    match (what, link.upload_only) {
        (Use::Read, true) | (Use::Drop, false) => return Err(html::not_found()),
        _ => {}
    }
    let need = if link.upload_only {
        Need::Write
    } else {
        Need::Read
    };
    match reach_as_creator(state, &link, need).await.map_err(failed)? {
        Some((creator, reached)) => Ok(Found {
            link,
            creator,
            reached,
        }),
        None => Err(html::not_found()),
    }
}

/// [`find`], for a visitor who must have given the link's password (see [`prove`]).
async fn open(
    state: &AppState,
    token: &str,
    what: Use,
    headers: &HeaderMap,
    addr: SocketAddr,
) -> Result<Found, Page> {
    let found = find(state, token, what).await?;
    prove(state, &found.link, headers, addr).await?;
    Ok(found)
}

/// Checks that the visitor gave the link's password (a cookie from the form, or the
/// header); the password form when neither came.
async fn prove(
    state: &AppState,
    link: &Link,
    headers: &HeaderMap,
    addr: SocketAddr,
) -> Result<(), Page> {
    if link.password_hash.is_none() {
        return Ok(());
    }
    let expected = state.link_key.proof(link);
    let cookie_ok = crate::cookies::values(headers, COOKIE)
        .any(|value| blake3::Hash::from_hex(value).is_ok_and(|given| given == expected));
    if cookie_ok {
        return Ok(());
    }
    match headers.get(PASSWORD_HEADER) {
        Some(value) => {
            let password = String::from_utf8_lossy(value.as_bytes()).into_owned();
            check_password(state, link, addr, password).await
        }
        None => Err(html::password_form(&link.token, false)),
    }
}

/// Verifies a password given for `link`, throttled per link and per client address like
/// logins: once [`PASSWORD_FAILURES`] wrong ones came within [`PASSWORD_WINDOW`], every
/// attempt is refused (429) before the password is looked at, until the window slides.
async fn check_password(
    state: &AppState,
    link: &Link,
    addr: SocketAddr,
    password: String,
) -> Result<(), Page> {
    let link_key = format!("link:{}", link.id);
    let addr_key = format!("linkaddr:{}", addr.ip());
    let keys = [link_key.as_str(), addr_key.as_str()].map(|key| cairn_meta::ThrottleKey {
        key,
        limit: PASSWORD_FAILURES,
    });
    let Some(guess) = PasswordGuess::begin(state, &keys, PASSWORD_WINDOW)
        .await
        .map_err(failed)?
    else {
        return Err(html::throttled(PASSWORD_WINDOW.as_secs()));
    };
    let stored = link.password_hash.clone().unwrap_or_default();
    let ok = password.len() <= MAX_PASSWORD_LEN
        && tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &stored))
            .await
            .map_err(|e| failed(ApiError::internal(e)))?;
    if ok {
        return guess.right().await.map_err(failed);
    }
    guess.wrong();
    Err(html::password_form(&link.token, true))
}

#[derive(Debug, Deserialize)]
struct SubQuery {
    path: Option<String>,
}

/// The path inside the link a request names (`/` when none). A path that does not
/// parse (`..`, `%2e%2e`, NUL, …) is one that is not there.
fn sub_path(query: Result<Query<SubQuery>, ApiError>) -> Result<ServerPath, Page> {
    let Ok(Query(q)) = query else {
        return Err(html::not_found());
    };
    match q.path.as_deref() {
        None | Some("") => Ok(ServerPath::root()),
        Some(p) => ServerPath::parse(p).map_err(|_| html::not_found()),
    }
}

/// The entry `sub` names inside a link's target, if it is there and of `kind`.
async fn entry_below(
    state: &AppState,
    found: &Found,
    sub: &ServerPath,
    kind: EntryKind,
) -> Result<Entry, Page> {
    let target = &found.reached.entry;
    let entry = if sub.is_root() {
        target.clone()
    } else {
        if target.kind != EntryKind::Folder {
            return Err(html::not_found());
        }
        let path = below(&target.path, sub).map_err(|_| html::not_found())?;
        state
            .meta
            .stat(found.link.ns, &path)
            .await
            .map_err(|e| failed(e.into()))?
            .ok_or_else(html::not_found)?
    };
    if entry.kind != kind {
        return Err(html::not_found());
    }
    Ok(entry)
}

/// The name the link's target goes by: its name in the creator's tree.
fn target_name(found: &Found) -> String {
    found.reached.outer.name().unwrap_or("shared").to_owned()
}

fn page_or(result: Result<Response, Page>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<SubQuery>, ApiError>,
) -> Response {
    page_or(show_page(&state, &token, addr, &headers, query).await)
}

async fn show_page(
    state: &AppState,
    token: &str,
    addr: SocketAddr,
    headers: &HeaderMap,
    query: Result<Query<SubQuery>, ApiError>,
) -> Result<Response, Page> {
    let sub = sub_path(query)?;
    let found = open(state, token, Use::View, headers, addr).await?;
    if found.link.upload_only {
        if !sub.is_root() {
            return Err(html::not_found());
        }
        return Ok(html::drop_form(token, &[]).into_response());
    }
    if found.reached.entry.kind == EntryKind::File {
        let entry = entry_below(state, &found, &sub, EntryKind::File).await?;
        return Ok(html::file(token, &entry).into_response());
    }
    let folder = entry_below(state, &found, &sub, EntryKind::Folder).await?;
    let mut children = state
        .meta
        .list_folder(found.link.ns, &folder.path, None, MAX_LISTED + 1)
        .await
        .map_err(|e| failed(e.into()))?;
    let more = children.len() > MAX_LISTED as usize;
    children.truncate(MAX_LISTED as usize);
    let title = match sub.name() {
        Some(name) => name.to_owned(),
        None => target_name(&found),
    };
    Ok(html::folder(token, &title, sub.as_str(), &children, more).into_response())
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    password: String,
}

async fn give_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    page_or(password_given(&state, &token, addr, &headers, form).await)
}

async fn password_given(
    state: &AppState,
    token: &str,
    addr: SocketAddr,
    headers: &HeaderMap,
    form: Result<Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Page> {
    let found = find(state, token, Use::View).await?;
    let link = &found.link;
    let back = format!("/s/{token}");
    if link.password_hash.is_some() {
        let Ok(Form(form)) = form else {
            return Err(html::password_form(token, false));
        };
        check_password(state, link, addr, form.password).await?;
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, back.clone())]).into_response();
    if link.password_hash.is_some() {
        let proof = state.link_key.proof(link).to_hex();
        if let Some(value) = crate::cookies::set(COOKIE, &proof, &back, None, headers) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    html::harden(response.headers_mut());
    Ok(response)
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`: always a download,
/// never rendered in the server's origin.
fn attachment(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let value = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        html::pct(name).replace('/', "%2F")
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Counts one download of the link, unless this is a HEAD request (which sends
/// nothing); the 404 page when the link has none left.
async fn count(state: &AppState, link: &Link, method: &Method) -> Result<(), Page> {
    if method == Method::HEAD {
        return Ok(());
    }
    match state.meta.count_link_download(link.id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(html::not_found()),
        Err(e) => Err(failed(e.into())),
    }
}

async fn download(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<SubQuery>, ApiError>,
) -> Response {
    page_or(download_file(&state, &token, addr, &method, &headers, query).await)
}

async fn download_file(
    state: &AppState,
    token: &str,
    addr: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    query: Result<Query<SubQuery>, ApiError>,
) -> Result<Response, Page> {
    let sub = sub_path(query)?;
    let found = open(state, token, Use::Read, headers, addr).await?;
    let entry = entry_below(state, &found, &sub, EntryKind::File).await?;
    let Some(rev) = entry.rev else {
        return Err(html::not_found());
    };
    let blocks = state
        .meta
        .version_blocks(rev)
        .await
        .map_err(|e| failed(e.into()))?;
    let size: u64 = blocks.iter().map(|b| u64::from(b.size)).sum();
    count(state, &found.link, method).await?;

    let pieces = blocks
        .iter()
        .map(|b| (b.hash, 0, b.size as usize))
        .collect();
    let body = crate::files::block_body(state, &entry.path, pieces)
        .await
        .map_err(failed)?;
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CONTENT_DISPOSITION,
        attachment(entry.path.name().unwrap_or("file")),
    );
    html::harden(h);
    Ok(response)
}

async fn zip_folder(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<SubQuery>, ApiError>,
) -> Response {
    page_or(zip_response(&state, &token, addr, &method, &headers, query).await)
}

async fn zip_response(
    state: &AppState,
    token: &str,
    addr: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    query: Result<Query<SubQuery>, ApiError>,
) -> Result<Response, Page> {
    let sub = sub_path(query)?;
    let found = open(state, token, Use::Read, headers, addr).await?;
    let folder = entry_below(state, &found, &sub, EntryKind::Folder).await?;
    count(state, &found.link, method).await?;
    let top = match sub.name() {
        Some(name) => name.to_owned(),
        None => target_name(&found),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        crate::zip_stream::folder_body(state.clone(), found.link.ns, folder.path, top.clone())
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        attachment(&format!("{top}.zip")),
    );
    html::harden(h);
    Ok(response)
}

/// An uploaded file's name as the visitor's browser gave it, reduced to its last
/// segment (old browsers send a whole local path); `None` when nothing is left.
fn upload_name(raw: &str) -> Option<String> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or("").trim();
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_owned())
}

/// A refused upload, as a page that tells the visitor what they can do about it and
/// nothing about the folder or its owner.
fn upload_refused(err: ApiError) -> Page {
    match err.code {
        "quota_exceeded" => html::error(
            StatusCode::INSUFFICIENT_STORAGE,
            "The owner of this link has no room for this upload.",
        ),
        "invalid_path" => html::error(
            StatusCode::BAD_REQUEST,
            "That file name is not allowed here; rename the file and try again.",
        ),
        "upload_interrupted" => html::error(
            StatusCode::BAD_REQUEST,
            "The upload was interrupted; nothing was stored. Try again.",
        ),
        _ if err.status.is_server_error() => failed(err),
        _ => html::error(err.status, "The upload was refused."),
    }
}

/// Refuses, before reading it, a body that cannot fit in the folder owner's quota.
async fn check_room(state: &AppState, found: &Found, headers: &HeaderMap) -> Result<(), Page> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    if let Some(length) = declared {
        state
            .meta
            .check_quota_of(found.link.ns, length)
            .await
            .map_err(|e| upload_refused(e.into()))?;
    }
    Ok(())
}

/// Commits an upload into the drop's folder as the link's creator, beside (never over)
/// what is there. Returns the size stored.
async fn commit_drop(
    state: &AppState,
    found: &Found,
    name: &str,
    blocks: Vec<BlockRef>,
) -> Result<u64, ApiError> {
    let path = found.reached.entry.path.join(name)?;
    let size = blocks.iter().map(|b| u64::from(b.size)).sum();
    state
        .meta
        .commit_file(CommitFile {
            ns: found.link.ns,
            path,
            blocks,
            mtime: None,
            base_rev: None,
            autorename: true,
            actor: Actor {
                user_id: found.creator.id,
                device_id: None,
                device_name: DROP_DEVICE.to_owned(),
            },
        })
        .await?;
    metrics::counter!(COMMITS).increment(1);
    Ok(size)
}

async fn upload_form(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    page_or(upload_files(&state, &token, addr, &headers, multipart).await)
}

async fn upload_files(
    state: &AppState,
    token: &str,
    addr: SocketAddr,
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, Page> {
    let found = open(state, token, Use::Drop, headers, addr).await?;
    check_room(state, &found, headers).await?;
    let Ok(mut multipart) = multipart else {
        return Err(html::error(
            StatusCode::BAD_REQUEST,
            "Send the files as a multipart form, as the upload page does.",
        ));
    };
    let mut received = Vec::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => {
                return Err(upload_refused(ApiError::bad_request(
                    "upload_interrupted",
                    "bad multipart body",
                )))
            }
        };
        // A form field without a file, or the empty file input of a form sent with
        // nothing chosen: nothing to store.
        let Some(name) = field.file_name().and_then(upload_name) else {
            continue;
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        let pump = async move {
            loop {
                let item = match field.chunk().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => break,
                    Err(err) => Err(io::Error::other(err.to_string())),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        };
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let (_, stored) = tokio::join!(pump, state.blocks.store_stream(&found.creator, stream));
        let blocks = stored.map_err(|err| upload_refused(err.into()))?;
        let size = commit_drop(state, &found, &name, blocks)
            .await
            .map_err(upload_refused)?;
        // The name the visitor gave, not the one stored: a renamed upload would tell
        // them what else the folder holds.
        received.push((name, size));
    }
    if received.is_empty() {
        return Err(html::error(
            StatusCode::BAD_REQUEST,
            "No file was chosen; choose one or more files to upload.",
        ));
    }
    Ok(html::drop_form(token, &received).into_response())
}

#[derive(Debug, Deserialize)]
struct NameQuery {
    name: Option<String>,
}

async fn upload_raw(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<NameQuery>, ApiError>,
    body: Body,
) -> Response {
    page_or(upload_body(&state, &token, addr, &headers, query, body).await)
}

async fn upload_body(
    state: &AppState,
    token: &str,
    addr: SocketAddr,
    headers: &HeaderMap,
    query: Result<Query<NameQuery>, ApiError>,
    body: Body,
) -> Result<Response, Page> {
    let found = open(state, token, Use::Drop, headers, addr).await?;
    let Some(name) = query
        .ok()
        .and_then(|Query(q)| q.name)
        .as_deref()
        .and_then(upload_name)
    else {
        return Err(html::error(
            StatusCode::BAD_REQUEST,
            "Name the file: PUT /s/TOKEN/upload?name=FILE with its bytes as the body.",
        ));
    };
    check_room(state, &found, headers).await?;
    let stream = body
        .into_data_stream()
        .map_err(|err| io::Error::other(err.to_string()));
    let blocks = state
        .blocks
        .store_stream(&found.creator, stream)
        .await
        .map_err(|err| upload_refused(err.into()))?;
    let size = commit_drop(state, &found, &name, blocks)
        .await
        .map_err(upload_refused)?;
    let mut response = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("received {name} ({size} bytes)\n"),
    )
        .into_response();
    html::harden(response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names() {
        assert_eq!(upload_name("a.txt").as_deref(), Some("a.txt"));
        assert_eq!(upload_name("C:\\Users\\x\\b.pdf").as_deref(), Some("b.pdf"));
        assert_eq!(upload_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(upload_name("dir/.."), None);
        assert_eq!(upload_name(""), None);
    }

    #[test]
    fn attachment_names() {
        assert_eq!(
            attachment("a \"b\".txt"),
            "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
        );
        assert_eq!(
            attachment("é.pdf"),
            "attachment; filename=\"_.pdf\"; filename*=UTF-8''%C3%A9.pdf"
        );
    }
}
