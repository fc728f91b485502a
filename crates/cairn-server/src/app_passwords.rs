//! App passwords: what WebDAV clients (and anything else that speaks only HTTP Basic)
//! sign in with, instead of the account password.
//!
//! The server makes each one (32 characters from an alphabet without look-alikes,
//! about 158 random bits) and shows it once; the metadata store keeps its BLAKE3 hash,
//! as it does a bearer token's. A Basic client sends its credentials with every
//! request, so checking one is a lookup by that hash, never an argon2 verification:
//! a secret this long cannot be guessed, so a fast hash loses nothing.
//!
//! The account manages them over the JSON API (`/account/app-passwords`), signed in
//! with a token or a browser session, never with an app password: the [`AuthUser`]
//! extractor takes only those, so an app password can neither mint more nor reach
//! the JSON API. [`AuthUser::from_basic`] is the one way in with one.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Router;
use base64::Engine;
use cairn_proto as proto;
use rand::Rng;

use crate::auth::{
    account_disabled, begin_password_guess, check_name, refuse_if_throttled, token_hash, AuthUser,
};
use crate::convert::app_password_info;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, PathParam};
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

/// The characters of an app password: lowercase letters and digits without `0`, `1`,
/// `i`, `l` and `o`, so that one read off a screen is typed right.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
/// Characters of an app password, grouped by [`GROUP`] with dashes when shown.
const SECRET_CHARS: usize = 32;
const GROUP: usize = 4;

/// What a WebDAV client is told when its credentials are refused, whatever they were:
/// the account password is never checked here, so it cannot be told apart.
const USE_AN_APP_PASSWORD: &str = "WebDAV takes an app password, not your account password; \
     create one with `cairn app-password create NAME` (or in the web interface's account \
     page) and give it with your user name";

/// The challenge a 401 of a Basic-authenticated route carries in `WWW-Authenticate`, so
/// that clients ask for (or send) credentials.
pub(crate) const BASIC_CHALLENGE: &str = "Basic realm=\"Cairn\", charset=\"UTF-8\"";

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(list, create))
        .at(endpoint!(revoke))
        .build()
}

/// A fresh secret, in groups of [`GROUP`] characters joined by dashes.
fn new_secret() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut out = String::with_capacity(SECRET_CHARS + SECRET_CHARS / GROUP);
    for i in 0..SECRET_CHARS {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
    }
    out
}

/// The hash an app password is stored under, or `None` when `password` cannot be one
/// (so it is not looked up). Dashes, spaces and case are forgiven: the secret is what
/// remains.
fn secret_hash(password: &str) -> Option<[u8; 32]> {
    let secret: String = password
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let shaped = secret.len() == SECRET_CHARS && secret.bytes().all(|b| ALPHABET.contains(&b));
    shaped.then(|| token_hash(&secret))
}

/// The user name and password of an `Authorization: Basic` header; `None` when there is
/// no such header. A header that is there but malformed is refused (401).
fn basic_credentials(headers: &HeaderMap) -> ApiResult<Option<(String, String)>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed =
        || ApiError::unauthorized("malformed Authorization header: expected `Basic` credentials");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized(format!(
            "Authorization must be `Basic` with your user name and an app password; \
             {USE_AN_APP_PASSWORD}"
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    // A user name holds no ':' (`cairn_meta::check_user_name`); a password may.
    let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some((user.to_owned(), password.to_owned())))
}

impl AuthUser {
    /// The caller of a request authenticated by `Authorization: Basic
    /// base64(USER:APP_PASSWORD)` (WebDAV): accepted only with an app password of that
    /// account, never the account password, whose 401 says so.
    ///
    /// Guesses go through the login throttle (the account's and the address's keys,
    /// shared with logins): a wrong app password is recorded as a failed guess before
    /// it is answered (429 once its keys are over their limit), and while they are
    /// over it a right one is refused too, as a login with the right password is. A
    /// right one records nothing, so a client that sends it with every request costs
    /// one lookup by hash and the throttle's indexed counts, no write; unlike a login,
    /// its answer does not wait for its own record, so a burst sent at once is bounded
    /// by the counts as they stood when it arrived (a secret of ~158 bits makes that
    /// moot). A password that cannot be an app password (the wrong length or
    /// characters: an account password, say) is no guess at one and is not counted.
    ///
    /// A disabled account is refused (told only to whoever gave a right app password),
    /// and a revoked app password fails on its very next request: nothing is cached.
    /// The caller acts on the app password's device, so what it writes is attributed
    /// to the app password's name. A refusal is a 401 (429 when throttled) to be
    /// answered with [`BASIC_CHALLENGE`].
    pub(crate) async fn from_basic(
        state: &AppState,
        headers: &HeaderMap,
        addr: SocketAddr,
    ) -> Result<AuthUser, ApiError> {
        let Some((username, password)) = basic_credentials(headers)? else {
            return Err(ApiError::unauthorized(format!(
                "sign in with your user name and an app password; {USE_AN_APP_PASSWORD}"
            )));
        };
        let refused = || {
            ApiError::unauthorized(format!(
                "wrong user name or app password; {USE_AN_APP_PASSWORD}"
            ))
        };
        let Some(hash) = secret_hash(&password) else {
            return Err(refused());
        };
        let owner = state
            .meta
            .app_password_owner(&hash)
            .await?
            .filter(|owner| owner.user.name == username);
        let Some(owner) = owner else {
            let guess = begin_password_guess(state, &username, addr).await?;
            guess.wrong();
            return Err(refused());
        };
        refuse_if_throttled(state, &username, addr).await?;
        if !owner.user.is_enabled() {
            return Err(account_disabled());
        }
        Ok(AuthUser::through_app_password(owner.user, owner.device))
    }
}

/// `GET /account/app-passwords`: the caller's app passwords (never their secrets).
#[utoipa::path(
    get,
    path = "/account/app-passwords",
    responses(
        (status = 200, description = "The caller's app passwords, oldest first", body = proto::AppPasswordListResponse)
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<proto::AppPasswordListResponse>> {
    let listed = state.meta.list_app_passwords(auth.user.id).await?;
    Ok(Json(proto::AppPasswordListResponse {
        app_passwords: listed.iter().map(app_password_info).collect(),
    }))
}

/// `POST /account/app-passwords`: makes an app password and returns its secret, this
/// once.
#[utoipa::path(
    post,
    path = "/account/app-passwords",
    request_body = proto::AppPasswordRequest,
    responses(
        (status = 201, description = "Made: its password is shown this once", body = proto::NewAppPassword),
        (status = 400, description = "An invalid name", body = proto::ErrorBody),
        (status = 409, description = "The account has an app password of that name", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(req): Json<proto::AppPasswordRequest>,
) -> ApiResult<(StatusCode, Json<proto::NewAppPassword>)> {
    check_name("app password", &req.name)?;
    if req.name == "." || req.name == ".." {
        // A URL cannot carry either as a path segment, so it could not be revoked.
        return Err(ApiError::bad_request(
            "invalid_name",
            "an app password cannot be named '.' or '..'",
        ));
    }
    let password = new_secret();
    let hash = secret_hash(&password).ok_or_else(|| {
        ApiError::internal("a generated app password does not have the shape of one")
    })?;
    let made = state
        .meta
        .create_app_password(auth.user.id, &req.name, &hash)
        .await?;
    tracing::info!(user = %auth.user.name, name = %made.name, "made an app password");
    Ok((
        StatusCode::CREATED,
        Json(proto::NewAppPassword {
            name: made.name,
            password,
            created_at: made.created_at,
        }),
    ))
}

/// `DELETE /account/app-passwords/{name}`: revokes one of the caller's app passwords;
/// its next request is refused.
#[utoipa::path(
    delete,
    path = "/account/app-passwords/{name}",
    params(("name" = String, Path, description = "The app password's name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "The caller has no app password of that name", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    auth: AuthUser,
    PathParam(name): PathParam<String>,
) -> ApiResult<StatusCode> {
    state.meta.revoke_app_password(auth.user.id, &name).await?;
    tracing::info!(user = %auth.user.name, name = %name, "revoked an app password");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn secrets_are_long_grouped_and_forgiving() {
        let secret = new_secret();
        assert_eq!(secret.len(), 39, "{secret}");
        let groups: Vec<&str> = secret.split('-').collect();
        assert_eq!(groups.len(), 8, "{secret}");
        assert!(groups.iter().all(|g| g.len() == 4), "{secret}");
        assert_ne!(secret, new_secret());
        let hash = secret_hash(&secret).expect("a generated secret has the shape");
        // Typed without dashes, in capitals, or with spaces: the same secret.
        let bare = secret.replace('-', "");
        assert_eq!(secret_hash(&bare), Some(hash));
        assert_eq!(secret_hash(&bare.to_uppercase()), Some(hash));
        assert_eq!(secret_hash(&secret.replace('-', " ")), Some(hash));
        // What cannot be one is not looked up.
        for not_one in ["", "my account password", &bare[1..], &format!("{bare}2")] {
            assert_eq!(secret_hash(not_one), None, "{not_one:?}");
        }
        assert_eq!(secret_hash(&bare.replacen(&bare[..1], "0", 1)), None);
    }

    #[test]
    fn basic_credentials_are_parsed_or_refused() {
        assert_eq!(basic_credentials(&HeaderMap::new()).unwrap(), None);
        let pair = basic_credentials(&basic("alice", "a:b c")).unwrap();
        assert_eq!(pair, Some(("alice".to_owned(), "a:b c".to_owned())));
        let mut lower = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        lower.insert(
            header::AUTHORIZATION,
            format!("basic {encoded}").parse().unwrap(),
        );
        let pair = basic_credentials(&lower).unwrap();
        assert_eq!(pair, Some(("bob".to_owned(), "pw".to_owned())));
        let no_colon = base64::engine::general_purpose::STANDARD.encode("alice");
        for bad in [
            "Bearer cairn_abc".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {no_colon}"),
            "Basic".to_owned(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, bad.parse().unwrap());
            let err = basic_credentials(&headers).unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED, "{bad}");
        }
    }

    /// A server's state over a fresh SQLite store, with `alice` (password `PASSWORD`)
    /// and one app password of hers, `phone`, whose secret is returned. The login
    /// throttle allows 2 failures per account.
    async fn state_with_app_password() -> (tempfile::TempDir, AppState, String) {
        let data = tempfile::tempdir().unwrap();
        let mut config = crate::Config::for_data_dir(data.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.argon2_memory_kib = 64;
        config.argon2_iterations = 1;
        config.maintenance.scrub_bytes_per_sec = 0;
        config.login_failures_per_account = 2;
        config.login_failures_per_address = 100;
        let app = crate::Application::build(config).await.unwrap();
        let state = app.state().clone();
        let hash = crate::hash_password(&state.config, PASSWORD.into())
            .await
            .unwrap();
        let alice = state
            .meta
            .create_user("alice", &hash, false, None)
            .await
            .unwrap();
        state
            .meta
            .create_user("root", &hash, true, None)
            .await
            .unwrap();
        let secret = new_secret();
        state
            .meta
            .create_app_password(alice.id, "phone", &secret_hash(&secret).unwrap())
            .await
            .unwrap();
        (data, state, secret)
    }

    const PASSWORD: &str = "alice's account password";

    fn from(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 4000))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_app_password_signs_its_account_in_and_nothing_else_does() {
        let (_data, state, secret) = state_with_app_password().await;
        let here = from([127, 0, 0, 1]);
        let auth = AuthUser::from_basic(&state, &basic("alice", &secret), here)
            .await
            .unwrap();
        assert_eq!(auth.user.name, "alice");
        // It acts on the app password's device, so versions it writes name it.
        let device = state
            .meta
            .device(auth.device.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(device.name, "phone");
        assert_eq!(auth.token_hash(), [0; 32], "it holds no token");

        // The account password is refused, saying what to use instead, and is not
        // counted (it is no guess at an app password): the right one still works.
        for _ in 0..3 {
            let err = AuthUser::from_basic(&state, &basic("alice", PASSWORD), here)
                .await
                .unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
            assert!(
                err.message.contains("not your account password"),
                "{}",
                err.message
            );
            assert!(
                err.message.contains("cairn app-password create"),
                "{}",
                err.message
            );
        }
        AuthUser::from_basic(&state, &basic("alice", &secret), here)
            .await
            .unwrap();

        // Alice's secret under another name is wrong; so is no header at all, or a
        // bearer token.
        let err = AuthUser::from_basic(&state, &basic("root", &secret), from([10, 0, 0, 9]))
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        let err = AuthUser::from_basic(&state, &HeaderMap::new(), here)
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer cairn_x".parse().unwrap());
        let err = AuthUser::from_basic(&state, &bearer, here)
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_ones_are_throttled_like_logins() {
        let (_data, state, secret) = state_with_app_password().await;
        let attacker = from([10, 0, 0, 66]);
        let wrong = new_secret();
        for _ in 0..2 {
            let err = AuthUser::from_basic(&state, &basic("alice", &wrong), attacker)
                .await
                .unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        }
        let err = AuthUser::from_basic(&state, &basic("alice", &wrong), attacker)
            .await
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
        // While the account is throttled the right one is refused too (from anywhere),
        // as a login with the right password is, so a guesser learns nothing more.
        let err = AuthUser::from_basic(&state, &basic("alice", &secret), from([127, 0, 0, 1]))
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        // The throttle is the login's: Alice's login is refused as well.
        let guess = begin_password_guess(&state, "alice", from([127, 0, 0, 2])).await;
        assert_eq!(guess.unwrap_err().status, StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revoked_or_disabled_is_refused_at_the_next_request() {
        let (_data, state, secret) = state_with_app_password().await;
        let here = from([127, 0, 0, 1]);
        state.meta.set_user_disabled("alice", true).await.unwrap();
        let err = AuthUser::from_basic(&state, &basic("alice", &secret), here)
            .await
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::UNAUTHORIZED, "account_disabled")
        );
        state.meta.set_user_disabled("alice", false).await.unwrap();
        AuthUser::from_basic(&state, &basic("alice", &secret), here)
            .await
            .unwrap();

        let alice = state.meta.user_by_name("alice").await.unwrap().unwrap();
        state
            .meta
            .revoke_app_password(alice.id, "phone")
            .await
            .unwrap();
        let err = AuthUser::from_basic(&state, &basic("alice", &secret), here)
            .await
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
}
