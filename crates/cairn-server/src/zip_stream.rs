//! Files and folders as a zip, streamed: written on a blocking thread into a small
//! bounded channel that the response body reads, one block at a time, so memory stays at
//! a few hundred KiB plus one block however large the folders and their files are. The
//! one zip writer of the server: a public link's folder (`links/public.rs`) and a
//! signed-in user's selection (`files/zip.rs`) both go through [`zip_body`].
//!
//! Entries are stored (not compressed: most large files are compressed already, and the
//! server's CPU is better spent elsewhere) with data descriptors, since nothing is
//! known about an entry's CRC before its bytes are written; a file of 4 GiB or more,
//! and a zip past 4 GiB, get zip64 records.

use std::io::{self, Write};

use axum::body::Body;
use bytes::Bytes;
use cairn_core::display::civil_from_days;
use cairn_core::{NamespaceId, ServerPath, VersionId};
use cairn_meta::EntryKind;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::metrics::BLOCK_BYTES_SENT;
use crate::state::AppState;

/// How many bytes one body chunk carries.
const CHUNK: usize = 256 << 10;
/// How many chunks wait for a slow client before the writer waits too.
const QUEUED: usize = 4;
/// How many children of a folder are listed at a time.
const PAGE: u32 = 1000;

/// One thing at the top of a zip: a file, or a folder with everything below it.
#[derive(Debug, Clone)]
pub struct ZipRoot {
    /// The namespace it lives in.
    pub ns: NamespaceId,
    /// Its path inside that namespace.
    pub path: ServerPath,
    /// Its name in the zip (a folder's entries sit below `name/`).
    pub name: String,
    /// A file's current version; `None` for a folder.
    pub rev: Option<VersionId>,
    /// Its modification time (Unix ms), if the zip should carry it.
    pub mtime: Option<i64>,
}

/// The folder at `folder` in `ns` as a zip body whose entries all sit below `top/`.
pub fn folder_body(state: AppState, ns: NamespaceId, folder: ServerPath, top: String) -> Body {
    zip_body(
        state,
        vec![ZipRoot {
            ns,
            path: folder,
            name: top,
            rev: None,
            mtime: None,
        }],
    )
}

/// `roots` as a zip body, in that order, each folder with everything below it.
pub fn zip_body(state: AppState, roots: Vec<ZipRoot>) -> Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUED);
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_zip(&handle, &state, &roots, &mut out);
        if let Err(err) = result {
            // Cut the response off with an error rather than ending it: a zip that
            // merely stopped would look complete to a client reading without a length.
            if err.kind() != io::ErrorKind::BrokenPipe {
                let first = roots
                    .first()
                    .map(|r| r.path.to_string())
                    .unwrap_or_default();
                tracing::error!("zip of {} items from {first} failed: {err}", roots.len());
            }
            let _ = tx.blocking_send(Err(err));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

type Zip<'a> = ZipWriter<zip::write::StreamWriter<&'a mut ChannelWriter>>;

fn write_zip(
    handle: &Handle,
    state: &AppState,
    roots: &[ZipRoot],
    out: &mut ChannelWriter,
) -> io::Result<()> {
    let mut zip = ZipWriter::new_stream(&mut *out);
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for root in roots {
        let options = match root.mtime {
            Some(mtime) => options.last_modified_time(zip_time(mtime)),
            None => options,
        };
        match root.rev {
            Some(rev) => add_file(handle, state, &mut zip, root.name.clone(), rev, options)?,
            None => add_tree(handle, state, &mut zip, root, options)?,
        }
    }
    zip.finish().map_err(io::Error::other)?;
    out.send()
}

/// The folder `root` and everything below it.
fn add_tree(
    handle: &Handle,
    state: &AppState,
    zip: &mut Zip<'_>,
    root: &ZipRoot,
    options: SimpleFileOptions,
) -> io::Result<()> {
    let ns = root.ns;
    add_folder(zip, format!("{}/", root.name), options)?;
    // Folders still to list: inside the namespace, their name in the zip, and where
    // their listing stopped. A folder with more than a page of children goes back on
    // the stack to be continued, so only a page per folder level is held.
    let mut pending: Vec<(ServerPath, String, Option<String>)> =
        vec![(root.path.clone(), root.name.clone(), None)];
    while let Some((path, name, after)) = pending.pop() {
        let children = handle
            .block_on(state.meta.list_folder(ns, &path, after.as_deref(), PAGE))
            .map_err(io::Error::other)?;
        if children.len() == PAGE as usize {
            let last = children.last().map(|e| e.path.key());
            pending.push((path.clone(), name.clone(), last));
        }
        for child in children {
            let child_name = format!("{name}/{}", child.path.name().unwrap_or(""));
            let options = options.last_modified_time(zip_time(child.mtime));
            match (child.kind, child.rev) {
                (EntryKind::Folder, _) => {
                    add_folder(zip, format!("{child_name}/"), options)?;
                    pending.push((child.path, child_name, None));
                }
                (EntryKind::File, Some(rev)) => {
                    add_file(handle, state, zip, child_name, rev, options)?;
                }
                (EntryKind::File, None) => {}
            }
        }
    }
    Ok(())
}

/// One file: version `rev`'s blocks, each verified as it is read.
fn add_file(
    handle: &Handle,
    state: &AppState,
    zip: &mut Zip<'_>,
    name: String,
    rev: VersionId,
    options: SimpleFileOptions,
) -> io::Result<()> {
    let blocks = handle
        .block_on(state.meta.version_blocks(rev))
        .map_err(io::Error::other)?;
    let size: u64 = blocks.iter().map(|b| u64::from(b.size)).sum();
    let options = options.large_file(size >= u64::from(u32::MAX));
    zip.start_file(name, options).map_err(io::Error::other)?;
    for block in blocks {
        let data = handle
            .block_on(state.blocks.read(block.hash))
            .map_err(io::Error::other)?;
        zip.write_all(&data)?;
        metrics::counter!(BLOCK_BYTES_SENT).increment(data.len() as u64);
    }
    Ok(())
}

/// A folder entry. Not `ZipWriter::add_directory`: on a stream, it sets the entry's
/// data-descriptor flag but writes no descriptor, and Info-ZIP's `unzip` then refuses the
/// whole archive ("overlapped components"). An empty file whose name ends in '/', with a
/// folder's mode, is a folder to every reader, and gets its descriptor.
fn add_folder<W: Write>(
    zip: &mut ZipWriter<zip::write::StreamWriter<W>>,
    name: String,
    options: SimpleFileOptions,
) -> io::Result<()> {
    zip.start_file(name, options.unix_permissions(0o40755))
        .map_err(io::Error::other)
}

/// A zip timestamp (local time without a zone; here UTC) from Unix ms, or the format's
/// earliest time when outside its range (1980–2107).
fn zip_time(ms: i64) -> DateTime {
    let secs = ms.div_euclid(1000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let stamp = u16::try_from(y).ok().and_then(|y| {
        DateTime::from_date_and_time(
            y,
            m as u8,
            d as u8,
            (of_day / 3600) as u8,
            (of_day % 3600 / 60) as u8,
            // The format keeps seconds in steps of two.
            (of_day % 60 / 2 * 2) as u8,
        )
        .ok()
    });
    stamp.unwrap_or_default()
}

/// Collects written bytes into chunks of [`CHUNK`] and hands each to the response
/// body, waiting while [`QUEUED`] chunks are already waiting.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The zip writer flushes often; chunks go out when full or at the end.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_times() {
        // 2024-02-29 13:45:31 UTC.
        let t = zip_time(1_709_214_331_000);
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2024, 2, 29, 13, 45, 30)
        );
        assert_eq!(zip_time(0), DateTime::default());
    }
}
