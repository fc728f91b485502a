//! The one normalized server-path type used everywhere.
//!
//! A [`ServerPath`] is absolute, `/`-separated, NFC-normalized and case-preserving. Every
//! path that enters the system from outside passes through [`ServerPath::parse`] (or
//! [`ServerPath::from_bytes`]), so code holding a `ServerPath` never re-checks it.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Longest accepted path, in bytes of its NFC form.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted name (one segment), in bytes of its NFC form.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a path was rejected. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is not valid UTF-8")]
    InvalidUtf8,
    #[error("path {0:?} is not absolute: it must start with '/'")]
    NotAbsolute(String),
    #[error("path {0:?} has an empty segment ('//' or a trailing '/')")]
    EmptySegment(String),
    #[error("path {0:?} contains a '.' or '..' segment, which is not allowed")]
    DotSegment(String),
    #[error("path {0:?} contains a NUL or control character")]
    ControlCharacter(String),
    #[error("name {name:?} is {len} bytes long; the limit is {MAX_NAME_BYTES}")]
    NameTooLong { name: String, len: usize },
    #[error("path is {0} bytes long; the limit is {MAX_PATH_BYTES}")]
    PathTooLong(usize),
    #[error("the root folder has no name; this operation needs a path below '/'")]
    Root,
}

/// An absolute, normalized path inside a namespace, such as `/Photos/2024/a.jpg`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerPath(String);

/// Shortens a rejected input for an error message, so a hostile 1 MB path does not come
/// back whole in the response.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

impl ServerPath {
    /// The root folder, `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Validates and normalizes a path given as text.
    pub fn parse(input: &str) -> Result<Self, PathError> {
        if !input.starts_with('/') {
            return Err(PathError::NotAbsolute(excerpt(input)));
        }
        if input.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter(excerpt(input)));
        }
        let normalized: String = input.nfc().collect();
        if normalized.len() > MAX_PATH_BYTES {
            return Err(PathError::PathTooLong(normalized.len()));
        }
        if normalized == "/" {
            return Ok(Self::root());
        }
        for segment in normalized[1..].split('/') {
            check_name(segment, &normalized)?;
        }
        Ok(Self(normalized))
    }

    /// Validates a path given as raw bytes (from a URL or a file system).
    pub fn from_bytes(input: &[u8]) -> Result<Self, PathError> {
        std::str::from_utf8(input)
            .map_err(|_| PathError::InvalidUtf8)
            .and_then(Self::parse)
    }

    /// The path as text, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The folder holding this path; `None` for the root.
    pub fn parent(&self) -> Option<ServerPath> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').expect("paths are absolute");
        Some(if cut == 0 {
            Self::root()
        } else {
            Self(self.0[..cut].to_owned())
        })
    }

    /// The last segment; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// This path with one more segment, validated like any other name.
    pub fn join(&self, name: &str) -> Result<ServerPath, PathError> {
        let joined = if self.is_root() {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.0)
        };
        if name.contains('/') {
            return Err(PathError::EmptySegment(excerpt(&joined)).or_dot(name, &joined));
        }
        Self::parse(&joined)
    }

    /// The segments from the top down; empty for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// Every folder above this path, from `/` down to its parent.
    pub fn ancestors(&self) -> Vec<ServerPath> {
        let mut out = Vec::new();
        let mut cur = self.parent();
        while let Some(p) = cur {
            cur = p.parent();
            out.push(p);
        }
        out.reverse();
        out
    }

    /// Whether `self` is `other` or lies below it, segment-wise (`/ab` is not below `/a`).
    pub fn starts_with(&self, other: &ServerPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes()[other.0.len()] == b'/')
    }

    /// Moves this path from below `from` to below `to`: `/a/b/c` rebased from `/a` to
    /// `/x` is `/x/b/c`. `None` when `self` is not below `from`.
    pub fn rebase(&self, from: &ServerPath, to: &ServerPath) -> Option<ServerPath> {
        if !self.starts_with(from) {
            return None;
        }
        let rest = if self.is_root() {
            // Only when `from` is the root too: the root itself moves to `to`.
            ""
        } else if from.is_root() {
            &self.0[..]
        } else {
            &self.0[from.0.len()..]
        };
        let joined = if to.is_root() {
            if rest.is_empty() {
                "/".to_owned()
            } else {
                rest.to_owned()
            }
        } else {
            format!("{}{rest}", to.0)
        };
        Some(ServerPath(joined))
    }

    /// The key under which this path is unique in its namespace: two paths that differ
    /// only in letter case name the same entry, as on Dropbox, macOS and Windows, so a
    /// tree never holds names that would clash on a case-insensitive disk.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Text to look for in names, in the form names are matched in: normalized (NFC) as
/// paths are, then lowercased as [`ServerPath::key`] lowercases them, so a search for
/// `ÉTÉ` finds `été.txt` whichever way either was typed.
pub fn search_key(text: &str) -> String {
    text.nfc().collect::<String>().to_lowercase()
}

fn check_name(segment: &str, whole: &str) -> Result<(), PathError> {
    match segment {
        "" => Err(PathError::EmptySegment(excerpt(whole))),
        "." | ".." => Err(PathError::DotSegment(excerpt(whole))),
        _ if segment.len() > MAX_NAME_BYTES => Err(PathError::NameTooLong {
            name: excerpt(segment),
            len: segment.len(),
        }),
        _ => Ok(()),
    }
}

impl PathError {
    fn or_dot(self, name: &str, whole: &str) -> PathError {
        if name.split('/').any(|s| s == "." || s == "..") {
            PathError::DotSegment(excerpt(whole))
        } else {
            self
        }
    }
}

impl fmt::Display for ServerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

// Paths order and compare exactly as their text does, so a sorted map keyed by
// `ServerPath` can be searched by `&str`: the sync engine reads a folder's subtree as
// the key range after `"/a/"`.
impl std::borrow::Borrow<str> for ServerPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ServerPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_key_matches_path_keys() {
        // "E" + combining acute, decomposed, finds the composed name's key.
        let name = ServerPath::parse("/Été.txt").unwrap();
        assert!(name.key().contains(&search_key("E\u{301}T")));
        assert_eq!(search_key("ΣΟΦΙΑ"), "σοφια");
    }

    fn check(input: &str, expect: Result<&str, &str>) {
        let got = ServerPath::parse(input);
        match (got, expect) {
            (Ok(p), Ok(want)) => assert_eq!(p.as_str(), want, "input {input:?}"),
            (Err(e), Err(want)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(want),
                    "input {input:?}: {msg:?} lacks {want:?}"
                );
            }
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn accepts_and_normalizes() {
        check("/", Ok("/"));
        check("/a", Ok("/a"));
        check("/Docs/Report.PDF", Ok("/Docs/Report.PDF"));
        // "e" + combining acute becomes the precomposed "é".
        check("/cafe\u{301}", Ok("/caf\u{e9}"));
        check("/a b/.hidden/...", Ok("/a b/.hidden/..."));
        check(
            &format!("/{}", "x".repeat(255)),
            Ok(&format!("/{}", "x".repeat(255))),
        );
    }

    #[test]
    fn rejects_bad_paths() {
        check("", Err("not absolute"));
        check("a/b", Err("not absolute"));
        check("//a", Err("empty segment"));
        check("/a//b", Err("empty segment"));
        check("/a/", Err("empty segment"));
        check("/a/./b", Err("'.' or '..'"));
        check("/a/../b", Err("'.' or '..'"));
        check("/..", Err("'.' or '..'"));
        check("/a\0b", Err("control character"));
        check("/a\nb", Err("control character"));
        check("/a\u{7f}", Err("control character"));
        check(&format!("/{}", "x".repeat(256)), Err("limit is 255"));
        let long = "/abcdefghi".repeat(410);
        check(&long, Err("limit is 4096"));
        assert_eq!(
            ServerPath::from_bytes(b"/a\xff"),
            Err(PathError::InvalidUtf8)
        );
    }

    #[test]
    fn relations() {
        let p = ServerPath::parse("/a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "/a/b");
        assert_eq!(p.name(), Some("c"));
        assert_eq!(
            ServerPath::parse("/a").unwrap().parent(),
            Some(ServerPath::root())
        );
        assert!(p.starts_with(&ServerPath::parse("/a").unwrap()));
        assert!(!ServerPath::parse("/ab")
            .unwrap()
            .starts_with(&ServerPath::parse("/a").unwrap()));
        let moved = p
            .rebase(
                &ServerPath::parse("/a").unwrap(),
                &ServerPath::parse("/x").unwrap(),
            )
            .unwrap();
        assert_eq!(moved.as_str(), "/x/b/c");
        let to_root = p
            .rebase(&ServerPath::parse("/a").unwrap(), &ServerPath::root())
            .unwrap();
        assert_eq!(to_root.as_str(), "/b/c");
        // The root below a folder is that folder (a shared folder's top at its mount).
        let x = ServerPath::parse("/x").unwrap();
        let root = ServerPath::root();
        assert_eq!(root.rebase(&root, &x), Some(x.clone()));
        assert_eq!(root.rebase(&root, &root), Some(root.clone()));
        assert_eq!(p.rebase(&root, &x).unwrap().as_str(), "/x/a/b/c");
        assert_eq!(ServerPath::root().join("x").unwrap().as_str(), "/x");
        assert!(ServerPath::root().join("..").is_err());
        assert!(ServerPath::root().join("a/b").is_err());
        assert_eq!(p.ancestors().len(), 3);
        assert_eq!(ServerPath::parse("/ÄB").unwrap().key(), "/äb");
    }
}
