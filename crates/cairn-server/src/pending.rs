//! Streaming sync: a device announces the file it is about to upload
//! (`POST /uploads/pending`), tags each block it then uploads with the announcement's
//! id ([`proto::PENDING_UPLOAD_HEADER`]), and commits as usual. Everyone who reads the
//! namespace is told on their notification connection ([`proto::Notification::Uploads`]),
//! reads what is coming (`GET /uploads/pending`) and fetches each block once stored
//! (`GET /uploads/pending/{id}/blocks/{hash}`), so that when the commit arrives the file
//! is already on their disk, waiting to be put in place.
//!
//! Rights: announcing needs the right to write the path, as the commit will; fetching a
//! block needs the right to read the namespace, and only a block of the announced list
//! that the uploader has stored is served, so a reader gets exactly what it could read
//! after the commit, and earlier. Nothing is visible in the tree, the journal or the
//! quota before the commit; an upload that is never committed expires
//! `gc_grace_secs` after its last block, and its blocks are collected like those of
//! any upload that was never committed.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use cairn_core::{content_hash, BlockHash, ServerPath};
use cairn_meta::{PendingUploadRow, User};
use cairn_proto as proto;
use cairn_proto::HashHex;

use crate::access::{Access, Need};
use crate::blocks::binary;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, PathParam};
use crate::files::block_refs;
use crate::now_ms;
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

/// Uploads in progress one account may have announced at a time: a device uploads a
/// few large files at once, and every reader lists them all on each change.
pub const MAX_PENDING_PER_USER: u32 = 16;

/// The most blocks an announced file may have (a 100,000-block list is 3.6 MB).
pub const MAX_PENDING_BLOCKS: usize = 100_000;

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(announce, list))
        .at(endpoint!(abandon))
        .at(endpoint!(block))
        .build()
}

/// The pending upload a block upload names, if it names one.
pub struct PendingTag(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PendingTag {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(proto::PENDING_UPLOAD_HEADER) else {
            return Ok(Self(None));
        };
        let id = value
            .to_str()
            .ok()
            .filter(|id| is_upload_id(id))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_pending_upload",
                    format!(
                        "{} must be an id from POST /api/v1/uploads/pending",
                        proto::PENDING_UPLOAD_HEADER
                    ),
                )
            })?;
        Ok(Self(Some(id.to_owned())))
    }
}

impl PendingTag {
    /// After a block upload that named a pending upload of `user`: moves its expiry on
    /// and tells its readers. An id that is not (or no longer) the caller's changes
    /// nothing: the block is stored all the same.
    pub async fn stored(self, state: &AppState, user: &User) -> ApiResult<()> {
        let Some(id) = self.0 else { return Ok(()) };
        let now = now_ms();
        if let Some(ns) = state
            .meta
            .extend_pending_upload(&id, user.id, now, expiry(state, now))
            .await?
        {
            state.notify.bus().uploads_changed(ns);
        }
        Ok(())
    }
}

/// Ids are 32 lowercase hex digits (128 random bits).
fn is_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// When an upload that advanced at `now` expires: after the grace period blocks that no
/// version references are kept for.
fn expiry(state: &AppState, now: i64) -> i64 {
    let grace = i64::try_from(state.config.maintenance.gc_grace_secs).unwrap_or(i64::MAX);
    now.saturating_add(grace.saturating_mul(1000))
}

fn not_found() -> ApiError {
    ApiError::not_found("no such upload in progress (it was committed, abandoned or expired)")
}

#[utoipa::path(
    post,
    path = "/uploads/pending",
    request_body = proto::PendingUploadRequest,
    responses(
        (status = 201, description = "Announced: tag each block upload with the id", body = proto::PendingUploadCreated),
        (status = 429, description = "Too many uploads in progress for this account", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn announce(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::PendingUploadRequest>,
) -> ApiResult<(StatusCode, Json<proto::PendingUploadCreated>)> {
    let path = ServerPath::parse(&req.path)?;
    if path.is_root() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "a file cannot be at /",
        ));
    }
    let target = access.resolve(&path, Need::Write)?;
    if req.blocks.len() > MAX_PENDING_BLOCKS {
        return Err(ApiError::bad_request(
            "too_many_items",
            format!("at most {MAX_PENDING_BLOCKS} blocks per announced upload"),
        ));
    }
    let blocks = block_refs(&state, &req.blocks)?;
    let now = now_ms();
    let row = PendingUploadRow {
        id: hex::encode(rand::random::<[u8; 16]>()),
        user_id: access.auth.user.id,
        device: access.auth.device,
        ns: target.ns,
        path: target.path,
        size: blocks.iter().map(|b| u64::from(b.size)).sum(),
        content_hash: content_hash(blocks.iter().map(|b| &b.hash)),
        blocks,
        created_at: now,
        expires_at: expiry(&state, now),
    };
    if !state
        .meta
        .create_pending_upload(&row, MAX_PENDING_PER_USER)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "this account already has {MAX_PENDING_PER_USER} uploads in progress; \
                 commit or abandon one first"
            ),
        ));
    }
    state.notify.bus().uploads_changed(row.ns);
    Ok((
        StatusCode::CREATED,
        Json(proto::PendingUploadCreated {
            id: row.id,
            expires_at: row.expires_at,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/uploads/pending",
    responses(
        (status = 200, description = "The uploads in progress into what the caller reads, oldest first, but the calling device's own", body = proto::PendingUploadsResponse)
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    access: Access,
) -> ApiResult<Json<proto::PendingUploadsResponse>> {
    let rows = state
        .meta
        .pending_uploads_in(&access.namespaces(), now_ms())
        .await?;
    let mut uploads = Vec::with_capacity(rows.len());
    // A device is not told of its own uploads.
    let others = rows
        .into_iter()
        .filter(|row| row.device.is_none() || row.device != access.auth.device);
    for row in others {
        let hashes: Vec<BlockHash> = row.blocks.iter().map(|b| b.hash).collect();
        let stored = state.meta.blocks_owned_by(row.user_id, &hashes).await?;
        uploads.push(proto::PendingUpload {
            path: access.outer_path(row.ns, &row.path).to_string(),
            size: row.size,
            content_hash: row.content_hash.to_hex(),
            blocks: row
                .blocks
                .iter()
                .map(|b| proto::PendingBlock {
                    hash: b.hash.to_hex(),
                    size: b.size,
                    stored: stored.contains(&b.hash),
                })
                .collect(),
            expires_at: row.expires_at,
            id: row.id,
        });
    }
    Ok(Json(proto::PendingUploadsResponse { uploads }))
}

#[utoipa::path(
    delete,
    path = "/uploads/pending/{id}",
    params(("id" = String, Path, description = "The upload's id")),
    responses(
        (status = 204, description = "Forgotten: its readers drop what they fetched"),
        (status = 404, description = "The caller has no such upload in progress", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn abandon(
    State(state): State<AppState>,
    access: Access,
    PathParam(id): PathParam<String>,
) -> ApiResult<StatusCode> {
    let ns = state
        .meta
        .delete_pending_upload(&id, access.auth.user.id)
        .await?
        .ok_or_else(not_found)?;
    state.notify.bus().uploads_changed(ns);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/uploads/pending/{id}/blocks/{hash}",
    params(
        ("id" = String, Path, description = "The upload's id"),
        ("hash" = HashHex, Path, description = "A block of its list")
    ),
    responses(
        (status = 200, description = "The block's bytes", body = proto::Binary, content_type = "application/octet-stream"),
        (status = 404, description = "No such upload the caller reads, not a block of it, or not stored yet", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn block(
    State(state): State<AppState>,
    access: Access,
    PathParam((id, hash)): PathParam<(String, String)>,
) -> ApiResult<Response> {
    let hash = BlockHash::from_hex(&hash)?;
    let upload = state
        .meta
        .pending_upload(&id, now_ms())
        .await?
        .filter(|u| access.namespaces().contains(&u.ns))
        .ok_or_else(not_found)?;
    if !upload.blocks.iter().any(|b| b.hash == hash) {
        return Err(ApiError::not_found(format!(
            "block {hash} is not part of this upload"
        )));
    }
    let data = state.blocks.read_held(upload.user_id, hash).await?;
    Ok(binary(data, "application/octet-stream"))
}
