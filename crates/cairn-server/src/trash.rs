//! Trash endpoints: list the caller's trash, restore an item, purge items for good.
//!
//! Items are found in the namespaces the caller reads (its home and the shared folders
//! mounted in it), so another account's item ids answer 404 like ids that never existed.

use axum::extract::State;
use axum::Router;
use cairn_core::{NamespaceId, ServerPath, TrashId};
use cairn_meta::{Actor, EntryKind, TrashItem};
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::{read_only, Access, Need};
use crate::convert::entry_info;
use crate::error::{ApiError, ApiResult};
use crate::extract::{page_size, Json, Query};
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

/// Default and largest page of the trash listing.
pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(list))
        .at(endpoint!(restore))
        .at(endpoint!(purge))
        .build()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The page after this item id (the last of the previous page).
    after: Option<i64>,
    /// Items per page: 1000 when absent, at most 10,000 (`proto::MAX_PAGE`).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

fn actor(access: &Access) -> Actor {
    Actor {
        user_id: access.auth.user.id,
        device_id: access.auth.device,
        // A restore never makes a conflict copy, so no device name is needed.
        device_name: String::new(),
    }
}

/// A trash item as the API shows it, its path in the caller's view.
pub fn trash_info(access: &Access, item: &TrashItem) -> proto::TrashItem {
    proto::TrashItem {
        id: item.id.0,
        path: access.outer_path(item.ns, &item.path).as_str().to_owned(),
        kind: match item.kind {
            EntryKind::File => proto::EntryKind::File,
            EntryKind::Folder => proto::EntryKind::Folder,
        },
        size: item.size.max(0) as u64,
        file_count: item.file_count.max(0) as u64,
        deleted_at: item.deleted_at,
        deleted_by: item.user_name.clone(),
        device: item.device_name.clone(),
    }
}

/// The caller's trash: what was deleted from its own files and from the shared
/// folders it reads.
#[utoipa::path(
    get,
    path = "/trash",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the caller's trash, newest first", body = proto::TrashListResponse)
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<proto::TrashListResponse>> {
    let limit = page_size(q.limit)?;
    let namespaces = access.namespaces();
    let items = state
        .meta
        .list_trash_of(&namespaces, q.after.map(TrashId), limit)
        .await?;
    let next_after = if items.len() as u32 == limit {
        items.last().map(|i| i.id.0)
    } else {
        None
    };
    Ok(Json(proto::TrashListResponse {
        items: items.iter().map(|i| trash_info(&access, i)).collect(),
        next_after,
    }))
}

/// The namespace whose trash holds item `id`, among those the caller may change; an
/// item of a folder the caller only views is refused, one it cannot see is not found.
async fn item_namespace(state: &AppState, access: &Access, id: TrashId) -> ApiResult<NamespaceId> {
    for (ns, mount) in access.readable() {
        if state.meta.trash_item(ns, id).await?.is_some() {
            if let Some(mount) = mount.filter(|m| !m.role.can_write()) {
                return Err(read_only(mount));
            }
            return Ok(ns);
        }
    }
    Err(cairn_meta::MetaError::NoSuchTrashItem(id).into())
}

/// The trash is the place to look for a path that no longer exists, so the root (which
/// can never be deleted) is refused as such rather than reported missing.
fn item_path(path: &str) -> ApiResult<ServerPath> {
    let path = ServerPath::parse(path)?;
    if path.is_root() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "the root folder is never in the trash; name a path below it",
        ));
    }
    Ok(path)
}

fn one_of_id_or_path() -> ApiError {
    ApiError::bad_request(
        "invalid_request",
        "name the trash item by exactly one of `id` or `path`",
    )
}

#[utoipa::path(
    post,
    path = "/trash/restore",
    request_body = proto::TrashRestoreRequest,
    responses(
        (status = 200, description = "Brought back, at its path or beside it as NAME (restored)", body = proto::TrashRestoreResponse),
        (status = 404, description = "No such trash item", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn restore(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::TrashRestoreRequest>,
) -> ApiResult<Json<proto::TrashRestoreResponse>> {
    let entry = match (req.id, req.path.as_deref()) {
        (Some(id), None) => {
            let ns = item_namespace(&state, &access, TrashId(id)).await?;
            state
                .meta
                .restore_trash(ns, TrashId(id), &actor(&access))
                .await
                .map_err(|e| access.outer_error(ns, e))?
        }
        (None, Some(path)) => {
            let path = item_path(path)?;
            let target = access.resolve(&path, Need::Write)?;
            state
                .meta
                .restore_trash_path(target.ns, &target.path, &actor(&access))
                .await
                .map_err(|e| not_in_trash(&access, target.ns, e, &path))?
        }
        _ => return Err(one_of_id_or_path()),
    };
    Ok(Json(proto::TrashRestoreResponse {
        entry: entry_info(&access.outer_entry(entry)),
    }))
}

#[utoipa::path(
    post,
    path = "/trash/purge",
    request_body = proto::TrashPurgeRequest,
    responses(
        (status = 200, description = "Removed for good", body = proto::TrashPurgeResponse),
        (status = 404, description = "No such trash item", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn purge(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::TrashPurgeRequest>,
) -> ApiResult<Json<proto::TrashPurgeResponse>> {
    let purged = match (req.id, req.path.as_deref(), req.all) {
        (Some(id), None, false) => {
            let ns = item_namespace(&state, &access, TrashId(id)).await?;
            vec![
                state
                    .meta
                    .purge_trash(ns, TrashId(id), &actor(&access))
                    .await?,
            ]
        }
        (None, Some(path), false) => {
            let path = item_path(path)?;
            let target = access.resolve(&path, Need::Write)?;
            state
                .meta
                .purge_trash_path(target.ns, &target.path, &actor(&access))
                .await
                .map_err(|e| not_in_trash(&access, target.ns, e, &path))?
        }
        // Emptying the trash empties what the caller owns: its home and the folders it
        // shares. Members purge a shared folder's items one by one.
        (None, None, true) => {
            let mut purged = Vec::new();
            for (ns, mount) in access.readable() {
                if mount.is_none_or(|m| m.role == cairn_meta::Role::Owner) {
                    purged.extend(state.meta.purge_all_trash(ns, &actor(&access)).await?);
                }
            }
            purged
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "name what to purge by exactly one of `id`, `path` or `all: true`",
            ))
        }
    };
    Ok(Json(proto::TrashPurgeResponse {
        purged: purged.iter().map(|i| trash_info(&access, i)).collect(),
    }))
}

/// A restore or purge by path that finds nothing says where it looked: the trash, not
/// the live tree.
fn not_in_trash(
    access: &Access,
    ns: NamespaceId,
    err: cairn_meta::MetaError,
    path: &ServerPath,
) -> ApiError {
    match err {
        cairn_meta::MetaError::NotFound(_) => {
            ApiError::not_found(format!("nothing deleted from {path} is in the trash"))
        }
        other => access.outer_error(ns, other),
    }
}
