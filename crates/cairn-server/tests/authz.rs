//! The authorization matrix: every endpoint the server routes, called by every kind of
//! caller, against a shared folder, with the expected allow or deny. On SQLite and on
//! PostgreSQL.
//!
//! The endpoints come from the server's route registry (`cairn_server::route_paths`),
//! probed with every method: an endpoint without a row here fails the test, as does a
//! row for an endpoint that no longer exists.
//!
//! The callers: Alice, who owns `/Team`; Bob, an editor of it; Carol, a viewer; Dave,
//! another user; and callers without an account: anonymous, and holders of a link with
//! the right password, a wrong one, an expired link and a revoked link (for the JSON
//! API a link is no credential at all). Each caller works in `/Team/ROLE/…`, files that
//! Alice made for it, so one caller's allowed change cannot change what the next one
//! meets.

#[macro_use]
mod support;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{block_ref, hex_hash, put_file_as, TestServer, PASSWORD};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
enum Role {
    Owner,
    Editor,
    Viewer,
    Other,
    Anonymous,
    LinkRight,
    LinkWrong,
    LinkExpired,
    LinkRevoked,
}

use Role::*;

const ROLES: [Role; 9] = [
    Owner,
    Editor,
    Viewer,
    Other,
    Anonymous,
    LinkRight,
    LinkWrong,
    LinkExpired,
    LinkRevoked,
];

/// The accounts: the roles that have one.
const USERS: [Role; 4] = [Owner, Editor, Viewer, Other];

impl Role {
    /// The folder under `/Team` this caller works in.
    fn dir(self) -> &'static str {
        match self {
            Owner => "owner",
            Editor => "editor",
            Viewer => "viewer",
            Other => "other",
            Anonymous => "anonymous",
            LinkRight => "link-right",
            LinkWrong => "link-wrong",
            LinkExpired => "link-expired",
            LinkRevoked => "link-revoked",
        }
    }

    /// The files of callers without an account are Alice's own (made for the owner).
    fn files(self) -> &'static str {
        match self {
            Owner | Anonymous | LinkRight | LinkWrong | LinkExpired | LinkRevoked => "owner",
            other => other.dir(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// A 2xx answer.
    Allow,
    /// 401, 403, 404 or 429: refused, or nothing there for this caller.
    Deny,
    /// Allowed, but it lands in the caller's own tree (Dave writing to a `/Team` of his
    /// own); checked afterwards not to have reached Alice's.
    Own,
}

use Expect::*;

/// For everyone, signed in or not.
const PUBLIC: [Expect; 9] = [Allow; 9];
/// For every account, about its own things.
const ACCOUNTS: [Expect; 9] = [Allow, Allow, Allow, Allow, Deny, Deny, Deny, Deny, Deny];
/// Reading the shared folder.
const READ: [Expect; 9] = [Allow, Allow, Allow, Deny, Deny, Deny, Deny, Deny, Deny];
/// Changing something that exists in the shared folder.
const WRITE: [Expect; 9] = [Allow, Allow, Deny, Deny, Deny, Deny, Deny, Deny, Deny];
/// Creating something new at a path in the shared folder.
const CREATE: [Expect; 9] = [Allow, Allow, Deny, Own, Deny, Deny, Deny, Deny, Deny];
/// Deciding who reads the shared folder.
const OWNER: [Expect; 9] = [Allow, Deny, Deny, Deny, Deny, Deny, Deny, Deny, Deny];
/// Using a public link: only with the link's password (a bearer token is no
/// substitute), and never an expired or revoked one.
const LINK: [Expect; 9] = [Deny, Deny, Deny, Deny, Deny, Allow, Deny, Deny, Deny];
/// Sharing a folder: Dave's `/Team` (made by the rows before) is his own to share.
const SHARE: [Expect; 9] = [Allow, Deny, Deny, Own, Deny, Deny, Deny, Deny, Deny];
/// Administering accounts: Alice is the administrator.
const ADMIN: [Expect; 9] = [Allow, Deny, Deny, Deny, Deny, Deny, Deny, Deny, Deny];

/// What the fixture made, per role.
struct Fixture {
    tokens: HashMap<Role, String>,
    /// A second login per account, for the logout row.
    spare_tokens: HashMap<Role, String>,
    /// A third, for the row that ends a session.
    session_tokens: HashMap<Role, String>,
    /// The first version of `/Team/ROLE/versions.txt`.
    first_versions: HashMap<Role, String>,
    /// Alice's link to `/Team/ROLE/read.txt`, per role, for the revoke row.
    links_to_revoke: HashMap<Role, i64>,
    /// Tokens of Alice's links to `/Team/owner`: (read, file drop) × (password,
    /// expired, revoked).
    public: HashMap<(bool, Role), String>,
    /// Each account's own resumable uploads (3 bytes to its home): (role, for the
    /// termination row) → the upload's URL.
    tus: HashMap<(Role, bool), String>,
    /// Each account's app password for WebDAV.
    dav_passwords: HashMap<Role, String>,
    /// Alice's announced uploads into `/Team/ROLE/streaming.bin`, one block of each
    /// stored: role → (upload id, block hash).
    pending: HashMap<Role, (String, String)>,
    /// Each account's own announced upload, for the row that ends it.
    own_pending: HashMap<Role, String>,
}

/// The name of the app password the fixture makes for each account.
const APP_PASSWORD: &str = "revoke-me";

/// The password of the fixture's password-protected links.
const LINK_PASSWORD: &str = "open sesame";

/// A public link request: the link the role holds (a file drop for `drop`), with the
/// password it knows, and the bearer token it has.
fn public(fx: &Fixture, role: Role, drop: bool, method: Method, rest: &str, body: Body) -> Call {
    let kind = match role {
        LinkExpired | LinkRevoked => role,
        _ => LinkRight,
    };
    let token = &fx.public[&(drop, kind)];
    let mut headers = Vec::new();
    match role {
        LinkRight => headers.push(("x-cairn-link-password", LINK_PASSWORD.to_owned())),
        LinkWrong => headers.push(("x-cairn-link-password", "not it".to_owned())),
        _ => {}
    }
    Call {
        method,
        url: format!("/s/{token}{rest}"),
        token: fx.token(role).map(str::to_owned),
        body,
        headers,
    }
}

impl Fixture {
    fn token(&self, role: Role) -> Option<&str> {
        self.tokens.get(&role).map(String::as_str)
    }
}

/// One request as a row builds it.
struct Call {
    method: Method,
    /// Path and query.
    url: String,
    token: Option<String>,
    body: Body,
    headers: Vec<(&'static str, String)>,
}

enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

/// How an answer is judged.
#[derive(Clone, Copy)]
enum Judge {
    /// By the status.
    Status,
    /// By the first item of a batch answer (its status is 200 either way).
    BatchItem,
    /// By the first record of a `content_batch` answer.
    ContentRecord,
    /// By whether a WebSocket handshake succeeds.
    WebSocket,
    /// A WebDAV answer: a redirect is an answer, and WebDAV's refusals count as
    /// refusals (405 for a method a resource does not take, 409 for a file written into
    /// a folder that does not exist in the caller's tree).
    Dav,
}

struct Row {
    method: Method,
    /// The path as the registry spells it.
    path: &'static str,
    expect: [Expect; 9],
    judge: Judge,
    call: fn(&Fixture, Role) -> Call,
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Whose `read.txt` a block row asks for by its hash: the caller's own name for the
/// three accounts besides the owner, the owner's for everyone else.
fn block_holder(role: Role) -> Role {
    match role {
        Editor | Viewer | Other => role,
        _ => Owner,
    }
}

fn content(role: Role, name: &str) -> Vec<u8> {
    format!("{name} of {}", role.dir()).into_bytes()
}

fn call(fx: &Fixture, role: Role, method: Method, url: String, body: Body) -> Call {
    Call {
        method,
        url,
        token: fx.token(role).map(str::to_owned),
        body,
        headers: Vec::new(),
    }
}

fn get(fx: &Fixture, role: Role, url: String) -> Call {
    call(fx, role, Method::GET, url, Body::None)
}

fn post(fx: &Fixture, role: Role, url: &str, body: Value) -> Call {
    call(fx, role, Method::POST, url.to_owned(), Body::Json(body))
}

/// A tus request: the protocol's header, and the role's bearer token.
fn tus(fx: &Fixture, role: Role, method: Method, url: String, body: Body) -> Call {
    let mut call = call(fx, role, method, url, body);
    call.headers.push(("tus-resumable", "1.0.0".to_owned()));
    call
}

/// The URL of the role's own upload (Alice's for callers without an account).
fn tus_url(fx: &Fixture, role: Role, terminate: bool) -> String {
    let owner = if USERS.contains(&role) { role } else { Owner };
    fx.tus[&(owner, terminate)].clone()
}

fn team(role: Role, name: &str) -> String {
    format!("/Team/{}/{name}", role.files())
}

/// The user name each caller signs in with: accounts with their password; the others
/// guess one for a name of their own (guessing Alice's would lock her account for the
/// rest of the test).
fn sign_in_as(r: Role) -> Value {
    let user = match r {
        Owner => "admin".to_owned(),
        Editor => "bob".to_owned(),
        Viewer => "carol".to_owned(),
        Other => "dave".to_owned(),
        _ => format!("nobody-{}", r.dir()),
    };
    json!({"username": user, "password": PASSWORD})
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            method: Method::GET,
            path: "/",
            expect: PUBLIC,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/".into()),
        },
        Row {
            method: Method::GET,
            path: "/assets/{name}",
            expect: PUBLIC,
            judge: Judge::Status,
            call: |fx, r| {
                let name = cairn_server::web::asset_names()
                    .into_iter()
                    .find_map(|n| n.strip_prefix("assets/").map(str::to_owned))
                    .expect("the web interface has assets");
                get(fx, r, format!("/assets/{name}"))
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/auth/session",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| post(fx, Anonymous, "/api/v1/auth/session", sign_in_as(r)),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/auth/session",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/auth/session".into()),
        },
        Row {
            method: Method::DELETE,
            path: "/api/v1/auth/session",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| Call {
                method: Method::DELETE,
                url: "/api/v1/auth/session".into(),
                token: fx.session_tokens.get(&r).cloned(),
                body: Body::None,
                headers: Vec::new(),
            },
        },
        Row {
            method: Method::GET,
            path: "/healthz",
            expect: PUBLIC,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/healthz".into()),
        },
        Row {
            method: Method::GET,
            path: "/metrics",
            expect: PUBLIC,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/metrics".into()),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/info",
            expect: PUBLIC,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/info".into()),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/openapi.json",
            expect: PUBLIC,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/openapi.json".into()),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/auth/login",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| post(fx, Anonymous, "/api/v1/auth/login", sign_in_as(r)),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/auth/logout",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| Call {
                method: Method::POST,
                url: "/api/v1/auth/logout".into(),
                token: fx.spare_tokens.get(&r).cloned(),
                body: Body::None,
                headers: Vec::new(),
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/account",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/account".into()),
        },
        // App passwords are the account's own, managed with a token or a session.
        Row {
            method: Method::GET,
            path: "/api/v1/account/app-passwords",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/account/app-passwords".into()),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/account/app-passwords",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                post(
                    fx,
                    r,
                    "/api/v1/account/app-passwords",
                    json!({"name": "matrix"}),
                )
            },
        },
        // Each account revokes the one the fixture made it.
        Row {
            method: Method::DELETE,
            path: "/api/v1/account/app-passwords/{name}",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!("/api/v1/account/app-passwords/{APP_PASSWORD}");
                call(fx, r, Method::DELETE, url, Body::None)
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/admin/users",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/admin/users".into()),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/admin/users",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| {
                let name = format!("added-by-{}", r.dir());
                let body = json!({"name": name, "password": "a brand new password"});
                post(fx, r, "/api/v1/admin/users", body)
            },
        },
        Row {
            method: Method::PUT,
            path: "/api/v1/admin/users/{name}/quota",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!("/api/v1/admin/users/target-{}/quota", r.dir());
                call(
                    fx,
                    r,
                    Method::PUT,
                    url,
                    Body::Json(json!({"quota_bytes": 1 << 30})),
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/admin/fsck",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/admin/fsck".into()),
        },
        // Each caller aims at an account of its own (`target-ROLE`), so what the
        // administrator is allowed to do cannot change what the next caller meets.
        Row {
            method: Method::POST,
            path: "/api/v1/admin/users/{name}/password",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!("/api/v1/admin/users/target-{}/password", r.dir());
                post(fx, r, &url, json!({"password": "a brand new password"}))
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/admin/users/{name}/disable",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!("/api/v1/admin/users/target-{}/disable", r.dir());
                post(fx, r, &url, json!({}))
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/admin/users/{name}/enable",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!("/api/v1/admin/users/target-{}/enable", r.dir());
                post(fx, r, &url, json!({}))
            },
        },
        Row {
            method: Method::DELETE,
            path: "/api/v1/admin/users/{name}",
            expect: ADMIN,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!("/api/v1/admin/users/target-{}", r.dir());
                call(fx, r, Method::DELETE, url, Body::None)
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/devices",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| post(fx, r, "/api/v1/devices", json!({"name": "matrix"})),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/files/list",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                get(
                    fx,
                    r,
                    format!("/api/v1/files/list?path=/Team/{}", r.files()),
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/files/stat",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                get(
                    fx,
                    r,
                    format!("/api/v1/files/stat?path={}", team(r, "read.txt")),
                )
            },
        },
        Row {
            // Every account searches its own tree (Dave's finds nothing of Alice's: the
            // search test checks what each caller sees).
            method: Method::GET,
            path: "/api/v1/files/search",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/files/search?q=read".into()),
        },
        Row {
            // The room of whoever a new file there is charged to: a question for those
            // who may create one (Dave asks about a /Team of his own, and is told his).
            method: Method::GET,
            path: "/api/v1/files/space",
            expect: CREATE,
            judge: Judge::Status,
            call: |fx, r| {
                get(
                    fx,
                    r,
                    format!("/api/v1/files/space?path={}", team(r, "new.txt")),
                )
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/mkdir",
            expect: CREATE,
            judge: Judge::Status,
            call: |fx, r| {
                post(
                    fx,
                    r,
                    "/api/v1/files/mkdir",
                    json!({"path": team(r, "made")}),
                )
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/move",
            expect: WRITE,
            judge: Judge::Status,
            call: |fx, r| {
                let body = json!({"from": team(r, "move.txt"), "to": team(r, "moved.txt")});
                post(fx, r, "/api/v1/files/move", body)
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/copy",
            expect: WRITE,
            judge: Judge::Status,
            call: |fx, r| {
                let body = json!({"from": team(r, "read.txt"), "to": team(r, "copied.txt")});
                post(fx, r, "/api/v1/files/copy", body)
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/delete",
            expect: WRITE,
            judge: Judge::Status,
            call: |fx, r| {
                post(
                    fx,
                    r,
                    "/api/v1/files/delete",
                    json!({"path": team(r, "delete.txt")}),
                )
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/commit",
            expect: CREATE,
            judge: Judge::Status,
            call: |fx, r| {
                let body = json!({
                    "path": team(r, "committed.txt"),
                    "blocks": [block_ref(&content(r, "block"))],
                });
                post(fx, r, "/api/v1/files/commit", body)
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/commit_batch",
            expect: CREATE,
            judge: Judge::BatchItem,
            call: |fx, r| {
                let item = json!({
                    "op": "commit",
                    "path": team(r, "batched.txt"),
                    "blocks": [block_ref(&content(r, "block"))],
                });
                post(
                    fx,
                    r,
                    "/api/v1/files/commit_batch",
                    json!({"items": [item]}),
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/files/blocks",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                get(
                    fx,
                    r,
                    format!("/api/v1/files/blocks?path={}", team(r, "read.txt")),
                )
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/content_batch",
            expect: READ,
            judge: Judge::ContentRecord,
            call: |fx, r| {
                let body = json!({"paths": [team(r, "read.txt")]});
                post(fx, r, "/api/v1/files/content_batch", body)
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/files/versions",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                get(
                    fx,
                    r,
                    format!("/api/v1/files/versions?path={}", team(r, "versions.txt")),
                )
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/files/restore",
            expect: WRITE,
            judge: Judge::Status,
            call: |fx, r| {
                let version = fx.first_versions[&match r {
                    Editor | Viewer | Other => r,
                    _ => Owner,
                }]
                    .clone();
                let body = json!({"path": team(r, "versions.txt"), "version": version});
                post(fx, r, "/api/v1/files/restore", body)
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/files/content",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                get(
                    fx,
                    r,
                    format!("/api/v1/files/content?path={}", team(r, "read.txt")),
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/files/zip",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!(
                    "/api/v1/files/zip?path={}&path={}",
                    team(r, "read.txt"),
                    team(r, "versions.txt")
                );
                get(fx, r, url)
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/files/thumbnail",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!(
                    "/api/v1/files/thumbnail?path={}&size=64",
                    team(r, "pic.png")
                );
                get(fx, r, url)
            },
        },
        Row {
            method: Method::PUT,
            path: "/api/v1/files/content",
            expect: CREATE,
            judge: Judge::Status,
            call: |fx, r| {
                let url = format!("/api/v1/files/content?path={}", team(r, "put.txt"));
                call(fx, r, Method::PUT, url, Body::Bytes(content(r, "put")))
            },
        },
        // Resumable uploads: creating one needs the right to write its path; an upload
        // is its creator's alone (everyone else gets 404, as for an unknown id).
        Row {
            method: Method::POST,
            path: "/api/v1/tus/",
            expect: CREATE,
            judge: Judge::Status,
            call: |fx, r| {
                let mut call = tus(fx, r, Method::POST, "/api/v1/tus/".into(), Body::None);
                call.headers.push(("upload-length", "3".to_owned()));
                call.headers.push((
                    "upload-metadata",
                    format!("path {}", b64(&team(r, "tus.bin"))),
                ));
                call
            },
        },
        Row {
            method: Method::PATCH,
            path: "/api/v1/tus/{id}",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                let url = tus_url(fx, r, false);
                let mut call = tus(fx, r, Method::PATCH, url, Body::Bytes(b"abc".to_vec()));
                call.headers
                    .push(("content-type", "application/offset+octet-stream".to_owned()));
                call.headers.push(("upload-offset", "0".to_owned()));
                call
            },
        },
        Row {
            method: Method::DELETE,
            path: "/api/v1/tus/{id}",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| tus(fx, r, Method::DELETE, tus_url(fx, r, true), Body::None),
        },
        // Streaming sync: announcing needs the right to write the path; the list is
        // each account's; a stored block of an announced upload is for those who read
        // its folder; an upload is ended by its uploader alone.
        Row {
            method: Method::POST,
            path: "/api/v1/uploads/pending",
            expect: CREATE,
            judge: Judge::Status,
            call: |fx, r| {
                let block = content(r, "announced");
                post(
                    fx,
                    r,
                    "/api/v1/uploads/pending",
                    json!({"path": team(r, "announced.bin"), "blocks": [block_ref(&block)]}),
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/uploads/pending",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/uploads/pending".into()),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/uploads/pending/{id}/blocks/{hash}",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                let (id, hash) = &fx.pending[&block_holder(r)];
                get(fx, r, format!("/api/v1/uploads/pending/{id}/blocks/{hash}"))
            },
        },
        Row {
            method: Method::DELETE,
            path: "/api/v1/uploads/pending/{id}",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                let id = &fx.own_pending[&block_holder(r)];
                call(
                    fx,
                    r,
                    Method::DELETE,
                    format!("/api/v1/uploads/pending/{id}"),
                    Body::None,
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/trash",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/trash".into()),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/trash/restore",
            expect: WRITE,
            judge: Judge::Status,
            call: |fx, r| {
                post(
                    fx,
                    r,
                    "/api/v1/trash/restore",
                    json!({"path": team(r, "trashed.txt")}),
                )
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/trash/purge",
            expect: WRITE,
            judge: Judge::Status,
            call: |fx, r| {
                post(
                    fx,
                    r,
                    "/api/v1/trash/purge",
                    json!({"path": team(r, "purged.txt")}),
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/delta",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/delta".into()),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/delta/latest",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/delta/latest".into()),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/notify/poll",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/notify/poll".into()),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/notify/sse",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/notify/sse".into()),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/notify/ws",
            expect: ACCOUNTS,
            judge: Judge::WebSocket,
            call: |fx, r| get(fx, r, "/api/v1/notify/ws".into()),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/blocks/check",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                let body = json!({"hashes": [hex_hash(&content(r, "read.txt"))]});
                post(fx, r, "/api/v1/blocks/check", body)
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/blocks/batch",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                let data = content(r, "batch block");
                let mut body = blake3::hash(&data).as_bytes().to_vec();
                body.extend_from_slice(&(data.len() as u32).to_be_bytes());
                body.extend_from_slice(&data);
                call(
                    fx,
                    r,
                    Method::POST,
                    "/api/v1/blocks/batch".into(),
                    Body::Bytes(body),
                )
            },
        },
        Row {
            method: Method::PUT,
            path: "/api/v1/blocks/{hash}",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                let data = content(r, "put block");
                let url = format!("/api/v1/blocks/{}", hex_hash(&data));
                call(fx, r, Method::PUT, url, Body::Bytes(data))
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/blocks/{hash}",
            expect: READ,
            judge: Judge::Status,
            // A block of a file in the shared folder, which only Alice uploaded.
            call: |fx, r| {
                let hash = hex_hash(&content(block_holder(r), "read.txt"));
                get(fx, r, format!("/api/v1/blocks/{hash}"))
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/blocks/{hash}/signature",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                let hash = hex_hash(&content(block_holder(r), "read.txt"));
                get(fx, r, format!("/api/v1/blocks/{hash}/signature"))
            },
        },
        Row {
            method: Method::PUT,
            path: "/api/v1/blocks/{hash}/from/{base}",
            expect: READ,
            judge: Judge::Status,
            // A delta from a block of a file in the shared folder.
            call: |fx, r| {
                let base = content(block_holder(r), "read.txt");
                let block = content(r, "delta block");
                let signature = cairn_core::delta::signature(&base);
                let delta = cairn_core::delta::rsync_diff(&signature, &block, 1 << 20).unwrap();
                let url = format!(
                    "/api/v1/blocks/{}/from/{}",
                    hex_hash(&block),
                    hex_hash(&base)
                );
                call(fx, r, Method::PUT, url, Body::Bytes(delta))
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/blocks/{hash}/from/{base}",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| {
                let hash = hex_hash(&content(block_holder(r), "read.txt"));
                let base = hex_hash(b"a block nobody has");
                get(fx, r, format!("/api/v1/blocks/{hash}/from/{base}"))
            },
        },
        Row {
            method: Method::GET,
            path: "/api/v1/shares",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/shares".into()),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/shares",
            expect: SHARE,
            judge: Judge::Status,
            call: |fx, r| {
                let body =
                    json!({"path": "/Team", "with": format!("new-{}", r.dir()), "role": "viewer"});
                post(fx, r, "/api/v1/shares", body)
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/shares/remove",
            expect: OWNER,
            judge: Judge::Status,
            call: |fx, r| {
                let body = json!({"path": "/Team", "with": format!("spare-{}", r.dir())});
                post(fx, r, "/api/v1/shares/remove", body)
            },
        },
        Row {
            method: Method::POST,
            path: "/api/v1/links",
            expect: READ,
            judge: Judge::Status,
            call: |fx, r| post(fx, r, "/api/v1/links", json!({"path": team(r, "read.txt")})),
        },
        Row {
            method: Method::GET,
            path: "/api/v1/links",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| get(fx, r, "/api/v1/links".into()),
        },
        Row {
            method: Method::POST,
            path: "/api/v1/links/revoke",
            expect: OWNER,
            judge: Judge::Status,
            call: |fx, r| {
                let id = fx.links_to_revoke[&match r {
                    Editor | Viewer | Other => r,
                    _ => Owner,
                }];
                post(fx, r, "/api/v1/links/revoke", json!({"id": id}))
            },
        },
        Row {
            method: Method::GET,
            path: "/s/{token}",
            expect: LINK,
            judge: Judge::Status,
            call: |fx, r| public(fx, r, false, Method::GET, "", Body::None),
        },
        Row {
            method: Method::POST,
            path: "/s/{token}",
            expect: LINK,
            judge: Judge::Status,
            call: |fx, r| {
                // Only link holders send the form; the others just ask (an empty
                // password would count as a wrong guess, and the guesses are limited).
                let password = match r {
                    LinkRight => LINK_PASSWORD,
                    LinkWrong => "not it",
                    _ => return public(fx, r, false, Method::POST, "", Body::None),
                };
                let form = format!("password={}", password.replace(' ', "+"));
                let mut call = public(
                    fx,
                    r,
                    false,
                    Method::POST,
                    "",
                    Body::Bytes(form.into_bytes()),
                );
                call.headers = vec![(
                    "content-type",
                    "application/x-www-form-urlencoded".to_owned(),
                )];
                call
            },
        },
        Row {
            method: Method::GET,
            path: "/s/{token}/download",
            expect: LINK,
            judge: Judge::Status,
            call: |fx, r| {
                public(
                    fx,
                    r,
                    false,
                    Method::GET,
                    "/download?path=/read.txt",
                    Body::None,
                )
            },
        },
        Row {
            method: Method::GET,
            path: "/s/{token}/zip",
            expect: LINK,
            judge: Judge::Status,
            call: |fx, r| public(fx, r, false, Method::GET, "/zip", Body::None),
        },
        Row {
            method: Method::POST,
            path: "/s/{token}/upload",
            expect: LINK,
            judge: Judge::Status,
            call: |fx, r| {
                let boundary = "matrix-boundary";
                let body = format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"dropped-{}.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                     --{boundary}--\r\n",
                    r.dir()
                );
                let mut call = public(
                    fx,
                    r,
                    true,
                    Method::POST,
                    "/upload",
                    Body::Bytes(body.into_bytes()),
                );
                call.headers.push((
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                ));
                call
            },
        },
        Row {
            method: Method::PUT,
            path: "/s/{token}/upload",
            expect: LINK,
            judge: Judge::Status,
            call: |fx, r| {
                let rest = format!("/upload?name=put-{}.txt", r.dir());
                public(
                    fx,
                    r,
                    true,
                    Method::PUT,
                    &rest,
                    Body::Bytes(b"hello".to_vec()),
                )
            },
        },
        // WebDAV, with each account's app password (before the password change below,
        // which revokes them).
        Row {
            method: Method::GET,
            path: "/dav",
            expect: ACCOUNTS,
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::GET, "/dav".into()),
        },
        Row {
            method: Method::GET,
            path: "/dav/",
            expect: ACCOUNTS,
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::GET, "/dav/".into()),
        },
        // The root folder can be neither replaced by a file nor deleted.
        Row {
            method: Method::PUT,
            path: "/dav",
            expect: [Deny; 9],
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::PUT, "/dav".into()),
        },
        Row {
            method: Method::PUT,
            path: "/dav/",
            expect: [Deny; 9],
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::PUT, "/dav/".into()),
        },
        Row {
            method: Method::DELETE,
            path: "/dav",
            expect: [Deny; 9],
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::DELETE, "/dav".into()),
        },
        Row {
            method: Method::DELETE,
            path: "/dav/",
            expect: [Deny; 9],
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::DELETE, "/dav/".into()),
        },
        Row {
            method: Method::GET,
            path: "/dav/{*path}",
            expect: READ,
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::GET, format!("/dav{}", team(r, "read.txt"))),
        },
        // Dave's lands in the /Team/other of his own that the rows before made.
        Row {
            method: Method::PUT,
            path: "/dav/{*path}",
            expect: CREATE,
            judge: Judge::Dav,
            call: |fx, r| {
                let url = format!("/dav{}", team(r, &format!("dav-{}.txt", r.dir())));
                dav_call(fx, r, Method::PUT, url)
            },
        },
        Row {
            method: Method::DELETE,
            path: "/dav/{*path}",
            expect: WRITE,
            judge: Judge::Dav,
            call: |fx, r| dav_call(fx, r, Method::DELETE, format!("/dav{}", team(r, "dav.txt"))),
        },
        // Last: a password change signs out the account's other sessions (its spare
        // token, the logout row's). The password stays the same, for the login row.
        Row {
            method: Method::POST,
            path: "/api/v1/account/password",
            expect: ACCOUNTS,
            judge: Judge::Status,
            call: |fx, r| {
                let body = json!({"old_password": PASSWORD, "new_password": PASSWORD});
                post(fx, r, "/api/v1/account/password", body)
            },
        },
    ]
}

/// A WebDAV request as `role`: with its app password (no credentials for callers
/// without an account), and a small body for a PUT.
fn dav_call(fx: &Fixture, role: Role, method: Method, url: String) -> Call {
    let body = match method {
        Method::PUT => Body::Bytes(content(role, "dav put")),
        _ => Body::None,
    };
    let mut headers = Vec::new();
    if let Some(password) = fx.dav_passwords.get(&role) {
        let user = sign_in_as(role)["username"].as_str().unwrap().to_owned();
        headers.push((
            "authorization",
            format!("Basic {}", b64(&format!("{user}:{password}"))),
        ));
    }
    Call {
        method,
        url,
        token: None,
        body,
        headers,
    }
}

/// Every account and file the rows expect.
/// A 2 × 2 PNG, for the thumbnail row.
fn tiny_png() -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

async fn fixture(s: &TestServer) -> Fixture {
    let hash =
        cairn_server::hash_password(&cairn_server::Config::for_data_dir("."), PASSWORD.into())
            .await
            .unwrap();
    let mut extra = vec!["carol".to_owned(), "dave".to_owned()];
    for role in ROLES {
        extra.push(format!("new-{}", role.dir()));
        extra.push(format!("spare-{}", role.dir()));
        extra.push(format!("target-{}", role.dir()));
    }
    for name in &extra {
        s.state
            .meta
            .create_user(name, &hash, false, None)
            .await
            .unwrap();
    }
    let mut tokens = HashMap::new();
    let mut spare_tokens = HashMap::new();
    let mut session_tokens = HashMap::new();
    for (role, name) in [
        (Owner, "admin"),
        (Editor, "bob"),
        (Viewer, "carol"),
        (Other, "dave"),
    ] {
        tokens.insert(role, s.login(name).await);
        spare_tokens.insert(role, s.login(name).await);
        session_tokens.insert(role, s.login(name).await);
    }
    let alice = tokens[&Owner].clone();
    let mut first_versions = HashMap::new();
    for role in USERS {
        let dir = role.dir();
        for name in [
            "read.txt",
            "move.txt",
            "delete.txt",
            "trashed.txt",
            "purged.txt",
        ] {
            put_file_as(
                s,
                &alice,
                &format!("/Team/{dir}/{name}"),
                &content(role, name),
            )
            .await;
        }
        put_file_as(s, &alice, &format!("/Team/{dir}/pic.png"), &tiny_png()).await;
        let first = put_file_as(s, &alice, &format!("/Team/{dir}/versions.txt"), b"first").await;
        first_versions.insert(role, first["entry"]["rev"].as_str().unwrap().to_owned());
        let (status, _) = s.put_block_as(&alice, &content(role, "second")).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = s
            .commit_as(
                &alice,
                json!({
                    "path": format!("/Team/{dir}/versions.txt"),
                    "blocks": [block_ref(&content(role, "second"))],
                    "base_rev": first["entry"]["rev"],
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for name in ["trashed.txt", "purged.txt"] {
            let (status, body) = s
                .call_as(
                    Some(&alice),
                    Method::POST,
                    "/api/v1/files/delete",
                    Some(json!({"path": format!("/Team/{dir}/{name}")})),
                )
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        }
        let (status, body) = s
            .call_as(
                Some(&tokens[&role]),
                Method::POST,
                "/api/v1/account/app-passwords",
                Some(json!({"name": APP_PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // Each account holds the block its commit rows name.
        let (status, body) = s
            .put_block_as(&tokens[&role], &content(role, "block"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let members = [("bob", "editor"), ("carol", "viewer")]
        .into_iter()
        .map(|(u, r)| (u.to_owned(), r))
        .chain(
            ROLES
                .iter()
                .map(|r| (format!("spare-{}", r.dir()), "viewer")),
        );
    for (user, role) in members {
        let (status, body) = s
            .call_as(
                Some(&alice),
                Method::POST,
                "/api/v1/shares",
                Some(json!({"path": "/Team", "with": user, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut links_to_revoke = HashMap::new();
    for role in USERS {
        let body = json!({"path": format!("/Team/{}/read.txt", role.dir())});
        let link = make_link(s, &alice, body).await;
        links_to_revoke.insert(role, link["id"].as_i64().unwrap());
    }
    let mut public = HashMap::new();
    for drop in [false, true] {
        let base = json!({"path": "/Team/owner", "upload_only": drop});
        let mut with_password = base.clone();
        with_password["password"] = json!(LINK_PASSWORD);
        let link = make_link(s, &alice, with_password).await;
        public.insert(
            (drop, LinkRight),
            link["token"].as_str().unwrap().to_owned(),
        );
        let mut expiring = base.clone();
        expiring["expires_at"] = json!(now_ms() + 1000);
        let link = make_link(s, &alice, expiring).await;
        public.insert(
            (drop, LinkExpired),
            link["token"].as_str().unwrap().to_owned(),
        );
        let link = make_link(s, &alice, base).await;
        public.insert(
            (drop, LinkRevoked),
            link["token"].as_str().unwrap().to_owned(),
        );
        let (status, body) = s
            .call_as(
                Some(&alice),
                Method::POST,
                "/api/v1/links/revoke",
                Some(json!({"id": link["id"]})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let mut tus = HashMap::new();
    for role in USERS {
        for terminate in [false, true] {
            let name = format!("/tus-{}-{terminate}.bin", role.dir());
            let response = s
                .http
                .post(s.url("/api/v1/tus/"))
                .bearer_auth(&tokens[&role])
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "3")
                .header("upload-metadata", format!("path {}", b64(&name)))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            tus.insert((role, terminate), location);
        }
    }
    // Let the expiring links expire.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut dav_passwords = HashMap::new();
    for role in USERS {
        put_file_as(s, &alice, &team(role, "dav.txt"), &content(role, "dav.txt")).await;
        let (status, body) = s
            .call_as(
                Some(&tokens[&role]),
                Method::POST,
                "/api/v1/account/app-passwords",
                Some(json!({"name": "webdav"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        dav_passwords.insert(role, body["password"].as_str().unwrap().to_owned());
    }
    let mut pending = HashMap::new();
    let mut own_pending = HashMap::new();
    for role in USERS {
        let block = content(role, "streaming");
        let (status, body) = s
            .call_as(
                Some(&alice),
                Method::POST,
                "/api/v1/uploads/pending",
                Some(json!({"path": team(role, "streaming.bin"), "blocks": [block_ref(&block)]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let response = s
            .http
            .put(s.url(&format!("/api/v1/blocks/{}", hex_hash(&block))))
            .bearer_auth(&alice)
            .header("cairn-pending-upload", &id)
            .body(block.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        pending.insert(role, (id, hex_hash(&block)));
        let (status, body) = s
            .call_as(
                Some(&tokens[&role]),
                Method::POST,
                "/api/v1/uploads/pending",
                Some(json!({"path": "/mine.bin", "blocks": [block_ref(b"mine")]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        own_pending.insert(role, body["id"].as_str().unwrap().to_owned());
    }
    Fixture {
        pending,
        own_pending,
        dav_passwords,
        tokens,
        spare_tokens,
        session_tokens,
        first_versions,
        links_to_revoke,
        public,
        tus,
    }
}

async fn make_link(s: &TestServer, token: &str, body: Value) -> Value {
    let (status, link) = s
        .call_as(Some(token), Method::POST, "/api/v1/links", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    link
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Whether the caller was let through, or `Err` with what came back when the answer
/// is neither (a request that does not test what its row says).
async fn outcome(s: &TestServer, row: &Row, call: Call) -> Result<bool, String> {
    if let Judge::WebSocket = row.judge {
        return websocket(s, &call).await;
    }
    // Redirects are answers too (a password accepted is a 303 to the page).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = http.request(call.method.clone(), s.url(&call.url));
    if let Some(token) = &call.token {
        request = request.bearer_auth(token);
    }
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    request = match call.body {
        Body::None => request,
        Body::Json(value) => request.json(&value),
        Body::Bytes(bytes) => request.body(bytes),
    };
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if let Judge::Dav = row.judge {
        return match status.as_u16() {
            200..=399 => Ok(true),
            401 | 403 | 404 | 405 | 409 | 429 => Ok(false),
            _ => Err(status.to_string()),
        };
    }
    if !status.is_success() {
        return classify(status, "");
    }
    if let Judge::Status = row.judge {
        // Streams (server-sent events) answer 200 before any body; enough.
        return Ok(true);
    }
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let error = match row.judge {
        Judge::BatchItem => {
            let body: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            body["results"][0]["error"].clone()
        }
        _ => {
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            let header: Value =
                serde_json::from_slice(&bytes[4..4 + len]).map_err(|e| e.to_string())?;
            header["error"].clone()
        }
    };
    if error.is_null() {
        return Ok(true);
    }
    let code = error["code"].as_str().unwrap_or("");
    match code {
        "not_found" | "read_only" | "forbidden" => Ok(false),
        _ => Err(format!("item error {error}")),
    }
}

fn classify(status: StatusCode, body: &str) -> Result<bool, String> {
    match status.as_u16() {
        200..=299 | 303 => Ok(true),
        401 | 403 | 404 | 429 => Ok(false),
        _ => Err(format!("{status} {body}")),
    }
}

async fn websocket(s: &TestServer, call: &Call) -> Result<bool, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}{}", s.addr, call.url);
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(token) = &call.token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(true),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            classify(response.status(), "")
        }
        Err(err) => Err(err.to_string()),
    }
}

/// Every (method, path) the server answers: each registered path probed with each
/// method, anything but 405 counting.
async fn endpoints(s: &TestServer) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for path in cairn_server::route_paths() {
        let url = path
            .replace("{hash}", &hex_hash(b"probe"))
            .replace("{token}", "probe")
            .replace("{name}", "probe")
            .replace("{id}", "probe");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let status = s
                .http
                .request(method.clone(), s.url(&url))
                .send()
                .await
                .unwrap()
                .status();
            if status != StatusCode::METHOD_NOT_ALLOWED {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

on_each_backend!(every_endpoint_for_every_role, |s| {
    let rows = rows();
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let routed = endpoints(&s).await;
    let missing: Vec<_> = routed.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "endpoints without a row in the matrix: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&routed).collect();
    assert!(
        stale.is_empty(),
        "rows for endpoints the server does not have: {stale:?}"
    );

    let fx = fixture(&s).await;
    let mut wrong = Vec::new();
    for row in &rows {
        for (role, expect) in ROLES.iter().zip(row.expect) {
            let allowed = match outcome(&s, row, (row.call)(&fx, *role)).await {
                Ok(allowed) => allowed,
                Err(answer) => {
                    wrong.push(format!("{row:?} as {role:?}: unexpected answer {answer}"));
                    continue;
                }
            };
            let fine = match expect {
                Allow | Own => allowed,
                Deny => !allowed,
            };
            if !fine {
                let got = if allowed { "ALLOWED" } else { "denied" };
                wrong.push(format!("{row:?} as {role:?}: {got}, expected {expect:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // What Dave "created" went to a /Team of his own, none of it into Alice's. (With
    // the token Alice changed her password with: her other sessions were signed out.)
    let alice = Some(fx.tokens[&Owner].as_str());
    let (status, body) = s
        .call_as(
            alice,
            Method::GET,
            "/api/v1/files/list?path=/Team/other",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: BTreeSet<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = [
        "read.txt",
        "move.txt",
        "delete.txt",
        "versions.txt",
        "pic.png",
        // Dave's WebDAV DELETE met no such file in his own /Team.
        "dav.txt",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected);
    let (_, theirs) = s
        .call_as(
            Some(&fx.tokens[&Other]),
            Method::GET,
            "/api/v1/files/list?path=/Team/other",
            None,
        )
        .await;
    assert!(theirs.to_string().contains("committed.txt"), "{theirs}");
    assert!(theirs.to_string().contains("dav-other.txt"), "{theirs}");
    let (_, shares) = s.call_as(alice, Method::GET, "/api/v1/shares", None).await;
    let members = shares["shares"][0]["members"].to_string();
    assert!(
        members.contains("new-owner") && !members.contains("new-other"),
        "{members}"
    );
    assert!(
        !members.contains("spare-owner") && members.contains("spare-other"),
        "{members}"
    );
    // The administrator's rows reached only their own targets: target-owner is gone,
    // the others untouched.
    let (_, users) = s
        .call_as(alice, Method::GET, "/api/v1/admin/users", None)
        .await;
    let names = users["users"].to_string();
    assert!(!names.contains("\"target-owner\""), "{names}");
    for role in &ROLES[1..] {
        let name = format!("target-{}", role.dir());
        let user = s.state.meta.user_by_name(&name).await.unwrap().unwrap();
        assert!(user.is_enabled(), "{name}");
        assert!(names.contains(&format!("\"{name}\"")), "{names}");
    }
    let problems = s.state.meta.check_consistency().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
});
