//! Commit endpoints: a block list committed alone or in a batch, a whole-file upload
//! chunked by the server, and a file's versions and their restore (a commit of an old
//! block list).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use cairn_core::{BlockHash, NamespaceId, ServerPath, VersionId};
use cairn_meta::{BlockRef, CommitFile, CommitOutcome, EntryKind};
use cairn_proto as proto;
use futures::TryStreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::{Access, Need, Target};
use crate::convert::entry_info;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::metrics::COMMITS;
use crate::state::AppState;

use super::{actor, check_batch_len, device_name, entry_view, parse_rev, PathQuery};

/// Commits a block list and answers with the stored entry; shared by both upload paths.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_blocks(
    state: &AppState,
    access: &Access,
    target: &Target,
    blocks: Vec<BlockRef>,
    base_rev: Option<VersionId>,
    autorename: bool,
    mtime: Option<i64>,
) -> ApiResult<proto::CommitResponse> {
    if target.path.is_root() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "a file cannot be stored at '/' or in place of a shared folder; name it",
        ));
    }
    let name = if autorename {
        device_name(state, access).await?
    } else {
        String::new()
    };
    let outcome = state
        .meta
        .commit_file(CommitFile {
            ns: target.ns,
            path: target.path.clone(),
            blocks,
            mtime,
            base_rev,
            autorename,
            actor: actor(access, name),
        })
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    Ok(committed(access, outcome))
}

/// Counts a successful commit and describes it for the client.
fn committed(access: &Access, outcome: CommitOutcome) -> proto::CommitResponse {
    metrics::counter!(COMMITS).increment(1);
    proto::CommitResponse {
        entry: entry_info(&access.outer_entry(outcome.entry)),
        renamed: outcome.renamed,
    }
}

/// A commit request's block list, checked against the block size limit.
pub(crate) fn block_refs(state: &AppState, blocks: &[proto::BlockRef]) -> ApiResult<Vec<BlockRef>> {
    let max = state.config.chunker.max_size;
    blocks
        .iter()
        .map(|b| {
            if b.size as usize > max {
                return Err(ApiError::bad_request(
                    "block_too_large",
                    format!(
                        "block {} claims {} bytes; the limit is {max}",
                        b.hash, b.size
                    ),
                ));
            }
            Ok(BlockRef {
                hash: BlockHash::from_hex(&b.hash)?,
                size: b.size,
            })
        })
        .collect()
}

#[utoipa::path(
    post,
    path = "/files/commit",
    request_body = proto::CommitRequest,
    responses(
        (status = 200, description = "The file, made of the blocks", body = proto::CommitResponse),
        (status = 409, description = "A stale base revision or a name that is taken: the current entry is in the error", body = proto::ErrorBody),
        (status = 422, description = "Blocks the caller has not uploaded: missing_blocks lists them", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn commit(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::CommitRequest>,
) -> ApiResult<Json<proto::CommitResponse>> {
    let path = ServerPath::parse(&req.path)?;
    let target = access.resolve(&path, Need::Write)?;
    let blocks = block_refs(&state, &req.blocks)?;
    let base_rev = req.base_rev.as_deref().map(parse_rev).transpose()?;
    let response = commit_blocks(
        &state,
        &access,
        &target,
        blocks,
        base_rev,
        req.autorename,
        req.mtime,
    )
    .await?;
    Ok(Json(response))
}

/// Many commits and folder creations, one transaction per namespace they touch (see
/// `MetaStore::commit_batch`): a sync client's batch may hold files of shared folders
/// beside its own. An item the server cannot even read (a bad path, hash or revision)
/// or that the caller may not write is refused on its own like one the store refuses;
/// only a batch too large or a body that is not a batch fails the whole request.
#[utoipa::path(
    post,
    path = "/files/commit_batch",
    request_body = proto::CommitBatchRequest,
    responses(
        (status = 200, description = "One result per item, in order", body = proto::CommitBatchResponse)
    ),
    security(("bearer" = []))
)]
pub(super) async fn commit_batch(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::CommitBatchRequest>,
) -> ApiResult<Json<proto::CommitBatchResponse>> {
    check_batch_len(req.items.len(), "items")?;
    let parsed: Vec<ApiResult<(NamespaceId, cairn_meta::BatchItem)>> = req
        .items
        .iter()
        .map(|item| batch_item(&state, &access, item))
        .collect();
    let autorename = req
        .items
        .iter()
        .any(|item| matches!(item, proto::CommitBatchItem::Commit(c) if c.autorename));
    let name = if autorename {
        device_name(&state, &access).await?
    } else {
        String::new()
    };
    // Per namespace, in order of first appearance: its items, in request order.
    let mut groups: Vec<(NamespaceId, Vec<cairn_meta::BatchItem>)> = Vec::new();
    for (ns, item) in parsed.iter().filter_map(|item| item.as_ref().ok()) {
        match groups.iter_mut().find(|(n, _)| n == ns) {
            Some((_, items)) => items.push(item.clone()),
            None => groups.push((*ns, vec![item.clone()])),
        }
    }
    let started = std::time::Instant::now();
    let mut outcomes = std::collections::HashMap::new();
    for (ns, items) in groups {
        let results = state
            .meta
            .commit_batch(ns, &actor(&access, name.clone()), items)
            .await?;
        outcomes.insert(ns, results.into_iter());
    }
    tracing::debug!(
        items = parsed.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "batch committed"
    );
    let mut results = Vec::with_capacity(parsed.len());
    for item in parsed {
        let is_file = matches!(item, Ok((_, cairn_meta::BatchItem::File(_))));
        let outcome = match item {
            Ok((ns, _)) => outcomes
                .get_mut(&ns)
                .and_then(Iterator::next)
                .ok_or_else(|| ApiError::internal("commit_batch returned too few results"))?
                .map_err(|e| access.outer_error(ns, e)),
            Err(err) => Err(err),
        };
        results.push(match outcome {
            Ok(outcome) => {
                let response = match is_file {
                    true => committed(&access, outcome),
                    false => proto::CommitResponse {
                        entry: entry_view(&access, access.outer_entry(outcome.entry)),
                        renamed: false,
                    },
                };
                proto::CommitBatchResult {
                    entry: Some(response.entry),
                    renamed: response.renamed,
                    error: None,
                }
            }
            Err(err) => proto::CommitBatchResult {
                entry: None,
                renamed: false,
                error: Some(err.into_detail()),
            },
        });
    }
    Ok(Json(proto::CommitBatchResponse { results }))
}

/// One batch item, parsed, checked against the caller's rights, and placed in its
/// namespace.
fn batch_item(
    state: &AppState,
    access: &Access,
    item: &proto::CommitBatchItem,
) -> ApiResult<(NamespaceId, cairn_meta::BatchItem)> {
    Ok(match item {
        proto::CommitBatchItem::Mkdir(req) => {
            let path = ServerPath::parse(&req.path)?;
            if path.is_root() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "already_exists",
                    "the root folder always exists",
                ));
            }
            // A shared folder's mount is a folder of the home: asking for it to exist
            // is fine, and changes nothing.
            if access.resolve(&path, Need::Read)?.is_mount_point() {
                return Ok((access.home(), cairn_meta::BatchItem::Mkdir(path)));
            }
            let target = access.resolve(&path, Need::Write)?;
            (target.ns, cairn_meta::BatchItem::Mkdir(target.path))
        }
        proto::CommitBatchItem::Commit(req) => {
            let path = ServerPath::parse(&req.path)?;
            let target = access.resolve(&path, Need::Write)?;
            if target.path.is_root() {
                return Err(ApiError::bad_request(
                    "invalid_path",
                    format!("a file cannot be stored at {path}; name it"),
                ));
            }
            let file = cairn_meta::FileCommit {
                path: target.path,
                blocks: block_refs(state, &req.blocks)?,
                mtime: req.mtime,
                base_rev: req.base_rev.as_deref().map(parse_rev).transpose()?,
                autorename: req.autorename,
            };
            (target.ns, cairn_meta::BatchItem::File(file))
        }
    })
}

#[utoipa::path(
    get,
    path = "/files/versions",
    params(PathQuery),
    responses(
        (status = 200, description = "The file's versions, newest first", body = proto::VersionsResponse),
        (status = 404, description = "No such file", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn versions(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<proto::VersionsResponse>> {
    let path = ServerPath::parse(&q.path)?;
    let target = access.resolve(&path, Need::Read)?;
    let versions = state
        .meta
        .list_versions(target.ns, &target.path)
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    Ok(Json(proto::VersionsResponse {
        versions: versions
            .iter()
            .map(|v| proto::VersionInfo {
                id: v.id.0.to_string(),
                size: v.size.max(0) as u64,
                content_hash: v.content_hash.to_hex(),
                mtime: v.mtime,
                created_at: v.created_at,
                user: v.user_name.clone(),
                device: v.device_name.clone(),
            })
            .collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/files/restore",
    request_body = proto::RestoreRequest,
    responses(
        (status = 200, description = "The old content, as a new version", body = proto::CommitResponse),
        (status = 404, description = "No such file or version", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn restore(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::RestoreRequest>,
) -> ApiResult<Json<proto::CommitResponse>> {
    let path = ServerPath::parse(&req.path)?;
    let target = access.resolve(&path, Need::Write)?;
    let version = parse_rev(&req.version)?;
    let outcome = state
        .meta
        .restore_version(
            target.ns,
            &target.path,
            version,
            &actor(&access, String::new()),
        )
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    Ok(Json(committed(&access, outcome)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UploadQuery {
    /// Where the file goes.
    #[param(value_type = proto::EntryPath)]
    path: String,
    /// The revision the content replaces; absent for a new file.
    #[param(value_type = Option<proto::Revision>)]
    base_rev: Option<String>,
    /// On a conflict, store the content as a conflict copy beside the file instead.
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    autorename: bool,
    /// The file's modification time, Unix milliseconds.
    mtime: Option<i64>,
}

/// Refuses an upload of `length` bytes (when it is known) to `target` that cannot fit
/// in the quota of the account it is charged to, counting the file it replaces as
/// freed.
pub(crate) async fn check_upload_fits(
    state: &AppState,
    target: &Target,
    length: Option<i64>,
) -> ApiResult<()> {
    let Some(length) = length else {
        return Ok(());
    };
    let replaced = match state.meta.stat(target.ns, &target.path).await? {
        Some(e) if e.kind == EntryKind::File => e.size,
        _ => 0,
    };
    state
        .meta
        .check_quota_of(target.ns, length - replaced)
        .await?;
    Ok(())
}

/// Whole-file upload: the server chunks the streamed body itself, holding only a few
/// chunks in memory however large the file is.
#[utoipa::path(
    put,
    path = "/files/content",
    params(UploadQuery),
    request_body(content = Option<proto::Binary>, content_type = "application/octet-stream", description = "The whole file; the server chunks it (none is an empty file)"),
    responses(
        (status = 200, description = "The file", body = proto::CommitResponse),
        (status = 409, description = "A stale base revision or a name that is taken: the current entry is in the error", body = proto::ErrorBody),
        (status = 413, description = "Over the quota", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn upload(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<proto::CommitResponse>> {
    let path = ServerPath::parse(&q.path)?;
    let target = access.resolve(&path, Need::Write)?;
    let base_rev = q.base_rev.as_deref().map(parse_rev).transpose()?;
    // With a declared length, a body that cannot fit is refused before any of it is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    check_upload_fits(&state, &target, declared).await?;
    let stream = body
        .into_data_stream()
        .map_err(|err| std::io::Error::other(err.to_string()));
    let blocks = state.blocks.store_stream(&access.auth.user, stream).await?;
    let response = commit_blocks(
        &state,
        &access,
        &target,
        blocks,
        base_rev,
        q.autorename,
        q.mtime,
    )
    .await?;
    Ok(Json(response))
}
