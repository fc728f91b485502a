//! Downloading a file block by block into a temp file that is renamed into place.
//!
//! Blocks are fetched in parallel (bounded), each checked against its BLAKE3 hash before
//! a byte of it is written, and written at its offset. The block list itself is checked
//! against the entry's content hash before anything is fetched. Only when every block is
//! in and the temp file is fsynced is it renamed over the destination, so a reader sees
//! the old file or the whole new one, never a mix, and a failed download leaves nothing.
//!
//! Given an older copy of the file and its block list ([`DownloadOptions::reuse`]), the
//! blocks the two share are read from that copy, checked against their hash like any
//! other, rather than fetched: after a small edit to a large file only the changed
//! blocks cross the network.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_core::{content_hash, BlockHash};
use cairn_proto::{EntryInfo, EntryKind, FileBlocksResponse};
use futures::{StreamExt, TryStreamExt};

use crate::error::ClientError;
use crate::fsx;
use crate::upload::ProgressFn;
use crate::Client;

/// How hard [`Client::download_file`] works.
pub struct DownloadOptions {
    /// Block downloads in flight at once (at least 1; default 4).
    pub parallelism: usize,
    /// Progress reports: bytes of the file written so far.
    pub progress: Option<ProgressFn>,
    /// Asked, once the content is complete and durable and just before it replaces the
    /// destination, whether it still may; a sync client checks there that nobody
    /// changed the destination meanwhile. `false` leaves the destination alone and
    /// fails with [`ClientError::DestinationChanged`].
    pub may_replace: Option<ReplaceCheck>,
    /// A local copy of an older version of the file, whose blocks are read from it
    /// rather than fetched wherever the new version has them too.
    pub reuse: Option<LocalCopy>,
    /// A temp file already holding some of the blocks at their offsets (streaming
    /// sync fetched them before the commit): used as the download's temp file when it
    /// was made for the very block list the server now lists, else removed.
    pub staged: Option<Staged>,
}

/// See [`DownloadOptions::staged`]. The blocks in `held` were checked against their
/// hash before they were written; the rest of the file is fetched as usual.
#[derive(Debug)]
pub struct Staged {
    /// Made by [`temp_beside`] for the destination, or in a folder on the same file
    /// system.
    pub temp: tempfile::NamedTempFile,
    /// The block list it was laid out for.
    pub blocks: Vec<(BlockHash, u32)>,
    /// The blocks written to it, at every offset the list has them.
    pub held: HashSet<BlockHash>,
}

/// A local file and the blocks it was made of, in order. A block read from it is used
/// only if it still hashes as listed; if not, it is fetched.
#[derive(Debug, Clone)]
pub struct LocalCopy {
    pub path: PathBuf,
    pub blocks: Vec<(BlockHash, u32)>,
}

/// See [`DownloadOptions::may_replace`]; called with the destination path.
pub type ReplaceCheck = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            parallelism: 4,
            progress: None,
            may_replace: None,
            reuse: None,
            staged: None,
        }
    }
}

impl fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("parallelism", &self.parallelism)
            .field("progress", &self.progress.is_some())
            .field("may_replace", &self.may_replace.is_some())
            .field("reuse", &self.reuse.as_ref().map(|r| &r.path))
            .field("staged", &self.staged.as_ref().map(|s| s.temp.path()))
            .finish()
    }
}

/// What a download transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadStats {
    /// The file's size.
    pub bytes_total: u64,
    /// Block payload bytes received; less than the size when the file repeats blocks.
    pub bytes_received_payload: u64,
    /// Distinct blocks fetched from the server (not those read from a local copy).
    pub blocks_downloaded: u64,
    /// Blocks in the file, repeats included.
    pub blocks_total: u64,
}

/// The result of [`Client::download_file`].
#[derive(Debug, Clone)]
pub struct DownloadOutcome {
    /// The entry as it was when its block list was read; the local file has its content.
    pub entry: EntryInfo,
    /// What was transferred.
    pub stats: DownloadStats,
    /// The file's blocks, in order.
    pub blocks: Vec<(BlockHash, u32)>,
    /// The file's metadata as placed: read from the temp file once it was durable,
    /// before the rename. A change made at the destination after the rename (an editor
    /// saving over the new file) therefore shows as a stat other than this one, where a
    /// stat taken after the rename could already include it.
    pub placed: std::fs::Metadata,
}

/// One distinct block and every offset where the file holds it.
struct BlockPlacement {
    hash: BlockHash,
    size: u32,
    offsets: Vec<u64>,
    /// Where the block list first has it.
    first: usize,
    /// A block of the old copy to fetch it as a patch against, if it is not there.
    base: Option<BlockHash>,
}

impl Client {
    /// Downloads the remote file `remote` to the local path `local`, replacing any file
    /// there only once the whole content has arrived and been verified.
    pub async fn download_file(
        &self,
        remote: &str,
        local: &Path,
        options: DownloadOptions,
    ) -> Result<DownloadOutcome, ClientError> {
        let listing = self.file_blocks(remote).await?;
        let (entry, blocks) = verified_block_list(listing)?;
        let (mut placements, total) = place_blocks(&blocks);

        let temp = match options.staged {
            Some(staged) if staged.blocks == blocks => {
                placements.retain(|p| !staged.held.contains(&p.hash));
                staged.temp
            }
            _ => temp_beside(local)?,
        };
        let file = Arc::new(
            temp.as_file()
                .try_clone()
                .map_err(|err| ClientError::io(temp.path(), err))?,
        );
        file.set_len(total)
            .map_err(|err| ClientError::io(temp.path(), err))?;

        let mut stats = DownloadStats {
            bytes_total: total,
            blocks_total: blocks.len() as u64,
            ..DownloadStats::default()
        };
        let temp_path = temp.path().to_owned();
        let old = options.reuse.as_ref().and_then(OldCopy::open).map(Arc::new);
        if let Some(old) = &old {
            old.choose_bases(&blocks, &mut placements);
        }
        let mut done = 0u64;
        let mut writes = futures::stream::iter(placements)
            .map(|placement| {
                let file = Arc::clone(&file);
                self.write_placement(placement, file, temp_path.clone(), old.clone())
            })
            .buffer_unordered(options.parallelism.max(1));
        // Dropping `temp` on an early return below removes the temp file.
        while let Some((received, written)) = writes.try_next().await? {
            if let Some(bytes) = received {
                stats.blocks_downloaded += 1;
                stats.bytes_received_payload += bytes;
            }
            done += written;
            if let Some(progress) = &options.progress {
                progress(done);
            }
        }
        drop(writes);

        let local = local.to_owned();
        let may_replace = options.may_replace.clone();
        let placed = tokio::task::spawn_blocking(move || finish(temp, &file, &local, may_replace))
            .await
            .map_err(|err| ClientError::Protocol(format!("finishing task failed: {err}")))??;
        Ok(DownloadOutcome {
            entry,
            stats,
            blocks,
            placed,
        })
    }

    /// Writes one distinct block at every offset the file holds it, read from the old
    /// copy when it has the block, else fetched. Returns the payload bytes that crossed
    /// the network (if any did) and the bytes written.
    async fn write_placement(
        &self,
        placement: BlockPlacement,
        file: Arc<File>,
        temp_path: PathBuf,
        old: Option<Arc<OldCopy>>,
    ) -> Result<(Option<u64>, u64), ClientError> {
        let from_old = match &old {
            Some(old) => old.read(placement.hash).await,
            None => None,
        };
        let (data, received) = match from_old {
            Some(data) => (data, None),
            None => {
                // The base's bytes, if the old copy still has them as listed.
                let base = match (&old, placement.base) {
                    (Some(old), Some(base)) => old.read(base).await.map(|bytes| (base, bytes)),
                    _ => None,
                };
                let (data, received) = self
                    .get_block_near(&placement.hash, placement.size, base)
                    .await
                    .map_err(|err| err.of_listed_block(&placement.hash))?;
                (data, Some(received))
            }
        };
        if data.len() != placement.size as usize {
            return Err(ClientError::Corrupt {
                hash: placement.hash.to_hex(),
            });
        }
        let written = tokio::task::spawn_blocking(move || {
            for offset in &placement.offsets {
                fsx::write_all_at(&file, &data, *offset)?;
            }
            Ok::<_, std::io::Error>(data.len() as u64 * placement.offsets.len() as u64)
        })
        .await
        .map_err(|err| ClientError::Protocol(format!("write task failed: {err}")))?
        .map_err(|err| ClientError::io(&temp_path, err))?;
        Ok((received, written))
    }
}

/// Each distinct block of a file's block list with every offset where the file holds
/// it, in order of first appearance; and the file's size.
fn place_blocks(blocks: &[(BlockHash, u32)]) -> (Vec<BlockPlacement>, u64) {
    let mut placements: Vec<BlockPlacement> = Vec::new();
    let mut index: HashMap<BlockHash, usize> = HashMap::new();
    let mut offset = 0u64;
    for (first, &(hash, size)) in blocks.iter().enumerate() {
        let slot = *index.entry(hash).or_insert_with(|| {
            placements.push(BlockPlacement {
                hash,
                size,
                offsets: Vec::new(),
                first,
                base: None,
            });
            placements.len() - 1
        });
        placements[slot].offsets.push(offset);
        offset += u64::from(size);
    }
    (placements, offset)
}

/// A file's content as a stream of verified blocks, in order: see
/// [`Client::content_stream`].
pub struct ContentStream<'a> {
    /// The entry as it was when its block list was read.
    pub entry: EntryInfo,
    /// The file's blocks, in order; an error ends the content early.
    pub blocks: futures::stream::BoxStream<'a, Result<bytes::Bytes, ClientError>>,
}

impl fmt::Debug for ContentStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentStream")
            .field("entry", &self.entry.path)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Streams the remote file `remote` block by block, in order, for a caller that
    /// writes it somewhere it cannot rename into (standard output). Each block is
    /// checked against its hash before it is yielded (and the block list against the
    /// entry's content hash before anything is fetched), so what the caller writes is
    /// always a correct prefix of the file; a block that cannot be fetched intact ends
    /// the stream with its error. Up to `parallelism` blocks are fetched ahead, which
    /// bounds memory by that many blocks.
    pub async fn content_stream(
        &self,
        remote: &str,
        parallelism: usize,
    ) -> Result<ContentStream<'_>, ClientError> {
        let listing = self.file_blocks(remote).await?;
        let (entry, blocks) = verified_block_list(listing)?;
        let stream = futures::stream::iter(blocks)
            .map(move |(hash, size)| async move {
                let data = self
                    .get_block(&hash)
                    .await
                    .map_err(|err| err.of_listed_block(&hash))?;
                if data.len() != size as usize {
                    return Err(ClientError::Corrupt {
                        hash: hash.to_hex(),
                    });
                }
                Ok(data)
            })
            .buffered(parallelism.max(1));
        Ok(ContentStream {
            entry,
            blocks: stream.boxed(),
        })
    }
}

/// A file's entry and block list as the server sent them, checked to add up to its
/// size and content hash before anything is fetched.
fn verified_block_list(
    listing: FileBlocksResponse,
) -> Result<(EntryInfo, Vec<(BlockHash, u32)>), ClientError> {
    let entry = listing.entry;
    if entry.kind != EntryKind::File {
        return Err(ClientError::NotAFile {
            path: entry.path.clone(),
        });
    }
    let mut blocks = Vec::with_capacity(listing.blocks.len());
    let mut sizes: HashMap<BlockHash, u32> = HashMap::new();
    let mut total = 0u64;
    for block in &listing.blocks {
        let hash = BlockHash::from_hex(&block.hash)
            .map_err(|err| ClientError::Protocol(format!("the server sent {err}")))?;
        // The same block twice must be the same size twice.
        if *sizes.entry(hash).or_insert(block.size) != block.size {
            return Err(ClientError::ContentMismatch {
                path: entry.path.clone(),
            });
        }
        blocks.push((hash, block.size));
        total += u64::from(block.size);
    }
    let hash_matches = entry.content_hash.as_deref().is_none_or(|expected| {
        content_hash(blocks.iter().map(|(hash, _)| hash)).to_hex() == expected
    });
    if total != entry.size || !hash_matches {
        return Err(ClientError::ContentMismatch {
            path: entry.path.clone(),
        });
    }
    Ok((entry, blocks))
}

/// An older copy of the file being downloaded, open, with where each of its blocks is.
struct OldCopy {
    file: Arc<File>,
    at: HashMap<BlockHash, (u64, u32)>,
    blocks: Vec<(BlockHash, u32)>,
}

impl OldCopy {
    /// `None` if the copy cannot be opened: the download then fetches everything.
    fn open(copy: &LocalCopy) -> Option<OldCopy> {
        let file = File::open(&copy.path).ok()?;
        let mut at = HashMap::with_capacity(copy.blocks.len());
        let mut offset = 0u64;
        for &(hash, size) in &copy.blocks {
            at.entry(hash).or_insert((offset, size));
            offset += u64::from(size);
        }
        Some(OldCopy {
            file: Arc::new(file),
            at,
            blocks: copy.blocks.clone(),
        })
    }

    /// Names, for each block the copy lacks, the copy's block to fetch it as a patch
    /// against (`cairn_core::delta::pick_bases`).
    fn choose_bases(&self, new: &[(BlockHash, u32)], placements: &mut [BlockPlacement]) {
        let bases = cairn_core::delta::pick_bases(&self.blocks, new);
        for placement in placements {
            placement.base = bases[placement.first].map(|at| self.blocks[at].0);
        }
    }

    /// The block `hash` read from the copy, if the copy has it and it still hashes as
    /// listed (the file may have changed since its list was made).
    async fn read(&self, hash: BlockHash) -> Option<bytes::Bytes> {
        let &(offset, size) = self.at.get(&hash)?;
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            let mut data = vec![0u8; size as usize];
            fsx::read_exact_at(&file, &mut data, offset).ok()?;
            (BlockHash::of(&data) == hash).then(|| bytes::Bytes::from(data))
        })
        .await
        .ok()
        .flatten()
    }
}

/// Fsyncs the temp file, renames it over `local` (if `may_replace` agrees) and fsyncs
/// the folder. Returns the file's metadata from before the rename.
fn finish(
    temp: tempfile::NamedTempFile,
    file: &File,
    local: &Path,
    may_replace: Option<ReplaceCheck>,
) -> Result<std::fs::Metadata, ClientError> {
    file.sync_all()
        .map_err(|err| ClientError::io(temp.path(), err))?;
    let placed = file
        .metadata()
        .map_err(|err| ClientError::io(temp.path(), err))?;
    if may_replace.is_some_and(|check| !check(local)) {
        return Err(ClientError::DestinationChanged {
            path: local.to_owned(),
        });
    }
    temp.persist(local)
        .map_err(|err| ClientError::io(local, err.error))?;
    fsx::sync_dir(parent_dir(local)).map_err(|err| ClientError::io(parent_dir(local), err))?;
    Ok(placed)
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates `.NAME.cairn-tmp-RANDOM` in the destination's folder, so the final rename
/// stays on one file system. It takes the permissions of the file it will replace, or
/// the usual ones for a new file.
pub fn temp_beside(local: &Path) -> Result<tempfile::NamedTempFile, ClientError> {
    let Some(name) = local.file_name() else {
        return Err(ClientError::io(
            local,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        ));
    };
    let name = name.to_string_lossy();
    // Keep the temp name under the usual 255-byte limit for a file name.
    let mut cut = name.len().min(200);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = format!(".{}.cairn-tmp-", &name[..cut]);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    match std::fs::metadata(local) {
        Ok(meta) if meta.is_file() => {
            builder.permissions(meta.permissions());
        }
        _ => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // The process umask still applies, as for any new file.
                builder.permissions(std::fs::Permissions::from_mode(0o666));
            }
        }
    }
    let dir = parent_dir(local);
    builder
        .tempfile_in(dir)
        .map_err(|err| ClientError::io(dir, err))
}
