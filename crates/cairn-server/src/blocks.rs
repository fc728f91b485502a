//! Block endpoints: which blocks must I upload, upload one or a batch, download one.
//! Each parses the request and calls the block manager ([`crate::block_manager`]), which
//! checks, stores, records and reads blocks, and decides who holds which.
//!
//! Rights: an authenticated, enabled account (`AuthUser`), not `Access`: a block is in
//! no namespace, and the right to one is possession, which the block manager decides.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use cairn_core::BlockHash;
use cairn_proto as proto;
use cairn_proto::HashHex;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, PathParam};
use crate::pending::PendingTag;
use crate::routes::{endpoint, BodyLimit, Routes};
use crate::state::AppState;

pub fn router(max_block_size: usize) -> Router<AppState> {
    Routes::api()
        .at(endpoint!(check))
        .at_limited(
            BodyLimit::Bytes(proto::block_batch::body_limit(max_block_size)),
            endpoint!(upload_batch),
        )
        .at_limited(
            BodyLimit::Bytes(max_block_size),
            endpoint!(upload, download),
        )
        .at(endpoint!(signature))
        .at_limited(
            BodyLimit::Bytes(max_block_size),
            endpoint!(upload_delta, download_from),
        )
        .build()
}

#[utoipa::path(
    post,
    path = "/blocks/check",
    request_body = proto::BlockCheckRequest,
    responses(
        (status = 200, description = "The blocks the caller must upload", body = proto::BlockCheckResponse)
    ),
    security(("bearer" = []))
)]
async fn check(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(req): Json<proto::BlockCheckRequest>,
) -> ApiResult<Json<proto::BlockCheckResponse>> {
    if req.hashes.len() > proto::MAX_CHECK_HASHES {
        return Err(ApiError::bad_request(
            "too_many_hashes",
            format!(
                "at most {} hashes per check; split the request",
                proto::MAX_CHECK_HASHES
            ),
        ));
    }
    let hashes = req
        .hashes
        .iter()
        .map(|h| BlockHash::from_hex(h))
        .collect::<Result<Vec<_>, _>>()?;
    let missing = state.blocks.missing_for(auth.user.id, hashes).await?;
    Ok(Json(proto::BlockCheckResponse {
        missing: missing.iter().map(BlockHash::to_hex).collect(),
    }))
}

/// Splits a batch body into its blocks, without copying them (see
/// [`proto::block_batch`]): every frame is checked before any block is handed on.
fn parse_batch(body: &Bytes, max_block: usize) -> ApiResult<Vec<(BlockHash, Bytes)>> {
    use proto::block_batch::BatchError;
    match proto::block_batch::decode_batch(body, max_block) {
        Ok(frames) => Ok(frames
            .into_iter()
            .map(|frame| (BlockHash(frame.hash), body.slice(frame.block)))
            .collect()),
        Err(err @ BatchError::BlockTooLarge { .. }) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "block_too_large",
            err.to_string(),
        )),
        Err(err @ BatchError::TooManyFrames { .. }) => {
            Err(ApiError::bad_request("too_many_items", err.to_string()))
        }
        Err(err @ (BatchError::HeaderCutShort { .. } | BatchError::BlockCutShort { .. })) => {
            Err(ApiError::bad_request("invalid_batch", err.to_string()))
        }
    }
}

/// Many blocks in one request, for trees of small files: all are verified before any
/// is stored, written with one batched durable write and recorded in one transaction
/// (see [`crate::block_manager::BlockManager::accept`]).
#[utoipa::path(
    post,
    path = "/blocks/batch",
    request_body(content = Option<proto::Binary>, content_type = "application/octet-stream", description = "Blocks, each framed as [32-byte hash][u32 BE length][bytes]; none is an empty batch"),
    responses(
        (status = 200, description = "Every block verified and stored", body = proto::BlockBatchResponse)
    ),
    security(("bearer" = []))
)]
async fn upload_batch(
    State(state): State<AppState>,
    auth: AuthUser,
    tag: PendingTag,
    body: Bytes,
) -> ApiResult<Json<proto::BlockBatchResponse>> {
    let blocks = parse_batch(&body, state.config.chunker.max_size)?;
    let answer = proto::BlockBatchResponse {
        blocks: blocks
            .iter()
            .map(|(hash, data)| proto::BlockUploadResponse {
                hash: hash.to_hex(),
                size: data.len() as u64,
            })
            .collect(),
    };
    state.blocks.accept(&auth.user, blocks).await?;
    tag.stored(&state, &auth.user).await?;
    Ok(Json(answer))
}

#[utoipa::path(
    put,
    path = "/blocks/{hash}",
    params(("hash" = HashHex, Path, description = "The block's BLAKE3 hash")),
    request_body(content = proto::Binary, content_type = "application/octet-stream", description = "The block's bytes; they must hash to the path's hash"),
    responses(
        (status = 201, description = "Verified and stored", body = proto::BlockUploadResponse),
        (status = 400, description = "The bytes hash to something else; nothing was stored", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    tag: PendingTag,
    PathParam(hash): PathParam<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<proto::BlockUploadResponse>)> {
    let hash = BlockHash::from_hex(&hash)?;
    let size = body.len() as u64;
    state.blocks.accept_one(&auth.user, hash, body).await?;
    tag.stored(&state, &auth.user).await?;
    Ok(created(hash, size))
}

#[utoipa::path(
    get,
    path = "/blocks/{hash}",
    params(("hash" = HashHex, Path, description = "The block's BLAKE3 hash")),
    responses(
        (status = 200, description = "The block's bytes", body = proto::Binary, content_type = "application/octet-stream"),
        (status = 404, description = "The caller holds no such block", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn download(
    State(state): State<AppState>,
    auth: AuthUser,
    PathParam(hash): PathParam<String>,
) -> ApiResult<Response> {
    let hash = BlockHash::from_hex(&hash)?;
    let data = state.blocks.read_held(auth.user.id, hash).await?;
    Ok(binary(data, "application/octet-stream"))
}

/// The rsync signature of a block the caller holds, for sending a changed block as a
/// delta from it (`PUT /blocks/{hash}/from/{base}`; see `cairn_core::delta`).
#[utoipa::path(
    get,
    path = "/blocks/{hash}/signature",
    params(("hash" = HashHex, Path, description = "The base block's BLAKE3 hash")),
    responses(
        (status = 200, description = "The block's rsync signature (4 KiB windows, 8 bytes of MD4 each)", body = proto::Binary, content_type = "application/octet-stream"),
        (status = 404, description = "The caller holds no such block", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn signature(
    State(state): State<AppState>,
    auth: AuthUser,
    PathParam(hash): PathParam<String>,
) -> ApiResult<Response> {
    let base = BlockHash::from_hex(&hash)?;
    let signature = state.blocks.signature(auth.user.id, base).await?;
    Ok(binary(signature, "application/octet-stream"))
}

/// A block sent as an rsync delta from a block the caller holds: rebuilt, checked
/// against its hash and then stored as if sent whole. A delta that does not rebuild it
/// is 422 `bad_delta`, and the block must be sent whole.
#[utoipa::path(
    put,
    path = "/blocks/{hash}/from/{base}",
    params(
        ("hash" = HashHex, Path, description = "The block's BLAKE3 hash"),
        ("base" = HashHex, Path, description = "The block the delta was made from, which the caller holds")
    ),
    request_body(content = proto::Binary, content_type = "application/octet-stream", description = "An rsync delta against the base's signature"),
    responses(
        (status = 201, description = "Rebuilt, verified and stored", body = proto::BlockUploadResponse),
        (status = 404, description = "The caller holds no such base block", body = proto::ErrorBody),
        (status = 422, description = "The delta does not rebuild the block; nothing was stored", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn upload_delta(
    State(state): State<AppState>,
    auth: AuthUser,
    tag: PendingTag,
    PathParam((hash, base)): PathParam<(String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<proto::BlockUploadResponse>)> {
    let (hash, base) = (BlockHash::from_hex(&hash)?, BlockHash::from_hex(&base)?);
    let size = state
        .blocks
        .accept_delta(&auth.user, hash, base, body)
        .await?;
    tag.stored(&state, &auth.user).await?;
    Ok(created(hash, size))
}

/// A block for a caller that has `base`: a zstd patch against it (content type
/// [`proto::BLOCK_PATCH_CONTENT_TYPE`]) when the caller holds the base too and the
/// patch is worth it, else the block itself.
#[utoipa::path(
    get,
    path = "/blocks/{hash}/from/{base}",
    params(
        ("hash" = HashHex, Path, description = "The block's BLAKE3 hash"),
        ("base" = HashHex, Path, description = "A block the caller has locally")
    ),
    responses(
        (status = 200, description = "A zstd patch against the base, or the block's bytes (application/octet-stream)", body = proto::Binary, content_type = "application/vnd.cairn.block-patch+zstd"),
        (status = 404, description = "The caller holds no such block", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn download_from(
    State(state): State<AppState>,
    auth: AuthUser,
    PathParam((hash, base)): PathParam<(String, String)>,
) -> ApiResult<Response> {
    let (hash, base) = (BlockHash::from_hex(&hash)?, BlockHash::from_hex(&base)?);
    let (body, patched) = state.blocks.read_from(auth.user.id, hash, base).await?;
    let content_type = match patched {
        true => proto::BLOCK_PATCH_CONTENT_TYPE,
        false => "application/octet-stream",
    };
    Ok(binary(body, content_type))
}

/// Bytes answered with their content type.
pub(crate) fn binary(body: Bytes, content_type: &'static str) -> Response {
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The answer to a block stored: 201 with its hash and size.
fn created(hash: BlockHash, size: u64) -> (StatusCode, Json<proto::BlockUploadResponse>) {
    (
        StatusCode::CREATED,
        Json(proto::BlockUploadResponse {
            hash: hash.to_hex(),
            size,
        }),
    )
}
