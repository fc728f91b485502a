//! Read-only memory maps of local files: the one module of this crate with `unsafe` code.
//!
//! Chunking a large file from a map instead of through `read` saves copying every byte
//! out of the page cache, and lets the two chunking threads work on different halves
//! of the file ([`cairn_core::chunk::chunk_and_hash_parallel_slice`]). Blocks that must
//! be uploaded are handed to the HTTP client as [`Bytes`] that point into the map, so
//! they are not copied either.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

/// A read-only map of a whole file, shared by the [`Bytes`] cut out of it; the map goes
/// away with its last user.
#[derive(Debug, Clone)]
pub(crate) struct MappedFile(Arc<memmap2::Mmap>);

impl MappedFile {
    /// Maps all of `file` (as long as it is now) read-only.
    pub(crate) fn map(file: &File) -> io::Result<Self> {
        // SAFETY: the map is only ever read, but other processes may change the file
        // while it is mapped, which Rust's rules for `&[u8]` do not allow for. Two
        // things can happen:
        // - the file is truncated: reading a mapped page past its new end raises SIGBUS,
        //   which kills the process. Nothing in safe code can prevent this; it is the
        //   price of the map, the same one `b3sum` and `ripgrep` pay, and the uploader
        //   uses maps only for regular files of several chunks, which sync tools rarely
        //   see truncated while they are being read.
        // - the bytes change: chunking and hashing see a mix of old and new content, and
        //   a block uploaded later may differ from the bytes its hash was computed from.
        //   The uploader compares the file's size and modification time after chunking
        //   with those before, and fails with `ChangedDuringUpload` if they differ; the
        //   server verifies every uploaded block against its hash, so a block changed
        //   after the check is refused rather than stored under a wrong name. The code
        //   reading the map makes no assumption about the bytes that a change could
        //   break (chunking accepts any bytes), so a change cannot cause memory errors.
        let map = unsafe { memmap2::Mmap::map(file) }?;
        Ok(Self(Arc::new(map)))
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `range` of the mapped bytes, without copying them.
    pub(crate) fn slice(&self, range: Range<usize>) -> Bytes {
        Bytes::from_owner(self.clone()).slice(range)
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_and_slices_a_file() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let map = MappedFile::map(&file).unwrap();
        assert_eq!(map.bytes(), &data[..]);
        let slice = map.slice(1000..5000);
        drop(map);
        assert_eq!(&slice[..], &data[1000..5000]);
    }
}
