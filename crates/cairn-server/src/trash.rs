//! Trash endpoints: list the caller's trash, restore an item, purge items for good.
//!
//! Items are found in the caller's home namespace only, so another account's item ids
//! answer 404 like ids that never existed.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use cairn_core::{ServerPath, TrashId};
use cairn_meta::{Actor, EntryKind, TrashItem};
use cairn_proto as proto;
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::convert::entry_info;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::state::AppState;

/// Default and largest page of the trash listing.
const DEFAULT_LIST_LIMIT: u32 = 1000;
const MAX_LIST_LIMIT: u32 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/trash", get(list))
        .route("/trash/restore", post(restore))
        .route("/trash/purge", post(purge))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

fn actor(auth: &AuthUser) -> Actor {
    Actor {
        user_id: auth.user.id,
        device_id: auth.device,
        // A restore never makes a conflict copy, so no device name is needed.
        device_name: String::new(),
    }
}

/// A trash item as the API shows it.
pub fn trash_info(item: &TrashItem) -> proto::TrashItem {
    proto::TrashItem {
        id: item.id.0,
        path: item.path.as_str().to_owned(),
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

async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<proto::TrashListResponse>> {
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let items = state
        .meta
        .list_trash(auth.user.home_ns, q.after.map(TrashId), limit)
        .await?;
    let next_after = if items.len() as u32 == limit {
        items.last().map(|i| i.id.0)
    } else {
        None
    };
    Ok(Json(proto::TrashListResponse {
        items: items.iter().map(trash_info).collect(),
        next_after,
    }))
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

async fn restore(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(req): Json<proto::TrashRestoreRequest>,
) -> ApiResult<Json<proto::TrashRestoreResponse>> {
    let ns = auth.user.home_ns;
    let entry = match (req.id, req.path.as_deref()) {
        (Some(id), None) => {
            state
                .meta
                .restore_trash(ns, TrashId(id), &actor(&auth))
                .await?
        }
        (None, Some(path)) => {
            let path = item_path(path)?;
            state
                .meta
                .restore_trash_path(ns, &path, &actor(&auth))
                .await
                .map_err(|e| not_in_trash(e, &path))?
        }
        _ => return Err(one_of_id_or_path()),
    };
    Ok(Json(proto::TrashRestoreResponse {
        entry: entry_info(&entry),
    }))
}

async fn purge(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(req): Json<proto::TrashPurgeRequest>,
) -> ApiResult<Json<proto::TrashPurgeResponse>> {
    let ns = auth.user.home_ns;
    let purged = match (req.id, req.path.as_deref(), req.all) {
        (Some(id), None, false) => {
            vec![
                state
                    .meta
                    .purge_trash(ns, TrashId(id), &actor(&auth))
                    .await?,
            ]
        }
        (None, Some(path), false) => {
            let path = item_path(path)?;
            state
                .meta
                .purge_trash_path(ns, &path, &actor(&auth))
                .await
                .map_err(|e| not_in_trash(e, &path))?
        }
        (None, None, true) => state.meta.purge_all_trash(ns, &actor(&auth)).await?,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "name what to purge by exactly one of `id`, `path` or `all: true`",
            ))
        }
    };
    Ok(Json(proto::TrashPurgeResponse {
        purged: purged.iter().map(trash_info).collect(),
    }))
}

/// A restore or purge by path that finds nothing says where it looked: the trash, not
/// the live tree.
fn not_in_trash(err: cairn_meta::MetaError, path: &ServerPath) -> ApiError {
    match err {
        cairn_meta::MetaError::NotFound(_) => {
            ApiError::not_found(format!("nothing deleted from {path} is in the trash"))
        }
        other => other.into(),
    }
}
