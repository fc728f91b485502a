//! Client-side commands: `login`, `ls`, `put`, `get`, … Glue over `cairn-client`: parse,
//! resolve what the user meant, call the library, print. `--json` output goes to stdout
//! alone; messages and progress bars go to stderr.

#[path = "client/config.rs"]
mod config;
#[path = "client/local.rs"]
mod local;
#[path = "client/output.rs"]
pub(crate) mod output;
#[path = "client/stdio.rs"]
mod stdio;
#[path = "client/tree.rs"]
mod tree;

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::{
    CommitResponse, EntryInfo, EntryKind, LoginRequest, TrashPurgeRequest, TrashRestoreRequest,
};
use cairn_client::{Client, ClientError, DownloadOptions, ProgressFn, UploadOptions};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::ClientOpts;
use config::Credentials;
use output::{join_remote, normalize_remote, remote_name};

/// What to tell a user who has no usable login.
pub(crate) const LOGIN_HINT: &str = "run `cairn login URL --user NAME` first";

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
    /// Show the server, user and storage used.
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

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

/// Runs one client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Login {
            url,
            user,
            password_stdin,
            device,
            opts,
        } => login(&opts, &url, &user, password_stdin, device).await?,
        ClientCommand::Logout { opts } => logout(&opts).await?,
        ClientCommand::Ls { path, json, opts } => ls(&session(&opts)?, &path, json).await?,
        ClientCommand::Stat { path, json, opts } => stat(&session(&opts)?, &path, json).await?,
        ClientCommand::Mkdir { path, opts } => {
            let path = normalize_remote(&path);
            session(&opts)?
                .client
                .mkdir(&path)
                .await
                .doing(|| format!("cannot create folder {path}"))?;
        }
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
                put(&session, &local, &remote, json).await?
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
                get(&session, &remote, &local, json).await?
            }
        }
        ClientCommand::Mv { from, to, opts } => {
            move_or_copy(&session(&opts)?, &from, &to, Transfer::Move).await?
        }
        ClientCommand::Cp { from, to, opts } => {
            move_or_copy(&session(&opts)?, &from, &to, Transfer::Copy).await?
        }
        ClientCommand::Rm { path, opts } => {
            let path = normalize_remote(&path);
            session(&opts)?
                .client
                .delete(&path)
                .await
                .doing(|| format!("cannot remove {path}"))?;
            eprintln!("moved {path} to the trash");
        }
        ClientCommand::Versions { path, json, opts } => {
            versions(&session(&opts)?, &path, json).await?
        }
        ClientCommand::Restore {
            path,
            version,
            opts,
        } => {
            let path = normalize_remote(&path);
            let restored = session(&opts)?
                .client
                .restore(&path, &version)
                .await
                .doing(|| format!("cannot restore version {version} of {path}"))?;
            eprintln!(
                "restored version {version} of {path} (now revision {})",
                restored.entry.rev.as_deref().unwrap_or("?")
            );
        }
        ClientCommand::Share { command } => share(command).await?,
        ClientCommand::Trash { command } => trash(command).await?,
        ClientCommand::Status { json, opts } => status(&opts, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A logged-in client and the login it came from.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) credentials: Credentials,
}

/// The client's config folder, as `--config-dir` and the environment say.
pub(crate) fn config_dir(opts: &ClientOpts) -> anyhow::Result<PathBuf> {
    config::config_dir(opts.config_dir.as_deref())
}

pub(crate) fn session(opts: &ClientOpts) -> anyhow::Result<Session> {
    let dir = config::config_dir(opts.config_dir.as_deref())?;
    let Some(credentials) = config::load_credentials(&dir)? else {
        bail!("not logged in: {LOGIN_HINT}");
    };
    let client = Client::new(&credentials.server, Some(credentials.token.clone()))
        .with_context(|| format!("the stored login in {} is unusable", dir.display()))?;
    Ok(Session {
        client,
        credentials,
    })
}

/// Adds what the command was doing to a client error, and what to do next when there is
/// something obvious.
trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T> Doing<T> for Result<T, ClientError> {
    fn doing(self, what: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|err| explain(err, &what()))
    }
}

fn explain(err: ClientError, what: &str) -> anyhow::Error {
    // A disabled account's message already says to ask the administrator; logging
    // in again would not help.
    let hint = if err.is_account_disabled() {
        ""
    } else if err.is_unauthorized() {
        "; run `cairn login URL --user NAME` again"
    } else if matches!(&err, ClientError::Http(e) if e.is_connect()) {
        "; is the server running?"
    } else {
        ""
    };
    anyhow!("{what}: {err}{hint}")
}

// ---- login and logout ---------------------------------------------------------------

async fn login(
    opts: &ClientOpts,
    url: &str,
    user: &str,
    password_stdin: bool,
    device: Option<String>,
) -> anyhow::Result<()> {
    let dir = config::config_dir(opts.config_dir.as_deref())?;
    let (full_url, assumed_https) = with_scheme(url)?;
    let client = Client::new(&full_url, None).context("cannot log in")?;
    // Reach the server before asking for a password, so that a wrong address is said
    // at once; and when https:// was only assumed, say so.
    if let Err(err) = client.server_info().await {
        if assumed_https && matches!(err, ClientError::Http(_)) {
            bail!(
                "cannot log in to {}: {err}; {url:?} has no scheme, so https:// was assumed: \
                 for a server without TLS, give http://{} instead",
                client.base_url(),
                url.trim()
            );
        }
        return Err(explain(
            err,
            &format!("cannot log in to {}", client.base_url()),
        ));
    }
    let password = read_password(password_stdin, user, client.base_url())?;
    let device = device.unwrap_or_else(default_device_name);
    let request = LoginRequest {
        username: user.to_owned(),
        password,
        device_name: Some(device.clone()),
    };
    let response = client
        .login(&request)
        .await
        .map_err(|err| anyhow!("cannot log in to {}: {err}", client.base_url()))?;
    let credentials = Credentials {
        server: client.base_url().to_owned(),
        token: response.token,
        user: response.user.name,
        device: Some(response.device.map(|d| d.name).unwrap_or(device)),
    };
    let path = config::save_credentials(&dir, &credentials)?;
    eprintln!(
        "logged in to {} as {} (device {}); login saved in {}",
        credentials.server,
        credentials.user,
        credentials.device.as_deref().unwrap_or("-"),
        path.display()
    );
    Ok(())
}

/// The server's URL with a scheme: as given if it has one, else with `https://` in front
/// (and `true`, so a failure can say so). A host name alone is what people type, and
/// sending a password in clear by guessing `http://` is not a guess to make for them.
fn with_scheme(input: &str) -> anyhow::Result<(String, bool)> {
    let input = input.trim();
    if input.is_empty() {
        bail!("no server URL given, such as https://files.example.org");
    }
    if input.contains("://") {
        Ok((input.to_owned(), false))
    } else {
        Ok((format!("https://{input}"), true))
    }
}

/// The password from standard input (`--password-stdin`, or when it is not a terminal),
/// else asked on the terminal without echo.
fn read_password(from_stdin: bool, user: &str, server: &str) -> anyhow::Result<String> {
    let password = if !from_stdin && std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("password for {user} at {server}: "))
            .context("cannot read the password from the terminal")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        bail!("no password given: type it at the prompt or pipe it with --password-stdin");
    }
    Ok(password)
}

/// This machine's host name, or `cli` when it cannot be found.
fn default_device_name() -> String {
    let from_file = |path: &str| std::fs::read_to_string(path).ok();
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "cli".to_owned())
}

async fn logout(opts: &ClientOpts) -> anyhow::Result<()> {
    let dir = config::config_dir(opts.config_dir.as_deref())?;
    let Some(credentials) = config::load_credentials(&dir)? else {
        eprintln!("not logged in");
        return Ok(());
    };
    let client = Client::new(&credentials.server, Some(credentials.token.clone()))?;
    match client.logout().await {
        // A token the server no longer knows is as logged out as it gets.
        Err(err) if !err.is_unauthorized() => {
            return Err(err).doing(|| format!("cannot log out of {}", credentials.server));
        }
        _ => {}
    }
    config::remove_credentials(&dir)?;
    eprintln!("logged out of {}", credentials.server);
    Ok(())
}

// ---- reading ------------------------------------------------------------------------

async fn ls(session: &Session, path: &str, json: bool) -> anyhow::Result<()> {
    let client = &session.client;
    let path = normalize_remote(path);
    let entries = match client.list(&path).await {
        Ok(entries) => entries,
        // `ls FILE` shows the file, as ls(1) does.
        Err(err) if matches!(err.status(), Some(400..=499)) && !err.is_unauthorized() => {
            match client.try_stat(&path).await {
                Ok(Some(entry)) if entry.kind == EntryKind::File => vec![entry],
                _ => return Err(err).doing(|| format!("cannot list {path}")),
            }
        }
        Err(err) => return Err(err).doing(|| format!("cannot list {path}")),
    };
    if json {
        print_json(&entries)?;
    } else {
        print!("{}", output::entries_table(&entries));
    }
    Ok(())
}

async fn stat(session: &Session, path: &str, json: bool) -> anyhow::Result<()> {
    let path = normalize_remote(path);
    let entry = session
        .client
        .stat(&path)
        .await
        .doing(|| format!("cannot stat {path}"))?;
    if json {
        print_json(&entry)?;
    } else {
        print!("{}", output::entry_details(&entry));
    }
    Ok(())
}

async fn versions(session: &Session, path: &str, json: bool) -> anyhow::Result<()> {
    let path = normalize_remote(path);
    let list = session
        .client
        .versions(&path)
        .await
        .doing(|| format!("cannot list versions of {path}"))?;
    if json {
        print_json(&list.versions)?;
    } else {
        print!("{}", output::versions_table(&list.versions));
    }
    Ok(())
}

// ---- shared folders -----------------------------------------------------------------

async fn share(command: ShareCommand) -> anyhow::Result<()> {
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

// ---- trash --------------------------------------------------------------------------

async fn trash(command: TrashCommand) -> anyhow::Result<()> {
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

#[derive(Serialize)]
struct StatusOutput<'a> {
    server: &'a str,
    server_version: Option<String>,
    user: &'a str,
    device: Option<&'a str>,
    is_admin: bool,
    usage_bytes: i64,
    quota_bytes: Option<i64>,
    /// Every folder `cairn sync` keeps in sync from this config folder.
    sync: Vec<crate::sync_cmd::FolderStatus>,
}

async fn status(opts: &ClientOpts, json: bool) -> anyhow::Result<()> {
    let session = session(opts)?;
    let client = &session.client;
    let account = client
        .account()
        .await
        .doing(|| format!("cannot get the account from {}", client.base_url()))?;
    let server_version = client.server_info().await.ok().map(|info| info.version);
    let device = account
        .device
        .as_ref()
        .map(|d| d.name.as_str())
        .or(session.credentials.device.as_deref());
    let out = StatusOutput {
        server: client.base_url(),
        server_version,
        user: &account.user.name,
        device,
        is_admin: account.user.is_admin,
        usage_bytes: account.usage_bytes,
        quota_bytes: account.user.quota_bytes,
        sync: crate::sync_cmd::folder_statuses(&config_dir(opts)?).await?,
    };
    if json {
        return print_json(&out);
    }
    let usage = output::human_size(out.usage_bytes.max(0) as u64);
    let usage = match out.quota_bytes {
        Some(quota) if quota > 0 => format!(
            "{usage} of {} ({:.0}%)",
            output::human_size(quota as u64),
            out.usage_bytes.max(0) as f64 * 100.0 / quota as f64
        ),
        _ => format!("{usage} (no quota)"),
    };
    let version = out
        .server_version
        .as_deref()
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    println!("server:  {}{version}", out.server);
    println!(
        "user:    {}{}",
        out.user,
        if out.is_admin { " (admin)" } else { "" }
    );
    println!("device:  {}", out.device.unwrap_or("-"));
    println!("usage:   {usage}");
    for folder in &out.sync {
        crate::sync_cmd::print_folder_status(folder);
    }
    Ok(())
}

// ---- transfers ----------------------------------------------------------------------

async fn put(session: &Session, local: &Path, remote: &str, json: bool) -> anyhow::Result<()> {
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
pub(crate) async fn check_room(session: &Session, target: &str, growth: i64) -> anyhow::Result<()> {
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
pub(crate) async fn upload_target(
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
fn report_upload(commit: &CommitResponse, stats: cairn_client::UploadStats, from: &str) {
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

async fn get(session: &Session, remote: &str, local: &Path, json: bool) -> anyhow::Result<()> {
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

#[derive(Debug, Clone, Copy)]
enum Transfer {
    Move,
    Copy,
}

async fn move_or_copy(
    session: &Session,
    from: &str,
    to: &str,
    how: Transfer,
) -> anyhow::Result<()> {
    let client = &session.client;
    let from = normalize_remote(from);
    let name = remote_name(&from).to_owned();
    // As with mv(1): a destination that is a folder receives the source inside it.
    let target = if to.is_empty() || to.ends_with('/') {
        join_remote(&normalize_remote(to), &name)
    } else {
        let to = normalize_remote(to);
        match client.try_stat(&to).await {
            Ok(Some(entry)) if entry.kind == EntryKind::Folder && to != from => {
                join_remote(&to, &name)
            }
            Ok(_) => to,
            Err(err) => return Err(err).doing(|| format!("cannot look up {to}")),
        }
    };
    let (verb, done) = match how {
        Transfer::Move => ("move", "moved"),
        Transfer::Copy => ("copy", "copied"),
    };
    let result = match how {
        Transfer::Move => client.move_entry(&from, &target).await,
        Transfer::Copy => client.copy_entry(&from, &target).await,
    };
    let entry: EntryInfo = result.doing(|| format!("cannot {verb} {from} to {target}"))?;
    eprintln!("{done} {from} to {}", entry.path);
    Ok(())
}

// ---- output helpers -----------------------------------------------------------------

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot format JSON")?;
    println!("{text}");
    Ok(())
}

/// A progress bar over `total` bytes on stderr, hidden when stderr is not a terminal.
/// Set a prefix (`bar.set_prefix("checking ")`) to say what it counts.
pub(crate) fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix}{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// A spinner counting bytes of unknown total on stderr, hidden when stderr is not a
/// terminal.
fn progress_spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar
}

fn progress_fn(bar: &ProgressBar) -> ProgressFn {
    let bar = bar.clone();
    Arc::new(move |done| bar.set_position(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_scheme_gets_https() {
        let check = |input: &str, want: &str, assumed: bool| {
            assert_eq!(
                with_scheme(input).unwrap(),
                (want.to_owned(), assumed),
                "{input:?}"
            );
        };
        check("files.example.org", "https://files.example.org", true);
        check(" 127.0.0.1:8080 ", "https://127.0.0.1:8080", true);
        check("http://127.0.0.1:8080", "http://127.0.0.1:8080", false);
        check(
            "https://example.org/cairn",
            "https://example.org/cairn",
            false,
        );
        assert!(with_scheme("  ").is_err());
    }
}
