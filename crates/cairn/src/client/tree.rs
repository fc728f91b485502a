//! `cairn put -r DIR REMOTE` and `cairn get -r REMOTE DIR`: whole trees, as `cp -r`
//! copies them.
//!
//! Small files travel in batches through the endpoints the sync client uses
//! (`Client::upload_small_files`, `Client::download_small_files`: a few requests and
//! one commit transaction per thousand files); a file over [`SMALL_FILE`] goes alone
//! through the ordinary block pipeline. One progress bar counts the whole tree's bytes.
//! A file that cannot be moved (a name the other side refuses, a conflict, something
//! in the way) is reported and the rest go on; the command then exits non-zero with
//! the list.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::{CommitBatchItem, CommitBatchRequest, EntryInfo, EntryKind, PathRequest};
use cairn_client::{
    ClientError, DownloadOptions, SmallDownload, SmallFile, SmallSource, UploadOptions,
    MAX_BATCH_ITEMS,
};
use cairn_core::ServerPath;
use futures::StreamExt;
use serde::Serialize;

use super::local::{self, check_destination, join_checked, replace_only_files};
use super::output::{self, count, normalize_remote, print_json};
use super::progress::progress_bar;
use super::session::{Doing, Session};
use super::transfer::{check_room, upload_target};

/// Files up to this size go in batches; larger ones alone. The same line the sync
/// client draws: a file of at most the chunker's minimum is one block.
const SMALL_FILE: u64 = 1 << 20;
// A small file must fit one `content_batch` record, or every download of one would
// be refused by the batch and fetched again alone.
const _: () = assert!(SMALL_FILE <= cairn_proto::MAX_CONTENT_BATCH_FILE);
/// Content bytes in one batch, which bounds what a batch holds in memory.
const BATCH_BYTES: u64 = 16 << 20;
/// Batches in flight at once: the server stores one while the next is read and sent.
const BATCHES_IN_FLIGHT: usize = 2;

/// What `--json` prints for a tree transfer, and what the summary line says.
#[derive(Debug, Default, Serialize)]
struct TreeReport {
    /// The local folder.
    local: String,
    /// The folder on the server.
    remote: String,
    /// Files moved.
    files: u64,
    /// Their bytes.
    bytes: u64,
    /// Folders created (those already there are not counted).
    folders: u64,
    /// Left out on purpose (symbolic links, pipes, devices), with why.
    skipped: Vec<Problem>,
    /// Could not be moved, with why: these make the command fail.
    failed: Vec<Problem>,
    /// How long it took, in seconds.
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Problem {
    path: String,
    reason: String,
}

impl TreeReport {
    fn skip(&mut self, path: impl std::fmt::Display, reason: impl Into<String>) {
        self.skipped.push(Problem {
            path: path.to_string(),
            reason: reason.into(),
        });
    }

    fn fail(&mut self, path: impl std::fmt::Display, reason: impl Into<String>) {
        self.failed.push(Problem {
            path: path.to_string(),
            reason: reason.into(),
        });
    }

    /// Prints the report (JSON on stdout, or the lists and a summary on stderr) and
    /// fails if anything could not be moved.
    fn finish(mut self, verb: &str, started: Instant, json: bool) -> anyhow::Result<()> {
        self.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        if json {
            print_json(&self)?;
        } else {
            for problem in &self.skipped {
                eprintln!("skipped {}: {}", problem.path, problem.reason);
            }
            for problem in &self.failed {
                eprintln!("not {verb}: {}: {}", problem.path, problem.reason);
            }
            let (from, to) = match verb {
                "uploaded" => (&self.local, &self.remote),
                _ => (&self.remote, &self.local),
            };
            eprintln!(
                "{verb} {} ({}) and created {} from {from} to {to} in {:.1} s",
                count(self.files, "file"),
                output::human_size(self.bytes),
                count(self.folders, "folder"),
                self.seconds
            );
        }
        if !self.failed.is_empty() {
            bail!(
                "{} not {verb}{}",
                count(self.failed.len() as u64, "item"),
                if json { "" } else { " (listed above)" }
            );
        }
        Ok(())
    }
}

// ---- put -r ---------------------------------------------------------------------------

/// A local file found by the walk, on its way up.
struct LocalFile {
    local: PathBuf,
    remote: ServerPath,
    size: u64,
    mtime: Option<i64>,
}

/// Uploads the folder `local` and everything below it. REMOTE names the new folder, or,
/// when it is an existing folder or ends with '/', the folder to create it in.
pub(super) async fn put_tree(
    session: &Session,
    local: &Path,
    remote: &str,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = &session.client;
    // The folder named on the command line may be a link to a folder; links inside it
    // are never followed.
    let name = fs::canonicalize(local)
        .with_context(|| format!("cannot upload {}", local.display()))?
        .file_name()
        .and_then(|n| n.to_str().map(str::to_owned))
        .ok_or_else(|| {
            anyhow!(
                "cannot upload {}: it has no usable folder name (it must be UTF-8, and not '/')",
                local.display()
            )
        })?;
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

    // Folders first, parents before children, a thousand per request; one that cannot
    // be made takes what would go in it along.
    let mut new_folders: Vec<ServerPath> = Vec::new();
    if existing.is_none() {
        new_folders.push(root.clone());
    }
    new_folders.extend(folders.into_iter().filter(|f| {
        !there
            .get(&f.key())
            .is_some_and(|e| e.kind == EntryKind::Folder)
    }));
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
                    if folder == &root {
                        bail!("cannot create {target}: {}", error.message);
                    }
                    report.fail(folder, error.message);
                    failed_folders.push(folder.clone());
                }
            }
        }
    }
    let under_failed = |path: &ServerPath| failed_folders.iter().find(|f| path.starts_with(f));

    let mut small: Vec<(LocalFile, Option<String>)> = Vec::new();
    let mut large: Vec<(LocalFile, Option<String>)> = Vec::new();
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

    let total: u64 = small.iter().chain(&large).map(|(f, _)| f.size).sum();
    let bar = progress_bar(total);
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
    drop(uploads);
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
    bar.finish_and_clear();
    report.finish("uploaded", started, json)
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

/// Splits `items` into batches of at most [`MAX_BATCH_ITEMS`] items and about
/// [`BATCH_BYTES`] of content.
fn batches<T>(items: Vec<T>, size: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    for item in items {
        let len = size(&item);
        if !batch.is_empty() && (batch.len() == MAX_BATCH_ITEMS || bytes + len > BATCH_BYTES) {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += len;
        batch.push(item);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

// ---- get -r ---------------------------------------------------------------------------

/// A remote file on its way down.
struct RemoteFile {
    remote: String,
    local: PathBuf,
    size: u64,
}

/// Downloads the folder `remote` and everything below it into `local`: LOCAL names the
/// new folder, or, when it is an existing folder or ends with a separator, the folder
/// to create it in. Writes only below that folder.
pub(super) async fn get_tree(
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
        return super::transfer::get(session, &remote, local, json).await;
    }
    // The server's spelling of the folder, which its listing uses too.
    let remote = entry.path;
    let root =
        ServerPath::parse(&remote).map_err(|err| anyhow!("cannot download {remote}: {err}"))?;
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

    let mut failed_folders: Vec<ServerPath> = Vec::new();
    let mut small = Vec::new();
    let mut large = Vec::new();
    for entry in entries {
        let place = ServerPath::parse(&entry.path)
            .ok()
            .and_then(|path| Some((path.rebase(&root, &ServerPath::root())?, path)));
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
        let target = match join_checked(&top, relative.segments()) {
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

    let total: u64 = small.iter().chain(&large).map(|f| f.size).sum();
    let bar = progress_bar(total);
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
    drop(downloads);
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
    bar.finish_and_clear();
    report.finish("downloaded", started, json)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let sizes: Vec<u64> = vec![1; 2500];
        let split = batches(sizes, |s| *s);
        assert_eq!(
            split.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        let mib = 1 << 20;
        let split = batches(vec![mib; 40], |s| *s);
        assert!(split.iter().all(|b| b.iter().sum::<u64>() <= BATCH_BYTES));
        assert_eq!(split.len(), 3);
        // One item larger than a batch still goes, alone.
        let split = batches(vec![BATCH_BYTES * 2, 1], |s| *s);
        assert_eq!(split.len(), 2);
    }

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
