//! File and folder endpoints: list, stat, mkdir, move, copy, delete, commit, and whole
//! file upload and download.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use cairn_core::chunk::{chunk_and_hash, ChunkError};
use cairn_core::{BlockHash, NamespaceId, ServerPath, VersionId};
use cairn_meta::{Actor, BlockRef, CommitFile, CommitOutcome, Entry, EntryKind};
use cairn_proto as proto;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::IntoParams;

use crate::access::{Access, Need, Target};
use crate::blocks::accept_block;
use crate::convert::entry_info;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::metrics::{BLOCK_BYTES_SENT, COMMITS};
use crate::routes::{endpoint, BodyLimit, Routes};
use crate::state::AppState;

/// Refuses a batch request of more than [`proto::MAX_BATCH_ITEMS`] `what`.
fn check_batch_len(len: usize, what: &str) -> ApiResult<()> {
    if len > proto::MAX_BATCH_ITEMS {
        return Err(ApiError::bad_request(
            "too_many_items",
            format!(
                "a batch holds at most {} {what}, this one {len}; split it",
                proto::MAX_BATCH_ITEMS
            ),
        ));
    }
    Ok(())
}

/// Default and largest page of a folder listing.
const DEFAULT_LIST_LIMIT: u32 = 1000;
const MAX_LIST_LIMIT: u32 = 10_000;

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(list))
        .at(endpoint!(stat))
        .at(endpoint!(space))
        .at(endpoint!(mkdir))
        .at(endpoint!(move_entry))
        .at(endpoint!(copy_entry))
        .at(endpoint!(delete))
        .at(endpoint!(commit))
        .at_limited(
            BodyLimit::Bytes(proto::MAX_COMMIT_BATCH_BODY),
            endpoint!(commit_batch),
        )
        .at(endpoint!(file_blocks))
        .at(endpoint!(content_batch))
        .at(endpoint!(versions))
        .at(endpoint!(restore))
        // The body is chunked as it streams in, so its size needs no cap here.
        .at_limited(BodyLimit::Streamed, endpoint!(download, upload))
        .build()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// The entry.
    #[param(value_type = proto::ApiPath)]
    path: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The folder; `/` when absent.
    #[serde(default = "root_path")]
    #[param(value_type = Option<proto::ApiPath>)]
    path: String,
    /// The page after this name (the last of the previous page).
    after: Option<String>,
    /// Entries per page: 1000 when absent, at most 10,000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

fn root_path() -> String {
    "/".to_owned()
}

fn actor(access: &Access, device_name: String) -> Actor {
    Actor {
        user_id: access.auth.user.id,
        device_id: access.auth.device,
        device_name,
    }
}

/// The device name that conflict copies carry; only looked up when one may be made.
async fn device_name(state: &AppState, access: &Access) -> ApiResult<String> {
    let auth = &access.auth;
    Ok(match auth.device {
        Some(id) => state
            .meta
            .device(id)
            .await?
            .map(|d| d.name)
            .unwrap_or_else(|| auth.user.name.clone()),
        None => auth.user.name.clone(),
    })
}

fn parse_rev(rev: &str) -> ApiResult<VersionId> {
    rev.parse::<i64>().map(VersionId).map_err(|_| {
        ApiError::bad_request(
            "invalid_rev",
            format!("revision {rev:?} is not one this server issued"),
        )
    })
}

/// The entry at `path` of the caller's tree (a mount folder is the home's folder
/// entry), as the caller sees it.
async fn stat_existing(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
) -> ApiResult<(Target, Entry)> {
    let target = access.resolve(path, Need::Read)?;
    let (ns, inner) = match target.is_mount_point() {
        true => (access.home(), path),
        false => (target.ns, &target.path),
    };
    let entry = state
        .meta
        .stat(ns, inner)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{path} does not exist")))?;
    let entry = match target.is_mount_point() {
        true => entry,
        false => access.outer_entry(entry),
    };
    Ok((target, entry))
}

#[utoipa::path(
    get,
    path = "/files/list",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the folder, sorted by name", body = proto::ListResponse),
        (status = 404, description = "No such folder", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<proto::ListResponse>> {
    let path = ServerPath::parse(&q.path)?;
    let target = access.resolve(&path, Need::Read)?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    // The page cursor is the key of the last entry sent, in the caller's view; inside
    // a shared folder the store pages by keys inside its namespace.
    let after = q.after.as_deref().map(|key| match &target.mount {
        Some(m) => key
            .strip_prefix(&m.mount_path.key())
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(key)
            .to_owned(),
        None => key.to_owned(),
    });
    let entries = state
        .meta
        .list_folder(target.ns, &target.path, after.as_deref(), limit)
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    let cursor = if entries.len() as u32 == limit {
        entries
            .last()
            .map(|e| access.outer_path(e.ns, &e.path).key())
    } else {
        None
    };
    Ok(Json(proto::ListResponse {
        entries: entries
            .into_iter()
            .map(|e| entry_view(&access, access.outer_entry(e)))
            .collect(),
        cursor,
    }))
}

/// An entry for the wire, marked as a shared folder when it is a mount folder.
fn entry_view(access: &Access, entry: Entry) -> proto::EntryInfo {
    let mut info = entry_info(&entry);
    if entry.ns == access.home() {
        info.shared = access
            .mounts()
            .iter()
            .find(|m| m.mount_entry == entry.id)
            .map(shared_info);
    }
    info
}

fn shared_info(m: &cairn_meta::Membership) -> proto::SharedInfo {
    proto::SharedInfo {
        owner: m.owner_name.clone(),
        role: m.role.as_str().to_owned(),
    }
}

#[utoipa::path(
    get,
    path = "/files/stat",
    params(PathQuery),
    responses(
        (status = 200, description = "The entry", body = proto::EntryInfo),
        (status = 404, description = "No such entry", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn stat(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<proto::EntryInfo>> {
    let path = ServerPath::parse(&q.path)?;
    let (_, entry) = stat_existing(&state, &access, &path).await?;
    Ok(Json(entry_view(&access, entry)))
}

/// The room for writing at a path: the quota and usage of the account a file there is
/// charged to (the owner of the namespace it resolves to). Asked before an upload, so a
/// member's upload into a roomy owner's shared folder is not refused for the member's own
/// quota, and one that cannot fit is refused before its bytes travel. Needs the right to
/// write there: the answer is about the owner's account.
#[utoipa::path(
    get,
    path = "/files/space",
    params(PathQuery),
    responses(
        (status = 200, description = "The quota and usage of the account a file at this path is charged to", body = proto::SpaceInfo),
        (status = 403, description = "The caller may not write there", body = proto::ErrorBody),
        (status = 404, description = "No such folder", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn space(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<proto::SpaceInfo>> {
    let path = ServerPath::parse(&q.path)?;
    let target = access.resolve(&path, Need::Write)?;
    let space = state.meta.space_of(target.ns).await?;
    Ok(Json(proto::SpaceInfo {
        available_bytes: space.available_bytes(),
        charged_to: space.owner_name,
        quota_bytes: space.quota_bytes,
        usage_bytes: space.usage_bytes,
    }))
}

#[utoipa::path(
    post,
    path = "/files/mkdir",
    request_body = proto::PathRequest,
    responses(
        (status = 201, description = "The folder, made with its missing parents", body = proto::EntryInfo),
        (status = 409, description = "Something is at that path already", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn mkdir(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::PathRequest>,
) -> ApiResult<(StatusCode, Json<proto::EntryInfo>)> {
    let path = ServerPath::parse(&req.path)?;
    let target = access.resolve(&path, Need::Write)?;
    if target.path.is_root() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("{path} already exists"),
        ));
    }
    let entry = state
        .meta
        .mkdir(target.ns, &target.path, &actor(&access, String::new()))
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    Ok((
        StatusCode::CREATED,
        Json(entry_view(&access, access.outer_entry(entry))),
    ))
}

fn move_paths(req: &proto::MoveRequest) -> ApiResult<(ServerPath, ServerPath)> {
    let from = ServerPath::parse(&req.from)?;
    let to = ServerPath::parse(&req.to)?;
    if from.is_root() || to.is_root() {
        return Err(ApiError::bad_request(
            "invalid_move",
            "the root folder cannot be moved, copied or replaced",
        ));
    }
    Ok((from, to))
}

/// A move or copy between two namespaces (into or out of a shared folder, or between
/// two of them): the source's content is committed at the target in one transaction,
/// and, for a move, the source is then deleted (to its trash). The target gets new
/// entries; version histories stay with the source. Nothing is written when the target
/// is taken, the source changed since `base_rev`, or any item is refused (the target is
/// removed again then), so a failure never leaves half a folder behind.
#[allow(clippy::too_many_arguments)]
async fn transfer_across(
    state: &AppState,
    access: &Access,
    source: &Target,
    target: &Target,
    from: &ServerPath,
    to: &ServerPath,
    base_rev: Option<VersionId>,
    delete_source: bool,
) -> ApiResult<Entry> {
    if target.path.is_root() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("{to} already exists"),
        ));
    }
    let entries = state.meta.subtree(source.ns, &source.path).await?;
    let Some(top) = entries.first() else {
        return Err(ApiError::not_found(format!("{from} does not exist")));
    };
    if let Some(base) = base_rev {
        if top.rev != Some(base) {
            return Err(access.outer_error(
                source.ns,
                cairn_meta::MetaError::RevConflict {
                    path: top.path.clone(),
                    current: Some(top.clone()),
                },
            ));
        }
    }
    if state.meta.stat(target.ns, &target.path).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("{to} already exists"),
        ));
    }
    let mut items = Vec::with_capacity(entries.len());
    for entry in &entries {
        let path = entry
            .path
            .rebase(&top.path, &target.path)
            .ok_or_else(|| ApiError::internal("a subtree entry is outside its top"))?;
        items.push(match (entry.kind, entry.rev) {
            (EntryKind::File, Some(rev)) => cairn_meta::BatchItem::File(cairn_meta::FileCommit {
                path,
                blocks: state.meta.version_blocks(rev).await?,
                mtime: Some(entry.mtime),
                base_rev: None,
                autorename: false,
            }),
            _ => cairn_meta::BatchItem::Mkdir(path),
        });
    }
    let actor = actor(access, String::new());
    let results = state.meta.commit_batch(target.ns, &actor, items).await?;
    if let Some(err) = results.into_iter().find_map(Result::err) {
        // Take back what did go in: the target was free, so all of it is ours.
        if let Err(undo) = state
            .meta
            .delete_entry_at(target.ns, &target.path, None, &actor)
            .await
        {
            tracing::warn!("could not take back a failed transfer to {to}: {undo}");
        }
        return Err(access.outer_error(target.ns, err));
    }
    if delete_source {
        state
            .meta
            .delete_entry_at(source.ns, &source.path, base_rev, &actor)
            .await
            .map_err(|e| access.outer_error(source.ns, e))?;
    }
    let entry = state
        .meta
        .stat(target.ns, &target.path)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{to} was removed meanwhile")))?;
    Ok(access.outer_entry(entry))
}

#[utoipa::path(
    post,
    path = "/files/move",
    request_body = proto::MoveRequest,
    responses(
        (status = 200, description = "The entry at its new path", body = proto::EntryInfo),
        (status = 404, description = "No such entry", body = proto::ErrorBody),
        (status = 409, description = "A stale base revision or a name that is taken: the current entry is in the error", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn move_entry(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::MoveRequest>,
) -> ApiResult<Json<proto::EntryInfo>> {
    let (from, to) = move_paths(&req)?;
    let base_rev = req.base_rev.as_deref().map(parse_rev).transpose()?;
    let source = access.resolve(&from, Need::Read)?;
    if source.is_mount_point() {
        // Renaming a shared folder renames the caller's own mount folder, in its home;
        // it stays at the top of the tree, where mounts live.
        let target = access.resolve(&to, Need::Read)?;
        let same_mount = target.is_mount_point() && target.ns == source.ns;
        if to.parent().is_some_and(|p| !p.is_root()) || (target.mount.is_some() && !same_mount) {
            return Err(ApiError::bad_request(
                "invalid_move",
                format!("{from} is a shared folder; it can be renamed but stays at the top of your files"),
            ));
        }
        let entry = state
            .meta
            .move_entry_at(
                access.home(),
                &from,
                &to,
                None,
                &actor(&access, String::new()),
            )
            .await?;
        return Ok(Json(entry_view(&access, entry)));
    }
    let source = access.resolve(&from, Need::Write)?;
    let target = access.resolve(&to, Need::Write)?;
    if source.ns != target.ns {
        let entry = transfer_across(
            &state, &access, &source, &target, &from, &to, base_rev, true,
        )
        .await?;
        return Ok(Json(entry_view(&access, entry)));
    }
    let entry = state
        .meta
        .move_entry_at(
            source.ns,
            &source.path,
            &target.path,
            base_rev,
            &actor(&access, String::new()),
        )
        .await
        .map_err(|e| access.outer_error(source.ns, e))?;
    Ok(Json(entry_view(&access, access.outer_entry(entry))))
}

#[utoipa::path(
    post,
    path = "/files/copy",
    request_body = proto::MoveRequest,
    responses(
        (status = 201, description = "The copy", body = proto::EntryInfo),
        (status = 404, description = "No such entry", body = proto::ErrorBody),
        (status = 409, description = "A stale base revision or a name that is taken: the current entry is in the error", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn copy_entry(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::MoveRequest>,
) -> ApiResult<(StatusCode, Json<proto::EntryInfo>)> {
    let (from, to) = move_paths(&req)?;
    if req.base_rev.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "base_rev is a precondition for move and delete; a copy changes nothing at its source",
        ));
    }
    let source = access.resolve(&from, Need::Read)?;
    let target = access.resolve(&to, Need::Write)?;
    if source.ns != target.ns {
        let entry =
            transfer_across(&state, &access, &source, &target, &from, &to, None, false).await?;
        return Ok((StatusCode::CREATED, Json(entry_view(&access, entry))));
    }
    let entry = state
        .meta
        .copy_entry(
            source.ns,
            &source.path,
            &target.path,
            &actor(&access, String::new()),
        )
        .await
        .map_err(|e| access.outer_error(source.ns, e))?;
    Ok((
        StatusCode::CREATED,
        Json(entry_view(&access, access.outer_entry(entry))),
    ))
}

#[utoipa::path(
    post,
    path = "/files/delete",
    request_body = proto::DeleteRequest,
    responses(
        (status = 204, description = "Moved to the trash"),
        (status = 404, description = "No such entry", body = proto::ErrorBody),
        (status = 409, description = "A stale base revision or a name that is taken: the current entry is in the error", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn delete(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::DeleteRequest>,
) -> ApiResult<StatusCode> {
    let path = ServerPath::parse(&req.path)?;
    if path.is_root() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "the root folder cannot be deleted",
        ));
    }
    let base_rev = req.base_rev.as_deref().map(parse_rev).transpose()?;
    let target = access.resolve(&path, Need::Read)?;
    if let (true, Some(mount)) = (target.is_mount_point(), &target.mount) {
        // Deleting a shared folder from one's own tree is leaving it, as on Dropbox;
        // nothing in it is deleted. Its owner has to remove the members first.
        if mount.role == cairn_meta::Role::Owner {
            // 403, not 409: nothing will change by itself, so a sync client must
            // report it rather than retry.
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "shared_folder",
                format!(
                    "{path} is a shared folder you own, and cannot be deleted while it is \
                     shared; see `cairn share list`"
                ),
            ));
        }
        state
            .meta
            .remove_member(
                mount.ns,
                access.auth.user.id,
                &actor(&access, String::new()),
            )
            .await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let target = access.resolve(&path, Need::Write)?;
    state
        .meta
        .delete_entry_at(
            target.ns,
            &target.path,
            base_rev,
            &actor(&access, String::new()),
        )
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Commits a block list and answers with the stored entry; shared by both upload paths.
#[allow(clippy::too_many_arguments)]
async fn commit_blocks(
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
fn block_refs(state: &AppState, blocks: &[proto::BlockRef]) -> ApiResult<Vec<BlockRef>> {
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
async fn commit(
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
async fn commit_batch(
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
    path = "/files/blocks",
    params(PathQuery),
    responses(
        (status = 200, description = "The file's block list", body = proto::FileBlocksResponse),
        (status = 404, description = "No such file", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn file_blocks(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<proto::FileBlocksResponse>> {
    let path = ServerPath::parse(&q.path)?;
    let (_, entry) = stat_existing(&state, &access, &path).await?;
    let rev = file_rev(&entry)?;
    let blocks = state.meta.version_blocks(rev).await?;
    Ok(Json(proto::FileBlocksResponse {
        entry: entry_info(&entry),
        blocks: blocks
            .iter()
            .map(|b| proto::BlockRef {
                hash: b.hash.to_hex(),
                size: b.size,
            })
            .collect(),
    }))
}

/// Many small files' contents in one response (see [`proto::ContentBatchRequest`] for
/// the format). Each file is read whole before its record is sent, so a file with a
/// damaged block gets an error record like any other refusal, never wrong bytes, and
/// the response holds at most one file in memory at a time.
#[utoipa::path(
    post,
    path = "/files/content_batch",
    request_body = proto::ContentBatchRequest,
    responses(
        (status = 200, description = "Framed records, one per path: a u32 BE header length, a ContentBatchHeader as JSON, then the content", body = proto::Binary, content_type = "application/octet-stream")
    ),
    security(("bearer" = []))
)]
async fn content_batch(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::ContentBatchRequest>,
) -> ApiResult<Response> {
    check_batch_len(req.paths.len(), "paths")?;
    let start = (
        state,
        access,
        req.paths.into_iter(),
        proto::MAX_CONTENT_BATCH_BYTES,
    );
    let body =
        futures::stream::unfold(start, |(state, access, mut paths, mut budget)| async move {
            let path = paths.next()?;
            let record = content_record(&state, &access, &path, &mut budget).await;
            Some((record, (state, access, paths, budget)))
        });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response())
}

/// One record of a `content_batch` response (see [`proto::content_batch`]). A record
/// that cannot be written (never seen: a header over its limit, content not its
/// entry's size) ends the response with an error, which cuts it short for the client.
async fn content_record(
    state: &AppState,
    access: &Access,
    path: &str,
    budget: &mut u64,
) -> std::io::Result<Bytes> {
    let (header, content) = match whole_small_file(state, access, path, budget).await {
        Ok((entry, content)) => (
            proto::ContentBatchHeader {
                entry: Some(entry_info(&entry)),
                error: None,
            },
            content,
        ),
        Err(err) => (
            proto::ContentBatchHeader {
                entry: None,
                error: Some(err.into_detail()),
            },
            Vec::new(),
        ),
    };
    let mut record = Vec::new();
    proto::content_batch::encode_record(&header, &content, &mut record).map_err(|err| {
        tracing::error!(path, %err, "content_batch record not written");
        std::io::Error::other(err)
    })?;
    Ok(Bytes::from(record))
}

/// A file's entry and blocks, all read and verified, if it fits what is left of the
/// batch's `budget` (which it then takes).
async fn whole_small_file(
    state: &AppState,
    access: &Access,
    path: &str,
    budget: &mut u64,
) -> ApiResult<(Entry, Vec<Bytes>)> {
    let path = ServerPath::parse(path)?;
    let (_, entry) = stat_existing(state, access, &path).await?;
    let rev = file_rev(&entry)?;
    let size = entry.size.max(0) as u64;
    if size > proto::MAX_CONTENT_BATCH_FILE {
        return Err(ApiError::bad_request(
            "too_large_for_batch",
            format!(
                "{path} is {size} bytes, more than a batch carries ({}); download it with GET /files/content",
                proto::MAX_CONTENT_BATCH_FILE
            ),
        ));
    }
    if size > *budget {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_full",
            format!("this response is full before {path}; ask for it in another batch"),
        ));
    }
    let blocks = state.meta.version_blocks(rev).await?;
    let mut content = Vec::with_capacity(blocks.len());
    for block in &blocks {
        let data = state
            .blocks
            .get_required(block.hash)
            .await
            .map_err(|err| ApiError::from_required_block(err, Some(&path)))?;
        content.push(data);
    }
    let sent: u64 = content.iter().map(|d| d.len() as u64).sum();
    if sent != size {
        return Err(ApiError::internal(format!(
            "{path} is {size} bytes but its blocks hold {sent}"
        )));
    }
    *budget -= size;
    metrics::counter!(BLOCK_BYTES_SENT).increment(size);
    Ok((entry, content))
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
async fn versions(
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
async fn restore(
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

fn file_rev(entry: &Entry) -> ApiResult<VersionId> {
    match (entry.kind, entry.rev) {
        (EntryKind::File, Some(rev)) => Ok(rev),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "is_a_folder",
            format!("{} is a folder, not a file", entry.path),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Where the file goes.
    #[param(value_type = proto::ApiPath)]
    path: String,
    /// The revision the content replaces; absent for a new file.
    base_rev: Option<String>,
    /// On a conflict, store the content as a conflict copy beside the file instead.
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    autorename: bool,
    /// The file's modification time, Unix milliseconds.
    mtime: Option<i64>,
}

/// Whole-file upload: the server chunks the streamed body itself, holding only a few
/// chunks in memory however large the file is.
#[utoipa::path(
    put,
    path = "/files/content",
    params(UploadQuery),
    request_body(content = proto::Binary, content_type = "application/octet-stream", description = "The whole file; the server chunks it"),
    responses(
        (status = 200, description = "The file", body = proto::CommitResponse),
        (status = 409, description = "A stale base revision or a name that is taken: the current entry is in the error", body = proto::ErrorBody),
        (status = 413, description = "Over the quota", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn upload(
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
    if let Some(length) = declared {
        let replaced = match state.meta.stat(target.ns, &target.path).await? {
            Some(e) if e.kind == EntryKind::File => e.size,
            _ => 0,
        };
        if length > replaced {
            state
                .meta
                .check_quota_of(target.ns, length - replaced)
                .await?;
        }
    }
    let stream = body
        .into_data_stream()
        .map_err(|err| std::io::Error::other(err.to_string()));
    let blocks = store_stream(&state, &access.auth.user, stream).await?;
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

/// Chunks a streamed body on the server and stores its blocks for `user`, holding only
/// a few chunks in memory however large the body is; returns the block list to commit.
pub(crate) async fn store_stream<S>(
    state: &AppState,
    user: &cairn_meta::User,
    stream: S,
) -> ApiResult<Vec<BlockRef>>
where
    S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let reader = SyncIoBridge::new(StreamReader::new(Box::pin(stream)));
    let runtime = tokio::runtime::Handle::current();
    let chunker = state.config.chunker;
    let (task_state, user) = (state.clone(), user.clone());
    let chunked = tokio::task::spawn_blocking(move || {
        chunk_and_hash(reader, &chunker, |chunk| {
            let data = Bytes::from(chunk.data);
            runtime.block_on(accept_block(&task_state, &user, chunk.hash, data))
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|err| match err {
        ChunkError::Read(err) => ApiError::bad_request(
            "upload_interrupted",
            format!("reading the upload failed: {err}; nothing was committed"),
        ),
        ChunkError::Sink(err) => err,
    })?;
    Ok(chunked
        .blocks
        .iter()
        .map(|(hash, size)| BlockRef {
            hash: *hash,
            size: *size,
        })
        .collect())
}

/// The body of a download: `(block, from, to)` slices of the file's blocks, in order.
///
/// The first block is read before answering, so a damaged file whose first block is bad
/// gets a clean error status. Later blocks are fetched one ahead of the one being sent;
/// one that fails verification ends the stream with an error, so the client sees a
/// short body, never wrong bytes.
pub(crate) async fn block_body(
    state: &AppState,
    file: &ServerPath,
    pieces: Vec<(BlockHash, usize, usize)>,
) -> ApiResult<Body> {
    let mut pieces = pieces.into_iter();
    let head = match pieces.next() {
        Some((hash, from, to)) => {
            let data = state
                .blocks
                .get_required(hash)
                .await
                .map_err(|err| ApiError::from_required_block(err, Some(file)))?;
            metrics::counter!(BLOCK_BYTES_SENT).increment((to - from) as u64);
            Some(Ok::<_, std::io::Error>(data.slice(from..to)))
        }
        None => None,
    };
    let store = state.blocks.clone();
    let rest = futures::stream::iter(pieces)
        .map(move |(hash, from, to)| {
            let store = store.clone();
            async move {
                let data = store.get_required(hash).await.map_err(|err| {
                    tracing::error!("download of block {hash} failed, response cut short: {err}");
                    std::io::Error::other(err.to_string())
                })?;
                metrics::counter!(BLOCK_BYTES_SENT).increment((to - from) as u64);
                Ok::<_, std::io::Error>(data.slice(from..to))
            }
        })
        .buffered(2);
    Ok(Body::from_stream(futures::stream::iter(head).chain(rest)))
}

/// A parsed `Range` header: the first and last byte wanted, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRange {
    first: u64,
    last: u64,
}

/// Parses a single-range `bytes=` header against a file of `size` bytes. `Ok(None)` means
/// "send the whole file" (no header, or a form we do not support, which RFC 9110 lets us
/// ignore); `Err` means the range cannot be satisfied.
fn parse_range(header: Option<&HeaderValue>, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = header.and_then(|h| h.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        ByteRange {
            first: size.saturating_sub(n),
            last: size - 1,
        }
    } else {
        let first: u64 = start.parse().map_err(|_| ())?;
        let last = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if first >= size || last < first {
            return Err(());
        }
        ByteRange { first, last }
    };
    Ok(Some(range))
}

#[utoipa::path(
    get,
    path = "/files/content",
    params(PathQuery, ("Range" = Option<String>, Header, description = "One byte range, as bytes=START-END")),
    responses(
        (status = 200, description = "The file's content", body = proto::Binary, content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", body = proto::Binary, content_type = "application/octet-stream"),
        (status = 404, description = "No such file", body = proto::ErrorBody),
        (status = 416, description = "The range is outside the file", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn download(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<PathQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = ServerPath::parse(&q.path)?;
    let (_, entry) = stat_existing(&state, &access, &path).await?;
    let rev = file_rev(&entry)?;
    let blocks = state.meta.version_blocks(rev).await?;
    let size: u64 = blocks.iter().map(|b| b.size as u64).sum();
    let etag = format!("\"{}\"", rev.0);

    let range = match parse_range(headers.get(header::RANGE), size) {
        Ok(range) => range,
        Err(()) => {
            let mut err = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the requested range is outside the file ({size} bytes)"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                err.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(err);
        }
    };
    let ByteRange { first, last } = range.unwrap_or(ByteRange {
        first: 0,
        last: size.saturating_sub(1),
    });
    let length = if size == 0 { 0 } else { last - first + 1 };

    // Pick the blocks that overlap the range, with the slice of each to send.
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for block in &blocks {
        let (start, end) = (offset, offset + block.size as u64);
        offset = end;
        if length == 0 || end <= first || start > last {
            continue;
        }
        let from = first.saturating_sub(start) as usize;
        let to = ((last + 1).min(end) - start) as usize;
        pieces.push((block.hash, from, to));
    }

    let body = block_body(&state, &path, pieces).await?;

    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, size: u64, expect: Result<Option<(u64, u64)>, ()>) {
        let value = HeaderValue::from_str(header).unwrap();
        let got = parse_range(Some(&value), size).map(|r| r.map(|r| (r.first, r.last)));
        assert_eq!(got, expect, "{header} on {size} bytes");
    }

    #[test]
    fn ranges() {
        check("bytes=0-9", 100, Ok(Some((0, 9))));
        check("bytes=90-", 100, Ok(Some((90, 99))));
        check("bytes=-10", 100, Ok(Some((90, 99))));
        check("bytes=-1000", 100, Ok(Some((0, 99))));
        check("bytes=50-5000", 100, Ok(Some((50, 99))));
        check("bytes=100-", 100, Err(()));
        check("bytes=9-1", 100, Err(()));
        check("bytes=x-1", 100, Err(()));
        check("bytes=0-1,5-6", 100, Ok(None));
        check("items=0-1", 100, Ok(None));
        check("bytes=0-0", 0, Err(()));
    }
}
