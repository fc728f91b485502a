//! The stored form of a block: a fixed header, then the payload (raw or zstd).
//!
//! ```text
//! offset  size  field
//!      0     4  magic "CRB1"
//!      4     1  codec: 0 = raw, 1 = zstd
//!      5     3  reserved, zero
//!      8     8  plaintext length, little-endian u64
//!     16     …  payload
//! ```
//!
//! The plaintext length is in the header, not only inside the zstd frame, so that a reader
//! knows how much memory a block needs before it decompresses anything, refuses absurd
//! lengths up front, and notices a truncated raw block without hashing it first.
//!
//! Everything here is CPU work on whole buffers; callers run it on a blocking thread.

use bytes::Bytes;
use cairn_core::BlockHash;

use crate::backend::EncodedBlock;

/// The largest block the store accepts, and so the most a reader will ever decompress.
///
/// Cairn's chunker caps blocks at 8 MiB by default; the margin lets a server raise its
/// chunk sizes without a new on-disk format while still bounding what a garbled or
/// malicious zstd frame (a decompression bomb) can make a reader allocate.
pub const MAX_BLOCK_SIZE: usize = 64 << 20;

/// Length of the fixed header in front of every stored block.
pub const HEADER_LEN: usize = 16;

const MAGIC: [u8; 4] = *b"CRB1";
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// zstd level 1: on the 2-core machines Cairn targets, uploads must keep up with the disk
/// (~300 MB/s durable). Level 1 compresses text several times faster than level 3 and
/// gives up only a few percent of ratio; storage is cheaper than a stalled upload.
const ZSTD_LEVEL: i32 = 1;

/// How much of a block we compress first to decide whether compressing the whole block
/// is worth the CPU. Most large blocks are already compressed (media, archives) and this
/// keeps the cost of finding that out to a few tens of microseconds.
const SAMPLE_LEN: usize = 64 << 10;

/// Why a stored block could not be decoded. Callers turn every one of these into
/// `StoreError::Corrupt`; the reason is only logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    TooShort(usize),
    BadMagic,
    UnknownCodec(u8),
    ReservedNotZero,
    LengthTooLarge(u64),
    LengthMismatch { declared: u64, actual: u64 },
    Zstd(String),
    HashMismatch,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort(n) => write!(f, "{n} bytes is shorter than the header"),
            Self::BadMagic => f.write_str("unknown magic number"),
            Self::UnknownCodec(c) => write!(f, "unknown codec {c}"),
            Self::ReservedNotZero => f.write_str("reserved header bytes are not zero"),
            Self::LengthTooLarge(n) => write!(f, "declared length {n} exceeds the limit"),
            Self::LengthMismatch { declared, actual } => {
                write!(f, "declared length {declared}, found {actual}")
            }
            Self::Zstd(e) => write!(f, "zstd: {e}"),
            Self::HashMismatch => f.write_str("content does not match its hash"),
        }
    }
}

fn header(codec: u8, plain_len: usize) -> Bytes {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = codec;
    h[8..].copy_from_slice(&(plain_len as u64).to_le_bytes());
    Bytes::copy_from_slice(&h)
}

/// Chooses raw or zstd for `data` and returns the stored form.
///
/// Compresses only when a sample shrinks by more than 10% and the whole block then shrinks
/// by at least 1/16: below that, every later read would pay for decompression to save
/// almost nothing.
pub(crate) fn encode(data: &Bytes) -> EncodedBlock {
    if let Some(compressed) = try_compress(data) {
        return EncodedBlock {
            header: header(CODEC_ZSTD, data.len()),
            payload: Bytes::from(compressed),
        };
    }
    EncodedBlock {
        header: header(CODEC_RAW, data.len()),
        // Raw blocks share the caller's buffer: no copy on the upload path.
        payload: data.clone(),
    }
}

/// Inputs up to this size are (de)compressed with a context kept per thread; larger ones
/// with a context of their own, so a thread never keeps the memory a large block's
/// context grows to, and making a context costs nothing next to compressing megabytes.
const CACHED_CONTEXT_MAX: usize = SAMPLE_LEN;

/// zstd at [`ZSTD_LEVEL`]. Making a context for each small block (`zstd::bulk::compress`)
/// was 6% of the server's CPU in a first sync of small files.
fn compress(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() > CACHED_CONTEXT_MAX {
        return zstd::bulk::compress(data, ZSTD_LEVEL).ok();
    }
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some(compressor) => compressor,
            None => cell.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
        };
        compressor.compress(data).ok()
    })
}

/// zstd decompression into at most `capacity` bytes.
fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    if capacity > CACHED_CONTEXT_MAX {
        return zstd::bulk::decompress(data, capacity);
    }
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(decompressor) => decompressor,
            None => cell.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(data, capacity)
    })
}

fn try_compress(data: &[u8]) -> Option<Vec<u8>> {
    if data.is_empty() {
        return None;
    }
    let sample = &data[..data.len().min(SAMPLE_LEN)];
    // A compression error here would be a bug in zstd or an allocation failure; storing
    // the block raw is always correct, so we fall back rather than fail the upload.
    let compressed_sample = compress(sample)?;
    if compressed_sample.len() * 10 >= sample.len() * 9 {
        return None;
    }
    let compressed = if sample.len() == data.len() {
        compressed_sample
    } else {
        compress(data)?
    };
    (compressed.len() <= data.len() - data.len() / 16).then_some(compressed)
}

/// Decodes a stored block and checks that its plaintext hashes to `hash`.
///
/// Never panics on hostile input: every malformed header, truncated payload, corrupt
/// zstd frame or wrong content is a `DecodeError`.
pub(crate) fn decode_and_verify(hash: &BlockHash, stored: Bytes) -> Result<Bytes, DecodeError> {
    if stored.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(stored.len()));
    }
    if stored[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let codec = stored[4];
    if stored[5..8] != [0, 0, 0] {
        return Err(DecodeError::ReservedNotZero);
    }
    let declared = u64::from_le_bytes(stored[8..16].try_into().expect("8 bytes"));
    if declared > MAX_BLOCK_SIZE as u64 {
        return Err(DecodeError::LengthTooLarge(declared));
    }
    let payload = stored.slice(HEADER_LEN..);
    let plain = match codec {
        CODEC_RAW => payload,
        CODEC_ZSTD => {
            // The capacity bounds the output: a frame that would expand beyond the
            // declared length fails instead of allocating more.
            let out = decompress(&payload, declared as usize)
                .map_err(|e| DecodeError::Zstd(e.to_string()))?;
            Bytes::from(out)
        }
        other => return Err(DecodeError::UnknownCodec(other)),
    };
    if plain.len() as u64 != declared {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: plain.len() as u64,
        });
    }
    if blake3::hash(&plain).as_bytes() != &hash.0 {
        return Err(DecodeError::HashMismatch);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contiguous(e: &EncodedBlock) -> Bytes {
        let mut v = e.header.to_vec();
        v.extend_from_slice(&e.payload);
        Bytes::from(v)
    }

    fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                // xorshift64: deterministic and incompressible enough for zstd.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_and_picks_codec() {
        let cases: Vec<(Vec<u8>, u8)> = vec![
            (vec![], CODEC_RAW),
            (b"x".to_vec(), CODEC_RAW),
            (vec![0; 1000], CODEC_ZSTD),
            (vec![7; 3 << 20], CODEC_ZSTD),
            (pseudo_random(100_000, 1), CODEC_RAW),
            (b"hello world, ".repeat(10_000), CODEC_ZSTD),
        ];
        for (data, want_codec) in cases {
            let data = Bytes::from(data);
            let hash = BlockHash::of(&data);
            let enc = encode(&data);
            assert_eq!(enc.header[4], want_codec, "len {}", data.len());
            let back = decode_and_verify(&hash, contiguous(&enc)).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn compressible_tail_after_random_sample_stays_raw() {
        // The sample decides: a random first 64 KiB means no attempt on the rest. This
        // documents the trade-off rather than praising it.
        let mut data = pseudo_random(SAMPLE_LEN, 2);
        data.extend(std::iter::repeat_n(0u8, 1 << 20));
        let enc = encode(&Bytes::from(data));
        assert_eq!(enc.header[4], CODEC_RAW);
    }

    #[test]
    fn rejects_malformed_input_without_panicking() {
        let data = Bytes::from(b"abc".repeat(1000));
        let hash = BlockHash::of(&data);
        let good = contiguous(&encode(&data)).to_vec();
        assert_eq!(good[4], CODEC_ZSTD);

        let check = |bytes: Vec<u8>, want: fn(&DecodeError) -> bool| {
            let err = decode_and_verify(&hash, Bytes::from(bytes)).unwrap_err();
            assert!(want(&err), "unexpected {err:?}");
        };
        check(vec![], |e| matches!(e, DecodeError::TooShort(0)));
        check(good[..10].to_vec(), |e| {
            matches!(e, DecodeError::TooShort(10))
        });
        let mut bad = good.clone();
        bad[0] = b'X';
        check(bad, |e| *e == DecodeError::BadMagic);
        let mut bad = good.clone();
        bad[4] = 9;
        check(bad, |e| *e == DecodeError::UnknownCodec(9));
        let mut bad = good.clone();
        bad[6] = 1;
        check(bad, |e| *e == DecodeError::ReservedNotZero);
        let mut bad = good.clone();
        bad[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        check(bad, |e| matches!(e, DecodeError::LengthTooLarge(_)));
        // A shorter declared length than the frame holds: the bounded decoder refuses.
        let mut bad = good.clone();
        bad[8..16].copy_from_slice(&10u64.to_le_bytes());
        check(bad, |e| matches!(e, DecodeError::Zstd(_)));
        check(good[..good.len() - 1].to_vec(), |e| {
            matches!(e, DecodeError::Zstd(_))
        });
        for i in HEADER_LEN..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x55;
            assert!(
                decode_and_verify(&hash, Bytes::from(bad)).is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn decompression_bomb_is_refused() {
        // 64 MiB + 1 of zeros compresses to a few KiB; a header that lies about its
        // length must not let it expand past the limit.
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_BLOCK_SIZE + 1], 1).unwrap();
        let mut stored = header(CODEC_ZSTD, MAX_BLOCK_SIZE).to_vec();
        stored.extend_from_slice(&bomb);
        let err = decode_and_verify(&BlockHash([0; 32]), Bytes::from(stored)).unwrap_err();
        assert!(matches!(err, DecodeError::Zstd(_)), "{err:?}");
    }
}
