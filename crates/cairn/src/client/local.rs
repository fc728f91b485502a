//! What the client may write on this machine: a download goes to a regular file or a
//! new path and nowhere else (never through a symlink, into a FIFO or over a device),
//! and only under names this platform can hold.

use std::fs::FileType;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_client::ReplaceCheck;

/// What a download found at its destination, when it may not write there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InTheWay {
    /// What it is, for people: `a symbolic link (to /proc/self/fd/1)`, `a named pipe
    /// (FIFO)`, `a folder`.
    pub(crate) what: String,
    /// True when standard output is the likely intent (a link, pipe, device or socket,
    /// as `/dev/stdout` is), so the message can point at `-`.
    pub(crate) suggest_stdout: bool,
}

impl std::fmt::Display for InTheWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it is {}; a download writes only to a regular file or a new path",
            self.what
        )?;
        if self.suggest_stdout {
            f.write_str(" (use `-` to write to standard output)")?;
        }
        Ok(())
    }
}

/// Whether a download may replace what is at `path`: nothing there, or a regular file.
/// Symlinks are not followed: a link is in the way even if it points at a file.
pub(crate) fn check_destination(path: &Path) -> io::Result<Result<(), InTheWay>> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Ok(())),
        Err(err) => Err(err),
        Ok(meta) if meta.file_type().is_file() => Ok(Ok(())),
        Ok(meta) => {
            let file_type = meta.file_type();
            let mut what = describe(file_type).to_owned();
            if file_type.is_symlink() {
                if let Ok(target) = std::fs::read_link(path) {
                    what = format!("{what} (to {})", target.display());
                }
            }
            Ok(Err(InTheWay {
                what,
                suggest_stdout: !file_type.is_dir(),
            }))
        }
    }
}

/// The same check as [`check_destination`], made again just before the downloaded file
/// is renamed into place, so that a link or pipe put there meanwhile is not replaced.
pub(crate) fn replace_only_files() -> ReplaceCheck {
    Arc::new(|path: &Path| matches!(check_destination(path), Ok(Ok(()))))
}

/// A file type for people.
pub(crate) fn describe(file_type: FileType) -> &'static str {
    if file_type.is_symlink() {
        return "a symbolic link";
    }
    if file_type.is_dir() {
        return "a folder";
    }
    if file_type.is_file() {
        return "a file";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
    }
    "neither a file nor a folder"
}

/// Why `name` (one segment of a server path, already free of '/', NUL, '.' and '..' as
/// every server path is) cannot be a file or folder name here, if it cannot.
pub(crate) fn local_name_problem(name: &str) -> Option<&'static str> {
    name_problem(name, cfg!(windows))
}

/// [`local_name_problem`] for Unix or, with `windows`, for Windows' rules.
fn name_problem(name: &str, windows: bool) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Some("it is not a name ('', '.' or '..')");
    }
    if name.contains('/') || name.contains('\0') {
        return Some("it holds '/' or NUL");
    }
    if windows {
        if name.contains(['\\', ':', '*', '?', '"', '<', '>', '|'])
            || name.chars().any(|c| c.is_control())
        {
            return Some("Windows does not allow \\ : * ? \" < > | in names");
        }
        if name.ends_with(['.', ' ']) {
            return Some("Windows does not allow a name to end in '.' or ' '");
        }
        let stem = name.split('.').next().unwrap_or(name).trim_end();
        let reserved = ["CON", "PRN", "AUX", "NUL"];
        let numbered = ["COM", "LPT"];
        let upper = stem.to_ascii_uppercase();
        if reserved.contains(&upper.as_str())
            || (upper.len() == 4
                && numbered.contains(&&upper[..3])
                && upper[3..].chars().all(|c| c.is_ascii_digit() && c != '0'))
        {
            return Some("it is a device name Windows reserves");
        }
    }
    None
}

/// `root` with the segments of a relative server path below it, each checked by
/// [`local_name_problem`]: the path can then only name a place inside `root`.
pub(crate) fn join_checked<'a>(
    root: &Path,
    segments: impl IntoIterator<Item = &'a str>,
) -> Result<PathBuf, String> {
    let mut out = root.to_owned();
    for segment in segments {
        if let Some(problem) = local_name_problem(segment) {
            return Err(format!("{segment:?} cannot be a name here: {problem}"));
        }
        out.push(segment);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a.txt", "Ünïcode", "with space", "CON.txt.bak x", ".hidden"] {
            assert_eq!(name_problem(ok, false), None, "{ok:?}");
        }
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(name_problem(bad, false).is_some(), "{bad:?}");
            assert!(name_problem(bad, true).is_some(), "{bad:?}");
        }
        for windows_only in ["a:b", "q?", "CON", "con.txt", "LPT1", "COM9.log", "dot."] {
            assert_eq!(name_problem(windows_only, false), None, "{windows_only:?}");
            assert!(
                name_problem(windows_only, true).is_some(),
                "{windows_only:?}"
            );
        }
        for fine_on_windows in ["COM0", "LPT10", "CONSOLE", "console.txt"] {
            assert_eq!(
                name_problem(fine_on_windows, true),
                None,
                "{fine_on_windows:?}"
            );
        }
    }

    #[test]
    fn joined_paths_stay_below_their_root() {
        let root = Path::new("/tmp/root");
        assert_eq!(
            join_checked(root, ["a", "b.txt"]).unwrap(),
            Path::new("/tmp/root/a/b.txt")
        );
        assert!(join_checked(root, ["..", "x"]).is_err());
        assert!(join_checked(root, ["a", ""]).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn destinations() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(check_destination(&file).unwrap(), Ok(()));
        assert_eq!(check_destination(&dir.path().join("new")).unwrap(), Ok(()));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let refused = check_destination(&link).unwrap().unwrap_err();
        assert!(
            refused.what.starts_with("a symbolic link (to "),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("use `-`"), "{refused}");
        let folder = check_destination(dir.path()).unwrap().unwrap_err();
        assert_eq!(folder.what, "a folder");
        assert!(!folder.suggest_stdout);
        assert!(!replace_only_files()(&link));
        assert!(replace_only_files()(&file));
    }
}
