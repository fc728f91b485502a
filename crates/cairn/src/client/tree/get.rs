//! `cairn get -r REMOTE DIR`: the server's tree listed, its folders made below DIR and
//! nowhere else, its small files fetched in batches and its large ones alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::{EntryInfo, EntryKind};
use cairn_client::{Client, ClientError, DownloadOptions, SmallDownload};
use cairn_core::ServerPath;
use futures::StreamExt;
use indicatif::ProgressBar;

use super::{batches, TreeReport, BATCHES_IN_FLIGHT, SMALL_FILE};
use crate::client::local::{self, check_destination, join_checked, replace_only_files};
use crate::client::output::normalize_remote;
use crate::client::progress::progress_bar;
use crate::client::session::{Doing, Session};

/// A remote file on its way down.
struct RemoteFile {
    remote: String,
    local: PathBuf,
    size: u64,
}

/// Downloads the folder `remote` and everything below it into `local`: LOCAL names the
/// new folder, or, when it is an existing folder or ends with a separator, the folder
/// to create it in. Writes only below that folder.
pub(in crate::client) async fn get_tree(
    session: &Session,
    remote: &str,
    local: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = &session.client;
    let remote = normalize_remote(remote);
    let entry = client
        .stat(&remote)
        .await
        .doing(|| format!("cannot download {remote}"))?;
    if entry.kind == EntryKind::File {
        // As `cp -r` copies a file: like a plain `get`.
        return crate::client::transfer::get(session, &remote, local, json).await;
    }
    // The server's spelling of the folder, which its listing uses too.
    let remote = entry.path;
    let root =
        ServerPath::parse(&remote).map_err(|err| anyhow!("cannot download {remote}: {err}"))?;
    let (top, made_top) = make_top(&remote, &root, local)?;

    let mut report = TreeReport {
        local: top.display().to_string(),
        remote: remote.clone(),
        folders: u64::from(made_top),
        ..TreeReport::default()
    };
    let entries = client
        .list_tree(&remote)
        .await
        .doing(|| format!("cannot list {remote}"))?;
    let (small, large) = place_entries(entries, &remote, &root, &top, &mut report);

    let total: u64 = small.iter().chain(&large).map(|f| f.size).sum();
    let bar = progress_bar(total);
    download_small(client, &remote, small, &bar, &mut report).await?;
    download_large(client, large, &bar, &mut report).await?;
    bar.finish_and_clear();
    report.finish("downloaded", started, json)
}

/// The local folder the tree `remote` goes to, made if it is not there (and whether it
/// was made): LOCAL itself, or the folder's name inside LOCAL when LOCAL is an existing
/// folder or ends with a separator.
fn make_top(remote: &str, root: &ServerPath, local: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let into = local.is_dir()
        || local
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR);
    let top = match (into, root.name()) {
        (true, Some(name)) => {
            join_checked(local, [name]).map_err(|why| anyhow!("cannot download {remote}: {why}"))?
        }
        // The root has no name of its own: its content goes straight into LOCAL.
        _ => local.to_owned(),
    };
    // The folder named on the command line may be a link to a folder; below it, and
    // for a folder created inside it, nothing but real folders.
    let named = top == local;
    let made_top = match fs::symlink_metadata(&top) {
        Ok(meta) if meta.is_dir() => false,
        Ok(_) if named && top.is_dir() => false,
        Ok(meta) => bail!(
            "cannot download {remote} to {}: it is {}",
            top.display(),
            local::describe(meta.file_type())
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if into {
                fs::create_dir_all(local)
                    .with_context(|| format!("cannot create {}", local.display()))?;
            }
            fs::create_dir(&top).with_context(|| format!("cannot create {}", top.display()))?;
            true
        }
        Err(err) => bail!("cannot download {remote} to {}: {err}", top.display()),
    };
    Ok((top, made_top))
}

/// Gives each listed entry its place below `top`: makes the folders, and returns the
/// files to fetch, small and large. A name this platform cannot hold, something other
/// than a regular file in a file's way, or a folder that cannot be made is reported
/// (a folder's with everything in it).
fn place_entries(
    entries: Vec<EntryInfo>,
    remote: &str,
    root: &ServerPath,
    top: &Path,
    report: &mut TreeReport,
) -> (Vec<RemoteFile>, Vec<RemoteFile>) {
    let mut failed_folders: Vec<ServerPath> = Vec::new();
    let mut small = Vec::new();
    let mut large = Vec::new();
    for entry in entries {
        let place = ServerPath::parse(&entry.path)
            .ok()
            .and_then(|path| Some((path.rebase(root, &ServerPath::root())?, path)));
        let Some((relative, path)) = place else {
            report.fail(
                &entry.path,
                format!("the server listed it outside {remote}"),
            );
            continue;
        };
        if let Some(folder) = failed_folders.iter().find(|f| path.starts_with(f)) {
            report.fail(&path, format!("its folder {folder} could not be made here"));
            continue;
        }
        let target = match join_checked(top, relative.segments()) {
            Ok(target) => target,
            Err(why) => {
                report.fail(&path, why);
                if entry.kind == EntryKind::Folder {
                    failed_folders.push(path);
                }
                continue;
            }
        };
        match entry.kind {
            EntryKind::Folder => match make_folder(&target) {
                Ok(created) => report.folders += u64::from(created),
                Err(why) => {
                    report.fail(&path, why);
                    failed_folders.push(path);
                }
            },
            EntryKind::File => {
                match check_destination(&target) {
                    Ok(Ok(())) => {}
                    Ok(Err(in_the_way)) => {
                        report.fail(
                            target.display(),
                            format!("it is {}; only a regular file is replaced", in_the_way.what),
                        );
                        continue;
                    }
                    Err(err) => {
                        report.fail(target.display(), err.to_string());
                        continue;
                    }
                }
                let file = RemoteFile {
                    remote: entry.path.clone(),
                    local: target,
                    size: entry.size,
                };
                if entry.size <= SMALL_FILE {
                    small.push(file);
                } else {
                    large.push(file);
                }
            }
        }
    }
    (small, large)
}

/// Downloads the small files in batches, [`BATCHES_IN_FLIGHT`] at a time.
async fn download_small(
    client: &Client,
    remote: &str,
    small: Vec<RemoteFile>,
    bar: &ProgressBar,
    report: &mut TreeReport,
) -> anyhow::Result<()> {
    let batches = batches(small, |f| f.size);
    let mut downloads = futures::stream::iter(batches)
        .map(|batch| async move {
            let bytes: u64 = batch.iter().map(|f| f.size).sum();
            let items = batch
                .iter()
                .map(|f| SmallDownload {
                    remote: f.remote.clone(),
                    local: f.local.clone(),
                    may_replace: Some(replace_only_files()),
                })
                .collect();
            let results = client.download_small_files(items).await;
            (batch, bytes, results)
        })
        .buffered(BATCHES_IN_FLIGHT);
    while let Some((batch, bytes, results)) = downloads.next().await {
        let results = results.doing(|| format!("cannot download {remote}"))?;
        for (file, result) in batch.iter().zip(results) {
            match result {
                Ok(outcome) => {
                    report.files += 1;
                    report.bytes += outcome.stats.bytes_total;
                }
                Err(err) => report.fail(&file.remote, download_problem(err)),
            }
        }
        bar.inc(bytes);
    }
    Ok(())
}

/// Downloads the large files one after the other, each block verified.
async fn download_large(
    client: &Client,
    large: Vec<RemoteFile>,
    bar: &ProgressBar,
    report: &mut TreeReport,
) -> anyhow::Result<()> {
    for file in large {
        let start = bar.position();
        let progress_bar = bar.clone();
        let options = DownloadOptions {
            progress: Some(std::sync::Arc::new(move |done| {
                progress_bar.set_position(start + done)
            })),
            may_replace: Some(replace_only_files()),
            ..DownloadOptions::default()
        };
        match client
            .download_file(&file.remote, &file.local, options)
            .await
        {
            Ok(outcome) => {
                report.files += 1;
                report.bytes += outcome.stats.bytes_total;
            }
            Err(err @ ClientError::Http(_)) => {
                bar.finish_and_clear();
                return Err(err).doing(|| format!("cannot download {}", file.remote));
            }
            Err(err) => report.fail(&file.remote, download_problem(err)),
        }
        bar.set_position(start + file.size);
    }
    Ok(())
}

/// Makes the folder `path` unless a real folder is there already (a link to one is not
/// followed). True if it was made.
fn make_folder(path: &Path) -> Result<bool, String> {
    match fs::create_dir(path) {
        Ok(()) => return Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(format!("cannot create {}: {err}", path.display())),
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(false),
        Ok(meta) => Err(format!(
            "{} is {}, not a folder",
            path.display(),
            local::describe(meta.file_type())
        )),
        Err(err) => Err(format!("cannot create {}: {err}", path.display())),
    }
}

/// Why one file of a tree was not downloaded, in a few words.
fn download_problem(err: ClientError) -> String {
    match err {
        ClientError::DestinationChanged { path } => format!(
            "something other than a regular file appeared at {} during the download; \
             it was left alone",
            path.display()
        ),
        err if err.is_block_damaged() => {
            "the file is damaged on the server (ask its administrator to run `cairn admin fsck`)"
                .to_owned()
        }
        err => err.to_string(),
    }
}
