//! The S3 backend: blocks in any S3-compatible object store, through `object_store`.
//!
//! ```text
//! s3://BUCKET/PREFIX/blocks/abcd…(64 hex)      one object per block stored alone
//! s3://BUCKET/PREFIX/packs/<32 hex>.pack        small blocks that arrived in a batch
//! s3://BUCKET/PREFIX/quarantine/abcd…(64 hex)   damaged blocks moved aside
//! ```
//!
//! An object store acknowledges a PUT once the object is durable and visible to every
//! reader, so a block is acknowledged only after its PUT returned. The packs are the
//! local backend's (`packed.rs`, the same format, index and rewrite rules): a batch of
//! small blocks, such as a first sync of thousands of small files, is one PUT, not one
//! per block. What differs is only where the bytes go: [`S3Packs`] implements
//! [`PackFiles`] with ranged GETs, PUT, DELETE and listings that start after the packs
//! already known.
//!
//! The pack code is synchronous (it is the local backend's, which does file IO on the
//! blocking pool); [`S3Packs`] waits for its requests there with the runtime's handle.
//! Loose blocks, the large ones that carry the bytes of big files, never take that
//! detour: their requests are made from the async methods directly.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_core::BlockHash;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use tokio::runtime::Handle;
use tracing::warn;

use crate::backend::{BlockBackend, BoxFuture, EncodedBlock};
use crate::pack::{self, IndexSource, PackEntry, ReadAt};
use crate::packed::PACK_BLOCK_MAX;
use crate::packed::{first_name_at, pack_name, parse_name, PackFiles, PackId, PackSet, Reload};
use crate::{blocking, StoreError};

/// The counter of requests made to the object store, labelled by `op` (`put`, `get`,
/// `head`, `list`, `delete`, `copy`): what an S3 bill counts.
pub const S3_REQUESTS_METRIC: &str = "cairn_block_store_requests_total";

/// How many loose-block requests one call keeps in flight (a batch's large blocks, the
/// existence checks of many blocks, a collection's deletes).
const CONCURRENT_REQUESTS: usize = 16;

/// The first read of a pack asks for this many bytes at its end: the trailer and an
/// index of up to about 1,400 blocks in one request.
const INDEX_TAIL: u64 = 64 << 10;

/// Where an S3 block store is and how to reach it. Settings left `None` come from the
/// usual `AWS_*` environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, …).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket, which must exist.
    pub bucket: String,
    /// Keys start with this (no leading or trailing slash); empty for the bucket's root.
    pub prefix: String,
    /// The service's URL, for stores other than AWS (`http://127.0.0.1:8333`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Whether a plain `http://` endpoint is allowed.
    pub allow_http: Option<bool>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX]`; the other settings start unset.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket; write s3://BUCKET/PREFIX"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            ..Self::default()
        })
    }

    /// `s3://BUCKET/PREFIX`, for messages.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The S3 server the tests use: `.ci/s3-up.sh` starts SeaweedFS on
    /// 127.0.0.1:8333 with this key and bucket; `CAIRN_TEST_S3_ENDPOINT`,
    /// `CAIRN_TEST_S3_BUCKET`, `CAIRN_TEST_S3_KEY` and `CAIRN_TEST_S3_SECRET` name
    /// another. Keys go under `prefix`, which each test makes unique.
    #[doc(hidden)]
    pub fn for_tests(prefix: &str) -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        Self {
            bucket: var("CAIRN_TEST_S3_BUCKET", "cairn-test"),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: Some(var("CAIRN_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")),
            region: Some("us-east-1".into()),
            access_key_id: Some(var("CAIRN_TEST_S3_KEY", "cairn-test")),
            secret_access_key: Some(var("CAIRN_TEST_S3_SECRET", "cairn-test-secret")),
            allow_http: Some(true),
        }
    }

    /// The environment that makes `cairn serve` use this store: `CAIRN_BLOCKS_URL` and
    /// the `AWS_*` variables for the settings given.
    #[doc(hidden)]
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("CAIRN_BLOCKS_URL".to_owned(), self.url())];
        for (name, value) in [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_ALLOW_HTTP", self.allow_http.map(|b| b.to_string())),
        ] {
            if let Some(value) = value {
                env.push((name.to_owned(), value));
            }
        }
        env
    }

    /// A plain `object_store` client on this bucket, for tests that look at or damage
    /// what the store wrote behind its back.
    #[doc(hidden)]
    pub fn raw_client(&self) -> Arc<dyn ObjectStore> {
        self.build().expect("a valid S3 configuration")
    }

    /// Deletes every object under the prefix: what a test or a benchmark leaves behind.
    #[doc(hidden)]
    pub async fn delete_everything(&self) {
        let client = self.raw_client();
        let prefix = Path::from(self.prefix.as_str());
        let keys = client
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let _: Vec<_> = client.delete_stream(keys).collect().await;
    }

    fn build(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        // Fail within seconds when the store does not answer, rather than after
        // object_store's default of ten retries over three minutes: a request waiting
        // on S3 holds a client that will retry itself.
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        };
        // Set key by key: `with_client_options` would replace the options the
        // environment gave (`AWS_ALLOW_HTTP` among them).
        let client = |key, value: &str| (AmazonS3ConfigKey::Client(key), value.to_owned());
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_retry(retry);
        for (key, value) in [
            client(ClientConfigKey::ConnectTimeout, "5s"),
            client(ClientConfigKey::Timeout, "120s"),
        ] {
            builder = builder.with_config(key, value);
        }
        if let Some(v) = &self.endpoint {
            builder = builder.with_endpoint(v);
        }
        if let Some(v) = &self.region {
            builder = builder.with_region(v);
        }
        if let Some(v) = &self.access_key_id {
            builder = builder.with_access_key_id(v);
        }
        if let Some(v) = &self.secret_access_key {
            builder = builder.with_secret_access_key(v);
        }
        if let Some(v) = self.allow_http {
            builder = builder.with_allow_http(v);
        }
        let store = builder.build().map_err(|e| StoreError::Io {
            path: PathBuf::from(self.url()),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        Ok(Arc::new(store))
    }
}

fn count(op: &'static str) {
    metrics::counter!(S3_REQUESTS_METRIC, "op" => op).increment(1);
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// A failed request, carried inside an [`io::Error`] through the pack code so that
/// [`StoreError::from_io`] can tell it from a local IO error.
#[derive(Debug)]
struct Unanswered(object_store::Error);

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Unanswered {}

fn to_io(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        other => io::Error::other(Unanswered(other)),
    }
}

/// What a failed S3 request said, if `e` is one, on one line.
pub(crate) fn unavailable_reason(e: &io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Unanswered>())
        .map(|u| one_line(&u.0.to_string()))
}

/// An S3 error on one line: an XML error body shrinks to its code and message.
fn one_line(text: &str) -> String {
    let tag = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(&text[start..start + len])
    };
    match (text.find("<?xml"), tag("Code"), tag("Message")) {
        (Some(xml), Some(code), Some(message)) => {
            let head = text[..xml].trim().trim_end_matches(':');
            format!("{head}: {code}: {message}")
        }
        _ => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The keys of one store, and the requests every part of the backend makes.
#[derive(Debug, Clone)]
struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The bucket's name, for messages.
    name: String,
    prefix: String,
}

impl Bucket {
    fn key(&self, dir: &str, name: &str) -> Path {
        Path::from(format!("{}/{name}", self.dir(dir)))
    }

    fn dir(&self, dir: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(dir)
        } else {
            Path::from(format!("{}/{dir}", self.prefix))
        }
    }

    fn address(&self, key: &Path) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.name))
    }

    fn err(&self, key: &Path) -> impl FnOnce(object_store::Error) -> StoreError + '_ {
        let path = self.address(key);
        move |e| StoreError::from_io(path, to_io(e))
    }

    /// Stores an object unless one is there. Returns whether this call created it.
    async fn put_new(&self, key: &Path, payload: PutPayload) -> Result<bool, object_store::Error> {
        count("put");
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.store.put_opts(key, payload.clone(), create).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            // A store without conditional writes: look, then write. Two racing puts of
            // one block may then both report creating it, as the trait allows.
            Err(object_store::Error::NotImplemented) => {
                if self.exists(key).await? {
                    return Ok(false);
                }
                count("put");
                self.store.put(key, payload).await?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    async fn exists(&self, key: &Path) -> Result<bool, object_store::Error> {
        Ok(self.size(key).await?.is_some())
    }

    async fn size(&self, key: &Path) -> Result<Option<u64>, object_store::Error> {
        count("head");
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The whole object, or `None` if there is none.
    async fn get(&self, key: &Path) -> Result<Option<Bytes>, object_store::Error> {
        self.get_opts(key, GetOptions::default())
            .await
            .map(|got| got.map(|(bytes, _)| bytes))
    }

    /// A part of the object and the object's whole size, or `None` if there is none.
    async fn get_opts(
        &self,
        key: &Path,
        options: GetOptions,
    ) -> Result<Option<(Bytes, u64)>, object_store::Error> {
        count("get");
        match self.store.get_opts(key, options).await {
            Ok(got) => {
                let size = got.meta.size;
                Ok(Some((got.bytes().await?, size)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes an object; one already gone is not an error.
    async fn delete(&self, key: &Path) -> Result<(), object_store::Error> {
        count("delete");
        match self.store.delete(key).await {
            Err(e) if !is_not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The names of the objects under `dir`, after `after` if given.
    async fn list(
        &self,
        dir: &str,
        after: Option<&str>,
    ) -> Result<Vec<String>, object_store::Error> {
        let prefix = self.dir(dir);
        let listing = match after {
            Some(name) => self
                .store
                .list_with_offset(Some(&prefix), &self.key(dir, name)),
            None => self.store.list(Some(&prefix)),
        };
        // One request per page of a thousand names; counted per page at most roughly.
        count("list");
        let metas: Vec<_> = listing.try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_owned))
            .collect())
    }
}

/// The packs of an S3 store, for the shared pack code.
pub(crate) struct S3Packs {
    bucket: Bucket,
    runtime: Handle,
}

impl S3Packs {
    fn key(&self, id: PackId) -> Path {
        self.bucket.key("packs", &pack_name(id))
    }

    /// Waits for a request from a blocking-pool thread.
    fn wait<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, object_store::Error>>,
    ) -> io::Result<T> {
        self.runtime.block_on(request).map_err(to_io)
    }

    fn read_range(&self, id: PackId, range: GetRange) -> io::Result<Option<(Bytes, u64)>> {
        let options = GetOptions {
            range: Some(range),
            ..GetOptions::default()
        };
        self.wait(self.bucket.get_opts(&self.key(id), options))
    }
}

/// A pack in S3 read by ranges, its tail already fetched.
struct RemotePack<'a> {
    packs: &'a S3Packs,
    id: PackId,
    len: u64,
    tail: Bytes,
}

impl ReadAt for RemotePack<'_> {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= self.len)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let tail_start = self.len - self.tail.len() as u64;
        if offset >= tail_start {
            return self.tail[..].read_exact_at(buf, offset - tail_start);
        }
        if buf.is_empty() {
            return Ok(());
        }
        match self
            .packs
            .read_range(self.id, GetRange::Bounded(offset..end))?
        {
            Some((bytes, _)) if bytes.len() == buf.len() => {
                buf.copy_from_slice(&bytes);
                Ok(())
            }
            Some(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "pack removed while read",
            )),
        }
    }
}

impl PackFiles for S3Packs {
    fn location(&self, id: Option<PackId>) -> PathBuf {
        match id {
            Some(id) => self.bucket.address(&self.key(id)),
            None => self.bucket.address(&self.bucket.dir("packs")),
        }
    }

    fn list(&self, since: Option<u64>) -> io::Result<(Vec<PackId>, bool)> {
        let after = since.map(first_name_at);
        let names = self.wait(self.bucket.list("packs", after.as_deref()))?;
        let ids = names.iter().filter_map(|n| parse_name(n)).collect();
        Ok((ids, since.is_none()))
    }

    fn index(&self, id: PackId) -> io::Result<Option<(Vec<PackEntry>, IndexSource)>> {
        let Some((tail, len)) = self.read_range(id, GetRange::Suffix(INDEX_TAIL))? else {
            return Ok(None);
        };
        let remote = RemotePack {
            packs: self,
            id,
            len,
            tail,
        };
        match pack::read_index(&remote) {
            Ok(index) => Ok(Some(index)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(&self, id: PackId, entry: &PackEntry) -> io::Result<Option<Vec<u8>>> {
        let range = GetRange::Bounded(entry.offset..entry.offset + u64::from(entry.len));
        match self.read_range(id, range)? {
            Some((bytes, _)) if bytes.len() == entry.len as usize => Ok(Some(bytes.to_vec())),
            Some(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            None => Ok(None),
        }
    }

    fn read_whole(&self, id: PackId) -> io::Result<Option<Vec<u8>>> {
        Ok(self
            .wait(self.bucket.get(&self.key(id)))?
            .map(|b| b.to_vec()))
    }

    fn exists(&self, id: PackId) -> io::Result<bool> {
        self.wait(self.bucket.exists(&self.key(id)))
    }

    fn write(&self, id: PackId, bytes: &[u8]) -> io::Result<()> {
        let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
        let created = self.wait(self.bucket.put_new(&self.key(id), payload))?;
        if created {
            Ok(())
        } else {
            // 64 random bits after the time: a clash means something is badly wrong.
            Err(io::Error::other(format!(
                "pack {} already exists",
                pack_name(id)
            )))
        }
    }

    fn remove(&self, id: PackId) -> io::Result<()> {
        self.wait(self.bucket.delete(&self.key(id)))
    }
}

/// The S3 backend: loose blocks by async requests, packs through [`PackSet`].
pub(crate) struct S3Backend {
    bucket: Bucket,
    packs: Arc<PackSet<S3Packs>>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.bucket.name)
            .field("prefix", &self.bucket.prefix)
            .finish_non_exhaustive()
    }
}

fn parse_hash(name: &str) -> Option<BlockHash> {
    let lower = name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    lower.then(|| BlockHash::from_hex(name).ok()).flatten()
}

impl S3Backend {
    /// Connects and reads the index of every pack. Checks that the bucket answers, so a
    /// wrong endpoint, bucket or key fails here with the store's own words.
    pub(crate) async fn open(config: &S3Config) -> Result<Self, StoreError> {
        let bucket = Bucket {
            store: config.build()?,
            name: config.bucket.clone(),
            prefix: config.prefix.clone(),
        };
        let packs = S3Packs {
            bucket: bucket.clone(),
            runtime: Handle::current(),
        };
        let packs = blocking(move || PackSet::open(packs)).await?;
        Ok(Self {
            bucket,
            packs: Arc::new(packs),
        })
    }

    fn block_key(&self, hash: &BlockHash) -> Path {
        self.bucket.key("blocks", &hash.to_hex())
    }

    /// Runs pack work on the blocking pool.
    async fn with_packs<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PackSet<S3Packs>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let packs = self.packs.clone();
        blocking(move || f(&packs)).await
    }

    async fn put_loose(&self, hash: BlockHash, block: EncodedBlock) -> Result<bool, StoreError> {
        let key = self.block_key(&hash);
        let payload = PutPayload::from_iter([block.header, block.payload]);
        self.bucket
            .put_new(&key, payload)
            .await
            .map_err(self.bucket.err(&key))
    }

    async fn get_loose(&self, hash: BlockHash) -> Result<Option<Bytes>, StoreError> {
        let key = self.block_key(&hash);
        self.bucket.get(&key).await.map_err(self.bucket.err(&key))
    }

    async fn contains_loose(&self, hash: BlockHash) -> Result<bool, StoreError> {
        let key = self.block_key(&hash);
        self.bucket
            .exists(&key)
            .await
            .map_err(self.bucket.err(&key))
    }

    async fn delete_loose(&self, hash: BlockHash) -> Result<(), StoreError> {
        let key = self.block_key(&hash);
        self.bucket
            .delete(&key)
            .await
            .map_err(self.bucket.err(&key))
    }

    fn in_packs(&self, hash: &BlockHash) -> bool {
        self.packs.stored_size(hash).is_some()
    }

    async fn get(&self, hash: BlockHash) -> Result<Bytes, StoreError> {
        if self.in_packs(&hash) {
            if let Some(stored) = self.with_packs(move |p| p.get(hash)).await? {
                return Ok(stored);
            }
        }
        if let Some(stored) = self.get_loose(hash).await? {
            return Ok(stored);
        }
        // Another node may have packed it since this one last looked: first the packs
        // made since, then, for a block that should be here, every pack.
        for scope in [Reload::New, Reload::All] {
            let found = self
                .with_packs(move |p| {
                    p.reload(scope)?;
                    p.get(hash)
                })
                .await?;
            if let Some(stored) = found {
                return Ok(stored);
            }
        }
        Err(StoreError::NotFound(hash))
    }

    /// Which of `hashes` are stored: packed ones from the index (each pack checked
    /// once), loose ones by concurrent HEADs, then the packs other nodes made since.
    async fn contains_many(&self, hashes: Vec<BlockHash>) -> Result<Vec<bool>, StoreError> {
        let shared = Arc::new(hashes);
        let hashes = shared.clone();
        let mut present: Vec<bool> = self
            .with_packs(move |p| {
                let mut checked = HashSet::new();
                hashes.iter().map(|h| p.contains(h, &mut checked)).collect()
            })
            .await?;
        let loose: Vec<usize> = (0..shared.len()).filter(|&i| !present[i]).collect();
        let found: Vec<(usize, bool)> = futures::stream::iter(loose)
            .map(|i| {
                let hash = shared[i];
                async move { Ok::<_, StoreError>((i, self.contains_loose(hash).await?)) }
            })
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect()
            .await?;
        for (i, there) in found {
            present[i] = there;
        }
        if present.iter().any(|p| !p) {
            let hashes = shared.clone();
            let again: Vec<bool> = self
                .with_packs(move |p| {
                    p.reload(Reload::New)?;
                    let mut checked = HashSet::new();
                    hashes.iter().map(|h| p.contains(h, &mut checked)).collect()
                })
                .await?;
            for (present, again) in present.iter_mut().zip(again) {
                *present = *present || again;
            }
        }
        Ok(present)
    }

    /// Small blocks in one new pack, larger ones an object each, concurrently.
    ///
    /// Whether a small block was there before is judged from the pack index alone:
    /// asking S3 about each would cost the request per block that packing saves. A small
    /// block stored alone earlier (by a single put) is then reported created twice,
    /// which only its counters notice.
    async fn put_many(
        &self,
        blocks: Vec<(BlockHash, EncodedBlock)>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut created = vec![false; blocks.len()];
        let mut seen = HashSet::new();
        let (mut packed, mut loose) = (Vec::new(), Vec::new());
        for (i, (hash, block)) in blocks.into_iter().enumerate() {
            if !seen.insert(hash) {
                continue; // given twice: the first copy counts
            }
            if block.len() > PACK_BLOCK_MAX {
                loose.push((i, hash, block));
            } else {
                let held = self.in_packs(&hash);
                packed.push((i, hash, block, held));
            }
        }
        let stored: Vec<(usize, bool)> = futures::stream::iter(loose)
            .map(|(i, hash, block)| async move {
                Ok::<_, StoreError>((i, self.put_loose(hash, block).await?))
            })
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect()
            .await?;
        for (i, new) in stored {
            created[i] = new;
        }
        if !packed.is_empty() {
            let (slots, held): (Vec<usize>, Vec<bool>) =
                packed.iter().map(|(i, _, _, h)| (*i, *h)).unzip();
            let blocks: Vec<(BlockHash, EncodedBlock)> =
                packed.into_iter().map(|(_, h, b, _)| (h, b)).collect();
            let first = self
                .with_packs(move |p| {
                    let refs: Vec<(BlockHash, &EncodedBlock)> =
                        blocks.iter().map(|(h, b)| (*h, b)).collect();
                    p.put(&refs)
                })
                .await?;
            for ((i, held), first) in slots.into_iter().zip(held).zip(first) {
                created[i] = first && !held;
            }
        }
        Ok(created)
    }

    async fn delete_many(&self, hashes: Vec<BlockHash>) -> Result<(), StoreError> {
        futures::stream::iter(hashes.iter().copied())
            .map(|hash| self.delete_loose(hash))
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect::<Vec<()>>()
            .await?;
        self.with_packs(move |p| {
            // Packs other nodes wrote since this one last looked may hold some of them.
            p.reload(Reload::New)?;
            p.delete(&hashes)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<BlockHash>, StoreError> {
        let dir = self.bucket.dir("blocks");
        let names = self
            .bucket
            .list("blocks", None)
            .await
            .map_err(self.bucket.err(&dir))?;
        let mut hashes: Vec<BlockHash> = names.iter().filter_map(|n| parse_hash(n)).collect();
        hashes.extend(self.with_packs(|p| p.hashes()).await?);
        Ok(hashes)
    }

    /// Copies a damaged block to `quarantine/` and removes it from `blocks/` and from
    /// every pack.
    async fn quarantine(&self, hash: BlockHash) -> Result<bool, StoreError> {
        let hex = hash.to_hex();
        let to = self.bucket.key("quarantine", &hex);
        let from = self.block_key(&hash);
        count("copy");
        let mut moved = match self.bucket.store.copy(&from, &to).await {
            Ok(()) => {
                self.delete_loose(hash).await?;
                true
            }
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(self.bucket.err(&from)(e)),
        };
        if let Some(stored) = self.with_packs(move |p| p.get(hash)).await? {
            count("put");
            self.bucket
                .store
                .put(&to, PutPayload::from(stored))
                .await
                .map_err(self.bucket.err(&to))?;
            self.with_packs(move |p| p.delete(&[hash])).await?;
            moved = true;
        }
        if moved {
            warn!(%hash, to = %self.bucket.address(&to).display(), "damaged block moved to quarantine");
        }
        Ok(moved)
    }

    async fn stored_size(&self, hash: BlockHash) -> Result<Option<u64>, StoreError> {
        if let Some(size) = self.packs.stored_size(&hash) {
            return Ok(Some(size));
        }
        let key = self.block_key(&hash);
        self.bucket.size(&key).await.map_err(self.bucket.err(&key))
    }
}

impl BlockBackend for S3Backend {
    fn put(&self, hash: BlockHash, block: EncodedBlock) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.put_loose(hash, block))
    }

    fn get(&self, hash: BlockHash) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        Box::pin(S3Backend::get(self, hash))
    }

    fn contains(&self, hash: BlockHash) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(S3Backend::contains_many(self, vec![hash]).await?[0]) })
    }

    fn delete(&self, hash: BlockHash) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(S3Backend::delete_many(self, vec![hash]))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<BlockHash>, StoreError>> {
        Box::pin(S3Backend::list(self))
    }

    fn quarantine(&self, hash: BlockHash) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(S3Backend::quarantine(self, hash))
    }

    fn stored_size(&self, hash: BlockHash) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(S3Backend::stored_size(self, hash))
    }

    fn put_many(
        &self,
        blocks: Vec<(BlockHash, EncodedBlock)>,
    ) -> BoxFuture<'_, Result<Vec<bool>, StoreError>> {
        Box::pin(S3Backend::put_many(self, blocks))
    }

    fn delete_many(&self, hashes: Vec<BlockHash>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(S3Backend::delete_many(self, hashes))
    }

    fn contains_many(
        &self,
        hashes: Vec<BlockHash>,
    ) -> BoxFuture<'_, Result<Vec<bool>, StoreError>> {
        Box::pin(S3Backend::contains_many(self, hashes))
    }

    fn read_parallelism(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let c = S3Config::from_url("s3://cairn/prod/blocks/").unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str()),
            ("cairn", "prod/blocks")
        );
        assert_eq!(c.url(), "s3://cairn/prod/blocks");
        let c = S3Config::from_url("s3://cairn").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("cairn", ""));
        assert!(S3Config::from_url("s3:///x").is_err());
        assert!(S3Config::from_url("http://x").is_err());
    }

    #[test]
    fn an_error_body_shrinks_to_one_line() {
        let text = "GET http://s3/b - Server returned non-2xx status code: 403 Forbidden: \
                    <?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
                    <Message>Check your key.</Message></Error>";
        assert_eq!(
            one_line(text),
            "GET http://s3/b - Server returned non-2xx status code: 403 Forbidden: \
             SignatureDoesNotMatch: Check your key."
        );
        assert_eq!(one_line("a\n  b"), "a b");
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let c = S3Config {
            secret_access_key: Some("hunter2".into()),
            ..S3Config::from_url("s3://b").unwrap()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
