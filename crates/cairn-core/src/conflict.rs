//! The one rule for naming a copy beside a name that is taken: the server's conflict
//! copies (a commit on a stale revision with `autorename`), the sync planner's (a file
//! changed on both sides, or a new local name that clashes by case with another), and
//! a trash item restored where its name is in use.
//!
//! ```text
//! NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).EXT
//! NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS 2).EXT
//! NAME (restored).EXT
//! NAME (restored 2).EXT
//! ```
//!
//! The number, when one is needed, goes inside the parentheses, as Dropbox numbers its
//! own copies: the annotation stays one piece, so it can never be read as part of the
//! device's name (`from laptop 2 …`) or of the file's (`… ) 2.pdf`).

use unicode_normalization::UnicodeNormalization;

use crate::display::civil_from_days;
use crate::path::MAX_NAME_BYTES;

/// Whether the item being copied is a file, whose name keeps its extension last, or a
/// folder, whose name is never split (`photos.2020` stays whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    File,
    Folder,
}

/// Why a copy is made beside a taken name; it is written into the copy's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyReason<'a> {
    /// Two writes met: the copy is the one that lost. `device` is the writing device's
    /// name as its user gave it (made safe here, see [`device_label`]); `stamp` the UTC
    /// time as [`format_stamp`] writes it.
    Conflict { device: &'a str, stamp: &'a str },
    /// A trash item comes back where something else now lives.
    Restored,
}

/// Longest device name written into a conflict copy, in bytes. With it, the annotation
/// and the extension together stay far below [`MAX_NAME_BYTES`], so shortening the stem
/// always makes a name fit.
const MAX_DEVICE_BYTES: usize = 64;

/// Longest extension kept apart from the stem, its dot included (`.tar` of a compound
/// one not counted). Anything longer after the last dot is part of a name
/// (`Minutes 3.Board meeting with the auditors`), not a file type.
const MAX_EXTENSION_BYTES: usize = 17;

/// The `n`th name for a copy of `name` (`n` = 1 is the plain one, then 2, 3, …).
///
/// A file's extension stays last (see [`split_extension`]), so the copy opens with the
/// same program. The result is at most [`MAX_NAME_BYTES`] long in NFC, as
/// [`ServerPath`](crate::ServerPath) requires: the stem is shortened at a character
/// boundary until it fits; the annotation and extension are never cut, since they are
/// what tell the copy apart.
pub fn copy_name(name: &str, kind: NameKind, reason: CopyReason<'_>, n: u32) -> String {
    let (stem, ext) = match kind {
        NameKind::File => split_extension(name),
        NameKind::Folder => (name, ""),
    };
    let number = if n <= 1 {
        String::new()
    } else {
        format!(" {n}")
    };
    let tag = match reason {
        CopyReason::Conflict { device, stamp } => format!(
            " (conflicted copy from {} {stamp}{number})",
            device_label(device)
        ),
        CopyReason::Restored => format!(" (restored{number})"),
    };
    let budget = MAX_NAME_BYTES.saturating_sub(tag.len() + ext.len());
    let mut stem = &stem[..floor_char_boundary(stem, budget)];
    loop {
        let candidate = format!("{stem}{tag}{ext}");
        // The name is stored in NFC, which can be longer than what was joined here
        // (a few characters decompose under it); measure what will be stored.
        let stored: usize = candidate.nfc().map(char::len_utf8).sum();
        if stored <= MAX_NAME_BYTES || stem.is_empty() {
            return candidate;
        }
        stem = &stem[..floor_char_boundary(stem, stem.len() - 1)];
    }
}

/// Splits a file's name into its stem and its extension: `report.final.pdf` into
/// `report.final` and `.pdf`, `archive.tar.gz` into `archive` and `.tar.gz` (a
/// compressed tar keeps both, so its copy still unpacks as one). A leading dot does not
/// start an extension (`.bashrc` has none), nor does a trailing one, and what follows
/// the last dot is an extension only when it is short and holds no white space.
pub fn split_extension(name: &str) -> (&str, &str) {
    let Some(dot) = name.rfind('.').filter(|&i| i > 0) else {
        return (name, "");
    };
    let ext = &name[dot..];
    if ext.len() < 2 || ext.len() > MAX_EXTENSION_BYTES || ext.chars().any(char::is_whitespace) {
        return (name, "");
    }
    let stem = &name[..dot];
    let tar = stem.len().saturating_sub(4);
    if tar > 0 && stem.is_char_boundary(tar) && stem[tar..].eq_ignore_ascii_case(".tar") {
        return (&name[..tar], &name[tar..]);
    }
    (stem, ext)
}

/// A device's name made safe to write into a file name: no separators or control
/// characters, in NFC, at most 64 bytes (cut at a character boundary), never empty.
pub fn device_label(name: &str) -> String {
    let cleaned: String = name
        .nfc()
        .map(|c| match c {
            '/' | '\\' => '-',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = cleaned.trim();
    let cut = trimmed[..floor_char_boundary(trimmed, MAX_DEVICE_BYTES)].trim_end();
    if cut.is_empty() {
        "unknown device".to_owned()
    } else {
        cut.to_owned()
    }
}

/// The largest index at most `at` that falls on a character boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Formats seconds since the Unix epoch (UTC) as `YYYY-MM-DD HHMMSS`.
pub fn format_stamp(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}{:02}{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: &str = "2024-05-01 120000";

    fn conflict(device: &str) -> CopyReason<'_> {
        CopyReason::Conflict {
            device,
            stamp: STAMP,
        }
    }

    /// Checks one name against what is expected, and that it is a name a
    /// `ServerPath` holds.
    fn check(name: &str, kind: NameKind, reason: CopyReason<'_>, n: u32, expect: &str) {
        let got = copy_name(name, kind, reason, n);
        assert_eq!(got, expect, "{name:?} {kind:?} {reason:?} {n}");
        let path = format!("/{got}");
        assert!(
            crate::ServerPath::parse(&path).is_ok(),
            "{path:?} is no valid path"
        );
    }

    #[test]
    fn names_of_copies() {
        use NameKind::{File, Folder};
        let c = conflict("laptop");
        let r = CopyReason::Restored;
        #[rustfmt::skip]
        let cases: &[(&str, NameKind, CopyReason<'_>, u32, &str)] = &[
            ("report.pdf", File, c, 1, "report (conflicted copy from laptop 2024-05-01 120000).pdf"),
            ("report.pdf", File, c, 2, "report (conflicted copy from laptop 2024-05-01 120000 2).pdf"),
            ("report.pdf", File, r, 1, "report (restored).pdf"),
            ("report.pdf", File, r, 3, "report (restored 3).pdf"),
            // n = 0 is read as the first name, never as " 0".
            ("report.pdf", File, r, 0, "report (restored).pdf"),
            ("report.final.pdf", File, c, 1, "report.final (conflicted copy from laptop 2024-05-01 120000).pdf"),
            ("archive.tar.gz", File, c, 1, "archive (conflicted copy from laptop 2024-05-01 120000).tar.gz"),
            ("backup.TAR.XZ", File, r, 2, "backup (restored 2).TAR.XZ"),
            // A file named only by its "extension" keeps it as its name.
            (".tar.gz", File, r, 1, ".tar (restored).gz"),
            (".bashrc", File, c, 1, ".bashrc (conflicted copy from laptop 2024-05-01 120000)"),
            (".config.json", File, r, 1, ".config (restored).json"),
            ("README", File, c, 2, "README (conflicted copy from laptop 2024-05-01 120000 2)"),
            ("notes.", File, r, 1, "notes. (restored)"),
            ("Minutes 3.Board meeting", File, r, 1, "Minutes 3.Board meeting (restored)"),
            ("photos.2020", Folder, c, 1, "photos.2020 (conflicted copy from laptop 2024-05-01 120000)"),
            ("photos.2020", Folder, r, 2, "photos.2020 (restored 2)"),
            // The device's name is made safe for a file name.
            ("a.txt", File, conflict(" a/b\\c\n "), 1, "a (conflicted copy from a-b-c 2024-05-01 120000).txt"),
            ("a.txt", File, conflict(""), 1, "a (conflicted copy from unknown device 2024-05-01 120000).txt"),
        ];
        for &(name, kind, reason, n, expect) in cases {
            check(name, kind, reason, n, expect);
        }
    }

    #[test]
    fn long_names_lose_the_end_of_their_stem() {
        let c = conflict("laptop");
        // Two-byte characters: the cut must fall between them.
        let long = format!("{}.txt", "é".repeat(126));
        let got = copy_name(&long, NameKind::File, CopyReason::Restored, 12);
        assert_eq!(got.len(), 254, "{got}");
        assert!(got.ends_with("é (restored 12).txt"), "{got}");
        check(&long, NameKind::File, CopyReason::Restored, 12, &got);

        let long = format!("{}.tar.gz", "x".repeat(240));
        let got = copy_name(&long, NameKind::File, c, 7);
        assert_eq!(got.len(), MAX_NAME_BYTES, "{got}");
        assert!(got.ends_with("x (conflicted copy from laptop 2024-05-01 120000 7).tar.gz"));
        check(&long, NameKind::File, c, 7, &got);

        // The longest device name and number still leave room for a stem.
        let device = "ü".repeat(100);
        let got = copy_name(
            &"y".repeat(255),
            NameKind::Folder,
            conflict(&device),
            999_999,
        );
        assert_eq!(got.len(), MAX_NAME_BYTES, "{got}");
        assert!(got.starts_with("yyyy"), "{got}");
        assert!(
            got.contains(&format!("from {} 2024", "ü".repeat(32))),
            "{got}"
        );
    }

    #[test]
    fn device_labels() {
        assert_eq!(device_label("  desk top "), "desk top");
        assert_eq!(device_label("\t\n"), "unknown device");
        assert_eq!(device_label(&"ab".repeat(40)).len(), 64);
        // NFC: a decomposed é counts as the composed one.
        assert_eq!(device_label("Rene\u{301}"), "René");
    }

    #[test]
    fn stamps() {
        assert_eq!(format_stamp(0), "1970-01-01 000000");
        assert_eq!(format_stamp(1_700_000_000), "2023-11-14 221320");
    }
}
