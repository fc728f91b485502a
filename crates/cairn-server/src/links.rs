//! Public links: the creator's API (`/api/v1/links`) and, in `public`, the pages anyone
//! holding a link opens at `/s/TOKEN`.
//!
//! A link names an entry (so it follows moves and renames) and reads with its creator's
//! rights, checked again at every use through the same [`Access`] every other handler
//! uses: a link stops working the moment its creator could no longer read (or, for a
//! file drop, write) its target.

mod html;
mod public;

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Router;
use cairn_core::ServerPath;
use cairn_meta::{Entry, EntryKind, Link, LinkId, NewLink, User};
use cairn_proto as proto;
use rand::RngCore;

use crate::access::{Access, Need};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::now_ms;
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

pub use public::router as public_router;

/// Longest accepted link password; argon2 would take more, but nobody types this much.
const MAX_PASSWORD_LEN: usize = 1024;

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(create, list))
        .at(endpoint!(revoke))
        .build()
}

/// The key of the cookies that prove a visitor gave a link's password: random per
/// process, so a restart (or another node) asks for the password again.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl LinkKey {
    /// The deployment's key, kept in the metadata store and made by the first process
    /// that needs it: every node checks the cookies any node gave, and a restart signs
    /// nobody out of a link.
    pub async fn shared(meta: &cairn_meta::MetaStore) -> Result<Self, cairn_meta::MetaError> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        let stored = meta.shared_secret("link_key", &hex::encode(fresh)).await?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&stored, &mut key).map_err(|err| {
            cairn_meta::MetaError::Corrupt(format!(
                "server_secrets.link_key is not 32 bytes of hex: {err}"
            ))
        })?;
        Ok(Self(key))
    }

    /// The proof for `link`: a MAC of its id and password hash, so it dies with the
    /// link and would not survive a change of password.
    fn proof(&self, link: &Link) -> blake3::Hash {
        let mut mac = blake3::Hasher::new_keyed(&self.0);
        mac.update(b"cairn link password v1\0");
        mac.update(&link.id.0.to_le_bytes());
        mac.update(link.password_hash.as_deref().unwrap_or("").as_bytes());
        mac.finalize()
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

/// A fresh link token: 256 random bits, as 64 lowercase hex characters.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether `token` could be one [`new_token`] made (so nothing else reaches the database).
fn is_token(token: &str) -> bool {
    token.len() == 64
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a link's target is now, reached with its creator's rights.
#[derive(Debug)]
struct Reached {
    /// The target inside the link's namespace.
    entry: Entry,
    /// The target as the creator sees it.
    outer: ServerPath,
}

/// The link's target, if `access` (its creator's) still allows `need` there; `None` when
/// the target is gone or out of reach.
async fn reach(
    state: &AppState,
    access: &Access,
    link: &Link,
    need: Need,
) -> ApiResult<Option<Reached>> {
    if !access.namespaces().contains(&link.ns) {
        return Ok(None);
    }
    let entry = match link.entry {
        Some(id) => state.meta.entry_by_id(link.ns, id).await?,
        None => state.meta.stat(link.ns, &ServerPath::root()).await?,
    };
    let Some(entry) = entry else {
        return Ok(None);
    };
    let outer = access.outer_path(link.ns, &entry.path);
    // A home's root is never a link's target; a namespace root is a shared folder's top.
    if outer.is_root() {
        return Ok(None);
    }
    match access.resolve(&outer, need) {
        Ok(target) if target.ns == link.ns && target.path == entry.path => {}
        _ => return Ok(None),
    }
    Ok(Some(Reached { entry, outer }))
}

/// [`reach`] for a visitor, with the creator's rights as they are now; gives the
/// creator too (a file drop commits as the creator).
async fn reach_as_creator(
    state: &AppState,
    link: &Link,
    need: Need,
) -> ApiResult<Option<(User, Reached)>> {
    let Some(creator) = state.meta.user_by_id(link.creator).await? else {
        return Ok(None);
    };
    let Some(access) = Access::for_link_creator(state, creator.clone()).await? else {
        return Ok(None);
    };
    Ok(reach(state, &access, link, need)
        .await?
        .map(|reached| (creator, reached)))
}

/// `https://HOST` or `http://HOST` as the caller reached this server (behind a proxy,
/// `X-Forwarded-Proto` says which), so a link's URL works where its creator is.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| listen_host(state.config.listen));
    let scheme = match crate::cookies::is_https(headers) {
        true => "https",
        false => "http",
    };
    format!("{scheme}://{host}")
}

fn listen_host(addr: SocketAddr) -> String {
    addr.to_string()
}

/// A link for its creator: where its target is now and whether it still works.
async fn link_info(
    state: &AppState,
    access: &Access,
    link: &Link,
    base: &str,
) -> ApiResult<proto::LinkInfo> {
    let need = if link.upload_only {
        Need::Write
    } else {
        Need::Read
    };
    let reached = reach(state, access, link, need).await?;
    let status = if link.revoked_at.is_some() {
        "revoked"
    } else if link.expires_at.is_some_and(|at| at <= now_ms()) {
        "expired"
    } else if link.max_downloads.is_some_and(|max| link.downloads >= max) {
        "exhausted"
    } else if reached.is_none() {
        "gone"
    } else {
        "active"
    };
    Ok(proto::LinkInfo {
        id: link.id.0,
        url: format!("{base}/s/{}", link.token),
        token: link.token.clone(),
        path: reached.as_ref().map(|r| r.outer.as_str().to_owned()),
        kind: reached.as_ref().map(|r| match r.entry.kind {
            EntryKind::File => proto::EntryKind::File,
            EntryKind::Folder => proto::EntryKind::Folder,
        }),
        expires_at: link.expires_at,
        max_downloads: link.max_downloads.map(|m| m.max(0) as u64),
        downloads: link.downloads.max(0) as u64,
        upload_only: link.upload_only,
        has_password: link.password_hash.is_some(),
        created_at: link.created_at,
        revoked_at: link.revoked_at,
        status: status.to_owned(),
    })
}

#[utoipa::path(
    post,
    path = "/links",
    request_body = proto::LinkCreateRequest,
    responses(
        (status = 201, description = "The link; its page is at /s/TOKEN", body = proto::LinkInfo),
        (status = 404, description = "No such file or folder", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    Json(req): Json<proto::LinkCreateRequest>,
) -> ApiResult<(StatusCode, Json<proto::LinkInfo>)> {
    let path = ServerPath::parse(&req.path)?;
    if path.is_root() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "a link names one file or folder, not the whole of your files; link a folder in it",
        ));
    }
    let need = if req.upload_only {
        Need::Write
    } else {
        Need::Read
    };
    let target = access.resolve(&path, need)?;
    let entry = state
        .meta
        .stat(target.ns, &target.path)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{path} does not exist")))?;
    if req.upload_only && entry.kind != EntryKind::Folder {
        return Err(ApiError::bad_request(
            "not_a_folder",
            format!("{path} is a file; an upload-only link drops files into a folder"),
        ));
    }
    if req.upload_only && req.max_downloads.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "an upload-only link serves no downloads, so it takes no download limit",
        ));
    }
    if req.expires_at.is_some_and(|at| at <= now_ms()) {
        return Err(ApiError::bad_request(
            "invalid_expiry",
            "expires_at is in the past; give a time in Unix milliseconds after now",
        ));
    }
    let max_downloads = match req.max_downloads {
        None => None,
        Some(n) if n >= 1 && n <= i64::MAX as u64 => Some(n as i64),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "max_downloads must be at least 1",
            ))
        }
    };
    let password_hash = match req.password {
        None => None,
        Some(p) if p.is_empty() || p.len() > MAX_PASSWORD_LEN => {
            return Err(ApiError::bad_request(
                "invalid_password",
                format!("a link password must be 1 to {MAX_PASSWORD_LEN} bytes"),
            ))
        }
        Some(p) => Some(
            crate::hash_password(&state.config, p)
                .await
                .map_err(ApiError::internal)?,
        ),
    };
    let link = state
        .meta
        .create_link(NewLink {
            token: new_token(),
            creator: access.auth.user.id,
            ns: target.ns,
            // The implicit root of a namespace (a shared folder's top) has no entry row.
            entry: (!target.path.is_root()).then_some(entry.id),
            password_hash,
            expires_at: req.expires_at,
            max_downloads,
            upload_only: req.upload_only,
        })
        .await?;
    let info = link_info(&state, &access, &link, &base_url(&state, &headers)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(
    get,
    path = "/links",
    responses(
        (status = 200, description = "The caller's links, newest first", body = proto::LinkListResponse)
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
) -> ApiResult<Json<proto::LinkListResponse>> {
    let base = base_url(&state, &headers);
    let links = state.meta.links_of(access.auth.user.id).await?;
    let mut out = Vec::with_capacity(links.len());
    for link in &links {
        out.push(link_info(&state, &access, link, &base).await?);
    }
    Ok(Json(proto::LinkListResponse { links: out }))
}

#[utoipa::path(
    post,
    path = "/links/revoke",
    request_body = proto::LinkRevokeRequest,
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "The caller has no such link", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::LinkRevokeRequest>,
) -> ApiResult<StatusCode> {
    if state
        .meta
        .revoke_link(access.auth.user.id, LinkId(req.id))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "you have no link {}; see GET /api/v1/links",
            req.id
        )))
    }
}

/// The namespace and inner path of `sub` (a path inside a folder link, as the visitor
/// gives it) below the link's folder. `ServerPath::parse` has refused `..` already, so
/// the result stays inside the folder.
fn below(folder: &ServerPath, sub: &ServerPath) -> Result<ServerPath, cairn_core::PathError> {
    let mut path = folder.clone();
    for segment in sub.segments() {
        path = path.join(segment)?;
    }
    Ok(path)
}
