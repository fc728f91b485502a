//! [`Client`]: one method per endpoint, retries, and error decoding.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_core::BlockHash;
use cairn_proto::block_batch::encode_frame;
use cairn_proto::{
    AccountInfo, BlockBatchResponse, BlockCheckRequest, BlockCheckResponse, BlockUploadResponse,
    CommitBatchRequest, CommitBatchResponse, CommitRequest, CommitResponse, CopyRequest,
    CursorResponse, DeleteRequest, DeltaResponse, DeviceInfo, DeviceRequest, EntryInfo, ErrorBody,
    FileBlocksResponse, ListResponse, LoginRequest, LoginResponse, MoveRequest, PathRequest,
    RestoreRequest, ServerInfo, ShareInfo, ShareListResponse, ShareRemoveRequest, ShareRequest,
    TrashItem, TrashListResponse, TrashPurgeRequest, TrashPurgeResponse, TrashRestoreRequest,
    TrashRestoreResponse, VersionsResponse, MAX_BLOCK_BATCH_BODY, MAX_BLOCK_BATCH_FRAMES,
    MAX_CHECK_HASHES,
};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ClientError, RetryPolicy};

/// How many times a retryable request is sent in all.
const MAX_ATTEMPTS: u32 = 4;

/// A connection to one Cairn server as one user (or anonymously, before login).
///
/// Cheap to clone: clones share one connection pool and the cached [`ServerInfo`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The base URL without a trailing '/', such as `https://files.example.org`.
    base: String,
    token: Option<String>,
    info: tokio::sync::OnceCell<ServerInfo>,
    /// What an `https://` server is checked against (see `trust.rs`); `None` for
    /// plain HTTP.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token: debug output ends up in logs.
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("authenticated", &self.inner.token.is_some())
            .finish()
    }
}

impl Client {
    /// A client for the server at `base_url` (such as `http://127.0.0.1:8080`), sending
    /// `token` as a bearer token when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::trusting(base_url, token, None)
    }

    /// [`Client::new`], trusting the CA certificates in the PEM file `ca` besides the
    /// built-in and the system's roots, for a server whose certificate a private CA
    /// signed.
    pub fn trusting(
        base_url: &str,
        token: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let base = normalize_base_url(base_url)?;
        let tls = match base.starts_with("https://") {
            true => Some(crate::trust::tls_config(ca)?),
            false => None,
        };
        let mut http = reqwest::Client::builder();
        if let Some(tls) = &tls {
            http = http.use_preconfigured_tls(rustls::ClientConfig::clone(tls));
        }
        let http = http
            .user_agent(concat!("cairn-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            // A server that accepts a connection and then goes silent must not hang a
            // command forever. The limit is per read, so long transfers that keep
            // moving are unaffected.
            .read_timeout(Duration::from_secs(120))
            .tcp_keepalive(Duration::from_secs(30))
            .tcp_nodelay(true)
            // The server closes a connection idle for its header read timeout (30 s by
            // default); dropping ours first keeps a request from being sent into a
            // connection the server is closing at that moment.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token,
                info: tokio::sync::OnceCell::new(),
                tls,
            }),
        })
    }

    /// The same server and connection pool, authenticated with `token`.
    pub fn with_token(&self, token: String) -> Self {
        Client {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: self.inner.base.clone(),
                token: Some(token),
                info: self.inner.info.clone(),
                tls: self.inner.tls.clone(),
            }),
        }
    }

    /// The server's base URL, without a trailing '/'.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The TLS configuration of an `https://` server's connections.
    pub(crate) fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.inner.tls.clone()
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }

    // ---- auth and account -------------------------------------------------------------

    /// `GET /api/v1/info`, asked once per client and then remembered.
    pub async fn server_info(&self) -> Result<ServerInfo, ClientError> {
        self.inner
            .info
            .get_or_try_init(|| self.get_json("info", &[]))
            .await
            .cloned()
    }

    /// `POST /api/v1/auth/login`. Not retried: a rate-limited login (429) is reported.
    pub async fn login(&self, request: &LoginRequest) -> Result<LoginResponse, ClientError> {
        self.post_json("auth/login", request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `POST /api/v1/auth/logout`: revokes this client's token.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.send(RetryPolicy::ConnectOnly, || {
            self.request(Method::POST, "auth/logout")
        })
        .await
        .map(drop)
    }

    /// `GET /api/v1/account`: the caller's account and usage.
    pub async fn account(&self) -> Result<AccountInfo, ClientError> {
        self.get_json("account", &[]).await
    }

    /// `POST /api/v1/account/password`: changes the caller's password, given the old
    /// one. This client's token keeps working; the account's other sessions are signed
    /// out. Not retried: a wrong old password counts against the login limit.
    pub async fn change_password(
        &self,
        old_password: &str,
        new_password: &str,
    ) -> Result<cairn_proto::PasswordChangeResponse, ClientError> {
        let request = cairn_proto::PasswordChangeRequest {
            old_password: old_password.to_owned(),
            new_password: new_password.to_owned(),
        };
        self.post_json("account/password", &request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `POST /api/v1/devices`: registers a device.
    pub async fn register_device(&self, name: &str) -> Result<DeviceInfo, ClientError> {
        let request = DeviceRequest {
            name: name.to_owned(),
        };
        self.post_json("devices", &request, RetryPolicy::ConnectOnly)
            .await
    }

    // ---- files and folders ------------------------------------------------------------

    /// `GET /api/v1/files/list`: one page of a folder's children.
    pub async fn list_page(
        &self,
        path: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ListResponse, ClientError> {
        let limit = limit.map(|l| l.to_string());
        let mut query = vec![("path", path)];
        if let Some(after) = after {
            query.push(("after", after));
        }
        if let Some(limit) = &limit {
            query.push(("limit", limit));
        }
        self.get_json("files/list", &query).await
    }

    /// All children of a folder, following the cursor page by page.
    pub async fn list(&self, path: &str) -> Result<Vec<EntryInfo>, ClientError> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list_page(path, cursor.as_deref(), None).await?;
            entries.extend(page.entries);
            match page.cursor {
                // A server that hands back the same cursor would keep us here forever.
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                _ => return Ok(entries),
            }
        }
    }

    /// `GET /api/v1/files/search`: entries of the caller's tree (home and shared
    /// folders) whose name contains `text`, best first; at most `limit` of them (the
    /// server's default page when `None`), and whether more matched.
    pub async fn search(
        &self,
        text: &str,
        limit: Option<u32>,
    ) -> Result<cairn_proto::SearchResponse, ClientError> {
        let limit = limit.map(|l| l.to_string());
        let mut query = vec![("q", text)];
        if let Some(limit) = &limit {
            query.push(("limit", limit));
        }
        self.get_json("files/search", &query).await
    }

    /// `GET /api/v1/files/stat`.
    pub async fn stat(&self, path: &str) -> Result<EntryInfo, ClientError> {
        self.get_json("files/stat", &[("path", path)]).await
    }

    /// `GET /api/v1/files/space`: the room for writing at `path`, in the quota of the
    /// account a file there is charged to (a shared folder's owner, not the caller).
    pub async fn space(&self, path: &str) -> Result<cairn_proto::SpaceInfo, ClientError> {
        self.get_json("files/space", &[("path", path)]).await
    }

    /// Like [`Client::stat`], with "does not exist" as `None` instead of an error.
    pub async fn try_stat(&self, path: &str) -> Result<Option<EntryInfo>, ClientError> {
        match self.stat(path).await {
            Ok(entry) => Ok(Some(entry)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `POST /api/v1/files/mkdir`.
    pub async fn mkdir(&self, path: &str) -> Result<EntryInfo, ClientError> {
        let request = PathRequest {
            path: path.to_owned(),
        };
        self.post_json("files/mkdir", &request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `POST /api/v1/files/move`: moves or renames a file or folder.
    pub async fn move_entry(&self, from: &str, to: &str) -> Result<EntryInfo, ClientError> {
        self.move_entry_at(from, to, None).await
    }

    /// `POST /api/v1/files/move` with a precondition: with `base_rev`, the move happens
    /// only if `from` is a file at that revision; otherwise a 409 `conflict` carrying
    /// the current entry, and nothing changes.
    pub async fn move_entry_at(
        &self,
        from: &str,
        to: &str,
        base_rev: Option<&str>,
    ) -> Result<EntryInfo, ClientError> {
        let request = MoveRequest {
            from: from.to_owned(),
            to: to.to_owned(),
            base_rev: base_rev.map(str::to_owned),
        };
        self.post_json("files/move", &request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `POST /api/v1/files/copy`: copies a file or folder (no content is transferred).
    pub async fn copy_entry(&self, from: &str, to: &str) -> Result<EntryInfo, ClientError> {
        let request = CopyRequest {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.post_json("files/copy", &request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `POST /api/v1/files/delete`: moves a file or folder to the trash.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.delete_at(path, None).await
    }

    /// `POST /api/v1/files/delete` with a precondition: with `base_rev`, the delete
    /// happens only if the entry is a file at that revision; otherwise a 409
    /// `conflict` carrying the current entry, and nothing changes.
    pub async fn delete_at(&self, path: &str, base_rev: Option<&str>) -> Result<(), ClientError> {
        let body = to_json_body(&DeleteRequest {
            path: path.to_owned(),
            base_rev: base_rev.map(str::to_owned),
        });
        self.send(RetryPolicy::ConnectOnly, || {
            self.request(Method::POST, "files/delete")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    // ---- blocks and commits -----------------------------------------------------------

    /// `POST /api/v1/blocks/check`: which of `hashes` the caller must upload. Any number
    /// of hashes; they are sent in calls of at most [`MAX_CHECK_HASHES`].
    pub async fn check_blocks(&self, hashes: &[String]) -> Result<Vec<String>, ClientError> {
        let mut missing = Vec::new();
        for batch in hashes.chunks(MAX_CHECK_HASHES) {
            let request = BlockCheckRequest {
                hashes: batch.to_vec(),
            };
            let response: BlockCheckResponse = self
                .post_json("blocks/check", &request, RetryPolicy::Idempotent)
                .await?;
            missing.extend(response.missing);
        }
        Ok(missing)
    }

    /// `PUT /api/v1/blocks/{hash}`: uploads one block. The server verifies the hash.
    pub async fn put_block(
        &self,
        hash: &BlockHash,
        data: Bytes,
    ) -> Result<BlockUploadResponse, ClientError> {
        self.put_block_for(hash, data, None).await
    }

    /// [`Client::put_block`] for the pending upload `pending` (see
    /// [`Client::announce_upload`]), whose readers the server then tells.
    pub async fn put_block_for(
        &self,
        hash: &BlockHash,
        data: Bytes,
        pending: Option<&str>,
    ) -> Result<BlockUploadResponse, ClientError> {
        let path = format!("blocks/{}", hash.to_hex());
        let response = self
            .send(RetryPolicy::Idempotent, || {
                tagged(self.request(Method::PUT, &path), pending)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        decode_json(response, "PUT blocks/{hash}").await
    }

    /// `POST /api/v1/blocks/batch`: uploads many blocks in one request, framed as the
    /// server expects ([`cairn_proto::block_batch`]). The server verifies every hash and
    /// stores nothing if one does not match. At most [`MAX_BLOCK_BATCH_FRAMES`] blocks;
    /// keep the total under [`MAX_BLOCK_BATCH_BODY`].
    pub async fn put_blocks_batch(
        &self,
        blocks: &[(BlockHash, Bytes)],
    ) -> Result<BlockBatchResponse, ClientError> {
        if blocks.len() > MAX_BLOCK_BATCH_FRAMES {
            return Err(ClientError::Protocol(format!(
                "a batch of {} blocks; the limit is {MAX_BLOCK_BATCH_FRAMES}",
                blocks.len()
            )));
        }
        let len: usize = blocks
            .iter()
            .map(|(_, data)| cairn_proto::block_batch::frame_len(data.len()))
            .sum();
        // One block always fits (the server's limit makes room for a maximal one).
        if len > MAX_BLOCK_BATCH_BODY && blocks.len() > 1 {
            return Err(ClientError::Protocol(format!(
                "a batch of {len} bytes; the limit is {MAX_BLOCK_BATCH_BODY}"
            )));
        }
        let mut body = Vec::with_capacity(len);
        for (hash, data) in blocks {
            encode_frame(&hash.0, data, &mut body)
                .map_err(|err| ClientError::Protocol(err.to_string()))?;
        }
        let body = Bytes::from(body);
        let response = self
            .send(RetryPolicy::Idempotent, || {
                self.request(Method::POST, "blocks/batch")
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        decode_json(response, "POST blocks/batch").await
    }

    /// `POST /api/v1/files/commit_batch`: up to
    /// [`MAX_BATCH_ITEMS`](cairn_proto::MAX_BATCH_ITEMS) commits and mkdirs in one
    /// transaction, a result per item. Not retried blindly, like `commit`.
    pub async fn commit_batch(
        &self,
        request: &CommitBatchRequest,
    ) -> Result<CommitBatchResponse, ClientError> {
        self.post_json("files/commit_batch", request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `GET /api/v1/blocks/{hash}`: downloads one block and checks it against its hash.
    /// A block that does not match is retried, then reported as
    /// [`ClientError::Corrupt`]; it is never returned.
    pub async fn get_block(&self, hash: &BlockHash) -> Result<Bytes, ClientError> {
        self.get_verified(&format!("blocks/{}", hash.to_hex()), *hash)
            .await
    }

    /// A GET of a block's bytes at `path`, checked against `hash` (retried when they
    /// do not match, then [`ClientError::Corrupt`]).
    pub(crate) async fn get_verified(
        &self,
        path: &str,
        hash: BlockHash,
    ) -> Result<Bytes, ClientError> {
        with_retries(RetryPolicy::Idempotent, || async {
            let response = self.send_once(self.request(Method::GET, path)).await?;
            let data = response.bytes().await?;
            // Hashing 8 MiB takes a few milliseconds: keep it off the async threads.
            let (data, actual) = tokio::task::spawn_blocking(move || {
                let actual = BlockHash::of(&data);
                (data, actual)
            })
            .await
            .map_err(|err| ClientError::Protocol(format!("hashing task failed: {err}")))?;
            if actual != hash {
                return Err(ClientError::Corrupt {
                    hash: hash.to_hex(),
                });
            }
            Ok(data)
        })
        .await
    }

    /// `POST /api/v1/files/commit`: makes a path the file made of already uploaded
    /// blocks. Not retried blindly: a commit whose answer was lost may have happened.
    pub async fn commit(&self, request: &CommitRequest) -> Result<CommitResponse, ClientError> {
        self.post_json("files/commit", request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `GET /api/v1/files/blocks`: a file's entry and block list.
    pub async fn file_blocks(&self, path: &str) -> Result<FileBlocksResponse, ClientError> {
        self.get_json("files/blocks", &[("path", path)]).await
    }

    /// `GET /api/v1/delta`: the changes after `cursor` (from the journal's start without
    /// one), oldest first, at most `limit` (the server's default without one). A 410
    /// `cursor_reset` error means: list the tree again and take a new cursor.
    pub async fn delta(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<DeltaResponse, ClientError> {
        let limit = limit.map(|l| l.to_string());
        let mut query = Vec::new();
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor));
        }
        if let Some(limit) = limit.as_deref() {
            query.push(("limit", limit));
        }
        self.get_json("delta", &query).await
    }

    /// `GET /api/v1/delta/latest`: a cursor at the newest change.
    pub async fn latest_cursor(&self) -> Result<String, ClientError> {
        let response: CursorResponse = self.get_json("delta/latest", &[]).await?;
        Ok(response.cursor)
    }

    /// `GET /api/v1/files/versions`: a file's versions, newest first.
    pub async fn versions(&self, path: &str) -> Result<VersionsResponse, ClientError> {
        self.get_json("files/versions", &[("path", path)]).await
    }

    /// `POST /api/v1/files/restore`: makes `version` the file's current content again,
    /// as a new version.
    pub async fn restore(&self, path: &str, version: &str) -> Result<CommitResponse, ClientError> {
        let request = RestoreRequest {
            path: path.to_owned(),
            version: version.to_owned(),
        };
        self.post_json("files/restore", &request, RetryPolicy::ConnectOnly)
            .await
    }

    // ---- shared folders -------------------------------------------------------------

    /// `POST /api/v1/shares`: shares the top-level folder `path` with `with` as `role`
    /// (`editor` or `viewer`), or changes that member's role.
    pub async fn share_add(
        &self,
        path: &str,
        with: &str,
        role: &str,
    ) -> Result<ShareInfo, ClientError> {
        let request = ShareRequest {
            path: path.to_owned(),
            with: with.to_owned(),
            role: role.to_owned(),
        };
        self.post_json("shares", &request, RetryPolicy::Idempotent)
            .await
    }

    /// `GET /api/v1/shares`: the shared folders in the caller's tree, with their members.
    pub async fn share_list(&self) -> Result<Vec<ShareInfo>, ClientError> {
        let list: ShareListResponse = self.get_json("shares", &[]).await?;
        Ok(list.shares)
    }

    /// `POST /api/v1/shares/remove`: removes `with` from the shared folder at `path`
    /// (leaving it, when `with` is the caller).
    pub async fn share_remove(&self, path: &str, with: &str) -> Result<(), ClientError> {
        let request = ShareRemoveRequest {
            path: path.to_owned(),
            with: with.to_owned(),
        };
        let body = to_json_body(&request);
        self.send(RetryPolicy::ConnectOnly, || {
            self.request(Method::POST, "shares/remove")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    // ---- trash ----------------------------------------------------------------------

    /// `GET /api/v1/trash`: one page of the caller's trash, newest first, starting
    /// after the item `after`.
    pub async fn trash_list_page(
        &self,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<TrashListResponse, ClientError> {
        let after = after.map(|a| a.to_string());
        let limit = limit.map(|l| l.to_string());
        let mut query = Vec::new();
        if let Some(after) = &after {
            query.push(("after", after.as_str()));
        }
        if let Some(limit) = &limit {
            query.push(("limit", limit.as_str()));
        }
        self.get_json("trash", &query).await
    }

    /// The whole trash, newest first, following the pages.
    pub async fn trash_list(&self) -> Result<Vec<TrashItem>, ClientError> {
        let mut items = Vec::new();
        let mut after: Option<i64> = None;
        loop {
            let page = self.trash_list_page(after, None).await?;
            items.extend(page.items);
            match page.next_after {
                // Ids only go down page by page; a server that did otherwise would keep
                // us here forever.
                Some(next) if after.is_none_or(|a| next < a) => after = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// `POST /api/v1/trash/restore`: brings back the item `request` names (by id, or
    /// the newest deleted from a path). Not retried once sent: a repeat would fail.
    pub async fn trash_restore(
        &self,
        request: &TrashRestoreRequest,
    ) -> Result<TrashRestoreResponse, ClientError> {
        self.post_json("trash/restore", request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `POST /api/v1/trash/purge`: removes for good the item `request` names, every
    /// item deleted from a path, or (with `all`) the whole trash.
    pub async fn trash_purge(
        &self,
        request: &TrashPurgeRequest,
    ) -> Result<TrashPurgeResponse, ClientError> {
        self.post_json("trash/purge", request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `PUT /api/v1/files/content`: uploads a whole body that the server chunks itself.
    /// Simpler than [`Client::upload_file`] but sends every byte; use it for streams
    /// (standard input) that cannot be read twice. Not retried.
    pub async fn put_content(
        &self,
        path: &str,
        body: reqwest::Body,
        base_rev: Option<&str>,
        autorename: bool,
    ) -> Result<CommitResponse, ClientError> {
        let mut query = vec![("path", path)];
        if let Some(rev) = base_rev {
            query.push(("base_rev", rev));
        }
        if autorename {
            query.push(("autorename", "true"));
        }
        let request = self
            .request(Method::PUT, "files/content")
            .query(&query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let response = self.send_once(request).await?;
        decode_json(response, "PUT files/content").await
    }

    /// `GET /api/v1/files/content`: the response whose body streams the file's bytes.
    pub async fn get_content(&self, path: &str) -> Result<Response, ClientError> {
        self.send(RetryPolicy::Idempotent, || {
            self.request(Method::GET, "files/content")
                .query(&[("path", path)])
        })
        .await
    }

    // ---- plumbing ----------------------------------------------------------------------

    /// A request to `/api/v1/{path}` with the bearer token.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!(
            "{}/api/{}/{}",
            self.inner.base,
            cairn_proto::API_VERSION,
            path
        );
        let builder = self.inner.http.request(method, url);
        match &self.inner.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let endpoint = format!("GET {path}");
        let response = self
            .send(RetryPolicy::Idempotent, || {
                self.request(Method::GET, path).query(query)
            })
            .await?;
        decode_json(response, &endpoint).await
    }

    pub(crate) async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        policy: RetryPolicy,
    ) -> Result<T, ClientError> {
        let endpoint = format!("POST {path}");
        let body = to_json_body(body);
        let response = self
            .send(policy, || {
                self.request(Method::POST, path)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        decode_json(response, &endpoint).await
    }

    /// A POST with a JSON body whose answer is bytes, not JSON; read-only, so retried.
    pub(crate) async fn post_for_bytes<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Bytes, ClientError> {
        let body = to_json_body(body);
        with_retries(RetryPolicy::Idempotent, || async {
            let request = self
                .request(Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            Ok(self.send_once(request).await?.bytes().await?)
        })
        .await
    }

    /// Sends the request `build` makes, again as `policy` allows, and turns an error
    /// status into [`ClientError::Api`].
    async fn send(
        &self,
        policy: RetryPolicy,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        with_retries(policy, || self.send_once(build())).await
    }

    pub(crate) async fn send_once(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(api_error(response).await)
        }
    }
}

/// Runs `op` until it succeeds, fails for good, or has been tried [`MAX_ATTEMPTS`] times,
/// waiting a little longer before each new try.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    mut op: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) if attempt < MAX_ATTEMPTS && err.is_retryable(policy) => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// 200 ms, 800 ms, 3.2 s, with up to a quarter of jitter so that parallel transfers that
/// failed together do not come back together.
fn backoff(attempt: u32) -> Duration {
    let base = 200u64 * 4u64.pow(attempt.saturating_sub(1).min(4));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(base + nanos % (base / 4 + 1))
}

fn to_json_body<B: Serialize>(body: &B) -> Bytes {
    // Serializing the API's own plain structs cannot fail.
    Bytes::from(serde_json::to_vec(body).expect("wire types serialize"))
}

async fn decode_json<T: DeserializeOwned>(
    response: Response,
    endpoint: &str,
) -> Result<T, ClientError> {
    let body = response.bytes().await?;
    serde_json::from_slice(&body).map_err(|error| ClientError::Decode {
        endpoint: endpoint.to_owned(),
        error,
    })
}

/// Turns an error response into [`ClientError::Api`], also when its body is not the
/// API's error shape (a reverse proxy's HTML page, say).
pub(crate) async fn api_error(response: Response) -> ClientError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    api_error_from(status, &body)
}

/// [`api_error`] for a status and body already read.
pub(crate) fn api_error_from(status: reqwest::StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            current: error.current,
            missing: error.missing_blocks.unwrap_or_default(),
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(200)
                .collect();
            let reason = status.canonical_reason().unwrap_or("error");
            ClientError::Api {
                status: status.as_u16(),
                code: format!("http_{}", status.as_u16()),
                message: if text.is_empty() || text.starts_with('<') {
                    format!("HTTP {} {reason}", status.as_u16())
                } else {
                    format!("HTTP {} {reason}: {text}", status.as_u16())
                },
                current: None,
                missing: Vec::new(),
            }
        }
    }
}

/// Checks a base URL and drops trailing slashes and any `/api/v1` suffix a user pasted.
fn normalize_base_url(input: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: input.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = input.trim();
    // Without "://", "host:8080" would parse as the scheme "host" and "127.0.0.1:8080"
    // not at all ("relative URL without a base"): say what is missing instead.
    if !trimmed.contains("://") {
        return Err(invalid(
            "it has no scheme: start it with https:// (or http:// for a server without TLS)",
        ));
    }
    let url = reqwest::Url::parse(trimmed).map_err(|err| invalid(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("it must start with http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(invalid("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    let mut base = url.as_str().trim_end_matches('/').to_owned();
    let api_suffix = format!("/api/{}", cairn_proto::API_VERSION);
    if let Some(stripped) = base.strip_suffix(&api_suffix) {
        base = stripped.trim_end_matches('/').to_owned();
    }
    Ok(base)
}

/// `request` tied to the pending upload `pending`, if any.
pub(crate) fn tagged(request: RequestBuilder, pending: Option<&str>) -> RequestBuilder {
    match pending {
        Some(id) => request.header(cairn_proto::PENDING_UPLOAD_HEADER, id),
        None => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let ok = |input: &str, want: &str| {
            assert_eq!(normalize_base_url(input).unwrap(), want, "for {input:?}");
        };
        ok("http://127.0.0.1:8080", "http://127.0.0.1:8080");
        ok("http://127.0.0.1:8080/", "http://127.0.0.1:8080");
        ok("https://example.org/cairn/", "https://example.org/cairn");
        ok("https://example.org/api/v1/", "https://example.org");
        ok(" http://h:1 ", "http://h:1");
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://h/",
            "http://h/?a=b",
            "not a url",
        ] {
            assert!(normalize_base_url(bad).is_err(), "{bad:?} accepted");
        }
        for no_scheme in ["127.0.0.1:8080", "example.com", "localhost:8080"] {
            let err = normalize_base_url(no_scheme).unwrap_err().to_string();
            assert!(err.contains("no scheme"), "{no_scheme:?}: {err}");
        }
    }

    #[test]
    fn backoff_grows() {
        assert!(backoff(1) >= Duration::from_millis(200));
        assert!(backoff(1) <= Duration::from_millis(251));
        assert!(backoff(3) >= Duration::from_millis(3200));
    }
}
