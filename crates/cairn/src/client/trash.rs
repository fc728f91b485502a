//! `cairn trash …`: list, restore and purge what `cairn rm` deleted.

use anyhow::bail;
use cairn_client::proto::{TrashPurgeRequest, TrashRestoreRequest};
use clap::Subcommand;

use super::output::{self, normalize_remote, print_json};
use super::session::{session, Doing};
use crate::ClientOpts;

/// `cairn trash …`.
#[derive(Debug, Subcommand)]
pub enum TrashCommand {
    /// List the trash, newest first.
    ///
    /// One line per item: its id, when it was deleted (UTC), its size, and the path it
    /// was deleted from (a folder ends in '/' and shows how many files it holds).
    List {
        /// Print a JSON array of items.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Bring an item back to where it was deleted from.
    ///
    /// Missing folders above it are re-created. If something else now lives at that
    /// path, the item comes back beside it as 'NAME (restored).EXT'. Prints where it
    /// came back.
    Restore {
        /// The path it was deleted from; the most recently deleted item from there.
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        path: Option<String>,
        /// The item's id, from `cairn trash list`.
        #[arg(long)]
        id: Option<i64>,
        /// Print the restored entry as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Remove items from the trash for good.
    ///
    /// With PATH, every item deleted from that path; with --id, that one item; with
    /// neither, the whole trash. Their storage is reclaimed by the server's next
    /// garbage collection.
    Purge {
        /// The path the items were deleted from.
        #[arg(conflicts_with = "id")]
        path: Option<String>,
        /// One item's id, from `cairn trash list`.
        #[arg(long)]
        id: Option<i64>,
        /// Print the purged items as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub(super) async fn trash(command: TrashCommand) -> anyhow::Result<()> {
    match command {
        TrashCommand::List { json, opts } => {
            let items = session(&opts)?
                .client
                .trash_list()
                .await
                .doing(|| "cannot list the trash".to_owned())?;
            if json {
                print_json(&items)?;
            } else {
                print!("{}", output::trash_table(&items));
            }
        }
        TrashCommand::Restore {
            path,
            id,
            json,
            opts,
        } => {
            let path = path.as_deref().map(normalize_remote);
            let what = match (&path, id) {
                (Some(path), _) => path.clone(),
                (None, Some(id)) => format!("trash item {id}"),
                (None, None) => bail!("name what to restore: a PATH or --id ID"),
            };
            let request = TrashRestoreRequest {
                id: if path.is_some() { None } else { id },
                path,
            };
            let restored = session(&opts)?
                .client
                .trash_restore(&request)
                .await
                .doing(|| format!("cannot restore {what} from the trash"))?;
            if json {
                print_json(&restored.entry)?;
            } else {
                println!("restored {what} to {}", restored.entry.path);
            }
        }
        TrashCommand::Purge {
            path,
            id,
            json,
            opts,
        } => {
            let path = path.as_deref().map(normalize_remote);
            let (request, what) = match (&path, id) {
                (Some(p), _) => (
                    TrashPurgeRequest {
                        path: Some(p.clone()),
                        ..Default::default()
                    },
                    format!("{p} from the trash"),
                ),
                (None, Some(id)) => (
                    TrashPurgeRequest {
                        id: Some(id),
                        ..Default::default()
                    },
                    format!("trash item {id}"),
                ),
                (None, None) => (
                    TrashPurgeRequest {
                        all: true,
                        ..Default::default()
                    },
                    "the trash".to_owned(),
                ),
            };
            let purged = session(&opts)?
                .client
                .trash_purge(&request)
                .await
                .doing(|| format!("cannot purge {what}"))?
                .purged;
            if json {
                print_json(&purged)?;
            } else {
                let bytes: u64 = purged.iter().map(|i| i.size).sum();
                println!(
                    "purged {} ({}) from the trash",
                    output::count(purged.len() as u64, "item"),
                    output::human_size(bytes)
                );
            }
        }
    }
    Ok(())
}
