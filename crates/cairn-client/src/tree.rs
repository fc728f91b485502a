//! Listing a whole folder tree with the ordinary folder listing.
//!
//! The API lists one folder at a time (`GET /files/list`, paged); a tree is read
//! breadth-first with a few folders listed at once, so a tree of many small folders
//! costs round trips in parallel rather than one after another.

use std::collections::VecDeque;

use cairn_proto::{EntryInfo, EntryKind};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::error::ClientError;
use crate::Client;

/// Folders listed at once.
const LISTINGS_IN_FLIGHT: usize = 4;

impl Client {
    /// Every entry below the folder `root` (not the folder itself), folders before
    /// what they hold. A folder removed while the tree is read is left out; any other
    /// error ends the listing. The order within a folder is the server's (by name), but
    /// folders are read concurrently, so siblings' subtrees may interleave.
    pub async fn list_tree(&self, root: &str) -> Result<Vec<EntryInfo>, ClientError> {
        let mut out = Vec::new();
        let mut queue = VecDeque::from([root.to_owned()]);
        let mut listing = FuturesUnordered::new();
        let mut first = true;
        loop {
            while listing.len() < LISTINGS_IN_FLIGHT {
                let Some(folder) = queue.pop_front() else {
                    break;
                };
                listing.push(async move {
                    let result = self.list(&folder).await;
                    (folder, result)
                });
            }
            let Some((folder, result)) = listing.next().await else {
                return Ok(out);
            };
            let entries = match result {
                Ok(entries) => entries,
                // The root must be there; a folder below it may go while we read.
                Err(err) if err.is_not_found() && !(first && folder == root) => continue,
                Err(err) => return Err(err),
            };
            first = false;
            for entry in entries {
                if entry.kind == EntryKind::Folder {
                    queue.push_back(entry.path.clone());
                }
                out.push(entry);
            }
        }
    }
}
