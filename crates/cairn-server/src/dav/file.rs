//! Open files: a download reads the file's blocks ahead of the reader, verified, as the
//! JSON API's download does; an upload streams through the chunker into the block
//! store as it arrives, holding a few chunks at most, and is committed as a new
//! version when the body is complete.

use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::Mutex;

use axum::http::StatusCode;
use bytes::{Buf, Bytes};
use cairn_core::{ServerPath, VersionId};
use cairn_meta::{BlockRef, EntryKind};
use dav_server::fs::{DavFile, DavMetaData, FsError, FsFuture, OpenOptions};
use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, Stream, StreamExt};

use crate::access::{Need, Target};
use crate::block_manager::BlockError;
use crate::error::{ApiError, ApiResult};
use crate::files;

use super::fs::{CairnFs, Meta};

type Body = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A file open for reading, at `pos`.
pub(crate) struct ReadFile {
    fs: CairnFs,
    path: ServerPath,
    meta: Meta,
    blocks: Vec<BlockRef>,
    pos: u64,
    /// The file's bytes from `pos` on, once something was read; behind a lock only
    /// because a `DavFile` must be `Sync` (it is reached through `&mut self`).
    body: Option<Mutex<Body>>,
    /// Read from the body and not handed out yet.
    pending: Bytes,
}

impl std::fmt::Debug for ReadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFile")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl ReadFile {
    pub(crate) async fn open(fs: &CairnFs, path: &ServerPath) -> ApiResult<Self> {
        let entry = fs
            .entry(path)
            .await?
            .filter(|e| e.kind == EntryKind::File)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "is_a_folder",
                    format!("{path} is a folder"),
                )
            })?;
        let rev = entry
            .rev
            .ok_or_else(|| ApiError::internal(format!("file {path} has no revision")))?;
        let blocks = fs.state.meta.version_blocks(rev).await?;
        let writable = fs.access.resolve(path, Need::Write).is_ok();
        Ok(Self {
            fs: fs.clone(),
            path: path.clone(),
            meta: Meta::of(&entry, writable, false),
            blocks,
            pos: 0,
            body: None,
            pending: Bytes::new(),
        })
    }

    /// The file's bytes from `pos` to its end, the blocks read ahead.
    async fn body_from(&self, pos: u64) -> ApiResult<Body> {
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for block in &self.blocks {
            let (start, end) = (offset, offset + block.size as u64);
            offset = end;
            if end <= pos {
                continue;
            }
            let from = pos.saturating_sub(start) as usize;
            pieces.push((block.hash, from, block.size as usize));
        }
        let body = self.fs.state.blocks.read_pieces(&self.path, pieces).await?;
        Ok(Box::pin(body))
    }
}

impl DavFile for ReadFile {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }

    fn write_buf(&'_ mut self, _buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    fn write_bytes(&'_ mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    fn read_bytes(&'_ mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            if self.pending.is_empty() {
                if self.pos >= self.meta.size {
                    return Ok(Bytes::new());
                }
                if self.body.is_none() {
                    let body = self
                        .body_from(self.pos)
                        .await
                        .map_err(|e| self.fs.fail(e))?;
                    self.body = Some(Mutex::new(body));
                }
                let body = self
                    .body
                    .as_mut()
                    .and_then(|b| b.get_mut().ok())
                    .ok_or(FsError::GeneralFailure)?;
                match body.next().await {
                    Some(Ok(bytes)) => self.pending = bytes,
                    // A damaged block: the response is cut short, never wrong.
                    Some(Err(_)) => return Err(FsError::GeneralFailure),
                    None => return Ok(Bytes::new()),
                }
            }
            let n = count.min(self.pending.len());
            self.pos += n as u64;
            Ok(self.pending.split_to(n))
        }
        .boxed()
    }

    fn seek(&'_ mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            let size = self.meta.size as i128;
            let to = match pos {
                SeekFrom::Start(n) => n as i128,
                SeekFrom::End(d) => size + d as i128,
                SeekFrom::Current(d) => self.pos as i128 + d as i128,
            };
            if to < 0 {
                return Err(FsError::GeneralFailure);
            }
            let to = to as u64;
            if to != self.pos {
                self.pos = to;
                self.body = None;
                self.pending = Bytes::new();
            }
            Ok(to)
        }
        .boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }
}

/// A file being written by a PUT.
pub(crate) struct WriteFile {
    fs: CairnFs,
    path: ServerPath,
    target: Target,
    /// The version the upload replaces (`None` for a new file): a change made
    /// meanwhile by someone else is kept, and this upload becomes a conflict copy.
    base_rev: Option<VersionId>,
    /// The length the request declared.
    expected: Option<u64>,
    written: u64,
    sender: Option<mpsc::Sender<std::io::Result<Bytes>>>,
    /// Chunks and stores what is sent, and answers with the block list.
    task: Option<tokio::task::JoinHandle<Result<Vec<BlockRef>, BlockError>>>,
    /// The file once committed.
    done: Option<Meta>,
}

impl std::fmt::Debug for WriteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFile")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl WriteFile {
    pub(crate) async fn open(
        fs: &CairnFs,
        path: &ServerPath,
        options: &OpenOptions,
    ) -> ApiResult<Self> {
        let target = fs.access.resolve(path, Need::Write)?;
        if target.path.is_root() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "is_a_folder",
                format!("{path} is a folder"),
            ));
        }
        let existing = fs.state.meta.stat(target.ns, &target.path).await?;
        let base_rev = match &existing {
            Some(e) if e.kind == EntryKind::Folder => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "is_a_folder",
                    format!("{path} is a folder"),
                ))
            }
            Some(_) if options.create_new => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "already_exists",
                    format!("{path} already exists"),
                ))
            }
            Some(e) => e.rev,
            None if !options.create => {
                return Err(ApiError::not_found(format!("{path} does not exist")))
            }
            None => None,
        };
        fs.check_parent(path).await?;
        files::check_upload_fits(&fs.state, &target, options.size.map(|n| n as i64)).await?;
        // A couple of frames in flight: the request's body is read as fast as the
        // chunker and the store take it, no faster.
        let (sender, receiver) = mpsc::channel(2);
        let (blocks, user) = (fs.state.blocks.clone(), fs.access.auth.user.clone());
        let task = tokio::spawn(async move { blocks.store_stream(&user, receiver).await });
        Ok(Self {
            fs: fs.clone(),
            path: path.clone(),
            target,
            base_rev,
            expected: options.size,
            written: 0,
            sender: Some(sender),
            task: Some(task),
            done: None,
        })
    }

    /// The chunker's result: its block list, or why it stopped.
    async fn finish(&mut self) -> ApiResult<Vec<BlockRef>> {
        self.sender = None;
        let task = self
            .task
            .take()
            .ok_or_else(|| ApiError::internal("an upload was finished twice"))?;
        let blocks = task.await.map_err(ApiError::internal)??;
        Ok(blocks)
    }

    async fn send(&mut self, bytes: Bytes) -> ApiResult<()> {
        self.written += bytes.len() as u64;
        let sent = match self.sender.as_mut() {
            Some(sender) => sender.send(Ok(bytes)).await.is_ok(),
            None => false,
        };
        if !sent {
            // The chunker stopped early: its error says why.
            self.finish().await?;
            return Err(ApiError::internal("the upload's chunker stopped early"));
        }
        Ok(())
    }

    async fn commit(&mut self) -> ApiResult<Meta> {
        if let Some(expected) = self.expected.filter(|e| *e != self.written) {
            return Err(ApiError::bad_request(
                "upload_interrupted",
                format!(
                    "the body ended after {} of the {expected} bytes declared; nothing was stored",
                    self.written
                ),
            ));
        }
        let blocks = self.finish().await?;
        let fs = &self.fs;
        files::commit_blocks(
            &fs.state,
            &fs.access,
            &self.target,
            blocks,
            self.base_rev,
            true,
            fs.mtime,
        )
        .await?;
        fs.meta_of(&self.path).await
    }
}

impl DavFile for WriteFile {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        async move {
            let meta = match &self.done {
                Some(meta) => meta.clone(),
                None => self
                    .fs
                    .meta_of(&self.path)
                    .await
                    .map_err(|e| self.fs.fail(e))?,
            };
            Ok(Box::new(meta) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn write_buf(&'_ mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        self.write_bytes(bytes)
    }

    fn write_bytes(&'_ mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move { self.send(buf).await.map_err(|e| self.fs.fail(e)) }.boxed()
    }

    fn read_bytes(&'_ mut self, _count: usize) -> FsFuture<'_, Bytes> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    /// Only to where the upload is: a partial PUT (`Content-Range`) is refused, since
    /// a new version is always a whole file.
    fn seek(&'_ mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let here = self.written;
        async move {
            match pos {
                SeekFrom::Start(n) if n == here => Ok(here),
                SeekFrom::Current(0) => Ok(here),
                _ => Err(FsError::NotImplemented),
            }
        }
        .boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        async move {
            if self.done.is_some() {
                return Ok(());
            }
            let meta = self.commit().await.map_err(|e| self.fs.fail(e))?;
            self.done = Some(meta);
            Ok(())
        }
        .boxed()
    }
}
