//! `cairn`: the one binary. Glue only: each command parses its arguments and calls the
//! library crate that does the work, and errors are printed once, here.

mod account_cmd;
mod app_password_cmd;
mod client;
mod link_cmd;
mod malloc;
mod server_cmd;
mod sync_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cairn", version, about = "Self-hosted file storage and sync")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options of the server-side commands, which work on a data directory directly.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerOpts {
    /// Where the server keeps its database, blocks and settings.
    #[arg(
        long,
        env = "CAIRN_DATA_DIR",
        default_value = "./cairn-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// A TOML configuration file (settings there are overridden by environment variables).
    #[arg(long, env = "CAIRN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// Options of the client-side commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// Where the client keeps its credentials and state (default: ~/.config/cairn).
    #[arg(long, env = "CAIRN_CONFIG_DIR", global = true)]
    pub config_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        server: ServerOpts,
    },
    /// Administer a server's data directory (users, integrity, garbage collection).
    Admin {
        #[command(flatten)]
        server: ServerOpts,
        #[command(subcommand)]
        command: server_cmd::AdminCommand,
    },
    /// Keep a local folder in sync with the server, in real time (or once, with --once).
    Sync(sync_cmd::SyncArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Make, list and revoke public links to files and folders.
    Link {
        #[command(subcommand)]
        command: link_cmd::LinkCommand,
    },
    /// Change your password on the server (the current one is asked for). This login
    /// stays signed in; every other device and session of the account is signed out,
    /// and every app password revoked.
    Passwd(account_cmd::PasswdArgs),
    /// Make, list and revoke app passwords: what WebDAV clients sign in with, instead
    /// of your account password.
    AppPassword {
        #[command(subcommand)]
        command: app_password_cmd::AppPasswordCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Sync(_)) {
        malloc::tune_for_daemon();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { listen, server } => server_cmd::serve(&server, &listen).await,
            Command::Admin { server, command } => server_cmd::admin(&server, command).await,
            Command::Sync(args) => sync_cmd::run(args).await,
            Command::Client(command) => client::run(command).await,
            Command::Link { command } => link_cmd::run(command).await,
            Command::Passwd(args) => account_cmd::run(args).await,
            Command::AppPassword { command } => app_password_cmd::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, the whole chain: "cannot log in: connection refused".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
