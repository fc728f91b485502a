//! Block endpoints: which blocks must I upload, upload one, download one.
//!
//! Deduplication never leaks: a block counts as present only when the caller's own
//! account holds it. Any other block must be uploaded in full, which proves possession;
//! if the store already has it, nothing new is written.

use std::collections::HashSet;

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
use crate::metrics::{BLOCKS_DEDUPLICATED, BLOCKS_STORED, BLOCK_BYTES_RECEIVED, BLOCK_BYTES_SENT};
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
    let owned = state.meta.blocks_owned_by(auth.user.id, &hashes).await?;
    let mut seen = HashSet::new();
    let missing = hashes
        .into_iter()
        .filter(|h| !owned.contains(h) && seen.insert(*h))
        .map(|h| h.to_hex())
        .collect();
    Ok(Json(proto::BlockCheckResponse { missing }))
}

/// Verifies, stores and records one block. Shared with the whole-file upload, which
/// chunks on the server.
pub async fn accept_block(
    state: &AppState,
    user: &cairn_meta::User,
    hash: BlockHash,
    data: Bytes,
) -> ApiResult<()> {
    let size = data.len();
    if size > state.config.chunker.max_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "block_too_large",
            format!(
                "block is {size} bytes; the limit is {}",
                state.config.chunker.max_size
            ),
        ));
    }
    // An account with no room anywhere it may write (its home, the shared folders it
    // edits, each charged to its owner) cannot store a further byte. The exact check,
    // with the file's whole size and its folder's owner, happens at commit; this stops
    // blocks piling up before it.
    state.meta.check_room_for_blocks(user).await?;
    metrics::counter!(BLOCK_BYTES_RECEIVED).increment(size as u64);
    let started = std::time::Instant::now();
    let outcome = state.blocks.put(hash, data.clone()).await?;
    let stored_at = started.elapsed();
    if outcome.newly_stored {
        metrics::counter!(BLOCKS_STORED).increment(1);
    } else {
        metrics::counter!(BLOCKS_DEDUPLICATED).increment(1);
    }
    let stored_size = match outcome.newly_stored {
        true => outcome.stored_bytes as i64,
        false => state
            .blocks
            .stored_size(hash)
            .await?
            .map(|s| s as i64)
            .unwrap_or(0),
    };
    // The store check runs inside the recording transaction, before the account is
    // told it possesses the block (see `record_block_upload_checked`).
    let store = state.blocks.clone();
    let ensure: cairn_meta::EnsureStored = Box::new(move || {
        Box::pin(async move {
            ensure_stored(&store, hash, data)
                .await
                .map_err(|err| err.to_string())
        })
    });
    state
        .meta
        .record_block_upload_checked(user.id, hash, size as u32, stored_size, ensure)
        .await?;
    tracing::debug!(
        %hash,
        size,
        store_ms = stored_at.as_secs_f64() * 1e3,
        meta_ms = (started.elapsed() - stored_at).as_secs_f64() * 1e3,
        "block accepted"
    );
    Ok(())
}

/// Writes the block again if it is no longer in the store. Run it where no garbage
/// collection can delete the block any more: inside the transaction that records the
/// upload (`MetaStore::record_block_upload_checked`), once the block's row is written.
///
/// Garbage collection may have deleted the file between our `put` (which found it
/// present, or wrote it) and our record: the collector had claimed the unreferenced
/// row, and deleted the row and the file in one transaction before our record could
/// revive the row (see `cairn_meta::gc`).
async fn ensure_stored(
    store: &cairn_store::BlockStore,
    hash: BlockHash,
    data: Bytes,
) -> Result<(), cairn_store::StoreError> {
    if !store.contains(hash).await? {
        tracing::debug!(%hash, "block collected during its upload; storing it again");
        store.put(hash, data).await?;
    }
    Ok(())
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
/// is stored, written with one batched durable write (`BlockStore::put_many`) and
/// recorded in one transaction, with the same store check inside it as single uploads.
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
    body: Bytes,
) -> ApiResult<Json<proto::BlockBatchResponse>> {
    let blocks = parse_batch(&body, state.config.chunker.max_size)?;
    let checked = blocks.clone();
    let forged = tokio::task::spawn_blocking(move || {
        checked.iter().find_map(|(hash, data)| {
            let actual = BlockHash::of(data);
            (actual != *hash).then_some((*hash, actual))
        })
    })
    .await
    .map_err(ApiError::internal)?;
    if let Some((claimed, actual)) = forged {
        return Err(ApiError::bad_request(
            "hash_mismatch",
            format!("a block of the batch hashes to {actual}, not {claimed}; nothing was stored"),
        ));
    }
    let answer = proto::BlockBatchResponse {
        blocks: blocks
            .iter()
            .map(|(hash, data)| proto::BlockUploadResponse {
                hash: hash.to_hex(),
                size: data.len() as u64,
            })
            .collect(),
    };
    accept_blocks(&state, &auth.user, blocks).await?;
    Ok(Json(answer))
}

/// Stores and records blocks whose hashes the caller has verified, as one batch: one
/// `put_many`, one recording transaction with the store check inside it.
pub async fn accept_blocks(
    state: &AppState,
    user: &cairn_meta::User,
    blocks: Vec<(BlockHash, Bytes)>,
) -> ApiResult<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    state.meta.check_room_for_blocks(user).await?;
    let received: usize = blocks.iter().map(|(_, data)| data.len()).sum();
    metrics::counter!(BLOCK_BYTES_RECEIVED).increment(received as u64);
    let started = std::time::Instant::now();
    let outcomes = state.blocks.put_many(blocks.clone()).await?;
    let stored_at = started.elapsed();
    let mut uploaded = Vec::with_capacity(blocks.len());
    for ((hash, data), outcome) in blocks.iter().zip(&outcomes) {
        let stored_size = if outcome.newly_stored {
            metrics::counter!(BLOCKS_STORED).increment(1);
            outcome.stored_bytes as i64
        } else {
            metrics::counter!(BLOCKS_DEDUPLICATED).increment(1);
            state
                .blocks
                .stored_size(*hash)
                .await?
                .map(|s| s as i64)
                .unwrap_or(0)
        };
        uploaded.push(cairn_meta::UploadedBlock {
            hash: *hash,
            size: data.len() as u32,
            stored_size,
        });
    }
    // As for one block (see `accept_block`): the store check runs inside the recording
    // transaction, before the account is told it possesses the blocks.
    let store = state.blocks.clone();
    let ensure: cairn_meta::EnsureStored = Box::new(move || {
        Box::pin(async move {
            ensure_all_stored(&store, blocks)
                .await
                .map_err(|err| err.to_string())
        })
    });
    let count = uploaded.len();
    state
        .meta
        .record_block_uploads_checked(user.id, uploaded, ensure)
        .await?;
    tracing::debug!(
        blocks = count,
        store_ms = stored_at.as_secs_f64() * 1e3,
        meta_ms = (started.elapsed() - stored_at).as_secs_f64() * 1e3,
        "block batch accepted"
    );
    Ok(())
}

/// [`ensure_stored`] for a batch: writes again whichever blocks a garbage collection
/// removed since the batch's `put_many`.
async fn ensure_all_stored(
    store: &cairn_store::BlockStore,
    blocks: Vec<(BlockHash, Bytes)>,
) -> Result<(), cairn_store::StoreError> {
    let present = store
        .contains_many(blocks.iter().map(|(hash, _)| *hash).collect())
        .await?;
    let gone: Vec<(BlockHash, Bytes)> = blocks
        .into_iter()
        .zip(present)
        .filter(|(_, present)| !present)
        .map(|(block, _)| block)
        .collect();
    if !gone.is_empty() {
        tracing::debug!(
            count = gone.len(),
            "blocks collected during their upload; storing them again"
        );
        store.put_many(gone).await?;
    }
    Ok(())
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
    PathParam(hash): PathParam<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<proto::BlockUploadResponse>)> {
    let hash = BlockHash::from_hex(&hash)?;
    let data = body.clone();
    let actual = tokio::task::spawn_blocking(move || {
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(&data);
        BlockHash(*hasher.finalize().as_bytes())
    })
    .await
    .map_err(ApiError::internal)?;
    if actual != hash {
        return Err(ApiError::bad_request(
            "hash_mismatch",
            format!("block content hashes to {actual}, not {hash}; nothing was stored"),
        ));
    }
    let size = body.len() as u64;
    accept_block(&state, &auth.user, hash, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(proto::BlockUploadResponse {
            hash: hash.to_hex(),
            size,
        }),
    ))
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
    // A block the account does not hold looks exactly like one that does not exist.
    let owned = state.meta.blocks_owned_by(auth.user.id, &[hash]).await?;
    if !owned.contains(&hash) {
        return Err(ApiError::not_found(format!("block {hash} not found")));
    }
    // The account holds it, so it must exist: absence is damage, not a 404.
    let data = state
        .blocks
        .get_required(hash)
        .await
        .map_err(|err| ApiError::from_required_block(err, None))?;
    metrics::counter!(BLOCK_BYTES_SENT).increment(data.len() as u64);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        data,
    )
        .into_response())
}
