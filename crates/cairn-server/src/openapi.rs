//! `/api/v1/info` and the OpenAPI document.

use axum::extract::State;
use axum::Json;
use cairn_proto as proto;
use utoipa::OpenApi;

use crate::state::AppState;

/// The API description. Schemas come from the wire types; paths are listed by hand so
/// the document is one readable table of the surface.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn API",
        description = "Self-hosted file storage and sync."
    ),
    components(schemas(
        proto::ErrorBody,
        proto::ErrorDetail,
        proto::ServerInfo,
        proto::ChunkerInfo,
        proto::LoginRequest,
        proto::LoginResponse,
        proto::UserInfo,
        proto::AccountInfo,
        proto::DeviceRequest,
        proto::DeviceInfo,
        proto::EntryKind,
        proto::EntryInfo,
        proto::SpaceInfo,
        proto::ListResponse,
        proto::PathRequest,
        proto::DeleteRequest,
        proto::MoveRequest,
        proto::BlockBatchResponse,
        proto::CommitBatchItem,
        proto::CommitBatchRequest,
        proto::CommitBatchResult,
        proto::CommitBatchResponse,
        proto::ContentBatchRequest,
        proto::ContentBatchHeader,
        proto::BlockCheckRequest,
        proto::BlockCheckResponse,
        proto::BlockUploadResponse,
        proto::BlockRef,
        proto::CommitRequest,
        proto::CommitResponse,
        proto::FileBlocksResponse,
        proto::VersionInfo,
        proto::VersionsResponse,
        proto::RestoreRequest,
        proto::TrashItem,
        proto::TrashListResponse,
        proto::TrashRestoreRequest,
        proto::TrashRestoreResponse,
        proto::TrashPurgeRequest,
        proto::TrashPurgeResponse,
        proto::ChangeKind,
        proto::Change,
        proto::DeltaResponse,
        proto::CursorResponse,
        proto::Notification,
        proto::PollResponse,
        proto::LinkCreateRequest,
        proto::LinkInfo,
        proto::LinkListResponse,
        proto::LinkRevokeRequest,
        proto::PasswordChangeRequest,
        proto::PasswordChangeResponse,
        proto::AdminSetPasswordRequest,
        proto::AdminUserInfo,
        proto::AdminUserListResponse,
        proto::TransferredShare,
        proto::UserDeleteResponse,
    ))
)]
struct ApiDoc;

/// Method, path, summary, request schema, response schema.
type Endpoint = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

const ENDPOINTS: &[Endpoint] = &[
    (
        "get",
        "/api/v1/info",
        "Server version and chunker sizes",
        None,
        Some("ServerInfo"),
    ),
    (
        "post",
        "/api/v1/auth/login",
        "Log in; returns a bearer token",
        Some("LoginRequest"),
        Some("LoginResponse"),
    ),
    (
        "post",
        "/api/v1/auth/logout",
        "Revoke the calling token",
        None,
        None,
    ),
    (
        "get",
        "/api/v1/account",
        "The caller's account and usage",
        None,
        Some("AccountInfo"),
    ),
    (
        "post",
        "/api/v1/account/password",
        "Change the caller's password (the old one is required; wrong guesses are \
         limited like logins); every other session is signed out",
        Some("PasswordChangeRequest"),
        Some("PasswordChangeResponse"),
    ),
    (
        "post",
        "/api/v1/devices",
        "Register a device",
        Some("DeviceRequest"),
        Some("DeviceInfo"),
    ),
    (
        "get",
        "/api/v1/files/list",
        "List a folder (query: path, after, limit)",
        None,
        Some("ListResponse"),
    ),
    (
        "get",
        "/api/v1/files/stat",
        "Describe one entry (query: path)",
        None,
        Some("EntryInfo"),
    ),
    (
        "get",
        "/api/v1/files/space",
        "The room for writing at a path: quota and usage of the account charged for it, the folder's owner (query: path)",
        None,
        Some("SpaceInfo"),
    ),
    (
        "post",
        "/api/v1/files/mkdir",
        "Create a folder and missing parents",
        Some("PathRequest"),
        Some("EntryInfo"),
    ),
    (
        "post",
        "/api/v1/files/move",
        "Move or rename",
        Some("MoveRequest"),
        Some("EntryInfo"),
    ),
    (
        "post",
        "/api/v1/files/copy",
        "Copy a file or folder",
        Some("MoveRequest"),
        Some("EntryInfo"),
    ),
    (
        "post",
        "/api/v1/files/delete",
        "Delete a file or folder (to the trash); with base_rev, only that revision",
        Some("DeleteRequest"),
        None,
    ),
    (
        "post",
        "/api/v1/files/commit",
        "Make a file from uploaded blocks",
        Some("CommitRequest"),
        Some("CommitResponse"),
    ),
    (
        "post",
        "/api/v1/files/commit_batch",
        "Up to 1000 commits and mkdirs in one transaction; a result per item",
        Some("CommitBatchRequest"),
        Some("CommitBatchResponse"),
    ),
    (
        "post",
        "/api/v1/files/content_batch",
        "Up to 1000 small files' contents in one framed response (see ContentBatchRequest)",
        Some("ContentBatchRequest"),
        None,
    ),
    (
        "get",
        "/api/v1/files/versions",
        "A file's versions, newest first (query: path)",
        None,
        Some("VersionsResponse"),
    ),
    (
        "post",
        "/api/v1/files/restore",
        "Make an old version current again, as a new version",
        Some("RestoreRequest"),
        Some("CommitResponse"),
    ),
    (
        "get",
        "/api/v1/files/blocks",
        "A file's block list (query: path)",
        None,
        Some("FileBlocksResponse"),
    ),
    (
        "put",
        "/api/v1/files/content",
        "Upload a whole file; the server chunks it (query: path, base_rev, autorename, mtime)",
        None,
        Some("CommitResponse"),
    ),
    (
        "get",
        "/api/v1/files/content",
        "Download a file; supports Range (query: path)",
        None,
        None,
    ),
    (
        "get",
        "/api/v1/trash",
        "The caller's trash, newest first (query: after, limit)",
        None,
        Some("TrashListResponse"),
    ),
    (
        "post",
        "/api/v1/trash/restore",
        "Bring a trash item back, at its path or beside it as NAME (restored)",
        Some("TrashRestoreRequest"),
        Some("TrashRestoreResponse"),
    ),
    (
        "post",
        "/api/v1/trash/purge",
        "Remove trash items for good: one (id), all from a path, or all",
        Some("TrashPurgeRequest"),
        Some("TrashPurgeResponse"),
    ),
    (
        "get",
        "/api/v1/delta",
        "Changes after a cursor, oldest first (query: cursor, limit); 410 cursor_reset \
         means list the tree again",
        None,
        Some("DeltaResponse"),
    ),
    (
        "get",
        "/api/v1/delta/latest",
        "A cursor at the newest change",
        None,
        Some("CursorResponse"),
    ),
    (
        "get",
        "/api/v1/notify/ws",
        "WebSocket of Notification messages (JSON text): a head per namespace, then \
         each advance; ping every heartbeat. Token as Bearer header or subprotocol \
         cairn.bearer.TOKEN beside cairn.notify.v1",
        None,
        Some("Notification"),
    ),
    (
        "get",
        "/api/v1/notify/sse",
        "Server-sent events, one Notification as JSON per data: line; heartbeat comments",
        None,
        Some("Notification"),
    ),
    (
        "get",
        "/api/v1/notify/poll",
        "Long-poll (query: cursor, timeout ≤ 60 s): what advanced past the cursor, or \
         changed=false at the timeout; without a cursor, the heads at once",
        None,
        Some("PollResponse"),
    ),
    (
        "post",
        "/api/v1/blocks/check",
        "Which of these blocks must I upload?",
        Some("BlockCheckRequest"),
        Some("BlockCheckResponse"),
    ),
    (
        "post",
        "/api/v1/blocks/batch",
        "Upload many blocks in one body: [32-byte hash][u32 BE length][bytes]…",
        None,
        Some("BlockBatchResponse"),
    ),
    (
        "put",
        "/api/v1/blocks/{hash}",
        "Upload one block (raw body, verified)",
        None,
        Some("BlockUploadResponse"),
    ),
    (
        "get",
        "/api/v1/blocks/{hash}",
        "Download one block the caller holds",
        None,
        None,
    ),
    (
        "post",
        "/api/v1/links",
        "Make a public link to a file or folder (the page is at /s/TOKEN)",
        Some("LinkCreateRequest"),
        Some("LinkInfo"),
    ),
    (
        "get",
        "/api/v1/links",
        "The caller's public links, newest first",
        None,
        Some("LinkListResponse"),
    ),
    (
        "post",
        "/api/v1/links/revoke",
        "Revoke one of the caller's links",
        Some("LinkRevokeRequest"),
        None,
    ),
    (
        "get",
        "/api/v1/admin/users",
        "Administrators: every account with its usage, oldest first",
        None,
        Some("AdminUserListResponse"),
    ),
    (
        "post",
        "/api/v1/admin/users/{name}/password",
        "Administrators: set a user's password; signs out all of its sessions",
        Some("AdminSetPasswordRequest"),
        Some("PasswordChangeResponse"),
    ),
    (
        "post",
        "/api/v1/admin/users/{name}/disable",
        "Administrators: disable an account (no login; its tokens and links are refused \
         at once); never the last enabled administrator",
        None,
        Some("AdminUserInfo"),
    ),
    (
        "post",
        "/api/v1/admin/users/{name}/enable",
        "Administrators: enable a disabled account again, as it was",
        None,
        Some("AdminUserInfo"),
    ),
    (
        "delete",
        "/api/v1/admin/users/{name}",
        "Administrators: delete an account and its files; its shared folders pass to \
         their first editor (or are deleted when they have none); never the last \
         enabled administrator",
        None,
        Some("UserDeleteResponse"),
    ),
];

/// Builds the document: the derived schemas plus one operation per endpoint.
fn build_document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    let mut paths = serde_json::Map::new();
    for (method, path, summary, request, response) in ENDPOINTS {
        let mut op = serde_json::json!({
            "summary": summary,
            "responses": {
                "default": {
                    "description": "Error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                }
            }
        });
        let ok = match response {
            Some(schema) => serde_json::json!({
                "description": "Success",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            }),
            None => serde_json::json!({"description": "Success"}),
        };
        op["responses"]["200"] = ok;
        if let Some(schema) = request {
            op["requestBody"] = serde_json::json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            });
        }
        if *path != "/api/v1/info" && *path != "/api/v1/auth/login" {
            op["security"] = serde_json::json!([{"bearer": []}]);
        }
        let item = paths
            .entry(path.to_string())
            .or_insert_with(|| serde_json::json!({}));
        item[*method] = op;
    }
    doc["paths"] = serde_json::Value::Object(paths);
    doc["components"]["securitySchemes"] =
        serde_json::json!({"bearer": {"type": "http", "scheme": "bearer"}});
    doc
}

pub async fn document() -> Json<serde_json::Value> {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(build_document).clone())
}

pub async fn server_info(State(state): State<AppState>) -> Json<proto::ServerInfo> {
    let c = state.config.chunker;
    Json(proto::ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        api_version: proto::API_VERSION.to_owned(),
        chunker: proto::ChunkerInfo {
            min_size: c.min_size as u64,
            avg_size: c.avg_size as u64,
            max_size: c.max_size as u64,
        },
        max_block_size: c.max_size as u64,
    })
}
