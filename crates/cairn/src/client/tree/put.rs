//! `cairn put -r DIR REMOTE`: the local tree walked, its folders made in batches, its
//! small files sent in batches and its large ones alone.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::{CommitBatchItem, CommitBatchRequest, EntryInfo, EntryKind, PathRequest};
use cairn_client::{Client, ClientError, SmallFile, SmallSource, UploadOptions, MAX_BATCH_ITEMS};
use cairn_core::ServerPath;
use futures::StreamExt;
use indicatif::ProgressBar;

use super::{batches, TreeReport, BATCHES_IN_FLIGHT, SMALL_FILE};
use crate::client::local;
use crate::client::progress::progress_bar;
use crate::client::session::{Doing, Session};
use crate::client::transfer::{check_room, upload_target};

/// A local file found by the walk, on its way up.
struct LocalFile {
    local: PathBuf,
    remote: ServerPath,
    size: u64,
    mtime: Option<i64>,
}

/// A file to upload, with the revision it replaces (if any).
type Upload = (LocalFile, Option<String>);

/// Uploads the folder `local` and everything below it. REMOTE names the new folder, or,
/// when it is an existing folder or ends with '/', the folder to create it in.
pub(in crate::client) async fn put_tree(
    session: &Session,
    local: &Path,
    remote: &str,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = &session.client;
    let name = folder_name(local)?;
    let (target, existing) = upload_target(client, remote, &name).await?;
    if existing.as_ref().is_some_and(|e| e.kind == EntryKind::File) {
        bail!(
            "cannot upload {} to {target}: a file of that name is in the way",
            local.display()
        );
    }
    let root =
        ServerPath::parse(&target).map_err(|err| anyhow!("cannot upload to {target}: {err}"))?;

    let mut report = TreeReport {
        local: local.display().to_string(),
        remote: target.clone(),
        ..TreeReport::default()
    };
    let (folders, files) = walk_local(local, &root, &mut report)?;

    // What is there already: a file's revision is the base its replacement names, so a
    // change racing the upload is refused, not overwritten.
    let there: HashMap<String, EntryInfo> = match existing {
        Some(_) => client
            .list_tree(&target)
            .await
            .doing(|| format!("cannot list {target}"))?
            .into_iter()
            .filter_map(|e| Some((ServerPath::parse(&e.path).ok()?.key(), e)))
            .collect(),
        None => HashMap::new(),
    };

    // Refuse before anything is sent (folders included) when the tree cannot fit in the
    // quota of whoever it is charged to; the commits check again, file by file.
    let adding: u64 = files.iter().map(|f| f.size).sum();
    let replacing: u64 = files
        .iter()
        .filter_map(|f| there.get(&f.remote.key()))
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.size)
        .sum();
    check_room(session, &target, adding as i64 - replacing as i64).await?;

    let mut new_folders: Vec<ServerPath> = Vec::new();
    if existing.is_none() {
        new_folders.push(root.clone());
    }
    new_folders.extend(folders.into_iter().filter(|f| {
        !there
            .get(&f.key())
            .is_some_and(|e| e.kind == EntryKind::Folder)
    }));
    let failed_folders = create_folders(client, &root, &target, &new_folders, &mut report).await?;
    let (small, large) = sort_uploads(files, &there, &failed_folders, &mut report);

    let total: u64 = small.iter().chain(&large).map(|(f, _)| f.size).sum();
    let bar = progress_bar(total);
    upload_small(client, &target, small, &bar, &mut report).await?;
    upload_large(client, large, &bar, &mut report).await?;
    bar.finish_and_clear();
    report.finish("uploaded", started, json)
}

/// The name the uploaded folder takes: that of `local`, which may be a link to a
/// folder (links inside it are never followed).
fn folder_name(local: &Path) -> anyhow::Result<String> {
    fs::canonicalize(local)
        .with_context(|| format!("cannot upload {}", local.display()))?
        .file_name()
        .and_then(|n| n.to_str().map(str::to_owned))
        .ok_or_else(|| {
            anyhow!(
                "cannot upload {}: it has no usable folder name (it must be UTF-8, and not '/')",
                local.display()
            )
        })
}

/// Makes `new_folders` on the server, parents before children, a thousand per
/// request; returns those that could not be made, which take what would go in them
/// along. Fails if `root` itself cannot be made.
async fn create_folders(
    client: &Client,
    root: &ServerPath,
    target: &str,
    new_folders: &[ServerPath],
    report: &mut TreeReport,
) -> anyhow::Result<Vec<ServerPath>> {
    let mut failed_folders: Vec<ServerPath> = Vec::new();
    for group in new_folders.chunks(MAX_BATCH_ITEMS) {
        let items = group
            .iter()
            .map(|f| {
                CommitBatchItem::Mkdir(PathRequest {
                    path: f.as_str().to_owned(),
                })
            })
            .collect();
        let response = client
            .commit_batch(&CommitBatchRequest { items })
            .await
            .doing(|| format!("cannot create the folders of {target}"))?;
        for (folder, result) in group.iter().zip(response.results) {
            match result.error {
                None => report.folders += 1,
                Some(error) => {
                    if folder == root {
                        bail!("cannot create {target}: {}", error.message);
                    }
                    report.fail(folder, error.message);
                    failed_folders.push(folder.clone());
                }
            }
        }
    }
    Ok(failed_folders)
}

/// Splits the files to upload into small and large ones, each with the revision it
/// replaces; a file below a folder that could not be made, or with a folder in its
/// place, is reported instead.
fn sort_uploads(
    files: Vec<LocalFile>,
    there: &HashMap<String, EntryInfo>,
    failed_folders: &[ServerPath],
    report: &mut TreeReport,
) -> (Vec<Upload>, Vec<Upload>) {
    let under_failed = |path: &ServerPath| failed_folders.iter().find(|f| path.starts_with(f));
    let mut small: Vec<Upload> = Vec::new();
    let mut large: Vec<Upload> = Vec::new();
    for file in files {
        if let Some(folder) = under_failed(&file.remote) {
            report.fail(
                &file.remote,
                format!("its folder {folder} could not be created"),
            );
            continue;
        }
        let base_rev = match there.get(&file.remote.key()) {
            Some(entry) if entry.kind == EntryKind::Folder => {
                report.fail(&file.remote, "a folder of that name is in the way");
                continue;
            }
            Some(entry) => entry.rev.clone(),
            None => None,
        };
        if file.size <= SMALL_FILE {
            small.push((file, base_rev));
        } else {
            large.push((file, base_rev));
        }
    }
    (small, large)
}

/// Uploads the small files in batches, [`BATCHES_IN_FLIGHT`] at a time.
async fn upload_small(
    client: &Client,
    target: &str,
    small: Vec<Upload>,
    bar: &ProgressBar,
    report: &mut TreeReport,
) -> anyhow::Result<()> {
    let batches = batches(small, |(f, _)| f.size);
    let mut uploads = futures::stream::iter(batches)
        .map(|batch| async move {
            let bytes: u64 = batch.iter().map(|(f, _)| f.size).sum();
            let items: Vec<SmallFile> = batch
                .iter()
                .map(|(f, base_rev)| SmallFile {
                    source: SmallSource::Path(f.local.clone()),
                    remote: f.remote.as_str().to_owned(),
                    base_rev: base_rev.clone(),
                    mtime: f.mtime,
                })
                .collect();
            let results = client.upload_small_files(items).await;
            (batch, bytes, results)
        })
        .buffered(BATCHES_IN_FLIGHT);
    while let Some((batch, bytes, results)) = uploads.next().await {
        let results = results.doing(|| format!("cannot upload to {target}"))?;
        for ((file, _), result) in batch.iter().zip(results) {
            match result {
                Ok(_) => {
                    report.files += 1;
                    report.bytes += file.size;
                }
                Err(err) => report.fail(&file.remote, upload_problem(err)),
            }
        }
        bar.inc(bytes);
    }
    Ok(())
}

/// Uploads the large files one after the other, each through the block pipeline.
async fn upload_large(
    client: &Client,
    large: Vec<Upload>,
    bar: &ProgressBar,
    report: &mut TreeReport,
) -> anyhow::Result<()> {
    for (file, base_rev) in large {
        let start = bar.position();
        let progress_bar = bar.clone();
        let options = UploadOptions {
            base_rev,
            progress: Some(std::sync::Arc::new(move |done| {
                progress_bar.set_position(start + done)
            })),
            ..UploadOptions::default()
        };
        match client
            .upload_file(&file.local, file.remote.as_str(), options)
            .await
        {
            Ok(_) => {
                report.files += 1;
                report.bytes += file.size;
            }
            // The server or the network gone: the rest would fail the same way.
            Err(err @ ClientError::Http(_)) => {
                bar.finish_and_clear();
                return Err(err).doing(|| format!("cannot upload {}", file.local.display()));
            }
            Err(err) => report.fail(&file.remote, upload_problem(err)),
        }
        bar.set_position(start + file.size);
    }
    Ok(())
}

/// Why one file of a tree was not uploaded, in a few words.
fn upload_problem(err: ClientError) -> String {
    if err.is_conflict() {
        "it was changed on the server during the upload; nothing was replaced".to_owned()
    } else {
        err.to_string()
    }
}

/// Walks the local tree below `dir` without following links: its folders (parents
/// first) and files, each with its path below `root` on the server. Links, pipes and
/// other special files are skipped with a note; names the server would refuse are
/// reported as failures (a folder's with everything in it).
fn walk_local(
    dir: &Path,
    root: &ServerPath,
    report: &mut TreeReport,
) -> anyhow::Result<(Vec<ServerPath>, Vec<LocalFile>)> {
    let mut folders = Vec::new();
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_owned(), root.clone())];
    while let Some((local, remote)) = stack.pop() {
        let entries = match fs::read_dir(&local) {
            Ok(entries) => entries,
            Err(err) if local == dir => {
                return Err(anyhow!("cannot read {}: {err}", local.display()));
            }
            Err(err) => {
                report.fail(local.display(), format!("cannot read the folder: {err}"));
                continue;
            }
        };
        let mut entries: Vec<fs::DirEntry> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subfolders = Vec::new();
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                report.fail(path.display(), "its name is not valid UTF-8");
                continue;
            };
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(err) => {
                    report.fail(path.display(), err.to_string());
                    continue;
                }
            };
            if !file_type.is_dir() && !file_type.is_file() {
                report.skip(
                    path.display(),
                    format!("{} (not followed)", local::describe(file_type)),
                );
                continue;
            }
            let target = match remote.join(&name) {
                Ok(target) => target,
                Err(err) => {
                    report.fail(path.display(), format!("the server would refuse it: {err}"));
                    continue;
                }
            };
            if file_type.is_dir() {
                subfolders.push((path, target));
                continue;
            }
            match entry.metadata() {
                Ok(meta) => files.push(LocalFile {
                    local: path,
                    remote: target,
                    size: meta.len(),
                    mtime: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                }),
                Err(err) => report.fail(path.display(), err.to_string()),
            }
        }
        // Depth first, in name order: a folder is listed before what it holds.
        for (path, target) in subfolders.into_iter().rev() {
            folders.push(target.clone());
            stack.push((path, target));
        }
    }
    folders.sort();
    Ok((folders, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_skips_links_and_keeps_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::create_dir_all(top.join("empty")).unwrap();
        fs::write(top.join("a/b/c.txt"), b"c").unwrap();
        fs::write(top.join("one.txt"), b"1").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/", top.join("escape")).unwrap();
        let mut report = TreeReport::default();
        let root = ServerPath::parse("/up").unwrap();
        let (folders, files) = walk_local(&top, &root, &mut report).unwrap();
        let folders: Vec<&str> = folders.iter().map(ServerPath::as_str).collect();
        assert_eq!(folders, ["/up/a", "/up/a/b", "/up/empty"]);
        let mut files: Vec<&str> = files.iter().map(|f| f.remote.as_str()).collect();
        files.sort();
        assert_eq!(files, ["/up/a/b/c.txt", "/up/one.txt"]);
        assert!(report.failed.is_empty());
        #[cfg(unix)]
        {
            assert_eq!(report.skipped.len(), 1);
            assert!(report.skipped[0].reason.contains("symbolic link"));
        }
    }
}
