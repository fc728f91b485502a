//! Resumable uploads over the tus protocol, version 1.0.0
//! (<https://tus.io/protocols/resumable-upload>), at `/api/v1/tus/`: the core protocol
//! and the creation, creation-with-upload, termination, expiration and checksum
//! extensions. `docs/tus.md` says what a client may send.
//!
//! An upload belongs to the account that created it: for anyone else its id answers
//! exactly like an unknown one (404). Rights and quota are checked as for
//! `PUT /files/content` (`Access::resolve(path, Need::Write)`, the quota with the
//! declared length) at creation, and again by the commit at completion, which is the
//! ordinary commit (`files::commit_blocks`). The bytes go through the server's chunker
//! and block manager as they arrive (`receive.rs`); the state between requests is in
//! the metadata store (`cairn_meta::uploads`), so an acknowledged offset survives a
//! crash. The body of a PATCH is read by a task of its own, so that when the client's
//! connection is cut, hyper dropping the handler does not drop what arrived: the task
//! keeps it, and the client resumes from there.

mod concat;
mod finish;
mod metadata;
mod receive;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use cairn_meta::{EntryKind, LeaseAttempt, MetaError, MetaStore, NewUpload, OnConflict, Upload};
use rand::RngCore;
use tokio::sync::OwnedMutexGuard;

use crate::access::{Access, Need};
use crate::error::ApiError;
use crate::routes::{BodyLimit, Routes};
use crate::state::AppState;
use concat::Concat;
use metadata::{Checksum, Destination, CHECKSUM_ALGORITHMS};
use receive::{Received, Receiver};

/// The protocol version served, the only one.
const TUS_VERSION: &str = "1.0.0";
/// The extensions served.
const TUS_EXTENSIONS: &str =
    "creation,creation-with-upload,termination,expiration,checksum,concatenation";
/// The content type of every body that carries an upload's bytes.
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// How long an upload's lease lasts unless renewed: how long a node that dies while it
/// writes an upload keeps others from it.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often the request holding a lease renews it: several times within [`LEASE`], so
/// that a slow metadata commit or two do not lose it.
const LEASE_RENEW: Duration = Duration::from_millis(1250);
/// How long a request waits for another one on the same upload to finish: longer than
/// a lease, so that a lease whose holder died always runs out within one wait.
const LOCK_WAIT: Duration = Duration::from_secs(6);
/// The longest pause between two tries at a lease another node holds.
const LEASE_POLL_MAX: Duration = Duration::from_millis(200);

pub(crate) fn router() -> Router<AppState> {
    Routes::api()
        .protocol(
            "/tus/",
            BodyLimit::Streamed,
            on(MethodFilter::OPTIONS, options).post(create),
        )
        .protocol(
            "/tus/{id}",
            BodyLimit::Streamed,
            on(MethodFilter::HEAD, head).patch(patch).delete(terminate),
        )
        .build()
}

/// One request at a time per upload, across every node on the metadata database: a
/// PATCH holds its upload's lease until its body is read and saved (even after its
/// client went away), and a HEAD waits for it (briefly), so that a client resuming after
/// a cut connection, on this node or another, is told the offset that includes
/// everything that arrived.
///
/// The lease is in the metadata store (`MetaStore::lease_upload`), renewed every
/// [`LEASE_RENEW`] while its holder works, so a node killed holding one blocks the upload
/// for at most [`LEASE`]. Within a process, requests for one upload first queue on a
/// local lock, which wakes the next one as soon as the lease is given back, instead of
/// polling the database; only requests on different nodes poll each other's lease.
#[derive(Debug, Clone, Default)]
pub struct UploadLocks(Arc<std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>);

/// An upload's lease, held by one request; renewed while it lives, given back (and the
/// local lock with it) when dropped.
#[derive(Debug)]
pub(crate) struct UploadLease {
    /// Renews the lease; `None` for an upload that was not there to lease (the request
    /// then answers 404).
    renewal: Option<tokio::task::JoinHandle<()>>,
    /// What giving the lease back needs, and the local lock, let go only after.
    release: Option<(MetaStore, String, String, OwnedMutexGuard<()>)>,
}

impl Drop for UploadLease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Some((meta, id, holder, local)) = self.release.take() {
            // The local lock goes only once the lease is given back, so that the next
            // request of this process finds the lease free.
            tokio::spawn(async move {
                if let Err(err) = meta.release_upload_lease(&id, &holder).await {
                    tracing::warn!(upload = %id, error = %err, "could not give an upload's lease back; it runs out by itself");
                }
                drop(local);
            });
        }
    }
}

impl UploadLocks {
    /// The lease of upload `id`, waited for at most `wait`; `None` when another
    /// request kept it that long. An upload that is not there is "leased" at once,
    /// for the caller to find it missing.
    async fn lock(
        &self,
        meta: &MetaStore,
        id: &str,
        wait: Duration,
    ) -> Result<Option<UploadLease>, MetaError> {
        let deadline = tokio::time::Instant::now() + wait;
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, lock| lock.strong_count() > 0);
            match map.get(id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(id.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        let Ok(local) = tokio::time::timeout_at(deadline, lock.lock_owned()).await else {
            return Ok(None);
        };
        let holder = new_id();
        let mut pause = Duration::from_millis(10);
        loop {
            let now = now_ms();
            match meta.lease_upload(id, &holder, now, now + ms(LEASE)).await? {
                LeaseAttempt::Taken => break,
                LeaseAttempt::NoUpload => {
                    return Ok(Some(UploadLease {
                        renewal: None,
                        release: None,
                    }))
                }
                LeaseAttempt::HeldUntil(until) => {
                    // Another node's request: try again soon (it may give the lease
                    // back early), and right when the lease runs out.
                    let left = tokio::time::Instant::now();
                    if left >= deadline {
                        return Ok(None);
                    }
                    let runs_out = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
                    let nap = pause.min(runs_out).min(deadline - left);
                    tokio::time::sleep(nap.max(Duration::from_millis(1))).await;
                    pause = (pause * 2).min(LEASE_POLL_MAX);
                }
            }
        }
        let renewal = tokio::spawn({
            let (meta, id, holder) = (meta.clone(), id.to_owned(), holder.clone());
            async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW).await;
                    match meta
                        .renew_upload_lease(&id, &holder, now_ms() + ms(LEASE))
                        .await
                    {
                        Ok(true) => {}
                        // Run out (this node stalled past it) and maybe taken: the
                        // compare-and-set on the offset still keeps the upload whole.
                        Ok(false) => {
                            tracing::warn!(upload = %id, "lost an upload's lease while writing it");
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(upload = %id, error = %err, "could not renew an upload's lease")
                        }
                    }
                }
            }
        });
        Ok(Some(UploadLease {
            renewal: Some(renewal),
            release: Some((meta.clone(), id.to_owned(), holder, local)),
        }))
    }
}

/// A duration in milliseconds, as the metadata store keeps time.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An error answered the tus way: the protocol's headers with the JSON error body.
#[derive(Debug)]
struct TusError(ApiError);

impl<E: Into<ApiError>> From<E> for TusError {
    fn from(err: E) -> Self {
        TusError(err.into())
    }
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        let headers = response.headers_mut();
        headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if response.status() == StatusCode::PRECONDITION_FAILED {
            // The versions this server speaks, for a client that asked for another.
            response
                .headers_mut()
                .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
        }
        response
    }
}

type TusResult = Result<Response, TusError>;

fn error(status: u16, code: &'static str, message: impl Into<String>) -> TusError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    TusError(ApiError::new(status, code, message))
}

/// Every request but OPTIONS must say it speaks our version (412 with the versions we
/// speak otherwise: see [`TusError`]).
fn check_version(headers: &HeaderMap) -> Result<(), TusError> {
    if headers.get("tus-resumable").and_then(|v| v.to_str().ok()) == Some(TUS_VERSION) {
        return Ok(());
    }
    Err(error(
        412,
        "tus_version",
        format!("send Tus-Resumable: {TUS_VERSION}, the version this server speaks"),
    ))
}

/// A response with the protocol's headers.
fn answer(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut response = status.into_response();
    let out = response.headers_mut();
    out.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            out.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

fn now_ms() -> i64 {
    crate::now_ms()
}

/// An RFC 7231 date (`Upload-Expires`).
fn http_date(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(at.max(SystemTime::UNIX_EPOCH))
}

fn expiry(state: &AppState) -> i64 {
    let lifetime = i64::try_from(state.config.tus_upload_lifetime_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX);
    now_ms().saturating_add(lifetime)
}

/// The caller's upload `id`; an unknown id, another account's upload and an expired
/// one all answer the same 404.
async fn load(state: &AppState, access: &Access, id: &str) -> Result<Upload, TusError> {
    match state.meta.upload(id).await? {
        Some(upload) if upload.user_id == access.auth.user.id && upload.expires_at > now_ms() => {
            Ok(upload)
        }
        _ => Err(TusError(ApiError::not_found("no such upload"))),
    }
}

fn content_type_is_upload(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// `OPTIONS /api/v1/tus/`: what this server speaks. Needs no account.
async fn options() -> Response {
    answer(
        StatusCode::NO_CONTENT,
        &[
            ("tus-version", TUS_VERSION.to_owned()),
            ("tus-extension", TUS_EXTENSIONS.to_owned()),
            ("tus-checksum-algorithm", CHECKSUM_ALGORITHMS.to_owned()),
        ],
    )
}

/// `POST /api/v1/tus/`: a new upload (creation), with its first bytes if the body has
/// any (creation-with-upload); a part of a file, or the file joined from its parts
/// (concatenation, `concat.rs`).
async fn create(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> TusResult {
    check_version(&headers)?;
    let concat = match headers.get("upload-concat") {
        None => None,
        Some(value) => {
            Some(Concat::parse(value.to_str().map_err(|_| {
                error(400, "invalid_concat", "Upload-Concat is not ASCII")
            })?)?)
        }
    };
    let partial = match concat {
        Some(Concat::Final(parts)) => return create_final(&state, &access, &headers, parts).await,
        Some(Concat::Partial) => true,
        None => false,
    };
    if headers.contains_key("upload-defer-length") {
        return Err(error(
            400,
            "defer_length_unsupported",
            "this server needs Upload-Length at creation (Upload-Defer-Length is not supported)",
        ));
    }
    let length = metadata::number(&headers, "upload-length")?
        .ok_or_else(|| error(400, "missing_length", "Upload-Length is required"))?;
    let raw = raw_metadata(&headers)?;
    let meta = metadata::parse_metadata(&raw)?;
    // A part needs no destination (the final upload names it); when it names one
    // anyway, the rights and the quota are checked now, as for a whole file.
    let dest = match partial && !metadata::names_destination(&meta) {
        true => None,
        false => Some(metadata::destination(&meta)?),
    };
    let with_body = content_type_is_upload(&headers);
    let declared = metadata::number(&headers, header::CONTENT_LENGTH.as_str())?;
    if with_body && declared.is_some_and(|n| n > length) {
        return Err(error(
            413,
            "upload_too_long",
            "the body is longer than Upload-Length",
        ));
    }
    let checksum = match with_body {
        true => Checksum::from_headers(&headers)?,
        false => None,
    };
    match &dest {
        Some(dest) => admit(&state, &access, dest, length, !partial).await?,
        None => state.meta.check_quota_of(access.home(), length).await?,
    }

    let id = new_id();
    let expires_at = expiry(&state);
    state
        .meta
        .create_upload(&NewUpload {
            id: id.clone(),
            user_id: access.auth.user.id,
            // A part's is empty: see `Upload::is_partial`.
            path: match (&dest, partial) {
                (Some(dest), false) => dest.path.as_str().to_owned(),
                _ => String::new(),
            },
            metadata: raw,
            on_conflict: dest.as_ref().map_or(OnConflict::Fail, |d| d.on_conflict),
            mtime: dest.as_ref().and_then(|d| d.mtime),
            length,
            expires_at,
        })
        .await?;
    let location = format!("{}/tus/{id}", crate::routes::API);
    let mut extra = vec![("location", location)];
    if with_body || length == 0 {
        let upload = load(&state, &access, &id).await?;
        let guard = state.tus_locks.lock(&state.meta, &id, LOCK_WAIT).await?;
        // A creation's body that fails is not the creation's failure: the upload
        // exists, and its offset says what of the body was kept.
        let outcome = run(&state, &access, upload, body, declared, checksum, guard).await;
        let offset = match &outcome {
            Ok(done) => done.offset,
            Err(_) => state.meta.upload(&id).await?.map_or(length, |u| u.offset),
        };
        extra.push(("upload-offset", offset.to_string()));
        if let Ok(Done {
            path: Some(path), ..
        }) = &outcome
        {
            extra.push(("cairn-path", metadata::percent_encode(path)));
        }
        if let Err(err) = outcome {
            // A completion refused (a name taken meanwhile, the quota) is the answer.
            if offset == length {
                return Err(err);
            }
        }
    }
    extra.push(("upload-expires", http_date(expires_at)));
    Ok(answer(StatusCode::CREATED, &extra))
}

/// A new upload's id: random, unguessable.
fn new_id() -> String {
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    hex::encode(id)
}

/// The creation's `Upload-Metadata`, as sent (empty when absent).
fn raw_metadata(headers: &HeaderMap) -> Result<String, TusError> {
    Ok(headers
        .get("upload-metadata")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| error(400, "invalid_metadata", "Upload-Metadata is not ASCII"))?
        .unwrap_or_default())
}

/// What a whole-file upload (`PUT /files/content`) checks before the first byte: that
/// the caller may write `dest`, that its name is free when the upload must not replace
/// or rename (`check_name`), and that `length` bytes fit in the quota of the account
/// the folder belongs to. The commit checks all of it again at the end.
async fn admit(
    state: &AppState,
    access: &Access,
    dest: &Destination,
    length: i64,
    check_name: bool,
) -> Result<(), TusError> {
    let target = access.resolve(&dest.path, Need::Write)?;
    if target.path.is_root() {
        return Err(error(
            400,
            "invalid_path",
            "a file cannot be stored in place of a shared folder; name it",
        ));
    }
    let existing = match check_name {
        true => state.meta.stat(target.ns, &target.path).await?,
        false => None,
    };
    let replaced = match (&existing, dest.on_conflict) {
        (Some(_), OnConflict::Fail) => {
            return Err(error(
                409,
                "already_exists",
                format!("{} already exists", dest.path),
            ))
        }
        (Some(e), OnConflict::Replace) if e.kind != EntryKind::File => {
            return Err(error(
                409,
                "is_a_folder",
                format!("{} is a folder; a file cannot replace it", dest.path),
            ))
        }
        (Some(e), OnConflict::Replace) => e.size,
        _ => 0,
    };
    state
        .meta
        .check_quota_of(target.ns, length - replaced)
        .await?;
    Ok(())
}

/// `POST` with `Upload-Concat: final;…`: the file joined from its complete parts,
/// committed at once where `Upload-Metadata` says; the parts are gone afterwards. The
/// answer's `Location` names the final upload, which is complete and so, like any
/// finished upload, not kept: a `HEAD` of it answers 404.
async fn create_final(
    state: &AppState,
    access: &Access,
    headers: &HeaderMap,
    ids: Vec<String>,
) -> TusResult {
    if content_type_is_upload(headers) {
        return Err(error(
            400,
            "final_with_body",
            "a final upload carries no bytes: they are in its parts",
        ));
    }
    let dest = metadata::destination(&metadata::parse_metadata(&raw_metadata(headers)?)?)?;
    // The parts' locks, in one order whoever asks, so two joins cannot wait for each
    // other.
    let mut sorted = ids.clone();
    sorted.sort();
    let mut guards = Vec::with_capacity(sorted.len());
    for id in &sorted {
        guards.push(
            state
                .tus_locks
                .lock(&state.meta, id, LOCK_WAIT)
                .await?
                .ok_or_else(|| error(423, "upload_busy", "another request is writing a part"))?,
        );
    }
    let mut parts = Vec::with_capacity(ids.len());
    for id in &ids {
        let part = load(state, access, id).await?;
        if !part.is_partial() {
            return Err(error(
                400,
                "not_partial",
                format!("upload {id} was not created as a part (Upload-Concat: partial)"),
            ));
        }
        if part.offset != part.length {
            return Err(error(
                400,
                "part_incomplete",
                format!(
                    "part {id} is at {} of {} bytes; send the rest first",
                    part.offset, part.length
                ),
            ));
        }
        parts.push(part);
    }
    let length: i64 = parts.iter().map(|p| p.length).sum();
    if metadata::number(headers, "upload-length")?.is_some_and(|n| n != length) {
        return Err(error(
            400,
            "invalid_length",
            format!("Upload-Length differs from the parts' {length} bytes; leave it out"),
        ));
    }
    admit(state, access, &dest, length, true).await?;
    let (state, access) = (state.clone(), access.clone());
    // Its own task: a client that goes away does not stop a join halfway, between the
    // commit and the removal of the parts.
    let path = tokio::spawn(async move {
        let _guards = guards;
        let blocks = concat::join(&state, &access.auth.user, &parts).await?;
        let path = finish::commit(&state, &access, &dest, blocks).await?;
        for part in &parts {
            state.meta.delete_upload(&part.id).await?;
        }
        Ok::<_, TusError>(path)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(answer(
        StatusCode::CREATED,
        &[
            (
                "location",
                format!("{}/tus/{}", crate::routes::API, new_id()),
            ),
            ("upload-offset", length.to_string()),
            ("upload-length", length.to_string()),
            ("cairn-path", metadata::percent_encode(&path)),
        ],
    ))
}

/// `HEAD /api/v1/tus/{id}`: how far the upload got.
async fn head(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> TusResult {
    check_version(&headers)?;
    // Let a request that is still saving what it received finish first.
    let _guard = state.tus_locks.lock(&state.meta, &id, LOCK_WAIT).await?;
    let upload = load(&state, &access, &id).await?;
    let mut out = vec![
        ("upload-offset", upload.offset.to_string()),
        ("upload-length", upload.length.to_string()),
        ("upload-expires", http_date(upload.expires_at)),
    ];
    if !upload.metadata.is_empty() {
        out.push(("upload-metadata", upload.metadata.clone()));
    }
    if upload.is_partial() {
        out.push(("upload-concat", "partial".to_owned()));
    }
    Ok(answer(StatusCode::OK, &out))
}

/// `PATCH /api/v1/tus/{id}`: bytes at the upload's offset.
async fn patch(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> TusResult {
    check_version(&headers)?;
    if !content_type_is_upload(&headers) {
        return Err(error(
            415,
            "unsupported_media_type",
            format!("send the bytes as {OFFSET_OCTET_STREAM}"),
        ));
    }
    let offset = metadata::number(&headers, "upload-offset")?
        .ok_or_else(|| error(400, "missing_offset", "Upload-Offset is required"))?;
    let declared = metadata::number(&headers, header::CONTENT_LENGTH.as_str())?;
    let checksum = Checksum::from_headers(&headers)?;
    let guard = state
        .tus_locks
        .lock(&state.meta, &id, LOCK_WAIT)
        .await?
        .ok_or_else(|| error(423, "upload_busy", "another request is writing this upload"))?;
    let upload = load(&state, &access, &id).await?;
    if offset != upload.offset {
        return Err(error(
            409,
            "offset_mismatch",
            format!(
                "Upload-Offset is {offset}, but the upload is at {}",
                upload.offset
            ),
        ));
    }
    if declared.is_some_and(|n| n > upload.length - upload.offset) {
        return Err(error(
            413,
            "upload_too_long",
            format!(
                "the body would pass Upload-Length ({}): {} bytes are left",
                upload.length,
                upload.length - upload.offset
            ),
        ));
    }
    let done = run(
        &state,
        &access,
        upload,
        body,
        declared,
        checksum,
        Some(guard),
    )
    .await?;
    let mut out = vec![
        ("upload-offset", done.offset.to_string()),
        ("upload-expires", http_date(done.expires_at)),
    ];
    if let Some(path) = &done.path {
        out.push(("cairn-path", metadata::percent_encode(path)));
    }
    Ok(answer(StatusCode::NO_CONTENT, &out))
}

/// What a request's body did to its upload.
#[derive(Debug)]
struct Done {
    offset: i64,
    expires_at: i64,
    /// The file's path, when the upload was complete and is now a file.
    path: Option<String>,
}

/// Receives `body` into `upload` in a task of its own, holding the upload's lease, and
/// commits the file when the last byte is in.
async fn run(
    state: &AppState,
    access: &Access,
    upload: Upload,
    body: Body,
    declared: Option<i64>,
    checksum: Option<Checksum>,
    guard: Option<UploadLease>,
) -> Result<Done, TusError> {
    let (state, access) = (state.clone(), access.clone());
    // Its own task: when the client's connection is cut, hyper drops this handler, but
    // the task reads the body to its broken end and saves what arrived.
    let task = tokio::spawn(async move {
        let _guard = guard;
        let expires_at = expiry(&state);
        let fits = declared.is_some_and(|n| n <= upload.length - upload.offset);
        let save_each_block = checksum.is_none() && fits;
        let receiver = Receiver::new(
            &state,
            &access.auth.user,
            &upload,
            save_each_block,
            expires_at,
        );
        let offset = match receiver.receive(body, declared, checksum).await? {
            Received::Kept(offset) => offset,
            Received::Interrupted(offset) => {
                return Err(error(
                    400,
                    "upload_interrupted",
                    format!("the body broke off; the upload is at {offset}, resume from there"),
                ))
            }
            Received::TooLong => {
                return Err(error(
                    413,
                    "upload_too_long",
                    "the body passed Upload-Length; nothing of it was kept",
                ))
            }
            Received::ChecksumMismatch => {
                return Err(error(
                    460,
                    "checksum_mismatch",
                    "the body does not match Upload-Checksum; nothing of it was kept",
                ))
            }
            Received::InterruptedUnchecked => return Err(error(
                400,
                "upload_interrupted",
                "the body broke off before its checksum could be checked; nothing of it was kept",
            )),
        };
        let mut path = None;
        // A part stays, complete, until the final upload joins it.
        if offset == upload.length && !upload.is_partial() {
            let complete = state
                .meta
                .upload(&upload.id)
                .await?
                .ok_or_else(|| TusError(ApiError::not_found("no such upload")))?;
            path = Some(finish::finish(&state, &access, &complete).await?);
        }
        Ok(Done {
            offset,
            expires_at,
            path,
        })
    });
    task.await.map_err(ApiError::internal)?
}

/// `DELETE /api/v1/tus/{id}` (termination): the upload and what it received are gone.
async fn terminate(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> TusResult {
    check_version(&headers)?;
    let _guard = state
        .tus_locks
        .lock(&state.meta, &id, LOCK_WAIT)
        .await?
        .ok_or_else(|| error(423, "upload_busy", "another request is writing this upload"))?;
    let upload = load(&state, &access, &id).await?;
    state.meta.delete_upload(&upload.id).await?;
    Ok(answer(StatusCode::NO_CONTENT, &[]))
}
