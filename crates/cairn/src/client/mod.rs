//! Client-side commands: `login`, `ls`, `put`, `get`, … Glue over `cairn-client`: parse,
//! resolve what the user meant, call the library, print. `--json` output goes to stdout
//! alone; messages and progress bars go to stderr.
//!
//! The helpers the other client-side commands (`link`, `sync`, `passwd`) share are
//! `session` (the stored login), `output` (tables, sizes, times, JSON) and `progress`.

mod config;
mod files;
mod local;
mod login;
pub(crate) mod output;
pub(crate) mod progress;
pub(crate) mod session;
mod sharing;
mod status;
mod stdio;
mod transfer;
mod trash;
mod tree;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use crate::ClientOpts;
use files::Transfer;
use session::session;
pub use sharing::ShareCommand;
pub use trash::TrashCommand;

/// The client commands, flattened into the top-level command list.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Log in to a server and remember the login in the config folder.
    ///
    /// Without a scheme (`files.example.org`, `127.0.0.1:8080`), https:// is assumed;
    /// give http:// explicitly for a server without TLS.
    Login {
        /// The server's URL, such as https://files.example.org or http://127.0.0.1:8080.
        url: String,
        /// The user name.
        #[arg(long)]
        user: String,
        /// Read the password from standard input (one line) instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
        /// A name for this device (default: the host name).
        #[arg(long)]
        device: Option<String>,
        /// Also trust the CA certificates in this PEM file (a server whose certificate
        /// a private CA signed); kept with the login for every later command.
        #[arg(long, value_name = "FILE")]
        ca: Option<std::path::PathBuf>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Log out: revoke this device's token and forget the login.
    Logout {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List a folder.
    ///
    /// A table with a line per entry: size (exact bytes with --json), modification
    /// time (UTC), name (a folder's ends in '/').
    Ls {
        /// The folder on the server.
        #[arg(default_value = "/")]
        path: String,
        /// Print a JSON array of entries.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show one file or folder.
    Stat {
        /// The path on the server.
        path: String,
        /// Print the entry as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create a folder.
    Mkdir {
        /// The new folder's path on the server.
        path: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Upload a file, standard input, or (with -r) a folder.
    ///
    /// REMOTE may be a folder (or end with '/') to upload into it. An existing file there
    /// is replaced, unless it changes on the server during the upload.
    ///
    /// With LOCAL '-', standard input is uploaded as it arrives; REMOTE must then name
    /// the file (a stream has no name to put in a folder). Write ./- for a file named '-'.
    ///
    /// With -r, LOCAL's whole tree, as cp -r copies it: REMOTE becomes the folder, or,
    /// when REMOTE is an existing folder or ends with '/', the folder goes inside it.
    /// Files already there are replaced; symbolic links inside LOCAL are skipped, never
    /// followed; a file the server refuses is reported and the rest go on (the command
    /// then fails, listing them).
    Put {
        /// The local file or folder, or '-' for standard input.
        local: PathBuf,
        /// Where on the server.
        remote: String,
        /// Upload a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
        /// Print the server's answer (the new entry; with -r, a summary) as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Download a file, to a file or standard output, or (with -r) a folder.
    ///
    /// LOCAL may be an existing folder to download into it. The file is written under a
    /// temporary name and renamed into place once complete and verified. Only a regular
    /// file is replaced: a symbolic link, pipe or device at LOCAL is refused.
    ///
    /// With LOCAL '-', the file goes to standard output, each block verified before it
    /// is written; if one cannot be had intact, the command fails and says the output
    /// is incomplete. Write ./- for a file named '-'.
    ///
    /// With -r, REMOTE's whole tree, as cp -r copies it: LOCAL becomes the folder, or,
    /// when LOCAL is an existing folder or ends with '/', the folder goes inside it.
    /// Nothing is written outside it: a name that cannot exist here is reported, as is
    /// anything but a regular file in the way.
    Get {
        /// The file or folder on the server.
        remote: String,
        /// Where on this machine, or '-' for standard output.
        local: PathBuf,
        /// Download a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
        /// Print the downloaded entry (with -r, a summary) as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Move or rename a file or folder.
    ///
    /// TO may be an existing folder (or end with '/') to move into it.
    Mv {
        from: String,
        to: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Copy a file or folder on the server.
    ///
    /// TO may be an existing folder (or end with '/') to copy into it.
    Cp {
        from: String,
        to: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Move a file or folder to the trash.
    Rm {
        /// The path on the server.
        path: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List a file's versions, newest first.
    Versions {
        /// The file's path on the server.
        path: String,
        /// Print the versions as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Make an old version of a file current again (as a new version, so it can be undone).
    Restore {
        /// The file's path on the server.
        path: String,
        /// The version's id, from `cairn versions`.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Share folders with other accounts, list what is shared, remove members.
    Share {
        #[command(subcommand)]
        command: ShareCommand,
    },
    /// List, restore or purge what `cairn rm` moved to the trash.
    Trash {
        #[command(subcommand)]
        command: TrashCommand,
    },
    /// Find files and folders by name, in your home and the folders shared with you.
    ///
    /// A name matches when it contains QUERY in any letter case; names that start with
    /// it come first, then shorter names. A table with a line per entry: path, size and
    /// modification time (UTC).
    Search {
        /// Text the names contain.
        query: String,
        /// Show at most this many (1 to 10000; the server's default page when absent).
        #[arg(long)]
        limit: Option<u32>,
        /// Print a JSON array of entries.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show the server, user and storage used.
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Runs one client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Login {
            url,
            user,
            password_stdin,
            device,
            ca,
            opts,
        } => login::login(&opts, &url, &user, password_stdin, device, ca).await?,
        ClientCommand::Logout { opts } => login::logout(&opts).await?,
        ClientCommand::Ls { path, json, opts } => files::ls(&session(&opts)?, &path, json).await?,
        ClientCommand::Stat { path, json, opts } => {
            files::stat(&session(&opts)?, &path, json).await?
        }
        ClientCommand::Mkdir { path, opts } => files::mkdir(&opts, &path).await?,
        ClientCommand::Put {
            local,
            remote,
            recursive,
            json,
            opts,
        } => {
            let session = session(&opts)?;
            if local.as_os_str() == "-" {
                if recursive {
                    bail!("-r cannot go with '-': standard input is one file");
                }
                stdio::put_from_stdin(&session, &remote, json).await?
            } else if recursive && local.is_dir() {
                tree::put_tree(&session, &local, &remote, json).await?
            } else {
                transfer::put(&session, &local, &remote, json).await?
            }
        }
        ClientCommand::Get {
            remote,
            local,
            recursive,
            json,
            opts,
        } => {
            let session = session(&opts)?;
            if local.as_os_str() == "-" {
                if json {
                    bail!("--json cannot go with '-': standard output carries the file");
                }
                if recursive {
                    bail!("-r cannot go with '-': standard output takes one file");
                }
                stdio::get_to_stdout(&session, &remote).await?
            } else if recursive {
                tree::get_tree(&session, &remote, &local, json).await?
            } else {
                transfer::get(&session, &remote, &local, json).await?
            }
        }
        ClientCommand::Mv { from, to, opts } => {
            files::move_or_copy(&session(&opts)?, &from, &to, Transfer::Move).await?
        }
        ClientCommand::Cp { from, to, opts } => {
            files::move_or_copy(&session(&opts)?, &from, &to, Transfer::Copy).await?
        }
        ClientCommand::Rm { path, opts } => files::rm(&opts, &path).await?,
        ClientCommand::Versions { path, json, opts } => {
            files::versions(&session(&opts)?, &path, json).await?
        }
        ClientCommand::Restore {
            path,
            version,
            opts,
        } => files::restore(&opts, &path, &version).await?,
        ClientCommand::Share { command } => sharing::share(command).await?,
        ClientCommand::Trash { command } => trash::trash(command).await?,
        ClientCommand::Search {
            query,
            limit,
            json,
            opts,
        } => files::search(&session(&opts)?, &query, limit, json).await?,
        ClientCommand::Status { json, opts } => status::status(&opts, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}
