//! Content-defined chunking (FastCDC) with BLAKE3 block hashes.

/// Chunk size bounds. Defaults: min 1 MiB, average 4 MiB, max 8 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    pub min_size: usize,
    pub avg_size: usize,
    pub max_size: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            min_size: 1 << 20,
            avg_size: 4 << 20,
            max_size: 8 << 20,
        }
    }
}

/// A chunker configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunk sizes (min {min}, avg {avg}, max {max}): need 64 <= min <= avg <= max <= 1 GiB and avg a power of two")]
pub struct ChunkerConfigError {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}
