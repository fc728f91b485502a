//! Accounts and sessions: argon2id passwords, bearer tokens, the throttle of password
//! guesses (shared by every node through the metadata store), and the
//! [`AuthUser`] extractor that every private handler takes.

use std::net::SocketAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use cairn_core::DeviceId;
use cairn_meta::{TokenKind, TokenOwner, User};
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
        .at(endpoint!(session_start, session_info, session_end))
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
/// Longest password a user or an administrator may set, in characters (within the
/// [`MAX_PASSWORD_LEN`] bytes a login takes, whatever the characters).
pub const MAX_NEW_PASSWORD_CHARS: usize = 256;

/// Whether `password` may be set as an account's new password: from
/// [`MIN_PASSWORD_LEN`] to [`MAX_NEW_PASSWORD_CHARS`] characters. The message says what
/// is wrong.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the new password is too short: use at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.chars().count() > MAX_NEW_PASSWORD_CHARS {
        return Err(format!(
            "the new password is too long: at most {MAX_NEW_PASSWORD_CHARS} characters"
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
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("cairn_{}", hex::encode(bytes))
}

/// The cookie that carries a browser session's token.
pub(crate) const SESSION_COOKIE: &str = "cairn_session";
/// The header in which a browser session repeats its CSRF token on every request that
/// may change something.
pub(crate) const CSRF_HEADER: &str = "x-cairn-csrf";

/// The CSRF token of the session whose token hashes to `token_hash`. Derived, not
/// stored: only who holds the session's cookie value (or the database) can compute it,
/// and another site's page can neither read it nor make a browser send it.
pub(crate) fn csrf_token(token_hash: &[u8; 32]) -> String {
    hex::encode(&blake3::derive_key("cairn 2026-12 web session csrf", token_hash)[..16])
}

/// The authenticated caller. Taking it as an argument is what makes a handler private.
///
/// A caller authenticates with `Authorization: Bearer TOKEN` (the CLI, the sync client,
/// scripts) or with a browser session's cookie. A request carried by the cookie must,
/// when its method may change something, repeat the session's CSRF token in
/// `X-Cairn-CSRF`, and when it names an `Origin`, name this server: so another site's
/// page can neither make the browser act for its user nor open its notification socket.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub device: Option<DeviceId>,
    token_hash: [u8; 32],
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(header) = parts.headers.get(header::AUTHORIZATION) {
            let header = header
                .to_str()
                .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
            let token = header
                .strip_prefix("Bearer ")
                .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer TOKEN`"))?
                .trim();
            return Self::from_token(state, token).await;
        }
        match crate::cookies::values(&parts.headers, SESSION_COOKIE).next() {
            Some(token) => Self::from_session(state, parts, token).await,
            None => Err(ApiError::unauthorized(
                "missing Authorization header; log in to get a bearer token",
            )),
        }
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

    /// `user` signed in with one of its app passwords, whose device is `device` (see
    /// [`AuthUser::from_basic`]). It holds no token: nothing it does can end or prove
    /// a session.
    pub(crate) fn through_app_password(user: User, device: DeviceId) -> Self {
        AuthUser {
            user,
            device: Some(device),
            token_hash: [0; 32],
        }
    }

    /// The owner of a bearer token that came some other way than the Authorization
    /// header (the WebSocket subprotocol, for browsers).
    pub(crate) async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let hash = token_hash(token);
        Self::from_owner(hash, state.meta.token_owner(&hash).await?)
    }

    /// The owner of a browser session's cookie, when the request passes the session's
    /// checks (see [`AuthUser`]).
    async fn from_session(state: &AppState, parts: &Parts, token: &str) -> Result<Self, ApiError> {
        let hash = token_hash(token);
        let owner = state.meta.token_owner(&hash).await?;
        // Only a session made for a browser rides in the cookie.
        let owner = owner.filter(|o| matches!(o.kind, TokenKind::Web { .. }));
        let auth = Self::from_owner(hash, owner)?;
        if let Some(origin) = parts.headers.get(header::ORIGIN) {
            if !same_origin(origin, parts) {
                return Err(csrf_failed("the request comes from another site's page"));
            }
        }
        if !parts.method.is_safe() {
            let expected = csrf_token(&hash);
            let given = parts.headers.get(CSRF_HEADER).map(|v| v.as_bytes());
            // Constant time, so the token cannot be guessed a byte at a time.
            let matches = given.is_some_and(|g| {
                g.len() == expected.len()
                    && g.iter()
                        .zip(expected.as_bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            });
            if !matches {
                return Err(csrf_failed(
                    "a browser session must repeat its CSRF token in X-Cairn-CSRF; reload the page",
                ));
            }
        }
        Ok(auth)
    }

    fn from_owner(hash: [u8; 32], owner: Option<TokenOwner>) -> Result<Self, ApiError> {
        match owner {
            // The account is read with the token on every request, so disabling it
            // refuses the very next one.
            Some(owner) if !owner.user.is_enabled() => Err(account_disabled()),
            Some(owner) => Ok(AuthUser {
                user: owner.user,
                device: owner.device,
                token_hash: hash,
            }),
            None => Err(ApiError::unauthorized(
                "invalid or expired token; log in again",
            )),
        }
    }
}

/// Whether an `Origin` header names the server the request reached (its `Host`).
fn same_origin(origin: &axum::http::HeaderValue, parts: &Parts) -> bool {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((host, authority), (Some(h), Some(a)) if h.eq_ignore_ascii_case(a))
}

fn csrf_failed(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", message)
}

/// The answer to a disabled account's token, and to its login with the right password.
pub(crate) fn account_disabled() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "account_disabled",
        "this account is disabled; ask the server's administrator to enable it",
    )
}

/// A password guess being checked, let through by its throttle (see
/// `cairn_meta::throttle`): counted as a failure of each of its keys, on every node of
/// the deployment, from before its password is checked until it turns out right
/// ([`PasswordGuess::right`]) or no guess at all ([`PasswordGuess::not_a_guess`]).
/// Dropped otherwise, it stays counted: a wrong password, or a request that failed
/// before its password could be judged.
#[derive(Debug)]
#[must_use = "a guess counts as a failure unless it is withdrawn"]
pub(crate) struct PasswordGuess {
    meta: cairn_meta::MetaStore,
    guess: cairn_meta::Guess,
}

impl PasswordGuess {
    /// Lets a guess through unless one of `keys` had its limit of failures within
    /// `window` (`None`: refuse it, nothing was counted). Keys are namespaced by their
    /// users (`user:`, `addr:` for logins; `link:`, `linkaddr:` for link passwords).
    pub(crate) async fn begin(
        state: &AppState,
        keys: &[cairn_meta::ThrottleKey<'_>],
        window: Duration,
    ) -> ApiResult<Option<Self>> {
        let now = crate::now_ms();
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let guess = state
            .meta
            .throttle_attempt(keys, now, now.saturating_add(window_ms))
            .await?;
        Ok(guess.map(|guess| PasswordGuess {
            meta: state.meta.clone(),
            guess,
        }))
    }

    /// The password was right: the guess is withdrawn, it counts as no failure.
    pub(crate) async fn right(self) -> ApiResult<()> {
        Ok(self.meta.throttle_withdraw(self.guess).await?)
    }

    /// The request was refused before its password could be judged (malformed): it
    /// counts as no failure, as a refusal never did.
    pub(crate) async fn not_a_guess(self) -> ApiResult<()> {
        self.right().await
    }

    /// The password was wrong: the guess stays counted as a failure until it leaves
    /// the window.
    pub(crate) fn wrong(self) {}
}

pub(crate) fn check_name(kind: &str, name: &str) -> ApiResult<()> {
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
    if let Some(name) = &req.device_name {
        check_name("device", name)?;
    }
    let user = check_credentials(&state, addr, &req.username, req.password).await?;
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

/// The account a user name and password open, for a login or a browser's sign-in:
/// throttled, timed the same whether the account exists or not, and refused for a
/// disabled account.
async fn check_credentials(
    state: &AppState,
    addr: SocketAddr,
    username: &str,
    password: String,
) -> ApiResult<User> {
    let guess = begin_password_guess(state, username, addr).await?;
    if password.len() > MAX_PASSWORD_LEN {
        guess.not_a_guess().await?;
        return Err(ApiError::bad_request(
            "invalid_password",
            "password is too long",
        ));
    }
    let user = state.meta.user_by_name(username).await?;
    // Verify against a dummy hash when the user does not exist, so response time does
    // not reveal which account names exist.
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .map_err(ApiError::internal)?;
    let user = match (user, ok) {
        (Some(user), true) => {
            guess.right().await?;
            user
        }
        _ => {
            guess.wrong();
            return Err(ApiError::unauthorized("wrong user name or password"));
        }
    };
    // Said only to whoever knows the password, so it tells a guesser nothing about
    // which accounts exist or are disabled.
    if !user.is_enabled() {
        return Err(account_disabled());
    }
    Ok(user)
}

/// `POST /auth/session`: a browser signs in. The session's token goes only into an
/// HttpOnly cookie; the page gets the CSRF token it must send back.
#[utoipa::path(
    post,
    path = "/auth/session",
    request_body = proto::SessionRequest,
    responses(
        (status = 200, description = "Signed in: the session cookie is set", body = proto::SessionInfo),
        (status = 401, description = "Wrong user name or password, or a disabled account", body = proto::ErrorBody),
        (status = 429, description = "Too many failed logins; try again later", body = proto::ErrorBody)
    )
)]
async fn session_start(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Json(req): Json<proto::SessionRequest>,
) -> ApiResult<Response> {
    let user = check_credentials(&state, addr, &req.username, req.password).await?;
    let token = new_token();
    let hash = token_hash(&token);
    let (idle, max) = (
        state.config.session_idle_secs,
        state.config.session_max_secs,
    );
    state
        .meta
        .create_web_session(user.id, &hash, secs_to_ms(idle), secs_to_ms(max))
        .await?;
    let info = proto::SessionInfo {
        user: user_info(&user),
        csrf_token: csrf_token(&hash),
    };
    let mut response = Json(info).into_response();
    if let Some(cookie) = crate::cookies::set(SESSION_COOKIE, &token, "/", Some(max), &headers) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `GET /auth/session`: who the caller is, with its CSRF token: how a page learns
/// that its session still works after a reload.
#[utoipa::path(
    get,
    path = "/auth/session",
    responses(
        (status = 200, description = "The caller and its CSRF token", body = proto::SessionInfo),
        (status = 401, description = "No session, or it ended; sign in again", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn session_info(auth: AuthUser) -> Json<proto::SessionInfo> {
    Json(proto::SessionInfo {
        user: user_info(&auth.user),
        csrf_token: csrf_token(&auth.token_hash),
    })
}

/// `DELETE /auth/session`: signs out; the session (or bearer token) stops working and
/// the cookie is removed.
#[utoipa::path(
    delete,
    path = "/auth/session",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared")
    ),
    security(("bearer" = []))
)]
async fn session_end(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    auth: AuthUser,
) -> ApiResult<Response> {
    state.meta.delete_token(&auth.token_hash).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = crate::cookies::set(SESSION_COOKIE, "", "/", Some(0), &headers) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Lets a guess of `username`'s password from `addr` through its throttle: per account
/// and per client address, `login_failures_per_account` and `login_failures_per_address`
/// failures within `login_window_secs`, or 429. Logins, browser sign-ins, password
/// changes and app passwords share the keys, so a guesser gains nothing by switching
/// between them.
pub(crate) async fn begin_password_guess(
    state: &AppState,
    username: &str,
    addr: SocketAddr,
) -> ApiResult<PasswordGuess> {
    let (account_key, address_key) = login_keys(username, addr);
    let keys = login_throttle(state, &account_key, &address_key);
    let window = Duration::from_secs(state.config.login_window_secs);
    PasswordGuess::begin(state, &keys, window)
        .await?
        .ok_or_else(|| rate_limited(window))
}

/// Refuses with 429 when the throttle of [`begin_password_guess`] would, recording
/// nothing: for a credential that turned out right in a lookup, before it is let in.
pub(crate) async fn refuse_if_throttled(
    state: &AppState,
    username: &str,
    addr: SocketAddr,
) -> ApiResult<()> {
    let (account_key, address_key) = login_keys(username, addr);
    let keys = login_throttle(state, &account_key, &address_key);
    if state.meta.throttle_refuses(&keys, crate::now_ms()).await? {
        return Err(rate_limited(Duration::from_secs(
            state.config.login_window_secs,
        )));
    }
    Ok(())
}

/// The keys of the login throttle: the account (by its name, whether it exists or
/// not) and the client's address.
fn login_keys(username: &str, addr: SocketAddr) -> (String, String) {
    (
        format!("user:{}", username.to_lowercase()),
        format!("addr:{}", addr.ip()),
    )
}

fn login_throttle<'a>(
    state: &AppState,
    account_key: &'a str,
    address_key: &'a str,
) -> [cairn_meta::ThrottleKey<'a>; 2] {
    [
        cairn_meta::ThrottleKey {
            key: account_key,
            limit: state.config.login_failures_per_account,
        },
        cairn_meta::ThrottleKey {
            key: address_key,
            limit: state.config.login_failures_per_address,
        },
    ]
}

fn rate_limited(window: Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "too many wrong passwords; wait {} seconds and try again",
            window.as_secs()
        ),
    )
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
    let guess = begin_password_guess(&state, &auth.user.name, addr).await?;
    if req.old_password.len() > MAX_PASSWORD_LEN {
        guess.not_a_guess().await?;
        return Err(ApiError::bad_request(
            "invalid_password",
            "password is too long",
        ));
    }
    if let Err(message) = check_new_password(&req.new_password) {
        guess.not_a_guess().await?;
        return Err(ApiError::bad_request("invalid_password", message));
    }
    let (old, stored) = (req.old_password, auth.user.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&old, &stored))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        guess.wrong();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is wrong",
        ));
    }
    guess.right().await?;
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
