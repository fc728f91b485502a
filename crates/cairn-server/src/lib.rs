//! Cairn's HTTP server: axum routers per area, authentication, metrics.
//!
//! [`Application::build`] opens the stores, binds the listener (port 0 works, for tests)
//! and exposes the real address; [`Application::run`] serves until shutdown.

mod access;
pub mod admin;
mod app_passwords;
pub mod auth;
pub mod block_manager;
mod blocks;
pub mod config;
mod convert;
mod cookies;
mod dav;
mod delta;
mod error;
mod extract;
mod files;
mod limits;
mod links;
pub mod maintenance;
pub mod metrics;
pub mod notify;
mod openapi;
mod pending;
pub mod routes;
mod serve;
mod shares;
mod state;
pub mod thumbnails;
mod tls;
mod trash;
pub mod tus;
pub mod web;
mod zip_stream;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_meta::MetaStore;
use cairn_store::BlockStore;
use routes::Routes;
use tower_http::trace::TraceLayer;

pub use block_manager::BlockManager;
pub use config::{BlockLocation, Config, Maintenance};
pub use error::ApiError;
pub use routes::route_paths;
pub use state::AppState;

/// A built server: stores open, listener bound, not yet serving.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    state: AppState,
    /// Set when the server speaks HTTPS (`Config::tls`).
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("listener", &self.listener)
            .field("https", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// What the first start of an empty server did about the `admin` account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users existed already.
    None,
    /// `admin` was created with this generated password, to be shown once.
    AdminCreated { password: Option<String> },
}

/// Opens the metadata and block stores a configuration names.
pub async fn open_stores(config: &Config) -> anyhow::Result<(MetaStore, BlockStore)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let meta = MetaStore::connect(&config.database_url)
        .await
        .context("cannot open the metadata database")?;
    let blocks = open_blocks(config).await?;
    Ok((meta, blocks))
}

/// Opens the block store a configuration names.
pub async fn open_blocks(config: &Config) -> anyhow::Result<BlockStore> {
    let opened = match &config.blocks {
        BlockLocation::Folder(dir) => BlockStore::local(dir),
        BlockLocation::S3(s3) => BlockStore::s3(s3).await,
    };
    opened.with_context(|| match &config.blocks {
        BlockLocation::Folder(dir) => format!("cannot open the block store at {}", dir.display()),
        BlockLocation::S3(s3) => format!(
            "cannot open the block store at {} (check blocks_url, the endpoint, the keys and \
             that the bucket exists)",
            s3.url()
        ),
    })
}

/// Refuses a data directory that a server has not made, so that `cairn admin`, run in
/// the wrong folder, does not quietly start a new, empty server there (whose users
/// could never log in to the running one). The data directory must exist; with the
/// metadata in SQLite its database file must too; with it elsewhere (PostgreSQL) the
/// block store must, since the data directory is still where the blocks live.
pub fn check_existing_data_dir(config: &Config) -> anyhow::Result<()> {
    const HINT: &str = "pass --data-dir or set CAIRN_DATA_DIR to the server's; \
                        `cairn serve` creates one";
    let dir = &config.data_dir;
    if !dir.is_dir() {
        anyhow::bail!("no Cairn data directory at {}; {HINT}", dir.display());
    }
    match config.sqlite_path() {
        Some(db) if !db.is_file() => anyhow::bail!(
            "{} holds no Cairn database ({} is missing); {HINT}",
            dir.display(),
            db.display()
        ),
        Some(_) => {}
        None => {
            if let BlockLocation::Folder(blocks) = &config.blocks {
                if !BlockStore::local_exists(blocks) {
                    anyhow::bail!(
                        "{} holds no Cairn block store (the metadata is in {}, the blocks \
                         here); {HINT}",
                        blocks.display(),
                        redact_url(&config.database_url)
                    );
                }
            }
        }
    }
    Ok(())
}

/// A database URL without its query and without its password, for messages.
fn redact_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) {
        if let Some((user, _password)) = url[scheme + 3..at].split_once(':') {
            return format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]);
        }
    }
    url.to_owned()
}

/// The current time in Unix milliseconds, as the metadata store keeps time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Checks that the configured TLS certificate and key (if any) can be served, as
/// [`Application::build`] will: for a start that should fail before it changes anything.
pub fn check_tls(config: &Config) -> anyhow::Result<()> {
    config.tls.as_ref().map(tls::acceptor).transpose().map(drop)
}

/// Hashes a password with the configured cost, off the async threads.
pub async fn hash_password(config: &Config, password: String) -> anyhow::Result<String> {
    let (m, t) = (config.argon2_memory_kib, config.argon2_iterations);
    tokio::task::spawn_blocking(move || auth::hash_password(&password, m, t)).await?
}

/// On a server with no users, creates `admin` with `CAIRN_ADMIN_PASSWORD` or a generated
/// password (returned so the caller can print it once).
pub async fn bootstrap_admin(config: &Config, meta: &MetaStore) -> anyhow::Result<Bootstrap> {
    if meta.user_count().await? > 0 {
        return Ok(Bootstrap::None);
    }
    let (password, generated) = match std::env::var("CAIRN_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (auth::generate_password(), true),
    };
    let hash = hash_password(config, password.clone()).await?;
    meta.create_user("admin", &hash, true, None).await?;
    Ok(Bootstrap::AdminCreated {
        password: generated.then_some(password),
    })
}

impl Application {
    /// Opens the stores and binds `config.listen`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (meta, blocks) = open_stores(&config).await?;
        Self::with_stores(config, meta, blocks).await
    }

    /// Binds `config.listen` over stores opened by the caller.
    pub async fn with_stores(
        config: Config,
        meta: MetaStore,
        blocks: BlockStore,
    ) -> anyhow::Result<Self> {
        // Install the metrics recorder before anything can count: metrics recorded
        // before it exists are lost (once per process; later calls reuse it).
        metrics::handle();
        // Before binding: a certificate that cannot be used stops the start, not the
        // first connection.
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let dummy_password_hash = hash_password(&config, auth::generate_password()).await?;
        // The one place commits become events: the metadata store calls this after
        // every journaled write commits, whichever handler or background task made it.
        let bus = notify::open_bus(&config.events, &meta).await?;
        let notifier = notify::Notifier::new(
            bus.clone(),
            std::time::Duration::from_secs(config.notify_heartbeat_secs.max(1)),
        );
        meta.on_commit(Arc::new(move |ns, seq| bus.publish(ns, seq)));
        let link_key = links::LinkKey::shared(&meta).await?;
        let state = AppState {
            thumbnails: thumbnails::Thumbnails::new(
                &config.data_dir,
                config.thumbnail_max_source_bytes,
            ),
            blocks: BlockManager::new(meta.clone(), blocks, config.chunker),
            meta,
            config: Arc::new(config),
            dummy_password_hash,
            notify: notifier,
            link_key,
            tus_locks: tus::UploadLocks::default(),
        };
        let router = router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
            tls,
        })
    }

    /// The address actually bound (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `https` when the server serves TLS itself, else `http`.
    pub fn scheme(&self) -> &'static str {
        match self.tls {
            Some(_) => "https",
            None => "http",
        }
    }

    /// The shared state, for callers that need the stores.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, with the background tasks running alongside
    /// and stopped with the server: the scrub (unless `maintenance.scrub_bytes_per_sec`
    /// is 0) and the maintenance (version retention, trash expiry, garbage collection)
    /// every `maintenance.maintenance_interval_secs`.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let scrub = tokio::spawn(
            self.state
                .blocks
                .clone()
                .scrub(self.state.config.maintenance.scrub_bytes_per_sec),
        );
        // Stopped when it is dropped, at the end of this function.
        let _maintenance = maintenance::spawn(
            self.state.meta.clone(),
            self.state.blocks.clone(),
            self.state.thumbnails.clone(),
            self.state.config.maintenance.clone(),
        );
        // Open notification streams never end by themselves; end them when shutdown
        // begins, or the graceful shutdown would wait for them forever.
        let notifier = self.state.notify.clone();
        let shutdown = async move {
            shutdown.await;
            notifier.shut_down();
        };
        let header_read_timeout =
            std::time::Duration::from_secs(self.state.config.header_read_timeout_secs.max(1));
        serve::serve(
            self.listener,
            self.tls,
            self.router,
            header_read_timeout,
            shutdown,
        )
        .await;
        scrub.abort();
        Ok(())
    }
}

/// The whole HTTP surface, with its middleware and state.
pub fn router(state: AppState) -> Router {
    routes(&state.config)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1/openapi.json") })
        .layer(middleware::from_fn(json_errors))
        // Public link pages answer in HTML, errors included: outside `json_errors`.
        .merge(links::public_router())
        // WebDAV answers in its own shapes too.
        .merge(dav::router())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::guard_body,
        ))
        .layer(middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every route, merged in one place (see [`routes::Routes`]).
pub(crate) fn routes(config: &Config) -> Router<AppState> {
    use openapi::{__path_document, __path_server_info, document, server_info};
    let api = Routes::api()
        .at(routes::endpoint!(server_info))
        .at(routes::endpoint!(document))
        .build()
        .merge(auth::router())
        .merge(app_passwords::router())
        .merge(admin::router())
        .merge(files::router())
        .merge(trash::router())
        .merge(shares::router())
        .merge(delta::router())
        .merge(notify::router())
        .merge(links::router())
        .merge(pending::router())
        // Bodies of any size, bounded by each upload's own Upload-Length.
        .merge(tus::router())
        .layer(axum::extract::DefaultBodyLimit::max(config.max_json_body))
        // Block routes set their own limit: a block, not a JSON document.
        .merge(blocks::router(config.chunker.max_size));
    Routes::nested_at("")
        .page("/healthz", get(|| async { "ok" }))
        .page("/metrics", get(|| async { metrics::handle().render() }))
        .build()
        .merge(web::router())
        .nest(routes::API, api)
}

/// Gives every error response the JSON error shape, including the ones axum and tower
/// produce themselves (405 method not allowed, 413 body too large, …).
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not accept that HTTP method".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            "request body is too large for this endpoint".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json".to_owned(),
        ),
        s => (
            "error",
            s.canonical_reason().unwrap_or("error").to_lowercase(),
        ),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep headers such as Allow and Content-Range.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_lose_their_passwords_in_messages() {
        use super::redact_url as r;
        assert_eq!(
            r("postgres://cairn:s3cret@db:5432/cairn?sslmode=require"),
            "postgres://cairn:***@db:5432/cairn"
        );
        assert_eq!(
            r("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(r("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn the_sqlite_file_of_a_database_url() {
        use std::path::PathBuf;
        let with = |url: &str| {
            let mut c = crate::Config::for_data_dir("data");
            c.database_url = url.to_owned();
            c.sqlite_path()
        };
        assert_eq!(
            with("sqlite:///srv/cairn/cairn.db?mode=rwc"),
            Some(PathBuf::from("/srv/cairn/cairn.db"))
        );
        assert_eq!(
            with("sqlite:relative.db"),
            Some(PathBuf::from("relative.db"))
        );
        assert_eq!(with("sqlite::memory:"), None);
        assert_eq!(with("postgres://postgres@127.0.0.1/test"), None);
        assert_eq!(
            crate::Config::for_data_dir("data").sqlite_path(),
            Some(PathBuf::from("data/cairn.db"))
        );
    }
}
