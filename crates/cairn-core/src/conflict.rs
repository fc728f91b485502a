//! Names for conflict copies, as a user of Dropbox knows them:
//! `NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).EXT`.

use crate::display::civil_from_days;

/// The name a conflicting write is stored under. `stamp` is the UTC time as
/// `YYYY-MM-DD HHMMSS`; the caller formats it, so this stays free of clocks.
pub fn conflict_name(name: &str, device: &str, stamp: &str) -> String {
    let (stem, ext) = split_extension(name);
    format!("{stem} (conflicted copy from {device} {stamp}){ext}")
}

/// Splits `report.final.pdf` into `report.final` and `.pdf`. A leading dot does not start
/// an extension (`.bashrc` has none).
pub fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// The `n`th name under which a trash item comes back when its own name is taken:
/// `NAME (restored).EXT` for `n` = 1, then `NAME (restored 2).EXT`, and so on. Only a
/// file's name is split at its extension (a folder named `photos.2020` becomes
/// `photos.2020 (restored)`). The stem is shortened, a character at a time, until the
/// name fits in [`MAX_NAME_BYTES`](crate::path::MAX_NAME_BYTES).
pub fn restored_name(name: &str, n: u32, is_file: bool) -> String {
    let (stem, ext) = if is_file {
        split_extension(name)
    } else {
        (name, "")
    };
    let tag = if n <= 1 {
        " (restored)".to_owned()
    } else {
        format!(" (restored {n})")
    };
    let mut stem = stem.to_owned();
    loop {
        let candidate = format!("{stem}{tag}{ext}");
        if candidate.len() <= crate::path::MAX_NAME_BYTES || stem.is_empty() {
            return candidate;
        }
        stem.pop();
    }
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

    #[test]
    fn names() {
        assert_eq!(
            conflict_name("report.pdf", "laptop", "2024-05-01 120000"),
            "report (conflicted copy from laptop 2024-05-01 120000).pdf"
        );
        assert_eq!(
            conflict_name(".bashrc", "pc", "2024-05-01 120000"),
            ".bashrc (conflicted copy from pc 2024-05-01 120000)"
        );
        assert_eq!(format_stamp(0), "1970-01-01 000000");
        assert_eq!(restored_name("a.txt", 1, true), "a (restored).txt");
        assert_eq!(restored_name("a.txt", 2, true), "a (restored 2).txt");
        assert_eq!(
            restored_name("photos.2020", 1, false),
            "photos.2020 (restored)"
        );
        let long = format!("{}.txt", "é".repeat(126));
        let got = restored_name(&long, 12, true);
        assert!(
            got.len() <= crate::path::MAX_NAME_BYTES,
            "{} bytes",
            got.len()
        );
        assert!(got.ends_with("é (restored 12).txt"), "{got}");
        assert_eq!(format_stamp(1_700_000_000), "2023-11-14 221320");
    }
}
