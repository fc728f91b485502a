//! Block and content hashes: BLAKE3, 32 bytes, lowercase hex in text.

use std::fmt;
use std::str::FromStr;

/// Why a text did not parse as a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hash {text:?}: expected 64 lowercase hex characters")]
pub struct HashParseError {
    /// The rejected text, cut short when it is long.
    pub text: String,
}

fn parse_hex32(s: &str) -> Result<[u8; 32], HashParseError> {
    let err = || HashParseError {
        text: s.chars().take(80).collect(),
    };
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(err());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
    Ok(out)
}

macro_rules! hash_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The hash as lowercase hex (64 characters).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 64 lowercase hex characters.
            pub fn from_hex(s: &str) -> Result<Self, HashParseError> {
                parse_hex32(s).map(Self)
            }

            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Builds a hash from a 32-byte slice, as stored in a database column.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..16])
            }
        }

        impl FromStr for $name {
            type Err = HashParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }
    };
}

hash_type!(
    /// The name of a block: BLAKE3 of its plaintext.
    BlockHash
);
hash_type!(
    /// The hash of a whole file: BLAKE3 over the concatenation of its block hashes, so a
    /// client can check a file against its block list without downloading it.
    ContentHash
);

impl BlockHash {
    /// Hashes a block's plaintext.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

/// The content hash of a file made of `blocks`, in order. An empty file has no blocks,
/// and its content hash is BLAKE3 of the empty input.
pub fn content_hash<'a>(blocks: impl IntoIterator<Item = &'a BlockHash>) -> ContentHash {
    let mut hasher = blake3::Hasher::new();
    for block in blocks {
        hasher.update(&block.0);
    }
    ContentHash(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = BlockHash::of(b"hello");
        assert_eq!(BlockHash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(h.to_string().len(), 64);
    }

    #[test]
    fn rejects_bad_hex() {
        for bad in ["", "zz", &"A".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert!(BlockHash::from_hex(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn content_hash_is_hash_of_concatenated_block_hashes() {
        let a = BlockHash::of(b"a");
        let b = BlockHash::of(b"b");
        let mut cat = Vec::new();
        cat.extend_from_slice(&a.0);
        cat.extend_from_slice(&b.0);
        assert_eq!(content_hash([&a, &b]).0, *blake3::hash(&cat).as_bytes());
        assert_eq!(content_hash([]).0, *blake3::hash(b"").as_bytes());
    }
}
