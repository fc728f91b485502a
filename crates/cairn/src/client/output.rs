//! How the client commands print: remote path handling, sizes, times, listings.

use anyhow::Context;
use cairn_proto::{EntryInfo, EntryKind, TrashItem};
use serde::Serialize;

use cairn_core::display::civil_from_days;
pub use cairn_core::display::human_size;

/// Normalizes a remote path the way a user means it: a leading '/' is added when
/// missing and one trailing '/' is dropped, so `docs/` means `/docs`. Everything else
/// (`..`, empty segments, over-long names) is left for the server to judge.
pub fn normalize_remote(input: &str) -> String {
    let mut path = if input.starts_with('/') {
        input.to_owned()
    } else {
        format!("/{input}")
    };
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    path
}

/// `dir/name`, without doubling the root's slash.
pub fn join_remote(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The last segment of a normalized remote path; empty for the root.
pub fn remote_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM` in UTC.
pub fn format_time(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60
    )
}

/// A table for people: a header, then rows, each column aligned under its heading,
/// columns two spaces apart. Widths count characters, which is right for the text we
/// print (paths may hold wide characters, whose columns then drift a little; nothing
/// breaks). The last column is never padded, so no line ends in spaces.
pub(crate) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    /// Numbers and sizes.
    Right,
}

impl Table {
    /// A table with these headings.
    pub(crate) fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one cell per column (missing cells are empty).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The header and the rows, one line each; nothing at all without rows.
    pub(crate) fn render(&self) -> String {
        if self.rows.is_empty() {
            return String::new();
        }
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, ((_, align), width)) in self.columns.iter().zip(&widths).enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                let last = i + 1 == self.columns.len();
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        if !last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `n` and a noun, the noun in the plural unless `n` is 1: `1 file`, `0 files`,
/// `2 entries`, `3 copies`. The noun is a regular English one, in the singular.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    format!("{n} {}", plural(noun))
}

/// The plural of a regular English noun: `file` → `files`, `entry` → `entries`,
/// `day` → `days`, `box` → `boxes`.
fn plural(noun: &str) -> String {
    let vowel_before = |stem: &str| stem.ends_with(['a', 'e', 'i', 'o', 'u']);
    if let Some(stem) = noun.strip_suffix('y') {
        if !stem.is_empty() && !vowel_before(stem) {
            return format!("{stem}ies");
        }
    }
    if noun.ends_with(['s', 'x', 'z']) || noun.ends_with("ch") || noun.ends_with("sh") {
        return format!("{noun}es");
    }
    format!("{noun}s")
}

/// An entry's size for people ("-" for a folder), the suffix its name takes ("/" for a
/// folder), and when it changed: its client mtime, or for a folder, whose client mtime
/// is usually unset, the server's time.
fn size_suffix_when(entry: &EntryInfo) -> (String, &'static str, i64) {
    let (size, suffix) = match entry.kind {
        EntryKind::Folder => ("-".to_owned(), "/"),
        EntryKind::File => (human_size(entry.size), ""),
    };
    let when = if entry.mtime > 0 {
        entry.mtime
    } else {
        entry.modified_at
    };
    (size, suffix, when)
}

/// `cairn ls` as a table: name (a folder with a trailing '/', a shared folder with
/// who shares it), size for people, modification time (UTC).
pub fn entries_table(entries: &[EntryInfo]) -> String {
    let mut table = Table::new(&[
        ("SIZE", Align::Right),
        ("MODIFIED (UTC)", Align::Left),
        ("NAME", Align::Left),
    ]);
    for entry in entries {
        let (size, suffix, when) = size_suffix_when(entry);
        let shared = match &entry.shared {
            Some(s) if s.role == "owner" => "  (shared)".to_owned(),
            Some(s) => format!("  (shared by {}, {})", s.owner, s.role),
            None => String::new(),
        };
        table.row(vec![
            size,
            format_time(when),
            format!("{}{suffix}{shared}", entry.name),
        ]);
    }
    table.render()
}

/// `cairn search`'s table: the whole path (a folder's ends in '/'), size, modified.
pub fn search_table(entries: &[EntryInfo]) -> String {
    let mut table = Table::new(&[
        ("PATH", Align::Left),
        ("SIZE", Align::Right),
        ("MODIFIED (UTC)", Align::Left),
    ]);
    for entry in entries {
        let (size, suffix, when) = size_suffix_when(entry);
        table.row(vec![
            format!("{}{suffix}", entry.path),
            size,
            format_time(when),
        ]);
    }
    table.render()
}

/// `cairn trash list` as a table: each item's id (for `--id`), when it was deleted
/// (UTC), its size, its original path (a folder with a trailing '/' and its file count).
pub fn trash_table(items: &[TrashItem]) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("DELETED (UTC)", Align::Left),
        ("SIZE", Align::Right),
        ("PATH", Align::Left),
    ]);
    for item in items {
        let what = match item.kind {
            EntryKind::Folder => {
                format!("{}/  ({})", item.path, count(item.file_count, "file"))
            }
            EntryKind::File => item.path.clone(),
        };
        table.row(vec![
            item.id.to_string(),
            format_time(item.deleted_at),
            human_size(item.size),
            what,
        ]);
    }
    table.render()
}

/// `cairn share list` as a table: the folder, the caller's role, and who else reads
/// it: `bob (editor), carol (viewer)`.
pub fn shares_table(shares: &[cairn_client::proto::ShareInfo]) -> String {
    let mut table = Table::new(&[
        ("FOLDER", Align::Left),
        ("YOUR ROLE", Align::Left),
        ("MEMBERS", Align::Left),
    ]);
    for share in shares {
        let others: Vec<String> = share
            .members
            .iter()
            .map(|m| format!("{} ({})", m.user, m.role))
            .collect();
        table.row(vec![
            share.path.clone(),
            share.role.clone(),
            others.join(", "),
        ]);
    }
    table.render()
}

/// `cairn versions` as a table, newest first: the version's id (for `cairn restore
/// --version`), when it was made (UTC), its size, who made it and on which device, and
/// the start of its content hash.
pub fn versions_table(versions: &[cairn_client::proto::VersionInfo]) -> String {
    let mut table = Table::new(&[
        ("VERSION", Align::Right),
        ("CREATED (UTC)", Align::Left),
        ("SIZE", Align::Right),
        ("BY", Align::Left),
        ("CONTENT", Align::Left),
    ]);
    for v in versions {
        let by = match &v.device {
            Some(device) => format!("{} on {device}", v.user),
            None => v.user.clone(),
        };
        let hash: String = v.content_hash.chars().take(16).collect();
        table.row(vec![
            v.id.clone(),
            format_time(v.created_at),
            human_size(v.size),
            by,
            hash,
        ]);
    }
    table.render()
}

/// `cairn stat` for people: one `key: value` per line.
pub fn entry_details(entry: &EntryInfo) -> String {
    let mut out = String::new();
    let kind = match entry.kind {
        EntryKind::File => "file",
        EntryKind::Folder => "folder",
    };
    let mut line = |key: &str, value: &str| {
        out.push_str(&format!("{key:<10} {value}\n"));
    };
    line("path:", &entry.path);
    line("kind:", kind);
    if entry.kind == EntryKind::File {
        line(
            "size:",
            &format!("{} ({})", entry.size, human_size(entry.size)),
        );
        line("mtime:", &format!("{} UTC", format_time(entry.mtime)));
    }
    line(
        "modified:",
        &format!("{} UTC", format_time(entry.modified_at)),
    );
    if let Some(rev) = &entry.rev {
        line("rev:", rev);
    }
    if let Some(hash) = &entry.content_hash {
        line("content:", hash);
    }
    out
}

/// Prints `value` as pretty JSON on standard output, which `--json` keeps for it alone.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot format JSON")?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_are_normalized_gently() {
        let check =
            |input: &str, want: &str| assert_eq!(normalize_remote(input), want, "{input:?}");
        check("", "/");
        check("/", "/");
        check("docs", "/docs");
        check("docs/", "/docs");
        check("/docs/", "/docs");
        check("/a/b.txt", "/a/b.txt");
        // Only one trailing slash goes; the rest is for the server to refuse.
        check("docs//", "/docs/");
        check("../x", "/../x");
        check("//", "/");
    }

    #[test]
    fn joins_and_names() {
        assert_eq!(join_remote("/", "a.txt"), "/a.txt");
        assert_eq!(join_remote("/docs", "a.txt"), "/docs/a.txt");
        assert_eq!(remote_name("/docs/a.txt"), "a.txt");
        assert_eq!(remote_name("/docs"), "docs");
        assert_eq!(remote_name("/"), "");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(format_time(1_714_564_800_000 + 61_000), "2024-05-01 12:01");
        assert_eq!(format_time(-60_000), "1969-12-31 23:59");
    }

    /// Lines as a table renders them, each ending in a newline.
    fn lines(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn tables_align_under_their_headers() {
        let mut table = Table::new(&[
            ("ID", Align::Right),
            ("NAME", Align::Left),
            ("NOTE", Align::Left),
        ]);
        assert_eq!(table.render(), "", "no rows, no header");
        table.row(vec!["7".into(), "a.txt".into(), "".into()]);
        table.row(vec!["1234".into(), "a longer name".into(), "x".into()]);
        assert_eq!(
            table.render(),
            lines(&[
                "  ID  NAME           NOTE",
                "   7  a.txt",
                "1234  a longer name  x",
            ])
        );
    }

    #[test]
    fn counts_and_plurals() {
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(2, "conflict"), "2 conflicts");
        assert_eq!(count(1, "entry"), "1 entry");
        assert_eq!(count(3, "entry"), "3 entries");
        assert_eq!(count(2, "day"), "2 days");
        assert_eq!(count(2, "box"), "2 boxes");
        assert_eq!(count(2, "inconsistency"), "2 inconsistencies");
        assert_eq!(count(1000, "block"), "1000 blocks");
    }

    #[test]
    fn trash_tables() {
        let folder = TrashItem {
            id: 7,
            path: "/docs".into(),
            kind: EntryKind::Folder,
            size: 1536,
            file_count: 3,
            deleted_at: 60_000,
            deleted_by: "me".into(),
            device: None,
        };
        let file = TrashItem {
            id: 12,
            kind: EntryKind::File,
            path: "/a.txt".into(),
            size: 5,
            file_count: 1,
            ..folder.clone()
        };
        let one = TrashItem {
            file_count: 1,
            path: "/one".into(),
            ..folder.clone()
        };
        assert_eq!(
            trash_table(&[folder, file, one]),
            lines(&[
                "ID  DELETED (UTC)        SIZE  PATH",
                " 7  1970-01-01 00:01  1.5 KiB  /docs/  (3 files)",
                "12  1970-01-01 00:01      5 B  /a.txt",
                " 7  1970-01-01 00:01  1.5 KiB  /one/  (1 file)",
            ])
        );
    }

    #[test]
    fn listing_tables() {
        let folder = EntryInfo {
            id: 1,
            path: "/docs".into(),
            name: "docs".into(),
            kind: EntryKind::Folder,
            size: 0,
            rev: None,
            content_hash: None,
            mtime: 0,
            modified_at: 0,
            shared: None,
        };
        let file = EntryInfo {
            path: "/a.txt".into(),
            name: "a.txt".into(),
            kind: EntryKind::File,
            size: 3 << 20,
            mtime: 60_000,
            ..folder.clone()
        };
        assert_eq!(
            entries_table(&[folder, file]),
            lines(&[
                "   SIZE  MODIFIED (UTC)    NAME",
                "      -  1970-01-01 00:00  docs/",
                "3.0 MiB  1970-01-01 00:01  a.txt",
            ])
        );
    }
}
