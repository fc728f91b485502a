//! The tree's endpoints: list, stat, space, mkdir, move, copy and delete.

use axum::extract::State;
use axum::http::StatusCode;
use cairn_core::{ServerPath, VersionId};
use cairn_meta::{Entry, EntryKind};
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::{Access, Need, Target};
use crate::error::{ApiError, ApiResult};
use crate::extract::{page_size, Json, Query};
use crate::state::AppState;

use super::{actor, entry_view, parse_rev, stat_existing, PathQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The folder; `/` when absent.
    #[serde(default = "root_path")]
    #[param(value_type = Option<proto::ApiPath>)]
    path: String,
    /// The page after this name (the last of the previous page).
    after: Option<String>,
    /// Entries per page: 1000 when absent, at most 10,000 (`proto::MAX_PAGE`).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

fn root_path() -> String {
    "/".to_owned()
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
pub(super) async fn list(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<proto::ListResponse>> {
    let path = ServerPath::parse(&q.path)?;
    let target = access.resolve(&path, Need::Read)?;
    let limit = page_size(q.limit)?;
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
pub(super) async fn stat(
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
pub(super) async fn space(
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
pub(super) async fn mkdir(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::PathRequest>,
) -> ApiResult<(StatusCode, Json<proto::EntryInfo>)> {
    let path = ServerPath::parse(&req.path)?;
    let entry = make_folder(&state, &access, &path).await?;
    Ok((StatusCode::CREATED, Json(entry_view(&access, entry))))
}

/// Makes the folder `path` of the caller's tree, with its missing parents; answers
/// with it as the caller sees it.
pub(crate) async fn make_folder(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
) -> ApiResult<Entry> {
    let target = access.resolve(path, Need::Write)?;
    if target.path.is_root() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("{path} already exists"),
        ));
    }
    let entry = state
        .meta
        .mkdir(target.ns, &target.path, &actor(access, String::new()))
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    Ok(access.outer_entry(entry))
}

fn move_paths(from: &str, to: &str) -> ApiResult<(ServerPath, ServerPath)> {
    let from = ServerPath::parse(from)?;
    let to = ServerPath::parse(to)?;
    check_move_paths(&from, &to)?;
    Ok((from, to))
}

fn check_move_paths(from: &ServerPath, to: &ServerPath) -> ApiResult<()> {
    if from.is_root() || to.is_root() {
        return Err(ApiError::bad_request(
            "invalid_move",
            "the root folder cannot be moved, copied or replaced",
        ));
    }
    Ok(())
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
pub(super) async fn move_entry(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::MoveRequest>,
) -> ApiResult<Json<proto::EntryInfo>> {
    let (from, to) = move_paths(&req.from, &req.to)?;
    let base_rev = req.base_rev.as_deref().map(parse_rev).transpose()?;
    let entry = move_path(&state, &access, &from, &to, base_rev).await?;
    Ok(Json(entry_view(&access, entry)))
}

/// Moves `from` to `to` in the caller's tree (within a namespace, across two, or the
/// rename of a shared folder's mount); answers with the entry at its new path.
pub(crate) async fn move_path(
    state: &AppState,
    access: &Access,
    from: &ServerPath,
    to: &ServerPath,
    base_rev: Option<VersionId>,
) -> ApiResult<Entry> {
    check_move_paths(from, to)?;
    let source = access.resolve(from, Need::Read)?;
    if source.is_mount_point() {
        // Renaming a shared folder renames the caller's own mount folder, in its home;
        // it stays at the top of the tree, where mounts live.
        let target = access.resolve(to, Need::Read)?;
        let same_mount = target.is_mount_point() && target.ns == source.ns;
        if to.parent().is_some_and(|p| !p.is_root()) || (target.mount.is_some() && !same_mount) {
            return Err(ApiError::bad_request(
                "invalid_move",
                format!("{from} is a shared folder; it can be renamed but stays at the top of your files"),
            ));
        }
        let entry = state
            .meta
            .move_entry_at(access.home(), from, to, None, &actor(access, String::new()))
            .await?;
        return Ok(entry);
    }
    let source = access.resolve(from, Need::Write)?;
    let target = access.resolve(to, Need::Write)?;
    if source.ns != target.ns {
        return transfer_across(state, access, &source, &target, from, to, base_rev, true).await;
    }
    let entry = state
        .meta
        .move_entry_at(
            source.ns,
            &source.path,
            &target.path,
            base_rev,
            &actor(access, String::new()),
        )
        .await
        .map_err(|e| access.outer_error(source.ns, e))?;
    Ok(access.outer_entry(entry))
}

#[utoipa::path(
    post,
    path = "/files/copy",
    request_body = proto::CopyRequest,
    responses(
        (status = 201, description = "The copy", body = proto::EntryInfo),
        (status = 404, description = "No such entry", body = proto::ErrorBody),
        (status = 409, description = "A stale base revision or a name that is taken: the current entry is in the error", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn copy_entry(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::CopyRequest>,
) -> ApiResult<(StatusCode, Json<proto::EntryInfo>)> {
    let (from, to) = move_paths(&req.from, &req.to)?;
    let entry = copy_path(&state, &access, &from, &to).await?;
    Ok((StatusCode::CREATED, Json(entry_view(&access, entry))))
}

/// Copies `from` to `to` in the caller's tree; answers with the copy.
pub(crate) async fn copy_path(
    state: &AppState,
    access: &Access,
    from: &ServerPath,
    to: &ServerPath,
) -> ApiResult<Entry> {
    check_move_paths(from, to)?;
    let source = access.resolve(from, Need::Read)?;
    let target = access.resolve(to, Need::Write)?;
    if source.ns != target.ns {
        return transfer_across(state, access, &source, &target, from, to, None, false).await;
    }
    let entry = state
        .meta
        .copy_entry(
            source.ns,
            &source.path,
            &target.path,
            &actor(access, String::new()),
        )
        .await
        .map_err(|e| access.outer_error(source.ns, e))?;
    Ok(access.outer_entry(entry))
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
pub(super) async fn delete(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::DeleteRequest>,
) -> ApiResult<StatusCode> {
    let path = ServerPath::parse(&req.path)?;
    let base_rev = req.base_rev.as_deref().map(parse_rev).transpose()?;
    delete_path(&state, &access, &path, base_rev).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves `path` of the caller's tree to the trash, or, for a shared folder's mount,
/// leaves the shared folder.
pub(crate) async fn delete_path(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
    base_rev: Option<VersionId>,
) -> ApiResult<()> {
    if path.is_root() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "the root folder cannot be deleted",
        ));
    }
    let target = access.resolve(path, Need::Read)?;
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
            .remove_member(mount.ns, access.auth.user.id, &actor(access, String::new()))
            .await?;
        return Ok(());
    }
    let target = access.resolve(path, Need::Write)?;
    state
        .meta
        .delete_entry_at(
            target.ns,
            &target.path,
            base_rev,
            &actor(access, String::new()),
        )
        .await
        .map_err(|e| access.outer_error(target.ns, e))?;
    Ok(())
}
