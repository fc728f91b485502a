//! What is never synced: editors' and systems' scratch files, the engine's own temp
//! files, and whatever `.cairnignore` at the top of the sync folder lists.
//!
//! `.cairnignore` holds one glob per line (`#` starts a comment). A pattern without a `/`
//! matches a name anywhere in the tree (`*.log`, `node_modules`); one with a `/` matches
//! a path from the top of the folder (`/build`, `docs/draft-*`). What a pattern matches
//! is left out with everything below it, on both sides. The file itself is synced, so
//! every device follows the same rules.

use cairn_core::ServerPath;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The name of the per-folder ignore file.
pub const IGNORE_FILE: &str = ".cairnignore";

/// The prefix of the engine's own temp files (a download on its way in).
pub const TEMP_PREFIX: &str = ".cairn-part-";

/// Names no user wants synced: lock and swap files of editors and office suites, and
/// the folder metadata some systems drop everywhere.
const BUILT_IN: &[&str] = &[
    ".cairn-part-*",
    ".*.cairn-tmp-*",
    "~$*",
    ".~lock.*#",
    "*.swp",
    "*.swx",
    ".#*",
    "4913",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    ".directory",
];

/// A set of ignore rules.
#[derive(Debug, Clone)]
pub struct Ignore {
    names: GlobSet,
    paths: GlobSet,
}

impl Default for Ignore {
    fn default() -> Self {
        Ignore::parse("").expect("the built-in rules are valid globs")
    }
}

/// A line of `.cairnignore` that is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{IGNORE_FILE} line {line}: {message}")]
pub struct IgnoreError {
    pub line: usize,
    pub message: String,
}

impl Ignore {
    /// The built-in rules plus those in `text` (the contents of `.cairnignore`).
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in BUILT_IN {
            names.add(Glob::new(pattern).map_err(|err| IgnoreError {
                line: 0,
                message: err.to_string(),
            })?);
        }
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let glob = |pattern: &str| {
                GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|err| IgnoreError {
                        line: i + 1,
                        message: err.to_string(),
                    })
            };
            match line.trim_end_matches('/') {
                pattern if pattern.contains('/') => {
                    paths.add(glob(pattern.trim_start_matches('/'))?);
                }
                pattern => {
                    names.add(glob(pattern)?);
                }
            }
        }
        let build = |set: GlobSetBuilder| {
            set.build().map_err(|err| IgnoreError {
                line: 0,
                message: err.to_string(),
            })
        };
        Ok(Ignore {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Whether `path` (inside the sync folder) or a folder above it is ignored.
    pub fn is_ignored(&self, path: &ServerPath) -> bool {
        let relative = path.as_str().trim_start_matches('/');
        if relative.is_empty() {
            return false;
        }
        let mut end = 0;
        for segment in relative.split('/') {
            end += segment.len();
            if self.names.is_match(segment) || self.paths.is_match(&relative[..end]) {
                return true;
            }
            end += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::p;

    #[test]
    fn built_in_and_listed_patterns() {
        let ignore =
            Ignore::parse("# build output\n*.log\n/build\ndocs/draft-*\nnode_modules/\n").unwrap();
        for ignored in [
            "/a/.cairn-part-123",
            "/a/.report.pdf.cairn-tmp-x1y2",
            "/~$report.docx",
            "/x/.~lock.notes.odt#",
            "/.DS_Store",
            "/server.log",
            "/a/b/server.log",
            "/build",
            "/build/out.o",
            "/docs/draft-1.md",
            "/web/node_modules/x/y.js",
        ] {
            assert!(ignore.is_ignored(&p(ignored)), "{ignored}");
        }
        for kept in [
            "/report.docx",
            "/a/build",
            "/docs/final.md",
            "/log",
            "/.cairnignore",
        ] {
            assert!(!ignore.is_ignored(&p(kept)), "{kept}");
        }
        assert_eq!(Ignore::parse("ok\n[").unwrap_err().line, 2);
    }
}
