//! The body of `POST /blocks/batch`: blocks back to back, each a *frame* of its 32-byte
//! BLAKE3 hash, its length as a 4-byte big-endian integer, then its bytes.
//!
//! Bytes in, values out: the client writes frames with [`encode_frame`], the server
//! reads a whole body with [`decode_batch`] and verifies every frame (framing here,
//! hashes itself) before it stores any block. Decoding never allocates a declared
//! length: a frame names a range of the body it was given, so the server slices its
//! body without copying.

use std::fmt;
use std::ops::Range;

use crate::limits::{MAX_BLOCK_BATCH_BODY, MAX_BLOCK_BATCH_FRAMES};

/// The bytes of a block's hash at the start of its frame.
pub const HASH_LEN: usize = 32;

/// The frame header in front of each block: its hash and its length.
pub const FRAME_HEADER_LEN: usize = HASH_LEN + 4;

/// The body limit of the `/blocks/batch` route on a server whose blocks are at most
/// `max_block` bytes: [`MAX_BLOCK_BATCH_BODY`], or one frame of a maximal block if that
/// is larger, so any block can be sent in a batch of one.
pub fn body_limit(max_block: usize) -> usize {
    MAX_BLOCK_BATCH_BODY.max(max_block.saturating_add(FRAME_HEADER_LEN))
}

/// How many bytes the frame of a block of `block_len` bytes takes.
pub fn frame_len(block_len: usize) -> usize {
    FRAME_HEADER_LEN + block_len
}

/// A block that no frame can carry: its length does not fit the 4-byte length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTooLong {
    /// The block's length in bytes.
    pub len: usize,
}

impl fmt::Display for BlockTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a block of {} bytes is over a frame's 4 GiB", self.len)
    }
}

impl std::error::Error for BlockTooLong {}

/// Appends the frame of `block`, whose hash is `hash`, to `out`. Writes nothing if the
/// block is too long for a frame.
pub fn encode_frame(
    hash: &[u8; HASH_LEN],
    block: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BlockTooLong> {
    let len = u32::try_from(block.len()).map_err(|_| BlockTooLong { len: block.len() })?;
    out.reserve(frame_len(block.len()));
    out.extend_from_slice(hash);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(block);
    Ok(())
}

/// One frame of a decoded batch: the hash it claims and where its block is in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The hash the sender names for the block (not yet checked against it).
    pub hash: [u8; HASH_LEN],
    /// The block's bytes within the body that was decoded.
    pub block: Range<usize>,
}

/// Why a batch body is refused. Nothing of a refused batch is to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The body ends inside a frame header (fewer than [`FRAME_HEADER_LEN`] bytes left
    /// at byte `at`); bytes after the last whole frame end up here too.
    HeaderCutShort { at: usize },
    /// A block announces more bytes than the body still holds.
    BlockCutShort {
        hash: [u8; HASH_LEN],
        len: usize,
        available: usize,
    },
    /// A block announces more bytes than the receiver takes in one block.
    BlockTooLarge {
        hash: [u8; HASH_LEN],
        len: usize,
        max: usize,
    },
    /// The body holds more than `max` frames.
    TooManyFrames { max: usize },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderCutShort { at } => {
                write!(f, "the batch is cut short in the frame header at byte {at}")
            }
            Self::BlockCutShort {
                hash,
                len,
                available,
            } => write!(
                f,
                "block {} is cut short: {len} bytes announced, {available} sent",
                Hex(hash)
            ),
            Self::BlockTooLarge { hash, len, max } => {
                write!(f, "block {} is {len} bytes; the limit is {max}", Hex(hash))
            }
            Self::TooManyFrames { max } => {
                write!(f, "a batch holds at most {max} blocks; split it")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// A hash as lowercase hex, for messages.
struct Hex<'a>(&'a [u8; HASH_LEN]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The frames of a batch body, one at a time, each checked as it is reached: a header
/// cut short, a block over `max_block` bytes or cut short, or a frame past
/// `max_frames`, is an error, after which the iterator ends.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    body: &'a [u8],
    at: usize,
    max_block: usize,
    max_frames: usize,
    taken: usize,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Reads `body` with the given limits.
    pub fn new(body: &'a [u8], max_block: usize, max_frames: usize) -> Self {
        Self {
            body,
            at: 0,
            max_block,
            max_frames,
            taken: 0,
            failed: false,
        }
    }

    fn next_frame(&mut self) -> Result<Frame, BatchError> {
        if self.taken == self.max_frames {
            return Err(BatchError::TooManyFrames {
                max: self.max_frames,
            });
        }
        let rest = &self.body[self.at..];
        let (Some(hash), Some(len)) = (rest.get(..HASH_LEN), rest.get(HASH_LEN..FRAME_HEADER_LEN))
        else {
            return Err(BatchError::HeaderCutShort { at: self.at });
        };
        let mut claimed = [0u8; HASH_LEN];
        claimed.copy_from_slice(hash);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > self.max_block {
            return Err(BatchError::BlockTooLarge {
                hash: claimed,
                len,
                max: self.max_block,
            });
        }
        let start = self.at + FRAME_HEADER_LEN;
        let available = self.body.len() - start;
        if available < len {
            return Err(BatchError::BlockCutShort {
                hash: claimed,
                len,
                available,
            });
        }
        self.at = start + len;
        self.taken += 1;
        Ok(Frame {
            hash: claimed,
            block: start..start + len,
        })
    }
}

impl Iterator for Frames<'_> {
    type Item = Result<Frame, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at == self.body.len() {
            return None;
        }
        let frame = self.next_frame();
        self.failed = frame.is_err();
        Some(frame)
    }
}

/// Every frame of a whole batch body, or the first reason to refuse it: blocks of at
/// most `max_block` bytes, at most [`MAX_BLOCK_BATCH_FRAMES`] of them. An empty body is
/// an empty batch.
pub fn decode_batch(body: &[u8], max_block: usize) -> Result<Vec<Frame>, BatchError> {
    Frames::new(body, max_block, MAX_BLOCK_BATCH_FRAMES).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(blocks: &[([u8; HASH_LEN], Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (hash, block) in blocks {
            encode_frame(hash, block, &mut body).unwrap();
        }
        body
    }

    fn blocks() -> impl Strategy<Value = Vec<([u8; HASH_LEN], Vec<u8>)>> {
        prop::collection::vec(
            (
                any::<[u8; HASH_LEN]>(),
                prop::collection::vec(any::<u8>(), 0..300),
            ),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn frames_round_trip(blocks in blocks()) {
            let body = encode(&blocks);
            let expected: usize = blocks.iter().map(|(_, b)| frame_len(b.len())).sum();
            prop_assert_eq!(body.len(), expected);
            let frames = decode_batch(&body, 300).unwrap();
            prop_assert_eq!(frames.len(), blocks.len());
            for (frame, (hash, block)) in frames.iter().zip(&blocks) {
                prop_assert_eq!(&frame.hash, hash);
                prop_assert_eq!(&body[frame.block.clone()], &block[..]);
            }
        }

        /// Every prefix of a valid body but the frame boundaries is refused as cut
        /// short; the boundaries are valid shorter batches.
        #[test]
        fn every_truncation_is_refused(blocks in blocks()) {
            let body = encode(&blocks);
            let mut boundaries = vec![0];
            for (_, block) in &blocks {
                boundaries.push(boundaries.last().unwrap() + frame_len(block.len()));
            }
            for cut in 0..body.len() {
                let result = decode_batch(&body[..cut], 300);
                match boundaries.iter().position(|&b| b == cut) {
                    Some(whole) => prop_assert_eq!(result.unwrap().len(), whole),
                    None => prop_assert!(matches!(
                        result,
                        Err(BatchError::HeaderCutShort { .. } | BatchError::BlockCutShort { .. })
                    ), "cut at {cut}: {result:?}"),
                }
            }
        }

        /// Arbitrary bytes never panic: they decode or are refused.
        #[test]
        fn garbage_never_panics(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_batch(&body, 64);
        }
    }

    #[test]
    fn an_empty_body_is_an_empty_batch() {
        assert_eq!(decode_batch(&[], 10), Ok(Vec::new()));
    }

    #[test]
    fn a_zero_length_block_is_a_frame() {
        let body = encode(&[([7; 32], Vec::new())]);
        assert_eq!(body.len(), FRAME_HEADER_LEN);
        let frames = decode_batch(&body, 0).unwrap();
        assert_eq!(
            frames,
            vec![Frame {
                hash: [7; 32],
                block: FRAME_HEADER_LEN..FRAME_HEADER_LEN
            }]
        );
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_anything_is_read() {
        let mut body = vec![1u8; HASH_LEN];
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.extend_from_slice(b"short");
        assert_eq!(
            decode_batch(&body, 1 << 20),
            Err(BatchError::BlockTooLarge {
                hash: [1; 32],
                len: u32::MAX as usize,
                max: 1 << 20
            })
        );
        // Under the limit but past the end: cut short, with what was there.
        assert_eq!(
            decode_batch(&body, usize::MAX),
            Err(BatchError::BlockCutShort {
                hash: [1; 32],
                len: u32::MAX as usize,
                available: 5
            })
        );
    }

    #[test]
    fn a_block_over_the_limit_is_refused_even_when_present() {
        let body = encode(&[([2; 32], vec![0; 11])]);
        assert!(decode_batch(&body, 11).is_ok());
        assert!(matches!(
            decode_batch(&body, 10),
            Err(BatchError::BlockTooLarge {
                len: 11,
                max: 10,
                ..
            })
        ));
    }

    #[test]
    fn extra_bytes_after_the_last_frame_are_refused() {
        let mut body = encode(&[([3; 32], b"abc".to_vec())]);
        let end = body.len();
        body.extend_from_slice(&[0; 5]);
        assert_eq!(
            decode_batch(&body, 10),
            Err(BatchError::HeaderCutShort { at: end })
        );
    }

    #[test]
    fn frames_past_the_count_limit_are_refused() {
        let blocks: Vec<_> = (0..=MAX_BLOCK_BATCH_FRAMES)
            .map(|_| ([0u8; 32], Vec::new()))
            .collect();
        let body = encode(&blocks);
        assert_eq!(
            decode_batch(&body, 0),
            Err(BatchError::TooManyFrames {
                max: MAX_BLOCK_BATCH_FRAMES
            })
        );
        let fits = &body[..body.len() - FRAME_HEADER_LEN];
        assert_eq!(decode_batch(fits, 0).unwrap().len(), MAX_BLOCK_BATCH_FRAMES);
        // The iterator stops at the first error.
        let mut frames = Frames::new(&body, 0, 1);
        assert!(frames.next().unwrap().is_ok());
        assert!(frames.next().unwrap().is_err());
        assert!(frames.next().is_none());
    }

    #[test]
    fn messages_name_the_block() {
        let err = BatchError::BlockTooLarge {
            hash: [0xab; 32],
            len: 5,
            max: 4,
        };
        assert_eq!(
            err.to_string(),
            format!("block {} is 5 bytes; the limit is 4", "ab".repeat(32))
        );
    }

    #[test]
    fn the_route_limit_fits_a_maximal_block() {
        assert_eq!(body_limit(8 << 20), MAX_BLOCK_BATCH_BODY);
        assert_eq!(
            body_limit(MAX_BLOCK_BATCH_BODY),
            MAX_BLOCK_BATCH_BODY + FRAME_HEADER_LEN
        );
        assert_eq!(body_limit(usize::MAX), usize::MAX);
    }
}
