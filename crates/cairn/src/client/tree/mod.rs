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

mod get;
mod put;

use std::time::Instant;

use anyhow::bail;
use cairn_client::MAX_BATCH_ITEMS;
use serde::Serialize;

use super::output::{self, count, print_json};
pub(super) use get::get_tree;
pub(super) use put::put_tree;

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
}
