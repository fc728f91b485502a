//! `cairn put` and `cairn get` of one file, and what uploads share: where an upload
//! goes (`upload_target`), whether it fits (`check_room`), the line that reports it.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::{CommitResponse, EntryInfo, EntryKind};
use cairn_client::{Client, ClientError, DownloadOptions, UploadOptions};

use super::local;
use super::output::{self, join_remote, normalize_remote, print_json, remote_name};
use super::progress::{progress_bar, progress_fn};
use super::session::{explain, Doing, Session};

pub(super) async fn put(
    session: &Session,
    local: &Path,
    remote: &str,
    json: bool,
) -> anyhow::Result<()> {
    let client = &session.client;
    let metadata =
        std::fs::metadata(local).with_context(|| format!("cannot upload {}", local.display()))?;
    if metadata.is_dir() {
        bail!(
            "{} is a folder: upload it with `cairn put -r` (or keep it in sync with `cairn sync`)",
            local.display()
        );
    }
    if !metadata.is_file() {
        // A pipe or a device (/dev/stdin) can be read once, as a stream.
        bail!(
            "{} is {}: `cairn put` reads a regular file; give '-' to upload standard input",
            local.display(),
            local::describe(metadata.file_type())
        );
    }
    let name = local.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        anyhow!(
            "{} has no usable file name (it must be UTF-8)",
            local.display()
        )
    })?;

    // Where exactly, and what it replaces: the file's current revision is the base, so a
    // change made on the server meanwhile is refused rather than overwritten.
    let (target, existing) = upload_target(client, remote, name).await?;
    if existing
        .as_ref()
        .is_some_and(|e| e.kind == EntryKind::Folder)
    {
        bail!("cannot upload to {target}: a folder of that name is in the way");
    }
    // Refuse before sending anything when the file cannot fit: the server would refuse
    // the commit anyway, after the blocks had travelled.
    let replaced = existing.as_ref().map_or(0, |e| e.size);
    check_room(session, &target, metadata.len() as i64 - replaced as i64).await?;
    let base_rev = existing.and_then(|entry| entry.rev);

    let bar = progress_bar(metadata.len());
    let options = UploadOptions {
        base_rev,
        progress: Some(progress_fn(&bar)),
        ..UploadOptions::default()
    };
    let result = client.upload_file(local, &target, options).await;
    bar.finish_and_clear();
    let outcome = result.map_err(|err| {
        if err.is_conflict() {
            anyhow!(
                "cannot upload to {target}: it was changed on the server while uploading; \
                 run the command again to replace the new version"
            )
        } else {
            explain(
                err,
                &format!("cannot upload {} to {target}", local.display()),
            )
        }
    })?;
    report_upload(&outcome.commit, outcome.stats, &local.display().to_string());
    if json {
        print_json(&outcome.commit)?;
    }
    Ok(())
}

/// Refuses, before anything is sent, an upload that would grow what is stored at
/// `target` by `growth` bytes past the quota of the account it is charged to. That is
/// the owner of the folder it lands in, which the server names (`GET /files/space`): a
/// shared folder's owner, not the caller, so a member's own small quota never refuses
/// an upload into a roomy owner's folder. The commit checks again, and is the authority.
pub(super) async fn check_room(session: &Session, target: &str, growth: i64) -> anyhow::Result<()> {
    if growth <= 0 {
        return Ok(());
    }
    let space = session
        .client
        .space(target)
        .await
        .doing(|| format!("cannot upload to {target}"))?;
    let Some(quota) = space.quota_bytes else {
        return Ok(());
    };
    if space.usage_bytes.saturating_add(growth) <= quota {
        return Ok(());
    }
    let used = output::human_size(space.usage_bytes.max(0) as u64);
    let quota = output::human_size(quota.max(0) as u64);
    let needed = output::human_size(growth as u64);
    if space.charged_to == session.credentials.user {
        bail!(
            "cannot upload to {target}: storage quota exceeded ({used} of {quota} used, \
             this needs {needed} more); delete files or ask the administrator for a larger quota"
        )
    }
    let owner = &space.charged_to;
    bail!(
        "cannot upload to {target}: storage quota exceeded for {owner}, who owns the folder \
         and is charged for what it holds ({used} of {quota} used, this needs {needed} more); \
         ask {owner} to make room, or the administrator for a larger quota"
    )
}

/// Where an upload of something named `name` to REMOTE goes, as `cp` decides: REMOTE
/// itself, or `REMOTE/name` when REMOTE ends with '/' or is an existing folder; with
/// what is there now (its revision is the base a replacement names). The caller judges
/// what it finds: a file replaces a file, a tree goes into a folder.
pub(super) async fn upload_target(
    client: &Client,
    remote: &str,
    name: &str,
) -> anyhow::Result<(String, Option<EntryInfo>)> {
    let lookup = |path: String| async move {
        let found = client
            .try_stat(&path)
            .await
            .doing(|| format!("cannot upload to {path}"))?;
        anyhow::Ok((path, found))
    };
    if remote.is_empty() || remote.ends_with('/') {
        return lookup(join_remote(&normalize_remote(remote), name)).await;
    }
    let (target, existing) = lookup(normalize_remote(remote)).await?;
    match existing {
        Some(entry) if entry.kind == EntryKind::Folder => lookup(join_remote(&target, name)).await,
        other => Ok((target, other)),
    }
}

/// The line on stderr after an upload of `from` (a local path, or standard input).
pub(super) fn report_upload(commit: &CommitResponse, stats: cairn_client::UploadStats, from: &str) {
    let renamed = if commit.renamed {
        " (stored under a conflict name)"
    } else {
        ""
    };
    eprintln!(
        "uploaded {from} to {}{renamed}: {}, {} of {} sent ({})",
        commit.entry.path,
        output::human_size(stats.bytes_total),
        stats.blocks_uploaded,
        output::count(stats.blocks_total, "block"),
        output::human_size(stats.bytes_sent_payload),
    );
}

pub(super) async fn get(
    session: &Session,
    remote: &str,
    local: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let client = &session.client;
    let remote = normalize_remote(remote);
    let entry = client
        .stat(&remote)
        .await
        .doing(|| format!("cannot download {remote}"))?;
    if entry.kind == EntryKind::Folder {
        bail!(
            "{remote} is a folder: download it with `cairn get -r` (or keep it in sync with `cairn sync`)"
        );
    }
    let target = if local.is_dir() {
        local.join(remote_name(&entry.path))
    } else if local
        .as_os_str()
        .to_string_lossy()
        .ends_with(std::path::MAIN_SEPARATOR)
    {
        bail!(
            "cannot download {remote}: there is no folder {}",
            local.display()
        );
    } else {
        local.to_owned()
    };
    // Renaming a temp file over a link, a pipe or a device would replace it (as
    // `/dev/stdout` was once replaced by a file): refuse, before and at the rename.
    match local::check_destination(&target) {
        Ok(Ok(())) => {}
        Ok(Err(in_the_way)) => bail!(
            "cannot download {remote} to {}: {in_the_way}",
            target.display()
        ),
        Err(err) => bail!("cannot download {remote} to {}: {err}", target.display()),
    }

    let bar = progress_bar(entry.size);
    let options = DownloadOptions {
        progress: Some(progress_fn(&bar)),
        may_replace: Some(local::replace_only_files()),
        ..DownloadOptions::default()
    };
    let result = client.download_file(&remote, &target, options).await;
    bar.finish_and_clear();
    if let Err(ClientError::DestinationChanged { path }) = &result {
        bail!(
            "cannot download {remote} to {}: something other than a regular file appeared \
             there during the download; it was left alone",
            path.display()
        );
    }
    if result.as_ref().is_err_and(ClientError::is_block_damaged) {
        // The download wrote nothing (its temp file is gone); say what to do.
        bail!(
            "cannot download {remote}: the file is damaged on the server (a block of it is \
             missing or corrupt); ask the server's administrator to run `cairn admin fsck`"
        );
    }
    let outcome = result.doing(|| format!("cannot download {remote} to {}", target.display()))?;
    eprintln!(
        "downloaded {} to {}: {}",
        outcome.entry.path,
        target.display(),
        output::human_size(outcome.stats.bytes_total)
    );
    if json {
        print_json(&outcome.entry)?;
    }
    Ok(())
}
