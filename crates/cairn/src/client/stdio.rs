//! `cairn get REMOTE -` and `cairn put - REMOTE`: a file to standard output, standard
//! input to a file. Standard output carries only the file's bytes; everything else
//! (progress, the summary, errors) goes to standard error.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{anyhow, bail};
use cairn_client::proto::EntryKind;
use cairn_client::{ClientError, UploadOptions};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::output::{self, normalize_remote, print_json};
use super::progress::{progress_bar, progress_fn, progress_spinner};
use super::session::{explain, Doing, Session};
use super::transfer::report_upload;

/// Blocks fetched ahead of the one being written: memory stays within a few blocks.
const BLOCKS_AHEAD: usize = 4;

/// Streams the remote file to standard output, each block checked against its hash
/// before a byte of it is written. A block that cannot be had intact stops the command
/// with an error that says the output is incomplete: what was written is a correct
/// prefix of the file, but only a prefix.
pub(super) async fn get_to_stdout(session: &Session, remote: &str) -> anyhow::Result<()> {
    let remote = normalize_remote(remote);
    let stream = match session.client.content_stream(&remote, BLOCKS_AHEAD).await {
        Ok(stream) => stream,
        Err(ClientError::NotAFile { .. }) => bail!(
            "{remote} is a folder: standard output takes one file (use `cairn get -r {remote} DIR`)"
        ),
        Err(err) => return Err(err).doing(|| format!("cannot download {remote}")),
    };
    let total = stream.entry.size;
    let mut blocks = stream.blocks;
    let bar = progress_bar(total);
    let mut stdout = tokio::io::stdout();
    let mut written = 0u64;
    let incomplete = |written: u64| {
        format!(
            "the output is incomplete ({} of {} written)",
            output::human_size(written),
            output::human_size(total)
        )
    };
    while let Some(block) = blocks.next().await {
        let data = match block {
            Ok(data) => data,
            Err(err) => {
                bar.finish_and_clear();
                let _ = stdout.flush().await;
                let why = if err.is_block_damaged() {
                    "the file is damaged on the server (a block of it is missing or corrupt; \
                     ask the server's administrator to run `cairn admin fsck`)"
                        .to_owned()
                } else {
                    explain(err, "a block could not be downloaded").to_string()
                };
                bail!("cannot download {remote}: {why}; {}", incomplete(written));
            }
        };
        if let Err(err) = stdout.write_all(&data).await {
            bar.finish_and_clear();
            bail!(
                "cannot write {remote} to standard output: {err}; {}",
                incomplete(written)
            );
        }
        written += data.len() as u64;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    stdout
        .flush()
        .await
        .map_err(|err| anyhow!("cannot write {remote} to standard output: {err}"))?;
    Ok(())
}

/// Uploads standard input to `remote`, which must name a file: a stream has no name
/// of its own to put into a folder. An existing file there is replaced, with its
/// current revision as the base, so a change made meanwhile on the server is refused
/// rather than overwritten.
pub(super) async fn put_from_stdin(
    session: &Session,
    remote: &str,
    json: bool,
) -> anyhow::Result<()> {
    let client = &session.client;
    let name_it = |path: &str| {
        anyhow!(
            "cannot upload standard input to {path}: it is a folder; name the file to \
             create, such as {}",
            output::join_remote(path, "NAME")
        )
    };
    if remote.is_empty() || remote.ends_with('/') {
        return Err(name_it(&normalize_remote(remote)));
    }
    let target = normalize_remote(remote);
    let existing = client
        .try_stat(&target)
        .await
        .doing(|| format!("cannot upload to {target}"))?;
    if existing
        .as_ref()
        .is_some_and(|e| e.kind == EntryKind::Folder)
    {
        return Err(name_it(&target));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading standard input until end of file (Ctrl-D)");
    }
    let bar = progress_spinner();
    let options = UploadOptions {
        base_rev: existing.and_then(|e| e.rev),
        progress: Some(progress_fn(&bar)),
        ..UploadOptions::default()
    };
    let result = client
        .upload_reader(stdin, Path::new("standard input"), &target, options)
        .await;
    bar.finish_and_clear();
    let outcome = result.map_err(|err| {
        if err.is_conflict() {
            anyhow!(
                "cannot upload to {target}: it was changed on the server while uploading; \
                 nothing was replaced"
            )
        } else {
            explain(err, &format!("cannot upload standard input to {target}"))
        }
    })?;
    report_upload(&outcome.commit, outcome.stats, "standard input");
    if json {
        print_json(&outcome.commit)?;
    }
    Ok(())
}
