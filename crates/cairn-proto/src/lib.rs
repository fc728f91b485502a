//! Wire types of Cairn's HTTP API (`/api/v1`), shared by the server and every client.
//!
//! These are the only Cairn types that are `Serialize`; the server converts its domain
//! types into them by hand at the edge. Paths travel as strings and are validated by the
//! server; hashes travel as 64 lowercase hex characters; revisions are opaque strings.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod block_batch;
pub mod content_batch;
mod limits;

pub use limits::*;

/// The API version, the path segment under which every endpoint lives.
pub const API_VERSION: &str = "v1";

/// One name of a path, as a regular expression: not empty, `.` or `..`, no `/` and no
/// control characters, at most 63 characters (see [`PATH_PATTERN`]).
macro_rules! name_pattern {
    () => {
        "([^/\\x00-\\x1f\\x7f-\\x9f.][^/\\x00-\\x1f\\x7f-\\x9f]{0,62}|\\.[^/\\x00-\\x1f\\x7f-\\x9f.][^/\\x00-\\x1f\\x7f-\\x9f]{0,61}|\\.\\.[^/\\x00-\\x1f\\x7f-\\x9f]{1,61})"
    };
}

/// What the server accepts as a path (`ServerPath::parse`), as a regular expression: `/`,
/// or `/`-separated names that are not empty, `.` or `..` and hold no control
/// characters. The server counts a name's 255 bytes and a path's 4,096 in UTF-8 after
/// NFC normalization, which a pattern cannot; the schema asks for at most 63 characters
/// a name and 1,024 a path, which fit whatever the characters.
pub const PATH_PATTERN: &str = concat!("^(/|(/", name_pattern!(), ")+)$");

/// A path that names an entry: any path but the root (see [`PATH_PATTERN`]). Endpoints
/// that create, change or remove one entry refuse the root.
pub const ENTRY_PATH_PATTERN: &str = concat!("^(/", name_pattern!(), ")+$");

/// A folder at the top of one's files, the only place a shared folder can be.
pub const TOP_FOLDER_PATTERN: &str = concat!("^/", name_pattern!(), "$");

/// What the server accepts as a block or content hash: 64 lowercase hex digits.
pub const HASH_PATTERN: &str = "^[0-9a-f]{64}$";

/// The content type of `GET /blocks/{hash}/from/{base}` when the answer is a zstd patch
/// against the base (`cairn_core::delta::patch_encode`) rather than the block itself
/// (`application/octet-stream`).
pub const BLOCK_PATCH_CONTENT_TYPE: &str = "application/vnd.cairn.block-patch+zstd";

/// The longest user or device name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What the server accepts as a user or device name: 1 to [`MAX_NAME_CHARS`] characters,
/// none of them a control character ([`DEVICE_NAME_PATTERN`] says the same).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control)
}

/// [`is_valid_name`] as a regular expression, for the API document.
pub const DEVICE_NAME_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$";

/// A string schema: what `pattern` matches, `min` to `max` characters.
fn string_schema(
    description: &str,
    pattern: &str,
    min: usize,
    max: usize,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .into()
}

/// Schemas of strings the server parses, each a unit type a field names with
/// `#[schema(value_type = …)]` (or a parameter with `#[param(value_type = …)]`).
macro_rules! string_schemas {
    ($($(#[$doc:meta])* $name:ident: $description:literal, $pattern:expr, $min:literal..=$max:literal;)+) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                string_schema($description, $pattern, $min, $max)
            }
        }

        impl ToSchema for $name {}
    )+};
}

string_schemas! {
    /// A path on the server (see [`PATH_PATTERN`]).
    ApiPath: "A path on the server: `/` or `/`-separated names (not empty, `.` or `..`, \
              no control characters, at most 255 bytes each, 4,096 in all)",
        PATH_PATTERN, 1..=1024;
    /// A path naming an entry, not the root (see [`ENTRY_PATH_PATTERN`]).
    EntryPath: "A path naming a file or folder: `/`-separated names (not empty, `.` or \
                `..`, no control characters, at most 255 bytes each, 4,096 in all)",
        ENTRY_PATH_PATTERN, 2..=1024;
    /// A folder at the top of one's files (see [`TOP_FOLDER_PATTERN`]).
    TopFolder: "A folder at the top of your files: `/` and one name",
        TOP_FOLDER_PATTERN, 2..=64;
    /// A BLAKE3 hash as the API carries it (see [`HASH_PATTERN`]).
    HashHex: "A BLAKE3 hash: 64 hex digits", HASH_PATTERN, 64..=64;
    /// A device's name (see [`DEVICE_NAME_PATTERN`]).
    DeviceName: "A device's name: 1 to 64 characters, no control characters",
        DEVICE_NAME_PATTERN, 1..=64;
    /// A file's revision (see [`revision`]).
    Revision: "A file's revision, as the server handed it out", revision::PATTERN, 1..=18;
    /// A delta cursor (see [`cursor`]).
    DeltaCursor: "A position in the journals, as `/delta` handed it out",
        cursor::PATTERN, 6..=8192;
}

/// A schema written as JSON, for what the derive cannot say (an enumeration of strings,
/// "exactly one of").
fn json_schema(
    schema: serde_json::Value,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(schema).expect("a valid schema")
}

/// The roles a member can be given (`owner` is not given, it is had).
#[derive(Debug)]
pub struct ShareRoleName;

impl utoipa::PartialSchema for ShareRoleName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        json_schema(serde_json::json!({
            "type": "string",
            "description": "`editor` (read and write) or `viewer` (read only)",
            "enum": ["editor", "viewer"],
        }))
    }
}

impl ToSchema for ShareRoleName {}

/// A file's revision on the wire: the decimal number of its version, opaque to clients.
pub mod revision {
    /// What a revision looks like: a number without sign or leading zero, of at most 18
    /// digits (so it fits an `i64`).
    pub const PATTERN: &str = "^(0|[1-9][0-9]{0,17})$";

    /// The version a revision names, or `None` for text no server hands out.
    pub fn parse(rev: &str) -> Option<i64> {
        let digits = rev.bytes().all(|b| b.is_ascii_digit());
        let canonical = rev == "0" || !rev.starts_with('0');
        (digits && canonical && (1..=18).contains(&rev.len()))
            .then(|| rev.parse().ok())
            .flatten()
    }

    #[cfg(test)]
    mod tests {
        use super::parse;

        #[test]
        fn only_canonical_numbers_are_revisions() {
            assert_eq!(parse("0"), Some(0));
            assert_eq!(parse("42"), Some(42));
            assert_eq!(parse("999999999999999999"), Some(999_999_999_999_999_999));
            for bad in [
                "",
                "-1",
                "+1",
                "007",
                "1.0",
                " 1",
                "1e3",
                "9999999999999999999",
            ] {
                assert_eq!(parse(bad), None, "{bad:?}");
            }
        }
    }
}

/// The schema of a body of raw bytes (a block, a file, a batch of blocks).
#[derive(Debug)]
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl ToSchema for Binary {}

/// The body of every 4xx and 5xx response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for people (`message`) and programs (`code`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code such as `not_found`, `conflict`, `invalid_path`.
    pub code: String,
    /// One sentence that says what went wrong and, where possible, what to do.
    pub message: String,
    /// On a revision conflict: the entry as it is now on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Box<EntryInfo>>,
    /// On a commit naming blocks the caller has not uploaded: their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_blocks: Option<Vec<String>>,
}

/// Server facts a client needs before it transfers content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerInfo {
    pub version: String,
    pub api_version: String,
    /// The chunker the server uses, so clients cut files at the same places and
    /// deduplicate against server-side uploads.
    pub chunker: ChunkerInfo,
    /// The largest block the server accepts, in bytes.
    pub max_block_size: u64,
}

/// Content-defined chunking sizes in bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct ChunkerInfo {
    pub min_size: u64,
    pub avg_size: u64,
    pub max_size: u64,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Registers a device with this name and binds the token to it.
    #[serde(default)]
    #[schema(value_type = Option<DeviceName>)]
    pub device_name: Option<String>,
}

/// A bearer token and who it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer TOKEN`.
    pub token: String,
    pub user: UserInfo,
    #[serde(default)]
    pub device: Option<DeviceInfo>,
}

/// `POST /api/v1/auth/session`: a browser signs in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub username: String,
    pub password: String,
}

/// A browser session: who is signed in, and the token that every state-changing request
/// of the session must repeat in the `X-Cairn-CSRF` header. The session's own token
/// travels only in its HttpOnly cookie, out of the page's reach.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub user: UserInfo,
    pub csrf_token: String,
}

/// A user account as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    #[serde(default)]
    pub quota_bytes: Option<i64>,
    pub created_at: i64,
}

/// The caller's account with its usage, `GET /api/v1/account`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountInfo {
    pub user: UserInfo,
    pub usage_bytes: i64,
    #[serde(default)]
    pub device: Option<DeviceInfo>,
}

/// `GET /api/v1/files/space?path=PATH`: the room for writing at a path, which is the
/// room of whoever a file there is charged to: the owner of the folder it lands in (a
/// shared folder's owner, not the member writing into it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpaceInfo {
    /// The account charged for a file at the path.
    pub charged_to: String,
    /// Its quota in bytes; absent when it has none.
    #[serde(default)]
    pub quota_bytes: Option<i64>,
    /// What that account is charged with now, in bytes.
    pub usage_bytes: i64,
    /// Bytes that may still be added; absent when there is no quota, 0 when over it.
    #[serde(default)]
    pub available_bytes: Option<i64>,
}

/// `POST /api/v1/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceRequest {
    #[schema(value_type = DeviceName)]
    pub name: String,
}

/// A registered device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceInfo {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// File or folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Folder,
}

/// One file or folder.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntryInfo {
    /// The entry's id; it survives moves and renames (a sync client tells a move from a
    /// delete and a create by it).
    #[serde(default)]
    pub id: i64,
    pub path: String,
    pub name: String,
    pub kind: EntryKind,
    /// Bytes; 0 for folders.
    pub size: u64,
    /// The current revision of a file; pass it as `base_rev` when replacing the file.
    #[serde(default)]
    pub rev: Option<String>,
    /// BLAKE3 over the file's block hashes, in hex.
    #[serde(default)]
    pub content_hash: Option<String>,
    /// Modification time given by the client, Unix milliseconds.
    pub mtime: i64,
    /// When the server last changed this entry, Unix milliseconds.
    pub modified_at: i64,
    /// Set on a shared folder's top (its mount in the caller's tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedInfo>,
}

/// How a shared folder is shared with the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SharedInfo {
    /// The account that owns it (its content counts against that account's quota).
    pub owner: String,
    /// The caller's role: `owner`, `editor` or `viewer`.
    pub role: String,
}

/// `GET /api/v1/files/list`: one page of a folder's children, ordered by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListResponse {
    pub entries: Vec<EntryInfo>,
    /// Pass as `after` to read the next page; absent on the last page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `GET /api/v1/files/search`: the entries of the caller's tree whose name contains the
/// text asked for, best first (a name that starts with it, then shorter names).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Paths in the caller's view: a shared folder's entries under its mount.
    pub entries: Vec<EntryInfo>,
    /// Whether more entries matched than were sent (`limit`).
    pub truncated: bool,
}

/// A request naming one path (`mkdir`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PathRequest {
    #[schema(value_type = EntryPath)]
    pub path: String,
}

/// `POST /api/v1/files/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeleteRequest {
    #[schema(value_type = EntryPath)]
    pub path: String,
    /// Delete only if the entry is a file at this revision; otherwise 409 `conflict`
    /// with the current entry, and nothing changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Revision>)]
    pub base_rev: Option<String>,
}

/// `POST /api/v1/files/move`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveRequest {
    #[schema(value_type = EntryPath)]
    pub from: String,
    #[schema(value_type = EntryPath)]
    pub to: String,
    /// Move only if `from` is a file at this revision; otherwise 409 `conflict` with
    /// the current entry, and nothing changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Revision>)]
    pub base_rev: Option<String>,
}

/// `POST /api/v1/files/copy`. A copy changes nothing at its source, so it takes no
/// base revision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    #[schema(value_type = EntryPath)]
    pub from: String,
    #[schema(value_type = EntryPath)]
    pub to: String,
}

/// `POST /api/v1/blocks/check`: which of these must I upload?
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockCheckRequest {
    #[schema(value_type = Vec<HashHex>)]
    pub hashes: Vec<String>,
}

/// The hashes the caller must upload before committing. A block is reported present
/// only when the caller's own account already holds it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockCheckResponse {
    pub missing: Vec<String>,
}

/// The answer to `POST /api/v1/blocks/batch`, whose body is the blocks back to back,
/// each framed as a 32-byte BLAKE3 hash, a 4-byte big-endian length, then that many
/// bytes ([`block_batch`] writes and reads them; at most [`MAX_BLOCK_BATCH_FRAMES`] of
/// them in at most [`MAX_BLOCK_BATCH_BODY`] bytes). Every block is checked before any is
/// stored: a block that does not match its hash fails the whole request (400
/// `hash_mismatch`) and nothing is stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockBatchResponse {
    /// The blocks stored (and now held by the caller's account), in request order.
    pub blocks: Vec<BlockUploadResponse>,
}

/// The answer to a block upload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockUploadResponse {
    pub hash: String,
    pub size: u64,
}

/// One block of a file, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockRef {
    #[schema(value_type = HashHex)]
    pub hash: String,
    pub size: u32,
}

/// The request header that ties a block upload to the pending upload it is part of
/// (`POST /api/v1/uploads/pending`): the server then tells the account's other
/// devices, and the shared folder's members, that another block of it is stored.
pub const PENDING_UPLOAD_HEADER: &str = "cairn-pending-upload";

/// `POST /api/v1/uploads/pending`: the caller is about to upload the blocks of a file
/// it will commit at `path` (streaming sync). Those who may read `path` can fetch each
/// block once it is stored, before the commit; nothing appears at `path` until then.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingUploadRequest {
    #[schema(value_type = EntryPath)]
    pub path: String,
    /// The file's blocks, in order.
    #[schema(max_items = 100000)]
    pub blocks: Vec<BlockRef>,
}

/// One block of a [`PendingUpload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingBlock {
    #[schema(value_type = HashHex)]
    pub hash: String,
    pub size: u32,
    /// Whether the server holds it now (it may be fetched).
    pub stored: bool,
}

/// A file being uploaded, not yet committed: `GET /api/v1/uploads/pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingUpload {
    /// Its id, for `GET /api/v1/uploads/pending/{id}/blocks/{hash}`.
    pub id: String,
    /// Where it will be committed, in the caller's tree.
    #[schema(value_type = EntryPath)]
    pub path: String,
    pub size: u64,
    /// The content hash the file will have (that of its block list).
    #[schema(value_type = HashHex)]
    pub content_hash: String,
    pub blocks: Vec<PendingBlock>,
    /// When the server forgets it if it is neither committed nor advanced (a block
    /// stored for it moves this on), Unix milliseconds.
    pub expires_at: i64,
}

/// `POST /api/v1/uploads/pending`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingUploadCreated {
    pub id: String,
    pub expires_at: i64,
}

/// `GET /api/v1/uploads/pending`: the uploads in progress that the caller may read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingUploadsResponse {
    pub uploads: Vec<PendingUpload>,
}

/// `POST /api/v1/files/commit`: make `path` the file made of `blocks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitRequest {
    #[schema(value_type = EntryPath)]
    pub path: String,
    pub blocks: Vec<BlockRef>,
    /// The revision this content was based on; absent for a new file. A stale base is
    /// refused with 409 and the current entry, unless `autorename` is set.
    #[serde(default)]
    #[schema(value_type = Option<Revision>)]
    pub base_rev: Option<String>,
    /// On a conflict, store the content as a conflict copy beside the file instead.
    #[serde(default)]
    pub autorename: bool,
    /// The file's modification time, Unix milliseconds.
    #[serde(default)]
    pub mtime: Option<i64>,
}

/// One step of `POST /api/v1/files/commit_batch`: `{"op": "commit", …CommitRequest}` or
/// `{"op": "mkdir", "path": …}` (like `mkdir -p`; a folder already there is fine).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum CommitBatchItem {
    Commit(CommitRequest),
    Mkdir(PathRequest),
}

/// `POST /api/v1/files/commit_batch`: up to 1000 items, applied in order in one
/// transaction (parents before children).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitBatchRequest {
    #[schema(max_items = 1000)]
    pub items: Vec<CommitBatchItem>,
}

/// One item's result: `entry` (and `renamed`) when it was applied, `error` (the same
/// shape as an error response's, with `current` on a conflict) when it was refused.
/// A refused item changes nothing; the items after it still apply.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitBatchResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryInfo>,
    #[serde(default)]
    pub renamed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The answer to `POST /api/v1/files/commit_batch`: one result per item, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitBatchResponse {
    pub results: Vec<CommitBatchResult>,
}

/// `POST /api/v1/files/content_batch`: the contents of up to 1000 small files in one
/// response, for a sync client fetching a tree of them.
///
/// The response body is a record per path, in order: a 4-byte big-endian length, that
/// many bytes of JSON ([`ContentBatchHeader`]), then — when the header holds an entry —
/// exactly `entry.size` bytes of the file's content ([`content_batch`] writes and reads
/// them). A file larger than [`MAX_CONTENT_BATCH_FILE`] is refused with
/// `too_large_for_batch` (fetch it with `GET /files/content`); once the response holds
/// [`MAX_CONTENT_BATCH_BYTES`], later files are refused with `batch_full` (ask for them
/// again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContentBatchRequest {
    #[schema(value_type = Vec<ApiPath>, max_items = 1000)]
    pub paths: Vec<String>,
}

/// One record's header in a `content_batch` response: the entry whose content follows,
/// or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContentBatchHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// What a commit or upload made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitResponse {
    pub entry: EntryInfo,
    /// True when the content was stored as a conflict copy under another name.
    pub renamed: bool,
}

/// `GET /api/v1/files/blocks`: a file's current block list, for parallel download.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileBlocksResponse {
    pub entry: EntryInfo,
    pub blocks: Vec<BlockRef>,
}

/// One version of a file, `GET /api/v1/files/versions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    /// The version's id; it was the file's `rev` while current. Pass it to restore.
    pub id: String,
    pub size: u64,
    pub content_hash: String,
    /// The file's modification time this version recorded, Unix milliseconds.
    pub mtime: i64,
    /// When it was committed, Unix milliseconds.
    pub created_at: i64,
    pub user: String,
    #[serde(default)]
    pub device: Option<String>,
}

/// A file's versions, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionsResponse {
    pub versions: Vec<VersionInfo>,
}

/// `POST /api/v1/files/restore`: make an old version current again (as a new version).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RestoreRequest {
    #[schema(value_type = EntryPath)]
    pub path: String,
    #[schema(value_type = Revision)]
    pub version: String,
}

/// One item in the trash: what one delete removed (a file, or a folder with everything
/// that was below it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrashItem {
    /// The item's id; pass it to restore or purge this item exactly.
    pub id: i64,
    /// Where the entry was when it was deleted.
    pub path: String,
    pub kind: EntryKind,
    /// Bytes of the files in the item (their current versions).
    pub size: u64,
    /// How many files the item holds (1 for a file).
    pub file_count: u64,
    /// When it was deleted, Unix milliseconds.
    pub deleted_at: i64,
    /// The user who deleted it.
    pub deleted_by: String,
    /// The device it was deleted from, if a registered one.
    #[serde(default)]
    pub device: Option<String>,
}

/// `GET /api/v1/trash`: one page of the trash, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrashListResponse {
    pub items: Vec<TrashItem>,
    /// Pass as `after` to read the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

/// `POST /api/v1/trash/restore`: name the item by `id`, or by `path` (the most recently
/// deleted item that was deleted from there). Exactly one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrashRestoreRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl utoipa::PartialSchema for TrashRestoreRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        json_schema(serde_json::json!({
            "description": "The item by `id`, or by `path`: exactly one of the two",
            "oneOf": [trash_by("id", false), trash_by("path", false)],
        }))
    }
}

impl ToSchema for TrashRestoreRequest {}

/// A trash request naming its item (or items) by `by` alone; in a purge (`purge`),
/// `all: false` may stand beside it.
fn trash_by(by: &str, purge: bool) -> serde_json::Value {
    let named_by = match by {
        "id" => serde_json::json!({"type": "integer", "format": "int64"}),
        "path" => serde_json::to_value(<EntryPath as utoipa::PartialSchema>::schema())
            .expect("a schema is JSON"),
        _ => serde_json::json!({"type": "boolean", "enum": [true]}),
    };
    let mut properties = serde_json::Map::from_iter([(by.to_owned(), named_by)]);
    if purge && by != "all" {
        properties.insert(
            "all".to_owned(),
            serde_json::json!({"type": "boolean", "enum": [false]}),
        );
    }
    serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": [by],
        "additionalProperties": false,
    })
}

/// What a trash restore brought back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrashRestoreResponse {
    /// The restored entry where it now lives: its original path, or
    /// `NAME (restored).EXT` beside it when that path was taken.
    pub entry: EntryInfo,
}

/// `POST /api/v1/trash/purge`: remove for good the item `id`, every item deleted from
/// `path`, or, with `all`, the whole trash. Exactly one of the three.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrashPurgeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub all: bool,
}

impl utoipa::PartialSchema for TrashPurgeRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        json_schema(serde_json::json!({
            "description": "The item `id`, the items deleted from `path`, or `all`: exactly one",
            "oneOf": [trash_by("id", true), trash_by("path", true), trash_by("all", true)],
        }))
    }
}

impl ToSchema for TrashPurgeRequest {}

/// The items a purge removed. Their blocks are reclaimed by the next garbage collection
/// once nothing else references them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrashPurgeResponse {
    pub purged: Vec<TrashItem>,
}

/// What happened to an entry, in a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A new version of a file (the file may be new).
    Commit,
    /// A folder was created.
    Mkdir,
    /// The entry moved from `from_path` to `path`.
    Move,
    /// The entry was created as a copy of `from_path`.
    Copy,
    /// The entry was deleted (moved to the trash).
    Delete,
    /// The entry came back from the trash to `path`.
    Restore,
    /// A trash item deleted from `path` was removed for good; the live tree is unchanged.
    Purge,
}

/// One change in a delta.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// The change's position in its namespace's journal.
    pub seq: i64,
    pub kind: ChangeKind,
    pub entry_kind: EntryKind,
    /// The entry's path after the change (for a delete or purge: the path it had).
    pub path: String,
    /// For a move or copy: where the entry came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_path: Option<String>,
    /// The entry's id; it survives moves, deletes and restores.
    pub entry_id: i64,
    /// For a file: its revision after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// For a file: the size of `rev`'s content, so a client can compare without a stat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For a file: `rev`'s content hash (BLAKE3 over its block hashes), in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// For a file: the modification time `rev` recorded, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// The account that made the change.
    pub user_id: i64,
    /// The device that made it, if a registered one did (a client skips its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<i64>,
    /// When, Unix milliseconds.
    pub at: i64,
}

/// `GET /api/v1/delta`: the changes after a cursor, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeltaResponse {
    pub changes: Vec<Change>,
    /// Pass this back to read on from after the last change returned.
    pub cursor: String,
    /// True when more changes follow at once: call again with `cursor` before resting.
    pub has_more: bool,
}

/// `GET /api/v1/delta/latest`: a cursor at the newest change, for a client that has
/// just listed the whole tree.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CursorResponse {
    pub cursor: String,
}

/// A push notification, sent as one JSON text message on `GET /api/v1/notify/ws`, as
/// one `data:` line on `GET /api/v1/notify/sse`, and in the answer of
/// `GET /api/v1/notify/poll`. It says only where a namespace's journal stands; the
/// client reads what changed from `GET /api/v1/delta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notification {
    /// Sent first on every connection, once per namespace the caller reads: where its
    /// journal stands now. A client that reconnects compares it with its own cursor to
    /// know at once whether it missed something.
    Head {
        /// The namespace.
        ns: i64,
        /// Its newest journal number.
        seq: i64,
        /// A delta cursor at that position for this namespace.
        cursor: String,
    },
    /// The namespace's journal advanced to `seq`. Notifications may be coalesced: a
    /// client is always told the newest number, not every one in between.
    Advanced {
        /// The namespace.
        ns: i64,
        /// Its newest journal number.
        seq: i64,
        /// A delta cursor at that position for this namespace.
        cursor: String,
    },
    /// An upload into the namespace started, stored another block, or ended: the
    /// client reads `GET /api/v1/uploads/pending` (streaming sync). Coalesced like
    /// advances. The journal did not move.
    Uploads {
        /// The namespace.
        ns: i64,
    },
}

impl Notification {
    /// The namespace this notification is about.
    pub fn ns(&self) -> i64 {
        match self {
            Notification::Head { ns, .. }
            | Notification::Advanced { ns, .. }
            | Notification::Uploads { ns } => *ns,
        }
    }

    /// The namespace's newest journal number; `None` for [`Notification::Uploads`].
    pub fn seq(&self) -> Option<i64> {
        match self {
            Notification::Head { seq, .. } | Notification::Advanced { seq, .. } => Some(*seq),
            Notification::Uploads { .. } => None,
        }
    }

    /// A delta cursor at [`Notification::seq`].
    pub fn cursor(&self) -> Option<&str> {
        match self {
            Notification::Head { cursor, .. } | Notification::Advanced { cursor, .. } => {
                Some(cursor)
            }
            Notification::Uploads { .. } => None,
        }
    }

    /// Whether a client whose delta `cursor` is this has already read what this
    /// notification announces: the cursor stands at or past [`Notification::seq`] in
    /// the namespace. A cursor is `v1.` and `NS-SEQ` pairs separated by commas (one
    /// per namespace the account reads); text not of that form never counts as read,
    /// so a client that cannot tell reads the delta.
    pub fn is_read_by(&self, cursor: &str) -> bool {
        let Some(wanted) = self.seq() else {
            // Not about the journal: nothing a cursor has read.
            return true;
        };
        cursor::decode(cursor).is_some_and(|positions| {
            positions
                .iter()
                .any(|&(ns, seq)| ns == self.ns() && seq >= wanted)
        })
    }
}

/// The delta cursor's text, `v1.` and `NS-SEQ` pairs separated by commas: opaque to
/// clients, but a client may compare a notification's position with it
/// ([`Notification::is_read_by`]), so both sides read it through here.
pub mod cursor {
    /// The version prefix of every cursor this protocol hands out.
    pub const PREFIX: &str = "v1.";

    /// The longest cursor read: a query string must stay well under what HTTP servers
    /// take, even percent-encoded (this is about 400 namespaces of an account).
    pub const MAX_LEN: usize = 8192;

    /// What a cursor looks like, as a regular expression ([`decode`] reads exactly these).
    pub const PATTERN: &str =
        "^v1\\.[1-9][0-9]{0,17}-(0|[1-9][0-9]{0,17})(,[1-9][0-9]{0,17}-(0|[1-9][0-9]{0,17}))*$";

    /// The text for these (namespace, journal sequence) positions.
    pub fn encode(positions: impl IntoIterator<Item = (i64, i64)>) -> String {
        let pairs: Vec<String> = positions
            .into_iter()
            .map(|(ns, seq)| format!("{ns}-{seq}"))
            .collect();
        format!("{PREFIX}{}", pairs.join(","))
    }

    /// The positions a cursor names, or `None` for text no server hands out (another
    /// version, a pair that is not two numbers written as [`crate::revision`]s are, a
    /// namespace below 1).
    pub fn decode(cursor: &str) -> Option<Vec<(i64, i64)>> {
        if cursor.len() > MAX_LEN {
            return None;
        }
        cursor
            .strip_prefix(PREFIX)?
            .split(',')
            .map(|pair| {
                let (ns, seq) = pair.split_once('-')?;
                let (ns, seq) = (crate::revision::parse(ns)?, crate::revision::parse(seq)?);
                (ns >= 1).then_some((ns, seq))
            })
            .collect()
    }
}

/// `GET /api/v1/notify/poll`: what advanced past the cursor while the request waited.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PollResponse {
    /// False when the wait timed out with nothing new ("no change": poll again with the
    /// same cursor). True when `notifications` says what to read: the namespaces that
    /// advanced past the cursor or, for a poll without a cursor, the current heads.
    pub changed: bool,
    /// One per namespace that advanced (or, without a cursor, one `head` each).
    pub notifications: Vec<Notification>,
    /// The position to poll from next: the cursor given, moved to what was notified.
    pub cursor: String,
}

/// `POST /api/v1/shares`: share a top-level folder with another account, or change a
/// member's role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShareRequest {
    /// The folder, at the top of the caller's files.
    #[schema(value_type = TopFolder)]
    pub path: String,
    /// The account to share it with.
    pub with: String,
    /// `editor` (read and write) or `viewer` (read only).
    #[schema(value_type = ShareRoleName)]
    pub role: String,
}

/// `POST /api/v1/shares/remove`: remove a member (the owner removing anyone, or a
/// member leaving).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShareRemoveRequest {
    /// The shared folder, as the caller sees it.
    #[schema(value_type = TopFolder)]
    pub path: String,
    /// The member to remove.
    pub with: String,
}

/// One member of a shared folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShareMember {
    pub user: String,
    /// `owner`, `editor` or `viewer`.
    pub role: String,
}

/// A shared folder the caller reads.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShareInfo {
    /// Where it is in the caller's tree.
    pub path: String,
    pub owner: String,
    /// The caller's role.
    pub role: String,
    /// Everyone who reads it, the owner first.
    pub members: Vec<ShareMember>,
}

/// `GET /api/v1/shares`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShareListResponse {
    pub shares: Vec<ShareInfo>,
}

/// `POST /api/v1/links`: make a public link to a file or folder of the caller's tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCreateRequest {
    /// The file or folder, as the caller sees it.
    pub path: String,
    /// Visitors must give this password first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// When the link stops working, Unix ms; must be in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// How many downloads (of a file, or of a zip of a folder) it allows in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downloads: Option<u64>,
    /// A file drop: visitors can upload into the folder and see nothing in it.
    #[serde(default)]
    pub upload_only: bool,
}

impl utoipa::PartialSchema for LinkCreateRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // A file drop serves no downloads, so it takes no download limit: two shapes.
        let shape = |upload_only: bool| {
            let max_downloads = if upload_only {
                serde_json::json!({"type": "null"})
            } else {
                serde_json::json!({"type": ["integer", "null"], "format": "int64", "minimum": 1})
            };
            serde_json::json!({
                "type": "object",
                "properties": {
                    "path": <EntryPath as utoipa::PartialSchema>::schema(),
                    "password": {"type": ["string", "null"]},
                    "expires_at": {
                        "type": ["integer", "null"],
                        "format": "int64",
                        "description": "When the link stops working, Unix ms; must be in the future",
                    },
                    "max_downloads": max_downloads,
                    "upload_only": {"type": "boolean", "enum": [upload_only]},
                },
                "required": if upload_only { vec!["path", "upload_only"] } else { vec!["path"] },
                "additionalProperties": false,
            })
        };
        json_schema(serde_json::json!({
            "description": "A link to a file or folder, or a file drop into a folder (`upload_only`)",
            "oneOf": [shape(false), shape(true)],
        }))
    }
}

impl ToSchema for LinkCreateRequest {}

/// One public link, as its creator sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkInfo {
    /// Names the link to `POST /api/v1/links/revoke`.
    pub id: i64,
    /// The page anyone holding it can open: `BASE/s/TOKEN`.
    pub url: String,
    /// The secret part of the URL.
    pub token: String,
    /// Where the target is now in the creator's tree (it follows moves and renames);
    /// `None` when it was deleted or the creator can no longer reach it.
    #[serde(default)]
    pub path: Option<String>,
    /// File or folder; `None` when the target is gone.
    #[serde(default)]
    pub kind: Option<EntryKind>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub max_downloads: Option<u64>,
    pub downloads: u64,
    pub upload_only: bool,
    pub has_password: bool,
    pub created_at: i64,
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// `active`, or why the link no longer works: `revoked`, `expired`, `exhausted`
    /// (download limit reached) or `gone` (target deleted, or out of the creator's
    /// reach). A link that does not work answers its visitors 404.
    pub status: String,
}

/// `GET /api/v1/links`: the caller's links, newest first, revoked ones included.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkListResponse {
    pub links: Vec<LinkInfo>,
}

/// `POST /api/v1/links/revoke`: the caller's link to revoke.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkRevokeRequest {
    pub id: i64,
}

/// `POST /api/v1/account/password`: change the caller's own password. The old one is
/// required, and wrong guesses are limited like failed logins.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordChangeRequest {
    /// The current password (the server takes up to 1,024 bytes; 256 characters fit
    /// whatever they are).
    #[schema(max_length = 256)]
    pub old_password: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

/// A password was changed: every other session of the account was signed out (the
/// token of a user's own change keeps working; an administrator's change signs out
/// all of them).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordChangeResponse {
    /// How many tokens (signed-in devices and sessions) and app passwords were revoked.
    pub sessions_revoked: u64,
}

/// `POST /api/v1/account/app-passwords`: make an app password, the credential of a
/// WebDAV (or other HTTP Basic) client, which never takes the account password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppPasswordRequest {
    /// Its name, unique among the account's app passwords (a device's rules): say
    /// where it is used, since revoking goes by it.
    #[schema(value_type = DeviceName)]
    pub name: String,
}

/// A new app password, with its secret: shown this once, the server keeps only a hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewAppPassword {
    pub name: String,
    /// The secret, given as the password with the account's user name
    /// (`Authorization: Basic`); dashes and case do not matter.
    pub password: String,
    /// Unix ms.
    pub created_at: i64,
}

/// An app password as listed (its secret is never shown again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppPasswordInfo {
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// When a request last signed in with it (Unix ms, known to a minute); absent
    /// when none has.
    #[serde(default)]
    pub last_used_at: Option<i64>,
}

/// `GET /api/v1/account/app-passwords`: the caller's app passwords, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppPasswordListResponse {
    pub app_passwords: Vec<AppPasswordInfo>,
}

/// `POST /api/v1/admin/users/{name}/password`: an administrator sets a user's password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminSetPasswordRequest {
    pub password: String,
}

/// `POST /api/v1/admin/users`: an administrator adds an account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminUserCreateRequest {
    /// 1 to 64 characters without `/`, `:` or control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^/:\x00-\x1f\x7f-\x9f]+$"
    )]
    pub name: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    /// Bytes the account may store; none for no limit.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub quota_bytes: Option<i64>,
    #[serde(default)]
    pub is_admin: bool,
}

/// `PUT /api/v1/admin/users/{name}/quota`: an administrator sets an account's quota.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminQuotaRequest {
    /// Bytes the account may store; null for no limit.
    #[schema(minimum = 0)]
    pub quota_bytes: Option<i64>,
}

/// What an integrity check (`cairn admin fsck`) found: what `--json` prints, and the
/// last run as administrators see it (`GET /api/v1/admin/fsck`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FsckReportInfo {
    /// Nothing at all is wrong.
    pub clean: bool,
    /// When the check finished, Unix ms.
    pub finished_at: i64,
    /// Referenced blocks read and verified (or found missing).
    pub blocks_checked: u64,
    /// Bytes of the blocks that verified.
    pub bytes_verified: u64,
    pub missing_blocks: Vec<String>,
    pub corrupt_blocks: Vec<String>,
    /// Whether the run moved corrupt blocks to quarantine.
    pub quarantine: bool,
    pub quarantined_blocks: Vec<String>,
    pub size_mismatches: Vec<FsckSizeMismatch>,
    /// Broken metadata invariants, described.
    pub inconsistencies: Vec<String>,
    /// Every file version naming a missing or corrupt block.
    pub damaged_files: Vec<FsckDamagedFile>,
}

/// A block whose recorded size differs from its content's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FsckSizeMismatch {
    pub hash: String,
    pub recorded: i64,
    pub actual: u64,
}

/// A file version that names a damaged block.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FsckDamagedFile {
    /// The namespace holding it.
    pub namespace: i64,
    /// Who owns that namespace.
    pub user: String,
    pub path: String,
    pub version: String,
    /// Whether it is the file's current content.
    pub is_current: bool,
    pub in_trash: bool,
    /// Its damaged blocks.
    pub blocks: Vec<String>,
}

/// `GET /api/v1/admin/fsck`: the newest integrity check, if one ever ran.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminFsckResponse {
    #[serde(default)]
    pub last: Option<FsckReportInfo>,
}

/// An account as an administrator sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminUserInfo {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    #[serde(default)]
    pub quota_bytes: Option<i64>,
    /// Bytes charged to the quota: the current versions of the live files in the
    /// folders the user owns.
    pub usage_bytes: i64,
    /// Disabled accounts cannot log in, and their tokens and links are refused.
    pub disabled: bool,
    /// When it was disabled, Unix ms.
    #[serde(default)]
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

/// `GET /api/v1/admin/users`: every account, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminUserListResponse {
    pub users: Vec<AdminUserInfo>,
}

/// A shared folder whose owner was deleted and that another member owns now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferredShare {
    /// The folder's name in the deleted owner's files.
    pub folder: String,
    /// Its new owner: the editor who was added to it first.
    pub new_owner: String,
}

/// `DELETE /api/v1/admin/users/{name}`: what went with the account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserDeleteResponse {
    pub name: String,
    /// Files deleted (live and in the trash) from its home and the shared folders that
    /// went with it; their blocks are freed by garbage collection.
    pub files_deleted: i64,
    pub bytes_deleted: i64,
    /// Shared folders it owned that passed to their first editor.
    pub shares_transferred: Vec<TransferredShare>,
    /// Shared folders it owned without an editor: deleted, for their viewers too.
    pub shares_deleted: Vec<String>,
    /// Shared folders of others it left.
    pub memberships_removed: u64,
    pub links_revoked: u64,
    /// Tokens (signed-in devices and sessions) and app passwords revoked.
    pub sessions_revoked: u64,
}

#[cfg(test)]
mod tests {
    use super::Notification;

    fn advanced(ns: i64, seq: i64) -> Notification {
        Notification::Advanced {
            ns,
            seq,
            cursor: format!("v1.{ns}-{seq}"),
        }
    }

    #[test]
    fn a_notification_is_read_by_a_cursor_at_or_past_its_position() {
        let check = |n: Notification, cursor: &str, expect: bool| {
            assert_eq!(n.is_read_by(cursor), expect, "{n:?} read by {cursor:?}");
        };
        check(advanced(7, 42), "v1.7-42", true);
        check(advanced(7, 42), "v1.7-43", true);
        check(advanced(7, 42), "v1.7-41", false);
        // Several namespaces: the home and shared folders.
        check(advanced(9, 3), "v1.7-42,9-3", true);
        check(advanced(9, 4), "v1.7-42,9-3", false);
        // A namespace the cursor does not name yet (a folder shared since).
        check(advanced(11, 1), "v1.7-42,9-3", false);
        // Text this client cannot read: read the delta rather than guess.
        check(advanced(7, 42), "v2.7-42", false);
        check(advanced(7, 42), "", false);
        check(advanced(7, 42), "v1.7-x", false);
    }
}
