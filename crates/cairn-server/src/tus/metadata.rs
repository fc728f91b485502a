//! What a tus request's headers say: `Upload-Metadata` (and the destination it names),
//! `Upload-Checksum`, and the numbers.

use std::collections::HashMap;

use axum::http::HeaderMap;
use base64::Engine;
use cairn_core::ServerPath;
use cairn_meta::OnConflict;
use sha1::Digest;

use crate::error::{ApiError, ApiResult};

/// Where a new upload's file goes, and how, as its metadata says.
#[derive(Debug, Clone)]
pub(super) struct Destination {
    /// The file's path in the creator's tree.
    pub path: ServerPath,
    pub on_conflict: OnConflict,
    /// Unix ms.
    pub mtime: Option<i64>,
}

/// Parses `Upload-Metadata`: comma-separated pairs of a key and, after one space, its
/// value in base64; a key may come alone (an empty value). Keys are unique.
pub(super) fn parse_metadata(raw: &str) -> ApiResult<HashMap<String, String>> {
    let bad = |why: &str| {
        ApiError::bad_request(
            "invalid_metadata",
            format!("Upload-Metadata is malformed: {why}"),
        )
    };
    let mut out = HashMap::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    for pair in raw.split(',') {
        let mut parts = pair.trim().split(' ');
        let key = parts.next().unwrap_or_default();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("a key is empty or not printable ASCII"));
        }
        let value = match parts.next() {
            None => String::new(),
            Some(encoded) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| bad(&format!("the value of {key:?} is not base64")))?;
                String::from_utf8(bytes)
                    .map_err(|_| bad(&format!("the value of {key:?} is not UTF-8")))?
            }
        };
        if parts.next().is_some() {
            return Err(bad("a pair has more than a key and a value"));
        }
        if out.insert(key.to_owned(), value).is_some() {
            return Err(bad(&format!("{key:?} is given twice")));
        }
    }
    Ok(out)
}

/// Whether the metadata names a destination (`path`, or `filename`).
pub(super) fn names_destination(meta: &HashMap<String, String>) -> bool {
    meta.contains_key("path") || meta.contains_key("filename")
}

/// The destination the metadata names: `path`, or `folder` (default `/`) and
/// `filename`; `onconflict` (`fail`, the default, `rename` or `replace`); `mtime`.
pub(super) fn destination(meta: &HashMap<String, String>) -> ApiResult<Destination> {
    let path = match (meta.get("path"), meta.get("filename")) {
        (Some(path), _) => ServerPath::parse(path)?,
        (None, Some(name)) => {
            let folder = ServerPath::parse(meta.get("folder").map_or("/", String::as_str))?;
            if name.contains('/') {
                return Err(ApiError::bad_request(
                    "invalid_name",
                    format!("{name:?} is not a file name: it holds a '/'"),
                ));
            }
            folder.join(name)?
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_destination",
                "Upload-Metadata must name the file: `path`, or `filename` (and `folder`)",
            ))
        }
    };
    if path.is_root() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "a file cannot be stored at '/'; name it",
        ));
    }
    let on_conflict = match meta.get("onconflict") {
        None => OnConflict::Fail,
        Some(word) => OnConflict::parse(word).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_metadata",
                format!("onconflict is {word:?}; use fail, rename or replace"),
            )
        })?,
    };
    let mtime = match meta.get("mtime") {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_metadata",
                format!("mtime is {text:?}; give Unix milliseconds"),
            )
        })?),
    };
    Ok(Destination {
        path,
        on_conflict,
        mtime,
    })
}

/// A header holding a non-negative integer; `None` when absent.
pub(super) fn number(headers: &HeaderMap, name: &str) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                format!("{name} must be a non-negative integer"),
            )
        })
}

/// The checksum algorithms `Upload-Checksum` may name (the checksum extension; sha1 is
/// the one every server must support).
pub(super) const CHECKSUM_ALGORITHMS: &str = "sha1,md5,sha256";

/// A request body's checksum being computed, and the one it must have.
pub(super) enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Md5(md5::Md5, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Checksum::Sha1(..) => "Checksum(sha1)",
            Checksum::Md5(..) => "Checksum(md5)",
            Checksum::Sha256(..) => "Checksum(sha256)",
        })
    }
}

impl Checksum {
    /// Parses `Upload-Checksum: ALGORITHM BASE64`; `None` when absent. An algorithm not
    /// supported is 400, as the checksum extension says.
    pub(super) fn from_headers(headers: &HeaderMap) -> ApiResult<Option<Self>> {
        let Some(value) = headers.get("upload-checksum") else {
            return Ok(None);
        };
        let bad = || {
            ApiError::bad_request(
                "invalid_checksum",
                format!("Upload-Checksum must be ALGORITHM BASE64, with ALGORITHM one of {CHECKSUM_ALGORITHMS}"),
            )
        };
        let text = value.to_str().map_err(|_| bad())?;
        let (algorithm, encoded) = text.trim().split_once(' ').ok_or_else(bad)?;
        let expected = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad())?;
        Ok(Some(match algorithm {
            "sha1" => Checksum::Sha1(sha1::Sha1::new(), expected),
            "md5" => Checksum::Md5(md5::Md5::new(), expected),
            "sha256" => Checksum::Sha256(sha2::Sha256::new(), expected),
            _ => {
                return Err(ApiError::bad_request(
                    "unsupported_checksum",
                    format!("checksum algorithm {algorithm:?} is not supported; use one of {CHECKSUM_ALGORITHMS}"),
                ))
            }
        }))
    }

    pub(super) fn update(&mut self, data: &[u8]) {
        match self {
            Checksum::Sha1(h, _) => h.update(data),
            Checksum::Md5(h, _) => h.update(data),
            Checksum::Sha256(h, _) => h.update(data),
        }
    }

    /// Whether what was hashed has the expected checksum.
    pub(super) fn matches(self) -> bool {
        match self {
            Checksum::Sha1(h, expected) => h.finalize().as_slice() == expected,
            Checksum::Md5(h, expected) => h.finalize().as_slice() == expected,
            Checksum::Sha256(h, expected) => h.finalize().as_slice() == expected,
        }
    }
}

/// `path` percent-encoded for a header: every byte but unreserved characters and `/`.
pub(super) fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn metadata_pairs() {
        let raw = format!(
            "path {},is_confidential, mtime {}",
            b64("/a b.txt"),
            b64("5")
        );
        let meta = parse_metadata(&raw).unwrap();
        assert_eq!(meta["path"], "/a b.txt");
        assert_eq!(meta["is_confidential"], "");
        let dest = destination(&meta).unwrap();
        assert_eq!(dest.path.as_str(), "/a b.txt");
        assert_eq!(dest.mtime, Some(5));
        assert_eq!(dest.on_conflict, OnConflict::Fail);
        for bad in ["path !!!", "path a b", ",", "a 1, a 1"] {
            assert!(parse_metadata(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folder_and_filename() {
        let meta = parse_metadata(&format!(
            "folder {},filename {},onconflict {}",
            b64("/Photos"),
            b64("a.jpg"),
            b64("rename")
        ))
        .unwrap();
        let dest = destination(&meta).unwrap();
        assert_eq!(dest.path.as_str(), "/Photos/a.jpg");
        assert_eq!(dest.on_conflict, OnConflict::Rename);
        for name in ["..", "a/b", ""] {
            let meta = parse_metadata(&format!("filename {}", b64(name))).unwrap();
            assert!(destination(&meta).is_err(), "{name:?}");
        }
        assert!(destination(&parse_metadata(&format!("path {}", b64("rel"))).unwrap()).is_err());
    }

    #[test]
    fn encoding_a_path() {
        assert_eq!(percent_encode("/a b/ü.txt"), "/a%20b/%C3%BC.txt");
    }
}
