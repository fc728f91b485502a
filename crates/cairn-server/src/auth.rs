//! Accounts and sessions: argon2id passwords, bearer tokens, login rate limiting, and the
//! [`AuthUser`] extractor that every private handler takes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Router;
use cairn_core::DeviceId;
use cairn_meta::User;
use cairn_proto as proto;
use rand::RngCore;

use crate::convert::{device_info, user_info};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

/// Longest accepted password; argon2 would take more, but nobody types this much.
const MAX_PASSWORD_LEN: usize = 1024;

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(login))
        .at(endpoint!(logout))
        .at(endpoint!(account))
        .at(endpoint!(change_password))
        .at(endpoint!(register_device))
        .build()
}

/// Hashes a password with argon2id. CPU-heavy: call it from a blocking thread.
pub fn hash_password(password: &str, memory_kib: u32, iterations: u32) -> anyhow::Result<String> {
    let params = Params::new(memory_kib, iterations, 1, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
    Ok(hash.to_string())
}

/// Checks a password against a stored PHC string; the parameters come from the string.
/// CPU-heavy: call it from a blocking thread.
pub(crate) fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Shortest password a user or an administrator may set (generated ones are longer).
pub const MIN_PASSWORD_LEN: usize = 8;

/// Whether `password` may be set as an account's new password: from
/// [`MIN_PASSWORD_LEN`] characters to 1024 bytes. The message says what is wrong.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the new password is too short: use at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "the new password is too long: at most {MAX_PASSWORD_LEN} bytes"
        ));
    }
    Ok(())
}

/// A fresh random password for generated accounts: 128 bits, URL-safe.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Tokens carry 256 random bits, so a fast hash is enough to store them: nobody can
/// brute-force the preimage, and the database never holds a usable token.
fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("cairn_{}", hex::encode(bytes))
}

/// The authenticated caller. Taking it as an argument is what makes a handler private.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub device: Option<DeviceId>,
    token_hash: [u8; 32],
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing Authorization header; log in to get a bearer token")
            })?
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer TOKEN`"))?
            .trim();
        Self::from_token(state, token).await
    }
}

impl AuthUser {
    /// The hash of the token the caller authenticated with (zeros when it acts through
    /// something else, a link).
    pub(crate) fn token_hash(&self) -> [u8; 32] {
        self.token_hash
    }

    /// `user` acting through something other than a token of its own: a public link it
    /// made, which reads and writes with its creator's rights.
    pub(crate) fn acting_as(user: User) -> Self {
        AuthUser {
            user,
            device: None,
            token_hash: [0; 32],
        }
    }

    /// The owner of a bearer token that came some other way than the Authorization
    /// header (the WebSocket subprotocol, for browsers).
    pub(crate) async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let hash = token_hash(token);
        match state.meta.token_owner(&hash).await? {
            // The account is read with the token on every request, so disabling it
            // refuses the very next one.
            Some((user, _)) if !user.is_enabled() => Err(account_disabled()),
            Some((user, device)) => Ok(AuthUser {
                user,
                device,
                token_hash: hash,
            }),
            None => Err(ApiError::unauthorized(
                "invalid or expired token; log in again",
            )),
        }
    }
}

/// The answer to a disabled account's token, and to its login with the right password.
fn account_disabled() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "account_disabled",
        "this account is disabled; ask the server's administrator to enable it",
    )
}

/// Counts failed logins in a sliding window, per account and per client address.
///
/// This lives in one node's memory; behind a load balancer each node limits on its own,
/// which multiplies the allowance by the node count but still stops brute force.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    /// How many failures `key` had within `window`. Keys are namespaced by their users
    /// (`user:`, `addr:` for logins; `link:`, `linkaddr:` for link passwords).
    pub(crate) fn recent(&self, key: &str, window: Duration) -> usize {
        let mut map = self.failures.lock().expect("limiter lock");
        let now = Instant::now();
        match map.get_mut(key) {
            Some(times) => {
                times.retain(|t| now.duration_since(*t) < window);
                times.len()
            }
            None => 0,
        }
    }

    /// Counts one failure for `key`, now.
    pub(crate) fn record(&self, key: String) {
        let mut map = self.failures.lock().expect("limiter lock");
        // Bound the table: a flood of distinct names must not grow memory forever.
        if map.len() > 100_000 {
            map.clear();
        }
        map.entry(key).or_default().push(Instant::now());
    }
}

fn check_name(kind: &str, name: &str) -> ApiResult<()> {
    if !proto::is_valid_name(name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "{kind} name must be 1 to {} characters without control characters",
                proto::MAX_NAME_CHARS
            ),
        ));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/auth/login",
    request_body = proto::LoginRequest,
    responses(
        (status = 200, description = "A bearer token", body = proto::LoginResponse),
        (status = 401, description = "Wrong user name or password, or a disabled account", body = proto::ErrorBody),
        (status = 429, description = "Too many failed logins; try again later", body = proto::ErrorBody)
    )
)]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<proto::LoginRequest>,
) -> ApiResult<Json<proto::LoginResponse>> {
    let (account_key, address_key) = password_keys(&req.username, addr);
    refuse_if_throttled(&state, &account_key, &address_key)?;
    let limiter = &state.login_limiter;
    if req.password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::bad_request(
            "invalid_password",
            "password is too long",
        ));
    }
    if let Some(name) = &req.device_name {
        check_name("device", name)?;
    }

    let user = state.meta.user_by_name(&req.username).await?;
    // Verify against a dummy hash when the user does not exist, so response time does
    // not reveal which account names exist.
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_password_hash.clone());
    let password = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .map_err(ApiError::internal)?;
    let user = match (user, ok) {
        (Some(user), true) => user,
        _ => {
            limiter.record(account_key);
            limiter.record(address_key);
            return Err(ApiError::unauthorized("wrong user name or password"));
        }
    };
    // Said only to whoever knows the password, so it tells a guesser nothing about
    // which accounts exist or are disabled.
    if !user.is_enabled() {
        return Err(account_disabled());
    }

    let device = match &req.device_name {
        Some(name) => Some(state.meta.create_device(user.id, name).await?),
        None => None,
    };
    let token = new_token();
    state
        .meta
        .create_token(user.id, device.as_ref().map(|d| d.id), &token_hash(&token))
        .await?;
    Ok(Json(proto::LoginResponse {
        token,
        user: user_info(&user),
        device: device.as_ref().map(device_info),
    }))
}

/// The limiter's keys for password guesses about `username` from `addr`. Logins and
/// password changes share them, so a guesser gains nothing by switching between the two.
fn password_keys(username: &str, addr: SocketAddr) -> (String, String) {
    (
        format!("user:{}", username.to_lowercase()),
        format!("addr:{}", addr.ip()),
    )
}

/// 429 when the account or the address has had too many wrong passwords lately.
fn refuse_if_throttled(state: &AppState, account_key: &str, address_key: &str) -> ApiResult<()> {
    let window = Duration::from_secs(state.config.login_window_secs);
    let limiter = &state.login_limiter;
    if limiter.recent(account_key, window) >= state.config.login_failures_per_account as usize
        || limiter.recent(address_key, window) >= state.config.login_failures_per_address as usize
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many wrong passwords; wait {} seconds and try again",
                window.as_secs()
            ),
        ));
    }
    Ok(())
}

/// `POST /account/password`: the caller changes its own password, giving the old one.
/// The token it calls with keeps working; every other session of the account is
/// signed out, as Google and Dropbox do, since a password is changed when it may have
/// leaked.
#[utoipa::path(
    post,
    path = "/account/password",
    request_body = proto::PasswordChangeRequest,
    responses(
        (status = 200, description = "Changed; every other session of the account is signed out", body = proto::PasswordChangeResponse),
        (status = 403, description = "The old password is wrong", body = proto::ErrorBody),
        (status = 429, description = "Too many wrong passwords; try again later", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    auth: AuthUser,
    Json(req): Json<proto::PasswordChangeRequest>,
) -> ApiResult<Json<proto::PasswordChangeResponse>> {
    let (account_key, address_key) = password_keys(&auth.user.name, addr);
    refuse_if_throttled(&state, &account_key, &address_key)?;
    if req.old_password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::bad_request(
            "invalid_password",
            "password is too long",
        ));
    }
    check_new_password(&req.new_password)
        .map_err(|message| ApiError::bad_request("invalid_password", message))?;
    let (old, stored) = (req.old_password, auth.user.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&old, &stored))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        state.login_limiter.record(account_key);
        state.login_limiter.record(address_key);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is wrong",
        ));
    }
    let hash = crate::hash_password(&state.config, req.new_password)
        .await
        .map_err(ApiError::internal)?;
    let revoked = state
        .meta
        .set_password_hash(auth.user.id, &hash, Some(&auth.token_hash))
        .await?;
    state.notify.sign_out(auth.user.id, Some(auth.token_hash));
    Ok(Json(proto::PasswordChangeResponse {
        sessions_revoked: revoked,
    }))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    responses(
        (status = 204, description = "The calling token is revoked")
    ),
    security(("bearer" = []))
)]
async fn logout(State(state): State<AppState>, auth: AuthUser) -> ApiResult<StatusCode> {
    state.meta.delete_token(&auth.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/account",
    responses(
        (status = 200, description = "The caller's account and usage", body = proto::AccountInfo)
    ),
    security(("bearer" = []))
)]
async fn account(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<proto::AccountInfo>> {
    let usage_bytes = state.meta.usage_bytes(auth.user.id).await?;
    let device = match auth.device {
        Some(id) => state.meta.device(id).await?,
        None => None,
    };
    Ok(Json(proto::AccountInfo {
        user: user_info(&auth.user),
        usage_bytes,
        device: device.as_ref().map(device_info),
    }))
}

#[utoipa::path(
    post,
    path = "/devices",
    request_body = proto::DeviceRequest,
    responses(
        (status = 201, description = "The device, registered", body = proto::DeviceInfo)
    ),
    security(("bearer" = []))
)]
async fn register_device(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(req): Json<proto::DeviceRequest>,
) -> ApiResult<(StatusCode, Json<proto::DeviceInfo>)> {
    check_name("device", &req.name)?;
    let device = state.meta.create_device(auth.user.id, &req.name).await?;
    Ok((StatusCode::CREATED, Json(device_info(&device))))
}
