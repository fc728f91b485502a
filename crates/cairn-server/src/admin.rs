//! The administrators' API: list accounts, set a password, disable, enable and delete
//! an account. `cairn admin user …` does the same on the data directory directly; these
//! endpoints let an administrator's bearer token do it over HTTP.
//!
//! What each does to an account is decided in `cairn-meta` (`accounts.rs`): a disabled
//! account keeps everything and is refused until enabled; a deleted one loses its
//! files, hands its shared folders to their first editor, and frees its name.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use cairn_meta::{DeletedUser, User};
use cairn_proto as proto;

use crate::access::Admin;
use crate::auth::check_new_password;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, PathParam};
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(list, create))
        .at(endpoint!(set_quota))
        .at(endpoint!(last_fsck))
        .at(endpoint!(remove))
        .at(endpoint!(set_password))
        .at(endpoint!(disable))
        .at(endpoint!(enable))
        .build()
}

/// An account as an administrator sees it, with its usage.
pub fn admin_user_info(user: &User, usage_bytes: i64) -> proto::AdminUserInfo {
    proto::AdminUserInfo {
        id: user.id.0,
        name: user.name.clone(),
        is_admin: user.is_admin,
        quota_bytes: user.quota_bytes,
        usage_bytes,
        disabled: !user.is_enabled(),
        disabled_at: user.disabled_at,
        created_at: user.created_at,
    }
}

/// What went with a deleted account, on the wire.
pub fn user_delete_response(name: &str, report: &DeletedUser) -> proto::UserDeleteResponse {
    proto::UserDeleteResponse {
        name: name.to_owned(),
        files_deleted: report.files_deleted,
        bytes_deleted: report.bytes_deleted,
        shares_transferred: report
            .shares_transferred
            .iter()
            .map(|t| proto::TransferredShare {
                folder: t.folder.clone(),
                new_owner: t.new_owner.clone(),
            })
            .collect(),
        shares_deleted: report.shares_deleted.clone(),
        memberships_removed: report.memberships_removed,
        links_revoked: report.links_revoked,
        sessions_revoked: report.tokens_revoked + report.app_passwords_revoked,
    }
}

#[utoipa::path(
    get,
    path = "/admin/users",
    responses(
        (status = 200, description = "Every account with its usage, oldest first", body = proto::AdminUserListResponse),
        (status = 403, description = "The caller is no administrator", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<Json<proto::AdminUserListResponse>> {
    let users = state.meta.list_users().await?;
    let usage = state.meta.usage_by_user().await?;
    Ok(Json(proto::AdminUserListResponse {
        users: users
            .iter()
            .map(|u| admin_user_info(u, usage.get(&u.id).copied().unwrap_or(0)))
            .collect(),
    }))
}

/// Adds an account, as `cairn admin user add` does.
#[utoipa::path(
    post,
    path = "/admin/users",
    request_body = proto::AdminUserCreateRequest,
    responses(
        (status = 201, description = "The new account", body = proto::AdminUserInfo),
        (status = 400, description = "A name or password that cannot be used, or a negative quota", body = proto::ErrorBody),
        (status = 403, description = "The caller is no administrator", body = proto::ErrorBody),
        (status = 409, description = "The name is taken", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Json(req): Json<proto::AdminUserCreateRequest>,
) -> ApiResult<(StatusCode, Json<proto::AdminUserInfo>)> {
    cairn_meta::check_user_name(&req.name)?;
    check_new_password(&req.password)
        .map_err(|message| ApiError::bad_request("invalid_password", message))?;
    check_quota(req.quota_bytes)?;
    let hash = crate::hash_password(&state.config, req.password)
        .await
        .map_err(ApiError::internal)?;
    let user = state
        .meta
        .create_user(&req.name, &hash, req.is_admin, req.quota_bytes)
        .await?;
    tracing::info!(admin = %admin.name(), user = %user.name, "added an account");
    Ok((StatusCode::CREATED, Json(admin_user_info(&user, 0))))
}

fn check_quota(quota: Option<i64>) -> ApiResult<()> {
    if quota.is_some_and(|q| q < 0) {
        return Err(ApiError::bad_request(
            "invalid_quota",
            "a quota is a number of bytes, 0 or more (or null for no limit)",
        ));
    }
    Ok(())
}

/// Sets an account's quota (null: no limit). Files already stored stay, over it or
/// not; only growth is refused.
#[utoipa::path(
    put,
    path = "/admin/users/{name}/quota",
    params(("name" = String, Path, description = "The account's user name")),
    request_body = proto::AdminQuotaRequest,
    responses(
        (status = 200, description = "The account with its new quota", body = proto::AdminUserInfo),
        (status = 400, description = "A negative quota", body = proto::ErrorBody),
        (status = 404, description = "No such account", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn set_quota(
    State(state): State<AppState>,
    admin: Admin,
    PathParam(name): PathParam<String>,
    Json(req): Json<proto::AdminQuotaRequest>,
) -> ApiResult<Json<proto::AdminUserInfo>> {
    check_quota(req.quota_bytes)?;
    if !state.meta.set_quota(&name, req.quota_bytes).await? {
        return Err(cairn_meta::MetaError::NoSuchUser(name).into());
    }
    let user = user_named(&state, &name).await?;
    tracing::info!(admin = %admin.name(), user = %name, quota = ?req.quota_bytes, "set a quota");
    let usage = state.meta.usage_bytes(user.id).await?;
    Ok(Json(admin_user_info(&user, usage)))
}

/// The newest `cairn admin fsck` run's report, as it printed it with `--json`.
#[utoipa::path(
    get,
    path = "/admin/fsck",
    responses(
        (status = 200, description = "The last integrity check (none when it never ran)", body = proto::AdminFsckResponse),
        (status = 403, description = "The caller is no administrator", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn last_fsck(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<Json<proto::AdminFsckResponse>> {
    let last = match state.meta.last_fsck().await? {
        // Written by this program's own serializer; an unreadable one (a newer version's
        // format) is reported as none rather than failing the page.
        Some((_, report)) => serde_json::from_str(&report).ok(),
        None => None,
    };
    Ok(Json(proto::AdminFsckResponse { last }))
}

async fn user_named(state: &AppState, name: &str) -> ApiResult<User> {
    state
        .meta
        .user_by_name(name)
        .await?
        .ok_or_else(|| cairn_meta::MetaError::NoSuchUser(name.to_owned()).into())
}

/// Sets the password and signs out every session of the account (the administrator
/// sets one because the old is lost or leaked, so no old session should outlive it).
#[utoipa::path(
    post,
    path = "/admin/users/{name}/password",
    params(("name" = String, Path, description = "The account's user name")),
    request_body = proto::AdminSetPasswordRequest,
    responses(
        (status = 200, description = "Set; every session of the account is signed out", body = proto::PasswordChangeResponse),
        (status = 404, description = "No such account", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn set_password(
    State(state): State<AppState>,
    admin: Admin,
    PathParam(name): PathParam<String>,
    Json(req): Json<proto::AdminSetPasswordRequest>,
) -> ApiResult<Json<proto::PasswordChangeResponse>> {
    check_new_password(&req.password)
        .map_err(|message| ApiError::bad_request("invalid_password", message))?;
    let user = user_named(&state, &name).await?;
    let hash = crate::hash_password(&state.config, req.password)
        .await
        .map_err(ApiError::internal)?;
    let revoked = state.meta.set_password_hash(user.id, &hash, None).await?;
    state.notify.sign_out(user.id, None);
    tracing::info!(admin = %admin.name(), user = %name, revoked, "set a user's password");
    Ok(Json(proto::PasswordChangeResponse {
        sessions_revoked: revoked,
    }))
}

#[utoipa::path(
    post,
    path = "/admin/users/{name}/disable",
    params(("name" = String, Path, description = "The account's user name")),
    responses(
        (status = 200, description = "Disabled: no login, its tokens and links refused at once", body = proto::AdminUserInfo),
        (status = 404, description = "No such account", body = proto::ErrorBody),
        (status = 409, description = "The last enabled administrator", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn disable(
    State(state): State<AppState>,
    admin: Admin,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<proto::AdminUserInfo>> {
    set_disabled(&state, &admin, &name, true).await
}

#[utoipa::path(
    post,
    path = "/admin/users/{name}/enable",
    params(("name" = String, Path, description = "The account's user name")),
    responses(
        (status = 200, description = "Enabled again, as it was", body = proto::AdminUserInfo),
        (status = 404, description = "No such account", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn enable(
    State(state): State<AppState>,
    admin: Admin,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<proto::AdminUserInfo>> {
    set_disabled(&state, &admin, &name, false).await
}

async fn set_disabled(
    state: &AppState,
    admin: &Admin,
    name: &str,
    disabled: bool,
) -> ApiResult<Json<proto::AdminUserInfo>> {
    let user = state.meta.set_user_disabled(name, disabled).await?;
    if disabled {
        state.notify.sign_out(user.id, None);
    }
    tracing::info!(admin = %admin.name(), user = %name, disabled, "changed an account");
    let usage = state.meta.usage_bytes(user.id).await?;
    Ok(Json(admin_user_info(&user, usage)))
}

#[utoipa::path(
    delete,
    path = "/admin/users/{name}",
    params(("name" = String, Path, description = "The account's user name")),
    responses(
        (status = 200, description = "Deleted with its files; its shared folders pass to their first editor, or are deleted when they have none", body = proto::UserDeleteResponse),
        (status = 404, description = "No such account", body = proto::ErrorBody),
        (status = 409, description = "The last enabled administrator", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<proto::UserDeleteResponse>> {
    let report = state.meta.delete_user(&name).await?;
    state.notify.sign_out(report.id, None);
    tracing::info!(admin = %admin.name(), user = %name, "deleted an account");
    Ok(Json(user_delete_response(&name, &report)))
}
