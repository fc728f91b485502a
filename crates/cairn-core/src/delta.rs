//! Sub-block deltas: a changed block sent as its difference from a block the other side
//! holds, so a small edit inside a large block moves a few kilobytes instead of
//! megabytes. Blocks stay content-addressed; a delta is only a way to carry one, and
//! whoever rebuilds a block checks it against its hash, discarding a delta that does not
//! rebuild it.
//!
//! Two formats, one per direction, because the two sides know different things:
//!
//! - **Up** (client → server), **rsync**: the uploader no longer has the old content
//!   (an editor saved over it), only the old version's block list. The server sends a
//!   [`signature`] of the base block (a rolling checksum and 8 bytes of MD4 per 4 KiB:
//!   12 KiB for a 4 MiB block); the client computes [`rsync_diff`] of its new block
//!   against it; the server rebuilds the block with [`rsync_apply`]. `fast_rsync`
//!   (Dropbox's crate) does all three.
//! - **Down** (server → client), **zstd with the base as reference prefix** (zstd's
//!   `--patch-from`): the downloader holds the base block's bytes (in the file being
//!   replaced) and names it; the server holds both and compresses the new block with the
//!   base as history ([`patch_encode`]), which costs the downloader no signature upload
//!   and makes a smaller delta than rsync's (a match can start at any byte, not only on
//!   a 4 KiB boundary). The client rebuilds it with [`patch_decode`].
//!
//! Which old block to take as base is [`pick_bases`]'s rule, the same on both sides.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::BlockHash;

/// Blocks smaller than this are always sent whole: a delta's round trip costs more
/// than it saves.
pub const DELTA_MIN_BLOCK: u32 = 64 << 10;

/// A delta is used only when it is at most this fraction of the block (in sixteenths):
/// below that, the block is sent whole, since the delta saves too little for its work.
const WORTH_SIXTEENTHS: usize = 12;

/// The rsync signature's granularity: 4 KiB windows, 8 bytes of MD4 each. Smaller
/// windows find more of an edited block but make the signature larger.
const RSYNC_WINDOW: u32 = 4096;
const RSYNC_HASH_BYTES: u32 = 8;
/// The smallest window a signature from elsewhere may use: a tiny window would make
/// diffing against it slow and its index large.
const RSYNC_MIN_WINDOW: u32 = 512;

/// zstd's level for patches: the base is found through long-distance matching, so a
/// fast level finds it as well as a slow one.
const PATCH_LEVEL: i32 = 3;

/// Why a delta could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The signature is not one this side makes or accepts.
    #[error("invalid block signature")]
    InvalidSignature,
    /// The delta is malformed or would rebuild more than the limit.
    #[error("invalid delta: {0}")]
    Invalid(String),
    /// The delta rebuilds bytes other than the block it was sent for.
    #[error("the delta rebuilds other bytes than block {0}")]
    Mismatch(BlockHash),
}

/// How a block crossed the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The block itself.
    Whole,
    /// An rsync delta from the base ([`rsync_diff`]).
    Rsync,
    /// A zstd patch against the base ([`patch_encode`]).
    Patch,
}

/// Block `expected` from what crossed the wire for it in `form` (against `base`, unless
/// whole), checked against its hash: the only way either end accepts a block sent as
/// a delta. At most `max_len` bytes are rebuilt. An error means the block must be sent
/// whole.
pub fn rebuild(
    form: Form,
    base: &[u8],
    body: &[u8],
    expected: BlockHash,
    max_len: usize,
) -> Result<Vec<u8>, DeltaError> {
    let data = match form {
        Form::Whole => body.to_vec(),
        Form::Rsync => rsync_apply(base, body, max_len)?,
        Form::Patch => patch_decode(base, body, max_len)?,
    };
    match BlockHash::of(&data) == expected {
        true => Ok(data),
        false => Err(DeltaError::Mismatch(expected)),
    }
}

/// Whether a delta of `delta_len` bytes is worth sending for a block of `block_len`.
pub fn worth_sending(delta_len: usize, block_len: usize) -> bool {
    delta_len * 16 <= block_len * WORTH_SIXTEENTHS
}

/// The rsync signature of `base`, which the uploader diffs its new block against.
pub fn signature(base: &[u8]) -> Vec<u8> {
    fast_rsync::Signature::calculate(
        base,
        fast_rsync::SignatureOptions {
            block_size: RSYNC_WINDOW,
            crypto_hash_size: RSYNC_HASH_BYTES,
        },
    )
    .into_serialized()
}

/// The rsync delta of `data` against the block whose `signature` this is. A signature
/// with windows under 512 bytes or a size that cannot describe a block of at most
/// `max_base` bytes is refused, so a hostile signature cannot make this slow.
pub fn rsync_diff(signature: &[u8], data: &[u8], max_base: usize) -> Result<Vec<u8>, DeltaError> {
    let signature = fast_rsync::Signature::deserialize(signature.to_vec())
        .map_err(|_| DeltaError::InvalidSignature)?;
    // After a 4-byte magic, the header holds the window and the MD4 bytes kept, big-endian
    // (`deserialize` checked it is there).
    let header = signature.serialized();
    let field = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (window, hash_bytes) = (field(4), field(8));
    let windows = max_base.div_ceil(window.max(1) as usize);
    if window < RSYNC_MIN_WINDOW || header.len() > 12 + windows * (4 + hash_bytes as usize) {
        return Err(DeltaError::InvalidSignature);
    }
    let mut out = Vec::new();
    fast_rsync::diff(&signature.index(), data, &mut out)
        .map_err(|_| DeltaError::InvalidSignature)?;
    Ok(out)
}

/// Rebuilds a block from `base` and an rsync `delta`, refusing to make more than
/// `max_len` bytes. The caller checks the result's hash.
pub fn rsync_apply(base: &[u8], delta: &[u8], max_len: usize) -> Result<Vec<u8>, DeltaError> {
    let mut out = Vec::new();
    fast_rsync::apply_limited(base, delta, &mut out, max_len)
        .map_err(|err| DeltaError::Invalid(err.to_string()))?;
    Ok(out)
}

/// zstd's window, in bits, for a patch whose base and result together are `span` bytes:
/// the base must stay within reach while the result is compressed.
fn patch_window_log(span: usize) -> u32 {
    let bits = usize::BITS - span.max(1).leading_zeros();
    bits.clamp(10, 27)
}

/// `data` compressed with `base` as zstd's reference prefix; `None` if zstd fails
/// (it would be out of memory), when the block is simply sent whole.
pub fn patch_encode(base: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use zstd::zstd_safe::CParameter;
    let mut encoder =
        zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), PATCH_LEVEL, base).ok()?;
    let window = patch_window_log(base.len() + data.len());
    encoder.set_parameter(CParameter::WindowLog(window)).ok()?;
    encoder
        .set_parameter(CParameter::EnableLongDistanceMatching(true))
        .ok()?;
    encoder.set_pledged_src_size(Some(data.len() as u64)).ok()?;
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

/// Rebuilds a block from `base` and a zstd patch, refusing to make more than `max_len`
/// bytes or to use a window larger than a block pair needs. The caller checks the
/// result's hash.
pub fn patch_decode(base: &[u8], patch: &[u8], max_len: usize) -> Result<Vec<u8>, DeltaError> {
    use zstd::zstd_safe::DParameter;
    let invalid = |err: std::io::Error| DeltaError::Invalid(err.to_string());
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(patch, base).map_err(invalid)?;
    decoder
        .set_parameter(DParameter::WindowLogMax(patch_window_log(
            base.len() + max_len,
        )))
        .map_err(invalid)?;
    let mut out = Vec::new();
    let read = decoder
        .take(max_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(invalid)?;
    if read > max_len {
        return Err(DeltaError::Invalid(format!(
            "the patch makes more than {max_len} bytes"
        )));
    }
    Ok(out)
}

/// For each block of `new` (a file's new block list, in order), which block of `old`
/// (its previous one) to take as the base of a delta, as an index into `old`: the old
/// block at the same place, counted from the nearest block before it that both
/// versions share, so an insert or a delete earlier in the file does not shift the
/// choice. `None` for a block too small to be worth a delta or one `old` already has,
/// and for every block when `old` is empty. One pass over each list.
pub fn pick_bases(old: &[(BlockHash, u32)], new: &[(BlockHash, u32)]) -> Vec<Option<usize>> {
    if old.is_empty() {
        return vec![None; new.len()];
    }
    // Where each old block starts, and where the first copy of each hash ends.
    let mut starts = Vec::with_capacity(old.len());
    let mut ends: HashMap<BlockHash, u64> = HashMap::with_capacity(old.len());
    let mut at = 0u64;
    for &(hash, len) in old {
        starts.push(at);
        at += u64::from(len);
        ends.entry(hash).or_insert(at);
    }
    // The nearest shared block so far, as (its end in `new`, its end in `old`).
    let mut anchor = (0u64, 0u64);
    let mut new_at = 0u64;
    new.iter()
        .map(|&(hash, size)| {
            let shared = ends.get(&hash).copied();
            let base = (size >= DELTA_MIN_BLOCK && shared.is_none()).then(|| {
                let position = anchor.1 + (new_at - anchor.0);
                let found = starts.partition_point(|&start| start <= position);
                found.saturating_sub(1)
            });
            new_at += u64::from(size);
            if let Some(old_end) = shared {
                anchor = (new_at, old_end);
            }
            base
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen()).collect()
    }

    fn with_insert(data: &[u8], at: usize, byte: u8) -> Vec<u8> {
        let mut out = data[..at].to_vec();
        out.push(byte);
        out.extend_from_slice(&data[at..]);
        out
    }

    #[test]
    fn a_one_byte_insert_makes_small_deltas_both_ways() {
        let base = random(4 << 20, 1);
        let new = with_insert(&base, 2 << 20, 0xA5);
        let sig = signature(&base);
        assert!(sig.len() < 13 << 10, "signature of {} bytes", sig.len());
        let up = rsync_diff(&sig, &new, 8 << 20).unwrap();
        assert!(up.len() < 16 << 10, "rsync delta of {} bytes", up.len());
        assert_eq!(rsync_apply(&base, &up, 8 << 20).unwrap(), new);
        let down = patch_encode(&base, &new).unwrap();
        assert!(down.len() < 1 << 10, "patch of {} bytes", down.len());
        assert_eq!(patch_decode(&base, &down, 8 << 20).unwrap(), new);
        assert!(worth_sending(up.len(), new.len()) && worth_sending(down.len(), new.len()));
    }

    #[test]
    fn unrelated_blocks_are_not_worth_a_delta() {
        let (base, new) = (random(256 << 10, 2), random(256 << 10, 3));
        let up = rsync_diff(&signature(&base), &new, 8 << 20).unwrap();
        assert!(!worth_sending(up.len(), new.len()));
        assert!(!worth_sending(
            patch_encode(&base, &new).unwrap().len(),
            new.len()
        ));
    }

    #[test]
    fn limits_and_damage_are_refused() {
        let base = random(1 << 20, 4);
        let new = with_insert(&base, 1000, 7);
        let patch = patch_encode(&base, &new).unwrap();
        assert!(patch_decode(&base, &patch, new.len() - 1).is_err());
        let up = rsync_diff(&signature(&base), &new, 8 << 20).unwrap();
        assert!(rsync_apply(&base, &up, new.len() - 1).is_err());
        assert!(rsync_apply(&base, &up[..up.len() / 2], 8 << 20).is_err());
        assert!(patch_decode(&base, &patch[..patch.len() / 2], 8 << 20).is_err());
        // A signature with tiny windows, or too long for any block, is refused.
        let tiny = fast_rsync::Signature::calculate(
            &base,
            fast_rsync::SignatureOptions {
                block_size: 16,
                crypto_hash_size: 8,
            },
        );
        assert!(rsync_diff(tiny.serialized(), &new, 8 << 20).is_err());
        assert!(rsync_diff(&signature(&base), &new, 64 << 10).is_err());
        assert!(rsync_diff(b"garbage", &new, 8 << 20).is_err());
    }

    #[test]
    fn a_patch_against_the_wrong_base_does_not_rebuild_the_block() {
        let base = random(1 << 20, 5);
        let new = with_insert(&base, 5000, 9);
        let patch = patch_encode(&base, &new).unwrap();
        let other = random(1 << 20, 6);
        assert_ne!(patch_decode(&other, &patch, 8 << 20).ok(), Some(new));
    }

    /// An edit of a block: bytes replaced, inserted or removed at some place.
    fn edited(base: &[u8], at: usize, remove: usize, insert: &[u8]) -> Vec<u8> {
        let at = at.min(base.len());
        let end = (at + remove).min(base.len());
        [&base[..at], insert, &base[end..]].concat()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the edit, both formats rebuild the new block exactly from the base.
        #[test]
        fn both_formats_rebuild_any_edit(
            seed in 0u64..1000,
            len in 0usize..40_000,
            at in 0usize..40_000,
            remove in 0usize..5_000,
            insert in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3_000),
        ) {
            let base = random(len, seed);
            let new = edited(&base, at, remove, &insert);
            let up = rsync_diff(&signature(&base), &new, 1 << 20).unwrap();
            proptest::prop_assert_eq!(rsync_apply(&base, &up, 1 << 20).unwrap(), new.clone());
            let down = patch_encode(&base, &new).unwrap();
            proptest::prop_assert_eq!(patch_decode(&base, &down, 1 << 20).unwrap(), new);
        }

        /// The base picked is always one of the old blocks, and never for a block the
        /// old version has.
        #[test]
        fn the_base_is_an_old_block(
            old in proptest::collection::vec((0u8..6, 1u32..200_000), 0..12),
            new in proptest::collection::vec((0u8..9, 1u32..200_000), 1..12),
        ) {
            let old: Vec<(BlockHash, u32)> = old.into_iter().map(|(n, len)| (h(n), len)).collect();
            let new: Vec<(BlockHash, u32)> = new.into_iter().map(|(n, len)| (h(n), len)).collect();
            let bases = pick_bases(&old, &new);
            proptest::prop_assert_eq!(bases.len(), new.len());
            for (at, (hash, _)) in bases.into_iter().zip(&new) {
                if let Some(at) = at {
                    proptest::prop_assert!(at < old.len());
                    proptest::prop_assert!(!old.iter().any(|(h, _)| h == hash));
                }
            }
        }
    }

    fn h(n: u8) -> BlockHash {
        BlockHash([n; 32])
    }

    #[test]
    fn the_base_is_the_old_block_at_the_same_place() {
        let k = 1 << 20;
        let old = [(h(1), k), (h(2), k), (h(3), k), (h(4), k)];
        // The third block changed; unchanged blocks get none.
        let new = [(h(1), k), (h(2), k), (h(9), k + 1), (h(4), k)];
        assert_eq!(pick_bases(&old, &new), [None, None, Some(2), None]);
        // Tiny blocks get none, nor does anything without an old version.
        assert_eq!(pick_bases(&old, &[(h(8), 100)]), [None]);
        assert_eq!(pick_bases(&[], &new), [None; 4]);
        // 5 MiB was inserted at the start: the anchor (block 2) keeps the place.
        let shifted = [(h(7), 5 * k), (h(1), k), (h(2), k), (h(9), k), (h(4), k)];
        assert_eq!(pick_bases(&old, &shifted)[3], Some(2));
        // The first block changed: no anchor, same offset.
        let first = [(h(9), k), (h(2), k), (h(3), k), (h(4), k)];
        assert_eq!(pick_bases(&old, &first)[0], Some(0));
        // A new block past the old end takes the last old block.
        let longer = [(h(1), k), (h(2), k), (h(3), k), (h(4), k), (h(5), k)];
        assert_eq!(pick_bases(&old, &longer)[4], Some(3));
    }
}
