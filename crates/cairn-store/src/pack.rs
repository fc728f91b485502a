//! The pack file format: many small stored blocks in one immutable file.
//!
//! ```text
//! "CAIRNPK1"                                   8 bytes
//! record × n:  hash (32) · length (u32 LE) · the stored block (length bytes)
//! index × n:   hash (32) · offset of the stored block (u64 LE) · length (u32 LE)
//! trailer:     n (u32 LE) · BLAKE3 of the index (32) · "CAIRNPKE"
//! ```
//!
//! The index at the end lets a reader learn a pack's contents from one read of its
//! tail. The records carry their own hash and length, so a pack whose index is damaged
//! can still be read front to back ([`read_index`] falls back to that). Every block read
//! out of a pack is verified against its hash above the backend, like any other, so a
//! damaged record is reported as a corrupt block and never served.
//!
//! Everything here works on whole buffers or positioned reads ([`ReadAt`]: a file, a
//! buffer, or an object in S3 read by ranges); callers run it on a blocking thread.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use cairn_core::BlockHash;

use crate::backend::EncodedBlock;
use crate::codec::{HEADER_LEN, MAX_BLOCK_SIZE};

const MAGIC: &[u8; 8] = b"CAIRNPK1";
const TRAILER_MAGIC: &[u8; 8] = b"CAIRNPKE";
const RECORD_HEADER: u64 = 32 + 4;
const INDEX_ENTRY: u64 = 32 + 8 + 4;
const TRAILER: u64 = 4 + 32 + 8;
/// No stored block is longer: the longest raw block plus its header.
const MAX_STORED: u64 = (MAX_BLOCK_SIZE + HEADER_LEN) as u64;

/// Where one block sits in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackEntry {
    pub hash: BlockHash,
    /// Offset of the stored block (after its record header) from the start of the file.
    pub offset: u64,
    pub len: u32,
}

/// Positioned reads of a pack, wherever it is kept.
pub(crate) trait ReadAt {
    /// The pack's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; [`io::ErrorKind::UnexpectedEof`] past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// Lays out a pack holding `blocks`, in order. Returns the file's bytes and its index.
pub(crate) fn encode(blocks: &[(BlockHash, &EncodedBlock)]) -> (Vec<u8>, Vec<PackEntry>) {
    let records: u64 = blocks.iter().map(|(_, b)| RECORD_HEADER + b.len()).sum();
    let total = MAGIC.len() as u64 + records + INDEX_ENTRY * blocks.len() as u64 + TRAILER;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(MAGIC);
    let mut index = Vec::with_capacity(blocks.len());
    for (hash, block) in blocks {
        let len = u32::try_from(block.len()).expect("a stored block is at most 64 MiB");
        out.extend_from_slice(&hash.0);
        out.extend_from_slice(&len.to_le_bytes());
        index.push(PackEntry {
            hash: *hash,
            offset: out.len() as u64,
            len,
        });
        out.extend_from_slice(&block.header);
        out.extend_from_slice(&block.payload);
    }
    let index_start = out.len();
    for entry in &index {
        out.extend_from_slice(&entry.hash.0);
        out.extend_from_slice(&entry.offset.to_le_bytes());
        out.extend_from_slice(&entry.len.to_le_bytes());
    }
    let checksum = blake3::hash(&out[index_start..]);
    out.extend_from_slice(&(index.len() as u32).to_le_bytes());
    out.extend_from_slice(checksum.as_bytes());
    out.extend_from_slice(TRAILER_MAGIC);
    debug_assert_eq!(out.len() as u64, total);
    (out, index)
}

/// How a pack's contents were learnt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IndexSource {
    /// From the index at its end, checksum verified.
    Trailer,
    /// From its records, because the index was damaged: `reason` says how.
    Scan { reason: String },
}

/// Reads a pack's index: from its trailer when that is intact, else by walking its
/// records from the start (stopping at the first that does not fit in the file).
pub(crate) fn read_index<R: ReadAt + ?Sized>(
    file: &R,
) -> io::Result<(Vec<PackEntry>, IndexSource)> {
    let len = file.len()?;
    let mut magic = [0u8; 8];
    if len < MAGIC.len() as u64 {
        return Ok((Vec::new(), scan_reason("shorter than its magic")));
    }
    file.read_exact_at(&mut magic, 0)?;
    if &magic != MAGIC {
        // Not one of ours at all: nothing in it can be trusted to be a record.
        return Ok((Vec::new(), scan_reason("bad magic")));
    }
    match index_from_trailer(file, len)? {
        Ok(entries) => Ok((entries, IndexSource::Trailer)),
        Err(reason) => Ok((scan_records(file, len)?, IndexSource::Scan { reason })),
    }
}

fn scan_reason(reason: &str) -> IndexSource {
    IndexSource::Scan {
        reason: reason.to_owned(),
    }
}

fn index_from_trailer<R: ReadAt + ?Sized>(
    file: &R,
    len: u64,
) -> io::Result<Result<Vec<PackEntry>, String>> {
    if len < MAGIC.len() as u64 + TRAILER {
        return Ok(Err("no room for a trailer".into()));
    }
    let mut trailer = [0u8; TRAILER as usize];
    file.read_exact_at(&mut trailer, len - TRAILER)?;
    if &trailer[36..] != TRAILER_MAGIC {
        return Ok(Err("bad trailer magic".into()));
    }
    let count = u64::from(u32::from_le_bytes(
        trailer[..4].try_into().expect("4 bytes"),
    ));
    let index_len = count * INDEX_ENTRY;
    let Some(index_start) = (len - TRAILER)
        .checked_sub(index_len)
        .filter(|&s| s >= MAGIC.len() as u64)
    else {
        return Ok(Err(format!("an index of {count} entries does not fit")));
    };
    let mut raw = vec![0u8; index_len as usize];
    file.read_exact_at(&mut raw, index_start)?;
    if blake3::hash(&raw).as_bytes()[..] != trailer[4..36] {
        return Ok(Err("index checksum mismatch".into()));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for raw in raw.chunks_exact(INDEX_ENTRY as usize) {
        let entry = PackEntry {
            hash: BlockHash(raw[..32].try_into().expect("32 bytes")),
            offset: u64::from_le_bytes(raw[32..40].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(raw[40..44].try_into().expect("4 bytes")),
        };
        let fits = entry.offset >= MAGIC.len() as u64 + RECORD_HEADER
            && u64::from(entry.len) <= MAX_STORED
            && entry.offset + u64::from(entry.len) <= index_start;
        if !fits {
            return Ok(Err(format!(
                "entry for {} points outside the records",
                entry.hash
            )));
        }
        entries.push(entry);
    }
    Ok(Ok(entries))
}

fn scan_records<R: ReadAt + ?Sized>(file: &R, len: u64) -> io::Result<Vec<PackEntry>> {
    let mut entries = Vec::new();
    let mut at = MAGIC.len() as u64;
    let mut header = [0u8; RECORD_HEADER as usize];
    while at + RECORD_HEADER <= len {
        file.read_exact_at(&mut header, at)?;
        let stored = u32::from_le_bytes(header[32..].try_into().expect("4 bytes"));
        let offset = at + RECORD_HEADER;
        if u64::from(stored) > MAX_STORED || offset + u64::from(stored) > len {
            break;
        }
        entries.push(PackEntry {
            hash: BlockHash(header[..32].try_into().expect("32 bytes")),
            offset,
            len: stored,
        });
        at = offset + u64::from(stored);
    }
    Ok(entries)
}

/// Reads one stored block out of a pack.
pub(crate) fn read_block<R: ReadAt + ?Sized>(file: &R, entry: &PackEntry) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; entry.len as usize];
    file.read_exact_at(&mut buf, entry.offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Write;

    fn blocks(n: usize) -> Vec<(BlockHash, EncodedBlock)> {
        (0..n)
            .map(|i| {
                let data = Bytes::from(vec![i as u8; 100 + i]);
                let block = crate::codec::encode(&data);
                (BlockHash::of(&data), block)
            })
            .collect()
    }

    fn write(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(bytes).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file)
    }

    #[test]
    fn a_pack_reads_back_through_its_index() {
        let blocks = blocks(20);
        let refs: Vec<_> = blocks.iter().map(|(h, b)| (*h, b)).collect();
        let (bytes, index) = encode(&refs);
        let (_tmp, file) = write(&bytes);
        let (read, source) = read_index(&file).unwrap();
        assert_eq!(source, IndexSource::Trailer);
        assert_eq!(read, index);
        for ((hash, block), entry) in blocks.iter().zip(&read) {
            assert_eq!(entry.hash, *hash);
            let stored = read_block(&file, entry).unwrap();
            let expected: Vec<u8> = [block.header.clone(), block.payload.clone()].concat();
            assert_eq!(stored, expected);
            let plain = crate::codec::decode_and_verify(hash, Bytes::from(stored)).unwrap();
            assert_eq!(BlockHash::of(&plain), *hash);
        }
    }

    #[test]
    fn a_damaged_index_falls_back_to_the_records() {
        let blocks = blocks(5);
        let refs: Vec<_> = blocks.iter().map(|(h, b)| (*h, b)).collect();
        let (mut bytes, index) = encode(&refs);
        // Flip a byte of the index: its checksum no longer matches.
        let at = bytes.len() - TRAILER as usize - 3;
        bytes[at] ^= 0xff;
        let (_tmp, file) = write(&bytes);
        let (read, source) = read_index(&file).unwrap();
        assert!(matches!(source, IndexSource::Scan { .. }), "{source:?}");
        assert_eq!(&read[..5], &index[..]);
    }

    #[test]
    fn a_truncated_pack_yields_the_records_that_are_whole() {
        let blocks = blocks(5);
        let refs: Vec<_> = blocks.iter().map(|(h, b)| (*h, b)).collect();
        let (bytes, index) = encode(&refs);
        let cut = (index[3].offset + 10) as usize;
        let (_tmp, file) = write(&bytes[..cut]);
        let (read, _) = read_index(&file).unwrap();
        assert_eq!(read, index[..3]);
    }

    #[test]
    fn a_foreign_file_yields_nothing() {
        let (_tmp, file) = write(b"this is not a pack file at all, but long enough");
        let (read, source) = read_index(&file).unwrap();
        assert!(read.is_empty());
        assert!(matches!(source, IndexSource::Scan { .. }));
    }
}
