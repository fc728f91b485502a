//! Server configuration: embedded defaults, an optional TOML file, then environment
//! variables, in rising order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_core::ChunkerConfig;
use serde::Deserialize;

/// Everything `cairn serve` needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the SQLite database and the local block folder unless URLs say otherwise.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Where blocks are kept: a local folder or an S3 bucket.
    pub blocks: BlockLocation,
    pub chunker: ChunkerConfig,
    /// Largest JSON request body, in bytes.
    pub max_json_body: usize,
    /// Failed logins allowed per account, and per client address, in `login_window_secs`.
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_window_secs: u64,
    /// Argon2id cost. The default is OWASP's minimum (19 MiB, 2 passes, 1 lane).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// History, trash, garbage collection and scrubbing (the background tasks).
    pub maintenance: Maintenance,
    /// Notification connections are pinged (WebSocket) or sent a comment (SSE) this
    /// often, so proxies keep them open and dead peers are noticed.
    pub notify_heartbeat_secs: u64,
    /// A connection must send a request's whole header within this many seconds of
    /// being opened (or, kept alive, of the previous response), or it is closed: a few
    /// clients that trickle headers cannot hold the server's connections. It is also
    /// how long an idle kept-alive connection stays open.
    pub header_read_timeout_secs: u64,
    /// A request body that sends nothing for this many seconds while the server waits
    /// for it is cut off with 408. Notification streams are not request bodies, so
    /// this never ends them.
    pub body_idle_timeout_secs: u64,
    /// A browser session ends after this many seconds without a request…
    pub session_idle_secs: u64,
    /// …and this many seconds after sign-in, whatever its use.
    pub session_max_secs: u64,
    /// A resumable (tus) upload that receives nothing for this many seconds expires
    /// and is removed by the maintenance pass; every request that continues it
    /// restarts the clock.
    pub tus_upload_lifetime_secs: u64,
    /// Files larger than this (in bytes) get no thumbnail (`GET /files/thumbnail`
    /// answers 415): a picture is decoded from memory.
    pub thumbnail_max_source_bytes: u64,
    /// HTTPS served by `cairn serve` itself: a PEM certificate chain and its private
    /// key. Both or neither.
    pub tls: Option<TlsFiles>,
    /// How commits reach the notification connections of other nodes.
    pub events: Events,
}

/// The event bus between nodes (`events_url`, `CAIRN_EVENTS_URL`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Events {
    /// None: one node, everything in this process (unset, or empty).
    #[default]
    InProcess,
    /// A NATS server (or several, comma-separated): `nats://HOST:PORT`.
    Nats(String),
    /// PostgreSQL LISTEN/NOTIFY on the metadata database (`postgres` or `pg`).
    Postgres,
}

impl Events {
    /// Reads an `events_url` value.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let value = value.trim();
        match value {
            "" => Ok(Events::InProcess),
            "postgres" | "pg" => Ok(Events::Postgres),
            url if url.starts_with("nats://") || url.starts_with("tls://") => {
                Ok(Events::Nats(url.to_owned()))
            }
            other => Err(ConfigError::Invalid(format!(
                "events_url {other:?} is not understood: use nats://HOST:PORT for NATS, \
                 postgres for LISTEN/NOTIFY on the metadata database, or leave it unset \
                 for a single node"
            ))),
        }
    }
}

/// Where the blocks are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockLocation {
    /// A folder on this machine (`blocks_url = "/srv/cairn"` or `file:///srv/cairn`).
    Folder(PathBuf),
    /// An S3-compatible bucket (`blocks_url = "s3://BUCKET/PREFIX"`).
    S3(cairn_store::S3Config),
}

impl BlockLocation {
    /// The folder or the `s3://` URL, for messages (never a credential).
    pub fn describe(&self) -> String {
        match self {
            BlockLocation::Folder(dir) => dir.display().to_string(),
            BlockLocation::S3(s3) => s3.url(),
        }
    }
}

/// The S3 settings a config file may give; the `AWS_*` environment variables fill in
/// what it leaves out.
#[derive(Debug, Default)]
struct S3Settings {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    allow_http: Option<bool>,
}

/// The PEM files of the certificate `cairn serve` presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What the background tasks keep, for how long, and how often they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    /// Every version of a file is kept for this many days…
    pub version_retention_days: u64,
    /// …and the newest this many versions of each file regardless of age.
    pub keep_versions: u32,
    /// A deleted item stays in the trash this many days, then is purged.
    pub trash_retention_days: u64,
    /// A block nothing references is deleted only after this many seconds, so an
    /// upload in flight (blocks sent, commit not yet made) never loses its blocks.
    pub gc_grace_secs: u64,
    /// How often retention, trash expiry and garbage collection run.
    pub maintenance_interval_secs: u64,
    /// The background scrub re-reads and verifies stored blocks at most this fast;
    /// 0 turns it off.
    pub scrub_bytes_per_sec: u64,
}

impl Default for Maintenance {
    fn default() -> Self {
        Self {
            version_retention_days: 30,
            keep_versions: 100,
            trash_retention_days: 30,
            gc_grace_secs: 3600,
            maintenance_interval_secs: 3600,
            scrub_bytes_per_sec: 8 << 20,
        }
    }
}

/// What a TOML file may set. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    blocks_url: Option<String>,
    chunk_min_size: Option<usize>,
    chunk_avg_size: Option<usize>,
    chunk_max_size: Option<usize>,
    login_failures_per_account: Option<u32>,
    login_failures_per_address: Option<u32>,
    login_window_secs: Option<u64>,
    version_retention_days: Option<u64>,
    keep_versions: Option<u32>,
    trash_retention_days: Option<u64>,
    gc_grace_secs: Option<u64>,
    maintenance_interval_secs: Option<u64>,
    scrub_bytes_per_sec: Option<u64>,
    notify_heartbeat_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    body_idle_timeout_secs: Option<u64>,
    session_idle_secs: Option<u64>,
    session_max_secs: Option<u64>,
    tus_upload_lifetime_secs: Option<u64>,
    thumbnail_max_source_bytes: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_allow_http: Option<bool>,
    events_url: Option<String>,
}

/// A configuration that cannot be used; the message says which setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Defaults for a data directory: SQLite at `DATA/cairn.db`, blocks under `DATA`.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            database_url: format!("sqlite://{}?mode=rwc", data_dir.join("cairn.db").display()),
            blocks: BlockLocation::Folder(data_dir.clone()),
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            chunker: ChunkerConfig::default(),
            max_json_body: 16 << 20,
            login_failures_per_account: 10,
            login_failures_per_address: 30,
            login_window_secs: 300,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            maintenance: Maintenance::default(),
            notify_heartbeat_secs: 30,
            header_read_timeout_secs: 30,
            body_idle_timeout_secs: 60,
            session_idle_secs: 12 * 3600,
            session_max_secs: 7 * 24 * 3600,
            tus_upload_lifetime_secs: 24 * 60 * 60,
            thumbnail_max_source_bytes: 50 << 20,
            tls: None,
            events: Events::InProcess,
        }
    }

    /// The database file when the metadata is in a SQLite file (`sqlite://PATH?…` or
    /// `sqlite:PATH`); `None` for PostgreSQL or an in-memory database.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }

    /// Reads the optional config file, then applies `CAIRN_DATABASE_URL` and
    /// `CAIRN_BLOCKS_URL` from the environment.
    pub fn load(data_dir: &Path, file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = Self::for_data_dir(data_dir);
        let mut s3 = S3Settings::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let parsed: FileConfig = toml::from_str(&text).map_err(|err| ConfigError::Parse {
                path: path.to_owned(),
                message: err.message().to_owned(),
            })?;
            s3 = config.apply_file(parsed)?;
        }
        if let Ok(url) = std::env::var("CAIRN_DATABASE_URL") {
            config.database_url = url;
        }
        if let Ok(url) = std::env::var("CAIRN_BLOCKS_URL") {
            config.blocks = block_location(&url)?;
        }
        if let BlockLocation::S3(bucket) = &mut config.blocks {
            bucket.endpoint = s3.endpoint;
            bucket.region = s3.region;
            bucket.access_key_id = s3.access_key_id;
            bucket.secret_access_key = s3.secret_access_key;
            bucket.allow_http = s3.allow_http;
        }
        if let Ok(url) = std::env::var("CAIRN_EVENTS_URL") {
            config.events = Events::parse(&url)?;
        }
        if config.events == Events::Postgres && !config.database_url.starts_with("postgres") {
            return Err(ConfigError::Invalid(
                "events_url = \"postgres\" (LISTEN/NOTIFY) needs the metadata in PostgreSQL, \
                 but database_url is not a postgres:// URL; set database_url \
                 (CAIRN_DATABASE_URL) or use a NATS URL"
                    .into(),
            ));
        }
        let env_path = |name| std::env::var_os(name).map(PathBuf::from);
        tls_files(
            &mut config,
            env_path("CAIRN_TLS_CERT"),
            env_path("CAIRN_TLS_KEY"),
        )?;
        config
            .chunker
            .validate()
            .map_err(|err| ConfigError::Invalid(err.to_string()))?;
        Ok(config)
    }

    /// Applies a config file's settings; returns its S3 settings, which apply to
    /// whichever S3 URL the file or the environment gives.
    fn apply_file(&mut self, file: FileConfig) -> Result<S3Settings, ConfigError> {
        if let Some(listen) = file.listen {
            self.listen = listen;
        }
        if let Some(url) = file.database_url {
            self.database_url = url;
        }
        if let Some(url) = file.blocks_url {
            self.blocks = block_location(&url)?;
        }
        tls_files(self, file.tls_cert, file.tls_key)?;
        if let Some(url) = file.events_url {
            self.events = Events::parse(&url)?;
        }
        if let Some(v) = file.chunk_min_size {
            self.chunker.min_size = v;
        }
        if let Some(v) = file.chunk_avg_size {
            self.chunker.avg_size = v;
        }
        if let Some(v) = file.chunk_max_size {
            self.chunker.max_size = v;
        }
        if let Some(v) = file.login_failures_per_account {
            self.login_failures_per_account = v;
        }
        if let Some(v) = file.login_failures_per_address {
            self.login_failures_per_address = v;
        }
        if let Some(v) = file.login_window_secs {
            self.login_window_secs = v;
        }
        if let Some(v) = file.notify_heartbeat_secs {
            if v == 0 {
                return Err(ConfigError::Invalid(
                    "notify_heartbeat_secs must be at least 1".into(),
                ));
            }
            self.notify_heartbeat_secs = v;
        }
        for (name, value, field) in [
            (
                "header_read_timeout_secs",
                file.header_read_timeout_secs,
                &mut self.header_read_timeout_secs,
            ),
            (
                "body_idle_timeout_secs",
                file.body_idle_timeout_secs,
                &mut self.body_idle_timeout_secs,
            ),
            (
                "session_idle_secs",
                file.session_idle_secs,
                &mut self.session_idle_secs,
            ),
            (
                "session_max_secs",
                file.session_max_secs,
                &mut self.session_max_secs,
            ),
            (
                "tus_upload_lifetime_secs",
                file.tus_upload_lifetime_secs,
                &mut self.tus_upload_lifetime_secs,
            ),
        ] {
            if let Some(v) = value {
                if v == 0 {
                    return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
                }
                *field = v;
            }
        }
        if let Some(v) = file.thumbnail_max_source_bytes {
            self.thumbnail_max_source_bytes = v;
        }
        let m = &mut self.maintenance;
        if let Some(v) = file.version_retention_days {
            m.version_retention_days = v;
        }
        if let Some(v) = file.keep_versions {
            m.keep_versions = v;
        }
        if let Some(v) = file.trash_retention_days {
            m.trash_retention_days = v;
        }
        if let Some(v) = file.gc_grace_secs {
            m.gc_grace_secs = v;
        }
        if let Some(v) = file.maintenance_interval_secs {
            if v == 0 {
                return Err(ConfigError::Invalid(
                    "maintenance_interval_secs must be at least 1".into(),
                ));
            }
            m.maintenance_interval_secs = v;
        }
        if let Some(v) = file.scrub_bytes_per_sec {
            m.scrub_bytes_per_sec = v;
        }
        Ok(S3Settings {
            endpoint: file.s3_endpoint,
            region: file.s3_region,
            access_key_id: file.s3_access_key_id,
            secret_access_key: file.s3_secret_access_key,
            allow_http: file.s3_allow_http,
        })
    }
}

/// Sets the TLS files from a source that may name the certificate, the key or both;
/// what it leaves out stays as an earlier source set it. Fails when only one of the
/// two ends up set.
fn tls_files(
    config: &mut Config,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<(), ConfigError> {
    let (old_cert, old_key) = match config.tls.take() {
        Some(tls) => (Some(tls.cert), Some(tls.key)),
        None => (None, None),
    };
    config.tls = match (cert.or(old_cert), key.or(old_key)) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(ConfigError::Invalid(
                "HTTPS needs both tls_cert and tls_key (or CAIRN_TLS_CERT and \
                 CAIRN_TLS_KEY): one of them is missing"
                    .into(),
            ))
        }
    };
    Ok(())
}

/// Accepts `s3://BUCKET/PREFIX`, `file:///abs/path` or a plain path.
fn block_location(url: &str) -> Result<BlockLocation, ConfigError> {
    if url.starts_with("s3://") {
        cairn_store::S3Config::from_url(url)
            .map(BlockLocation::S3)
            .map_err(|e| ConfigError::Invalid(format!("blocks URL: {e}")))
    } else if let Some(path) = url.strip_prefix("file://") {
        Ok(BlockLocation::Folder(PathBuf::from(path)))
    } else if url.contains("://") {
        Err(ConfigError::Invalid(format!(
            "blocks URL {url:?} is not supported; use s3://BUCKET/PREFIX, file:///PATH or \
             a folder path"
        )))
    } else {
        Ok(BlockLocation::Folder(PathBuf::from(url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(dir.path(), Some(&path))
    }

    #[test]
    fn blocks_go_to_a_folder_or_a_bucket_with_its_settings() {
        let config = load_file(
            "blocks_url = \"s3://cairn/prod\"\ns3_endpoint = \"http://127.0.0.1:8333\"\n\
             s3_region = \"eu-west-1\"\ns3_access_key_id = \"id\"\n\
             s3_secret_access_key = \"secret\"\ns3_allow_http = true\n",
        )
        .unwrap();
        let BlockLocation::S3(s3) = &config.blocks else {
            panic!("{:?}", config.blocks);
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("cairn", "prod"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.secret_access_key.as_deref(), Some("secret"));
        assert_eq!(s3.allow_http, Some(true));
        assert_eq!(config.blocks.describe(), "s3://cairn/prod");

        let config = load_file("blocks_url = \"file:///srv/cairn\"\n").unwrap();
        assert_eq!(config.blocks, BlockLocation::Folder("/srv/cairn".into()));
        for bad in ["gs://bucket", "s3://"] {
            let err = load_file(&format!("blocks_url = \"{bad}\"\n")).unwrap_err();
            assert!(err.to_string().contains("blocks URL"), "{err}");
        }
    }
}
