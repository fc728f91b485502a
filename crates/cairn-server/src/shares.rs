//! Shared folder endpoints: share a folder with someone, list what is shared, remove a
//! member. Only a folder's owner adds or removes members; a member may remove itself
//! (leave), which is also what deleting the mount folder does.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use cairn_core::{NamespaceId, ServerPath};
use cairn_meta::{Actor, Membership, Role};
use cairn_proto as proto;

use crate::access::{Access, Need};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(list, add))
        .at(endpoint!(remove))
        .build()
}

fn actor(access: &Access) -> Actor {
    Actor {
        user_id: access.auth.user.id,
        device_id: access.auth.device,
        device_name: String::new(),
    }
}

fn only_owner(mount: &Membership) -> ApiError {
    ApiError::forbidden(format!(
        "only {}, who owns {}, can change who it is shared with",
        mount.owner_name, mount.mount_path
    ))
}

/// The shared namespace at `path` (a mount folder) and the caller's membership there.
fn shared_at<'a>(access: &'a Access, path: &ServerPath) -> ApiResult<&'a Membership> {
    let target = access.resolve(path, Need::Read)?;
    match target.mount {
        Some(_) if target.is_mount_point() => access
            .mount_for(target.ns)
            .ok_or_else(|| ApiError::internal("a resolved mount vanished")),
        _ => Err(ApiError::not_found(format!(
            "{path} is not a shared folder"
        ))),
    }
}

#[utoipa::path(
    post,
    path = "/shares",
    request_body = proto::ShareRequest,
    responses(
        (status = 201, description = "The shared folder with its members", body = proto::ShareInfo),
        (status = 404, description = "No such folder or account", body = proto::ErrorBody),
        (status = 409, description = "Shared with that account already, or the name is taken in its files", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn add(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::ShareRequest>,
) -> ApiResult<(StatusCode, Json<proto::ShareInfo>)> {
    let path = ServerPath::parse(&req.path)?;
    let role = match Role::parse(&req.role) {
        Some(role @ (Role::Editor | Role::Viewer)) => role,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_role",
                format!("role {:?} is not one of editor, viewer", req.role),
            ))
        }
    };
    let member =
        state.meta.user_by_name(&req.with).await?.ok_or_else(|| {
            ApiError::not_found(format!("there is no account named {:?}", req.with))
        })?;
    if member.id == access.auth.user.id {
        return Err(ApiError::bad_request(
            "invalid_member",
            "a folder cannot be shared with its own owner",
        ));
    }
    let target = access.resolve(&path, Need::Read)?;
    let ns: NamespaceId = match &target.mount {
        Some(mount) if target.is_mount_point() => {
            if target.role != Role::Owner {
                return Err(only_owner(mount));
            }
            mount.ns
        }
        Some(mount) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_shareable",
                format!(
                    "{path} is inside the shared folder {}; share that folder instead",
                    mount.mount_path
                ),
            ))
        }
        None => {
            state
                .meta
                .share_folder(access.home(), &path, &actor(&access))
                .await?
        }
    };
    state
        .meta
        .add_member(ns, member.id, role, &actor(&access))
        .await?;
    // Reload: sharing a folder for the first time made the caller its owner.
    let access = Access::load(&state, access.auth).await?;
    let mount = access
        .mount_for(ns)
        .ok_or_else(|| ApiError::internal("a shared folder has no mount for its owner"))?;
    Ok((StatusCode::CREATED, Json(share_info(&state, mount).await?)))
}

async fn share_info(state: &AppState, mount: &Membership) -> ApiResult<proto::ShareInfo> {
    let members = state.meta.members_of(mount.ns).await?;
    Ok(proto::ShareInfo {
        path: mount.mount_path.as_str().to_owned(),
        owner: mount.owner_name.clone(),
        role: mount.role.as_str().to_owned(),
        members: members
            .iter()
            .map(|m| proto::ShareMember {
                user: m.user_name.clone(),
                role: m.role.as_str().to_owned(),
            })
            .collect(),
    })
}

#[utoipa::path(
    get,
    path = "/shares",
    responses(
        (status = 200, description = "The shared folders the caller sees", body = proto::ShareListResponse)
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    access: Access,
) -> ApiResult<Json<proto::ShareListResponse>> {
    let mut shares = Vec::with_capacity(access.mounts().len());
    for mount in access.mounts() {
        shares.push(share_info(&state, mount).await?);
    }
    Ok(Json(proto::ShareListResponse { shares }))
}

#[utoipa::path(
    post,
    path = "/shares/remove",
    request_body = proto::ShareRemoveRequest,
    responses(
        (status = 204, description = "The member is removed"),
        (status = 404, description = "No such shared folder or member", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn remove(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::ShareRemoveRequest>,
) -> ApiResult<StatusCode> {
    let path = ServerPath::parse(&req.path)?;
    let mount = shared_at(&access, &path)?;
    let member =
        state.meta.user_by_name(&req.with).await?.ok_or_else(|| {
            ApiError::not_found(format!("there is no account named {:?}", req.with))
        })?;
    let leaving = member.id == access.auth.user.id;
    if !leaving && mount.role != Role::Owner {
        return Err(only_owner(mount));
    }
    let removed = state
        .meta
        .remove_member(mount.ns, member.id, &actor(&access))
        .await?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "{} is not shared with {}",
            mount.mount_path, req.with
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}
