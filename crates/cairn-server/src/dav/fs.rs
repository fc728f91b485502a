//! The caller's tree as a `dav-server` file system: every operation goes through the
//! same functions as the JSON API's (`files::…`), so it is permission-checked through
//! [`Access`], quota-checked, journaled, versioned and announced exactly as they are.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use cairn_core::{EntryId, NamespaceId, ServerPath};
use cairn_meta::{Entry, EntryKind};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult,
    FsStream, OpenOptions, ReadDirMeta,
};
use futures::FutureExt;

use crate::access::{Access, Need};
use crate::error::{ApiError, ApiResult};
use crate::files;
use crate::state::AppState;

use super::file::{ReadFile, WriteFile};
use super::{paths, props};

/// The caller's tree, for one request.
#[derive(Clone)]
pub(crate) struct CairnFs {
    pub(crate) state: AppState,
    pub(crate) access: Arc<Access>,
    /// A folder this request deletes (DELETE's target, or what COPY or MOVE replaces):
    /// listed as empty, so `dav-server` hands it to [`DavFileSystem::remove_dir`] whole,
    /// and it goes to the trash as one folder that can be restored as one, instead of
    /// file by file.
    pub(crate) trash_whole: Option<ServerPath>,
    /// The modification time a client sent with a PUT (`X-OC-Mtime`), Unix ms.
    pub(crate) mtime: Option<i64>,
    /// The last error an operation met, so the response can say what it was when
    /// `dav-server`'s few error kinds cannot (a bad name is a 400, an unreachable block
    /// store a 503).
    pub(crate) failure: Arc<Mutex<Option<ApiError>>>,
}

impl std::fmt::Debug for CairnFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CairnFs")
            .field("user", &self.access.auth.user.name)
            .finish_non_exhaustive()
    }
}

/// What `dav-server` can say of an error.
fn fs_error(err: &ApiError) -> FsError {
    match (err.status, err.code) {
        (_, "quota_exceeded") => FsError::InsufficientStorage,
        (StatusCode::NOT_FOUND, _) | (_, "not_a_folder") => FsError::NotFound,
        (_, "already_exists") => FsError::Exists,
        (StatusCode::PAYLOAD_TOO_LARGE, _) => FsError::TooLarge,
        (StatusCode::INSUFFICIENT_STORAGE, _) => FsError::InsufficientStorage,
        (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
            FsError::Forbidden
        }
        (_, "is_a_folder") => FsError::Forbidden,
        _ => FsError::GeneralFailure,
    }
}

impl CairnFs {
    /// Records `err` for the response and turns it into `dav-server`'s kind.
    pub(crate) fn fail(&self, err: ApiError) -> FsError {
        let kind = fs_error(&err);
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(err);
        }
        kind
    }

    pub(crate) fn path(&self, path: &DavPath) -> FsResult<ServerPath> {
        paths::server_path(path).map_err(|e| self.fail(e))
    }

    /// The entry at `path` (`None` for the root, which has none).
    pub(crate) async fn entry(&self, path: &ServerPath) -> ApiResult<Option<Entry>> {
        if path.is_root() {
            return Ok(None);
        }
        let (_, entry) = files::stat_existing(&self.state, &self.access, path).await?;
        Ok(Some(entry))
    }

    pub(crate) async fn meta_of(&self, path: &ServerPath) -> ApiResult<Meta> {
        let writable = self.access.resolve(path, Need::Write).is_ok();
        Ok(match self.entry(path).await? {
            Some(entry) => Meta::of(&entry, writable, self.is_mount(&entry)),
            None => {
                let home = self.access.home();
                Meta::root(home, self.state.meta.journal_head(home).await?.0)
            }
        })
    }

    fn is_mount(&self, entry: &Entry) -> bool {
        entry.ns == self.access.home()
            && self
                .access
                .mounts()
                .iter()
                .any(|m| m.mount_entry == entry.id)
    }

    /// Refuses with 409 (as WebDAV wants) a new entry whose parent folder is missing.
    pub(crate) async fn check_parent(&self, path: &ServerPath) -> ApiResult<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        match self.entry(&parent).await {
            Ok(None) => Ok(()),
            Ok(Some(e)) if e.kind == EntryKind::Folder => Ok(()),
            Ok(Some(_)) | Err(_) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_a_folder",
                format!("{parent} is not a folder; make it first (MKCOL)"),
            )),
        }
    }

    async fn list(&self, path: &ServerPath) -> ApiResult<Vec<Entry>> {
        let target = self.access.resolve(path, Need::Read)?;
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .state
                .meta
                .list_folder(
                    target.ns,
                    &target.path,
                    after.as_deref(),
                    cairn_proto::MAX_PAGE,
                )
                .await
                .map_err(|e| self.access.outer_error(target.ns, e))?;
            let full = page.len() as u32 == cairn_proto::MAX_PAGE;
            after = page.last().map(|e| e.path.key());
            all.extend(page.into_iter().map(|e| self.access.outer_entry(e)));
            if !full {
                return Ok(all);
            }
        }
    }

    fn deleting(&self, path: &ServerPath) -> bool {
        self.trash_whole.as_ref().is_some_and(|whole| {
            path.key() == whole.key() || path.key().starts_with(&format!("{}/", whole.key()))
        })
    }
}

/// An entry's metadata, as WebDAV shows it.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The entry's namespace (the caller's home for the root).
    pub(crate) ns: NamespaceId,
    pub(crate) id: EntryId,
    pub(crate) dir: bool,
    pub(crate) size: u64,
    /// Unix ms.
    pub(crate) mtime: i64,
    pub(crate) etag: String,
    /// Whether the caller may change it.
    pub(crate) writable: bool,
    /// Whether it is a shared folder's mount in the caller's tree.
    pub(crate) mount: bool,
}

impl Meta {
    pub(crate) fn of(entry: &Entry, writable: bool, mount: bool) -> Self {
        let dir = entry.kind == EntryKind::Folder;
        // A file's tag is its content's hash (128 of its bits: clients echo tags in
        // `If` headers, and some keep those short): the same bytes, the same tag, on
        // every node; a folder's changes with the folder itself.
        let etag = match (&entry.content_hash, dir) {
            (Some(hash), false) => hash.to_hex()[..32].to_owned(),
            _ => format!("d{:x}-{:x}", entry.id.0, entry.modified_at),
        };
        Self {
            ns: entry.ns,
            id: entry.id,
            dir,
            size: entry.size.max(0) as u64,
            mtime: entry.mtime,
            etag,
            writable,
            mount,
        }
    }

    /// The root folder, which has no entry: its tag is the home's journal head, so it
    /// changes whenever anything in the caller's own files does.
    fn root(home: NamespaceId, head: i64) -> Self {
        Self {
            ns: home,
            id: EntryId(0),
            dir: true,
            size: 0,
            mtime: 0,
            etag: format!("r{head:x}"),
            writable: true,
            mount: false,
        }
    }
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.size
    }

    fn modified(&self) -> FsResult<SystemTime> {
        Ok(UNIX_EPOCH + Duration::from_millis(self.mtime.max(0) as u64))
    }

    fn is_dir(&self) -> bool {
        self.dir
    }

    fn etag(&self) -> Option<String> {
        Some(self.etag.clone())
    }
}

struct DirEntry {
    name: Vec<u8>,
    meta: Meta,
}

impl DavDirEntry for DirEntry {
    fn name(&self) -> Vec<u8> {
        self.name.clone()
    }

    fn metadata(&'_ self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }
}

impl DavFileSystem for CairnFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            let path = self.path(path)?;
            if options.write {
                let file = WriteFile::open(self, &path, &options)
                    .await
                    .map_err(|e| self.fail(e))?;
                return Ok(Box::new(file) as Box<dyn DavFile>);
            }
            let file = ReadFile::open(self, &path)
                .await
                .map_err(|e| self.fail(e))?;
            Ok(Box::new(file) as Box<dyn DavFile>)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let path = self.path(path)?;
            let entries = if self.deleting(&path) {
                Vec::new()
            } else {
                self.list(&path).await.map_err(|e| self.fail(e))?
            };
            let items: Vec<FsResult<Box<dyn DavDirEntry>>> = entries
                .into_iter()
                .map(|entry| {
                    let writable = self.access.resolve(&entry.path, Need::Write).is_ok();
                    let mount = self.is_mount(&entry);
                    let name = entry.path.name().unwrap_or_default().as_bytes().to_vec();
                    Ok(Box::new(DirEntry {
                        name,
                        meta: Meta::of(&entry, writable, mount),
                    }) as Box<dyn DavDirEntry>)
                })
                .collect();
            Ok(Box::pin(futures::stream::iter(items)) as FsStream<Box<dyn DavDirEntry>>)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let path = self.path(path)?;
            let meta = self.meta_of(&path).await.map_err(|e| self.fail(e))?;
            Ok(Box::new(meta) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let path = self.path(path)?;
            if path.is_root() {
                return Err(FsError::Exists);
            }
            match self.entry(&path).await {
                Ok(Some(_)) => return Err(FsError::Exists),
                Ok(None) => {}
                Err(e) if e.status == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(self.fail(e)),
            }
            self.check_parent(&path).await.map_err(|e| self.fail(e))?;
            files::make_folder(&self.state, &self.access, &path)
                .await
                .map_err(|e| self.fail(e))?;
            Ok(())
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.remove_file(path)
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let path = self.path(path)?;
            if path.is_root() {
                return Err(FsError::Forbidden);
            }
            files::delete_path(&self.state, &self.access, &path, None)
                .await
                .map_err(|e| self.fail(e))
        }
        .boxed()
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (self.path(from)?, self.path(to)?);
            files::move_path(&self.state, &self.access, &from, &to, None)
                .await
                .map_err(|e| self.fail(e))?;
            Ok(())
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (self.path(from)?, self.path(to)?);
            let source = self
                .entry(&from)
                .await
                .map_err(|e| self.fail(e))?
                .ok_or(FsError::Forbidden)?;
            let copy = files::copy_path(&self.state, &self.access, &from, &to)
                .await
                .map_err(|e| self.fail(e))?;
            self.state
                .meta
                .dav_props_copy((source.ns, source.id), (copy.ns, copy.id))
                .await
                .map_err(|e| self.fail(e.into()))
        }
        .boxed()
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        async { true }.boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            let path = self.path(path)?;
            self.access
                .resolve(&path, Need::Write)
                .map_err(|e| self.fail(e))?;
            let meta = self.meta_of(&path).await.map_err(|e| self.fail(e))?;
            props::patch(self, &meta, patch)
                .await
                .map_err(|e| self.fail(e))
        }
        .boxed()
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        async move {
            let path = self.path(path)?;
            let meta = self.meta_of(&path).await.map_err(|e| self.fail(e))?;
            props::all(self, &meta, do_content)
                .await
                .map_err(|e| self.fail(e))
        }
        .boxed()
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        async move {
            let path = self.path(path)?;
            let meta = self.meta_of(&path).await.map_err(|e| self.fail(e))?;
            props::one(self, &meta, &prop)
                .await
                .map_err(|e| self.fail(e))?
                .ok_or(FsError::NotFound)
        }
        .boxed()
    }

    fn get_quota(&'_ self) -> FsFuture<'_, (u64, Option<u64>)> {
        async move {
            let space = self
                .state
                .meta
                .space_of(self.access.home())
                .await
                .map_err(|e| self.fail(e.into()))?;
            Ok((
                space.usage_bytes.max(0) as u64,
                space.quota_bytes.map(|q| q.max(0) as u64),
            ))
        }
        .boxed()
    }
}
