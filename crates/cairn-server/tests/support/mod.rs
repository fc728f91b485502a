//! An in-process server on a random loopback port, over SQLite or PostgreSQL.

#![allow(dead_code)]

use std::net::SocketAddr;

use cairn_server::{Application, BlockLocation, Config};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const PASSWORD: &str = "admin password for tests";

/// Which stores a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, blocks in the data directory.
    Sqlite,
    /// PostgreSQL, blocks in the data directory.
    Postgres,
    /// PostgreSQL, blocks in the test S3 server (`.ci/s3-up.sh`), as several nodes run.
    PostgresS3,
}

/// The metadata backends, with local blocks.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// Every combination: the block store's own tests (integrity, GC) run on S3 as well.
pub const WITH_S3: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::PostgresS3];

/// Runs a test body once per metadata backend, or once per backend of the list given
/// (`#[macro_use] mod support;`).
macro_rules! on_each_backend {
    ($name:ident, |$server:ident| $body:block) => {
        on_each_backend!($name, $crate::support::BACKENDS, |$server| $body);
    };
    ($name:ident, $backends:expr, |$server:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for backend in $backends {
                let $server = $crate::support::TestServer::start(backend).await;
                $body
                $server.finish().await;
            }
        }
    };
}

pub fn postgres_base_url() -> String {
    std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Creates a fresh schema so tests never see each other's rows, and returns it with a URL
/// whose connections use it.
async fn fresh_postgres_url() -> (String, String) {
    use sqlx::Connection;
    let base = postgres_base_url();
    let schema = format!("cairn_srv_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL must be reachable for the server tests (see README)");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options[search_path]={schema}");
    (schema, url)
}

/// The configuration every test server starts from, over `data`.
fn test_config(data: &std::path::Path) -> Config {
    let mut config = Config::for_data_dir(data);
    config.listen = "127.0.0.1:0".parse().unwrap();
    // Cheap password hashing keeps tests fast; production uses OWASP's minimum.
    config.argon2_memory_kib = 64;
    config.argon2_iterations = 1;
    // Small chunks make multi-block files cheap to build.
    config.chunker = cairn_core::ChunkerConfig {
        min_size: 16 << 10,
        avg_size: 64 << 10,
        max_size: 256 << 10,
    };
    // No background scrub unless a test asks: it would race tests that damage
    // blocks on purpose.
    config.maintenance.scrub_bytes_per_sec = 0;
    config
}

pub struct TestServer {
    /// The PostgreSQL schema this server uses, dropped by `finish`.
    schema: Option<String>,
    /// The configuration it runs with (its real address as `listen`), for restarts.
    config: Config,
    /// Ends the running server (see `stop`).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub state: cairn_server::AppState,
    pub token: String,
    /// The data directory (blocks under `blocks/`).
    pub data: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server after `configure` has adjusted the test configuration.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        if backend == Backend::PostgresS3 {
            let prefix = format!("server-tests/{:016x}", rand::random::<u64>());
            config.blocks = BlockLocation::S3(cairn_store::S3Config::for_tests(&prefix));
        }
        configure(&mut config);
        let mut schema = None;
        if matches!(backend, Backend::Postgres | Backend::PostgresS3) {
            let (name, url) = fresh_postgres_url().await;
            config.database_url = url;
            schema = Some(name);
        }
        let (meta, blocks) = cairn_server::open_stores(&config).await.unwrap();
        let hash = cairn_server::hash_password(&config, PASSWORD.to_owned())
            .await
            .unwrap();
        meta.create_user("admin", &hash, true, None).await.unwrap();
        meta.create_user("bob", &hash, false, None).await.unwrap();
        Self::launch(config, meta, blocks, schema, data).await
    }

    /// Starts another node of this server's deployment: its configuration (so the
    /// same metadata database and blocks, the same users and files) with a data
    /// directory and a port of its own, after `configure`. Its `finish` leaves the
    /// database to this server's.
    pub async fn start_beside(&self, configure: impl FnOnce(&mut Config)) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let mut config = self.config.clone();
        config.data_dir = data.path().to_owned();
        config.listen = "127.0.0.1:0".parse().unwrap();
        configure(&mut config);
        let (meta, blocks) = cairn_server::open_stores(&config).await.unwrap();
        Self::launch(config, meta, blocks, None, data).await
    }

    async fn launch(
        mut config: Config,
        meta: cairn_meta::MetaStore,
        blocks: cairn_store::BlockStore,
        schema: Option<String>,
        data: tempfile::TempDir,
    ) -> TestServer {
        let app = Application::with_stores(config.clone(), meta, blocks)
            .await
            .unwrap();
        let addr = app.local_addr();
        config.listen = addr;
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        let mut server = TestServer {
            schema,
            config,
            stop: Some(stop),
            running: Some(running),
            addr,
            http: reqwest::Client::new(),
            state,
            token: String::new(),
            data,
        };
        server.token = server.login("admin").await;
        server
    }

    /// Shuts the server down gracefully and waits until it has (open notification
    /// streams must not hold it up). The stores stay open for the test to use.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            tokio::time::timeout(std::time::Duration::from_secs(30), running)
                .await
                .expect("the server shuts down although notification streams are open")
                .unwrap()
                .unwrap();
        }
    }

    /// Starts the server again on the same address, data and database.
    pub async fn start_again(&mut self) {
        assert!(self.running.is_none(), "stop the server first");
        self.state.meta.close().await;
        let (meta, blocks) = cairn_server::open_stores(&self.config).await.unwrap();
        let app = Application::with_stores(self.config.clone(), meta, blocks)
            .await
            .unwrap();
        self.state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.running = Some(tokio::spawn(app.run(async move {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    /// Another node of the same deployment: a second server on its own port and data
    /// directory, over this one's metadata database and block store, as a load
    /// balancer would have several. Stop it (`stop`, then `finish`) before this one
    /// finishes, since that drops the database.
    pub async fn another_node(&self) -> TestServer {
        self.start_beside(|_| {}).await
    }

    /// Drops the test's PostgreSQL schema (a panicking test leaves it behind, named
    /// `cairn_srv_…`, for inspection).
    pub async fn finish(self) {
        if let (BlockLocation::S3(s3), Some(_)) = (&self.config.blocks, &self.schema) {
            s3.delete_everything().await;
        }
        use sqlx::Connection;
        if let Some(schema) = &self.schema {
            self.state.meta.close().await;
            let mut conn = sqlx::PgConnection::connect(&postgres_base_url())
                .await
                .unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn login(&self, user: &str) -> String {
        let (status, body) = self
            .call_as(
                None,
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"username": user, "password": PASSWORD, "device_name": "test"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// A JSON call with an optional token; returns the status and the JSON body.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        decode(resp).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(Some(&self.token), method, path, body).await
    }

    /// `POST /api/v1/files/commit` with the admin's token.
    pub async fn commit(&self, body: Value) -> (StatusCode, Value) {
        self.commit_as(&self.token, body).await
    }

    /// `POST /api/v1/files/commit` with `token`.
    pub async fn commit_as(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(
            Some(token),
            Method::POST,
            "/api/v1/files/commit",
            Some(body),
        )
        .await
    }

    pub async fn put_block_as(&self, token: &str, data: &[u8]) -> (StatusCode, Value) {
        let hash = blake3::hash(data).to_hex().to_string();
        self.put_block_raw(token, &hash, data.to_vec()).await
    }

    pub async fn put_block_raw(
        &self,
        token: &str,
        hash: &str,
        data: Vec<u8>,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .put(self.url(&format!("/api/v1/blocks/{hash}")))
            .bearer_auth(token)
            .body(data)
            .send()
            .await
            .unwrap();
        decode(resp).await
    }

    /// Journal head of the admin's home namespace.
    pub async fn journal_head(&self) -> i64 {
        let user = self
            .state
            .meta
            .user_by_name("admin")
            .await
            .unwrap()
            .unwrap();
        self.state.meta.journal_head(user.home_ns).await.unwrap().0
    }

    pub async fn stored_blocks(&self) -> usize {
        self.state.blocks.store().list().await.unwrap().len()
    }
}

pub async fn decode(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let bytes = resp.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else if is_json {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    if status.is_client_error() || status.is_server_error() {
        assert!(
            is_json,
            "error {status} without the JSON error shape: {value}"
        );
        assert!(value["error"]["message"].is_string(), "{value}");
        assert!(value["error"]["code"].is_string(), "{value}");
    }
    (status, value)
}

/// Uploads `data` as one block and commits it at `path` (a new file) with `token`:
/// the status and the answer.
pub async fn try_put_file(
    s: &TestServer,
    token: &str,
    path: &str,
    data: &[u8],
) -> (StatusCode, Value) {
    let (status, body) = s.put_block_as(token, data).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.commit_as(token, json!({"path": path, "blocks": [block_ref(data)]}))
        .await
}

/// [`try_put_file`], which must succeed; the commit's answer.
pub async fn put_file_as(s: &TestServer, token: &str, path: &str, data: &[u8]) -> Value {
    let (status, body) = try_put_file(s, token, path, data).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The file holding a stored block (the local backend's layout).
pub fn block_file(data: &std::path::Path, hex: &str) -> std::path::PathBuf {
    data.join("blocks")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}

/// Where a block stored alone (not in a pack) is, wherever the server keeps blocks.
enum StoredBlock {
    File(std::path::PathBuf),
    Object(
        std::sync::Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
    ),
}

impl TestServer {
    fn stored(&self, dir: &str, hex: &str) -> StoredBlock {
        match &self.config.blocks {
            BlockLocation::Folder(root) if dir == "blocks" => {
                StoredBlock::File(block_file(root, hex))
            }
            BlockLocation::Folder(root) => StoredBlock::File(root.join(dir).join(hex)),
            BlockLocation::S3(s3) => {
                StoredBlock::Object(s3.raw_client(), format!("{}/{dir}/{hex}", s3.prefix).into())
            }
        }
    }

    /// Flips one bit of the last byte of a block stored alone.
    pub async fn flip_last_byte(&self, hex: &str) {
        match self.stored("blocks", hex) {
            StoredBlock::File(path) => {
                let mut bytes = std::fs::read(&path).unwrap();
                *bytes.last_mut().unwrap() ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
            }
            StoredBlock::Object(store, key) => {
                let got = store.get(&key).await.unwrap().bytes().await.unwrap();
                let mut bytes = got.to_vec();
                *bytes.last_mut().unwrap() ^= 0x01;
                store.put(&key, bytes.into()).await.unwrap();
            }
        }
    }

    /// Removes a block stored alone, behind the server's back.
    pub async fn remove_block(&self, hex: &str) {
        match self.stored("blocks", hex) {
            StoredBlock::File(path) => std::fs::remove_file(path).unwrap(),
            StoredBlock::Object(store, key) => store.delete(&key).await.unwrap(),
        }
    }

    /// Whether a block is stored alone (`dir` "blocks") or in quarantine ("quarantine").
    pub async fn has_stored(&self, dir: &str, hex: &str) -> bool {
        match self.stored(dir, hex) {
            StoredBlock::File(path) => path.is_file(),
            StoredBlock::Object(store, key) => store.head(&key).await.is_ok(),
        }
    }
}

/// The sum of a metric's samples on `/metrics`.
pub async fn metric(server: &TestServer, name: &str) -> f64 {
    let body = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A commit request's entry for a block with these bytes.
pub fn block_ref(data: &[u8]) -> Value {
    json!({"hash": hex_hash(data), "size": data.len()})
}

pub fn hex_hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// A TCP proxy on loopback that a test can cut (every connection through it closed,
/// new ones refused) and restore: a service (NATS, S3) going away and coming back.
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bumped by every cut: pipes of an older generation end.
    cuts: tokio::sync::watch::Sender<u64>,
}

impl CutProxy {
    pub async fn start(upstream: String) -> CutProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let (accepting, watching) = (open.clone(), cuts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = watching.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        CutProxy { addr, open, cuts }
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Deterministic bytes that the chunker cuts at varied places.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
