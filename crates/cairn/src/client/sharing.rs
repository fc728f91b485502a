//! `cairn share …`: shared folders and their members.

use clap::Subcommand;

use super::output::{self, normalize_remote, print_json};
use super::session::{session, Doing};
use crate::ClientOpts;

/// `cairn share …`.
#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Share a folder at the top of your files with another account (or change the
    /// role of someone it is shared with).
    ///
    /// The folder appears at the top of their files. An editor can add, change, move,
    /// delete and restore files in it; a viewer can only read them. What is in it
    /// counts against your quota.
    Add {
        /// The folder, such as /Team.
        path: String,
        /// The account to share it with.
        #[arg(long)]
        with: String,
        /// What they may do.
        #[arg(long, value_parser = ["viewer", "editor"])]
        role: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List the shared folders in your files and who they are shared with.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Stop sharing a folder with someone: it leaves their files (and their devices
    /// stop syncing it); nothing in it is deleted. Name yourself to leave a folder
    /// someone shared with you.
    Remove {
        /// The shared folder.
        path: String,
        /// The member to remove.
        #[arg(long)]
        with: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub(super) async fn share(command: ShareCommand) -> anyhow::Result<()> {
    match command {
        ShareCommand::Add {
            path,
            with,
            role,
            opts,
        } => {
            let path = normalize_remote(&path);
            let share = session(&opts)?
                .client
                .share_add(&path, &with, &role)
                .await
                .doing(|| format!("cannot share {path} with {with}"))?;
            eprintln!("shared {} with {with} as {role}", share.path);
        }
        ShareCommand::List { json, opts } => {
            let shares = session(&opts)?
                .client
                .share_list()
                .await
                .doing(|| "cannot list shared folders".to_owned())?;
            if json {
                print_json(&shares)?;
            } else {
                print!("{}", output::shares_table(&shares));
            }
        }
        ShareCommand::Remove { path, with, opts } => {
            let path = normalize_remote(&path);
            session(&opts)?
                .client
                .share_remove(&path, &with)
                .await
                .doing(|| format!("cannot remove {with} from {path}"))?;
            eprintln!("{path} is no longer shared with {with}");
        }
    }
    Ok(())
}
