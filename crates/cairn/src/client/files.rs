//! Looking at and rearranging what is on the server: `ls`, `stat`, `mkdir`, `mv`, `cp`,
//! `rm`, `search`, and a file's history (`versions`, `restore`).

use cairn_client::proto::{EntryInfo, EntryKind};

use super::output::{self, join_remote, normalize_remote, print_json, remote_name};
use super::session::{session, Doing, Session};
use crate::ClientOpts;

pub(super) async fn ls(session: &Session, path: &str, json: bool) -> anyhow::Result<()> {
    let client = &session.client;
    let path = normalize_remote(path);
    let entries = match client.list(&path).await {
        Ok(entries) => entries,
        // `ls FILE` shows the file, as ls(1) does.
        Err(err) if matches!(err.status(), Some(400..=499)) && !err.is_unauthorized() => {
            match client.try_stat(&path).await {
                Ok(Some(entry)) if entry.kind == EntryKind::File => vec![entry],
                _ => return Err(err).doing(|| format!("cannot list {path}")),
            }
        }
        Err(err) => return Err(err).doing(|| format!("cannot list {path}")),
    };
    if json {
        print_json(&entries)?;
    } else {
        print!("{}", output::entries_table(&entries));
    }
    Ok(())
}

pub(super) async fn stat(session: &Session, path: &str, json: bool) -> anyhow::Result<()> {
    let path = normalize_remote(path);
    let entry = session
        .client
        .stat(&path)
        .await
        .doing(|| format!("cannot stat {path}"))?;
    if json {
        print_json(&entry)?;
    } else {
        print!("{}", output::entry_details(&entry));
    }
    Ok(())
}

/// `cairn search`: entries whose name contains `query`, best first. When the server had
/// more than it sent, stderr says so (standard output stays the table or the JSON array).
pub(super) async fn search(
    session: &Session,
    query: &str,
    limit: Option<u32>,
    json: bool,
) -> anyhow::Result<()> {
    let found = session
        .client
        .search(query, limit)
        .await
        .doing(|| format!("cannot search for {query:?}"))?;
    if json {
        print_json(&found.entries)?;
    } else {
        print!("{}", output::search_table(&found.entries));
    }
    if found.truncated {
        eprintln!(
            "more names match; showing the best {} (ask for more with --limit, or search for more text)",
            found.entries.len()
        );
    }
    Ok(())
}

pub(super) async fn mkdir(opts: &ClientOpts, path: &str) -> anyhow::Result<()> {
    let path = normalize_remote(path);
    session(opts)?
        .client
        .mkdir(&path)
        .await
        .doing(|| format!("cannot create folder {path}"))?;
    Ok(())
}

/// `cairn rm`: the entry goes to the trash, from where `cairn trash restore` brings it
/// back.
pub(super) async fn rm(opts: &ClientOpts, path: &str) -> anyhow::Result<()> {
    let path = normalize_remote(path);
    session(opts)?
        .client
        .delete(&path)
        .await
        .doing(|| format!("cannot remove {path}"))?;
    eprintln!("moved {path} to the trash");
    Ok(())
}

pub(super) async fn versions(session: &Session, path: &str, json: bool) -> anyhow::Result<()> {
    let path = normalize_remote(path);
    let list = session
        .client
        .versions(&path)
        .await
        .doing(|| format!("cannot list versions of {path}"))?;
    if json {
        print_json(&list.versions)?;
    } else {
        print!("{}", output::versions_table(&list.versions));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Transfer {
    Move,
    Copy,
}

pub(super) async fn move_or_copy(
    session: &Session,
    from: &str,
    to: &str,
    how: Transfer,
) -> anyhow::Result<()> {
    let client = &session.client;
    let from = normalize_remote(from);
    let name = remote_name(&from).to_owned();
    // As with mv(1): a destination that is a folder receives the source inside it.
    let target = if to.is_empty() || to.ends_with('/') {
        join_remote(&normalize_remote(to), &name)
    } else {
        let to = normalize_remote(to);
        match client.try_stat(&to).await {
            Ok(Some(entry)) if entry.kind == EntryKind::Folder && to != from => {
                join_remote(&to, &name)
            }
            Ok(_) => to,
            Err(err) => return Err(err).doing(|| format!("cannot look up {to}")),
        }
    };
    let (verb, done) = match how {
        Transfer::Move => ("move", "moved"),
        Transfer::Copy => ("copy", "copied"),
    };
    let result = match how {
        Transfer::Move => client.move_entry(&from, &target).await,
        Transfer::Copy => client.copy_entry(&from, &target).await,
    };
    let entry: EntryInfo = result.doing(|| format!("cannot {verb} {from} to {target}"))?;
    eprintln!("{done} {from} to {}", entry.path);
    Ok(())
}

/// `cairn restore`: an old version becomes current again, as a new version.
pub(super) async fn restore(opts: &ClientOpts, path: &str, version: &str) -> anyhow::Result<()> {
    let path = normalize_remote(path);
    let restored = session(opts)?
        .client
        .restore(&path, version)
        .await
        .doing(|| format!("cannot restore version {version} of {path}"))?;
    eprintln!(
        "restored version {version} of {path} (now revision {})",
        restored.entry.rev.as_deref().unwrap_or("?")
    );
    Ok(())
}
