//! Blocks for the store's tests.

#![allow(dead_code)]

use bytes::Bytes;
use cairn_core::BlockHash;
use rand::{rngs::StdRng, RngCore, SeedableRng};

/// `len` random bytes from `seed`.
pub fn random(len: usize, seed: u64) -> Bytes {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    Bytes::from(data)
}

/// `count` distinct small blocks (about 3 KB each, small enough for a pack).
pub fn batch(count: usize, seed: u64) -> Vec<(BlockHash, Bytes)> {
    (0..count)
        .map(|i| {
            let data = random(3000 + i, seed * 1000 + i as u64);
            (BlockHash::of(&data), data)
        })
        .collect()
}
