//! How the client commands print: remote path handling, sizes, times, listings.

use cairn_proto::{EntryInfo, EntryKind, TrashItem};

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

/// One line of `cairn ls`: kind, size, modification time (UTC), name.
pub fn entry_line(entry: &EntryInfo) -> String {
    let (marker, size, suffix) = match entry.kind {
        EntryKind::Folder => ('d', "-".to_owned(), "/"),
        EntryKind::File => ('-', entry.size.to_string(), ""),
    };
    // A folder's client mtime is usually unset; the server's time is what changed it.
    let when = if entry.mtime > 0 {
        entry.mtime
    } else {
        entry.modified_at
    };
    let shared = match &entry.shared {
        Some(s) if s.role == "owner" => "  (shared)".to_owned(),
        Some(s) => format!("  (shared by {}, {})", s.owner, s.role),
        None => String::new(),
    };
    format!(
        "{marker} {size:>12}  {}  {}{suffix}{shared}",
        format_time(when),
        entry.name
    )
}

/// One line of `cairn trash list`: the item's id (for `--id`), when it was deleted
/// (UTC), its size, its original path (a folder with a trailing '/' and its file count).
pub fn trash_line(item: &TrashItem) -> String {
    let what = match item.kind {
        EntryKind::Folder => {
            let s = if item.file_count == 1 { "" } else { "s" };
            format!("{}/  ({} file{s})", item.path, item.file_count)
        }
        EntryKind::File => item.path.clone(),
    };
    format!(
        "{:>8}  {}  {:>10}  {what}",
        item.id,
        format_time(item.deleted_at),
        human_size(item.size)
    )
}

/// `cairn stat` for people: one `key: value` per line.
/// One line of `cairn share list`: the folder, the caller's role, and who else reads
/// it: `/Team  owner  bob (editor), carol (viewer)`.
pub fn share_line(share: &cairn_client::proto::ShareInfo) -> String {
    let others: Vec<String> = share
        .members
        .iter()
        .map(|m| format!("{} ({})", m.user, m.role))
        .collect();
    format!("{}  {}  {}", share.path, share.role, others.join(", "))
}

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

    #[test]
    fn trash_lines() {
        let mut item = TrashItem {
            id: 7,
            path: "/docs".into(),
            kind: EntryKind::Folder,
            size: 1536,
            file_count: 3,
            deleted_at: 60_000,
            deleted_by: "me".into(),
            device: None,
        };
        assert_eq!(
            trash_line(&item),
            "       7  1970-01-01 00:01     1.5 KiB  /docs/  (3 files)"
        );
        item.kind = EntryKind::File;
        item.path = "/a.txt".into();
        item.size = 5;
        assert_eq!(
            trash_line(&item),
            "       7  1970-01-01 00:01         5 B  /a.txt"
        );
    }

    #[test]
    fn listing_lines() {
        let entry = EntryInfo {
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
        assert_eq!(
            entry_line(&entry),
            "d            -  1970-01-01 00:00  docs/"
        );
        let file = EntryInfo {
            path: "/a.txt".into(),
            name: "a.txt".into(),
            kind: EntryKind::File,
            size: 42,
            mtime: 60_000,
            ..entry
        };
        assert_eq!(entry_line(&file), "-           42  1970-01-01 00:01  a.txt");
    }
}
