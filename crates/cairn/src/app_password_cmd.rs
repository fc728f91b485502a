//! `cairn app-password create|list|revoke`: the passwords WebDAV clients (and other
//! HTTP Basic clients) sign in with, never the account password. Glue over
//! `cairn-client`.

use anyhow::anyhow;
use cairn_client::proto::AppPasswordInfo;
use clap::Subcommand;

use crate::client::output::{format_time, Align, Table};
use crate::client::session::{explain, session};
use crate::ClientOpts;

/// `cairn app-password …`.
#[derive(Debug, Subcommand)]
pub enum AppPasswordCommand {
    /// Make an app password and print it: it is shown only this once.
    ///
    /// Give it with your user name to a WebDAV client (SERVER/dav/), or anything else
    /// that signs in with a user name and password; it opens only WebDAV, never the
    /// account's other settings. Name it after where it is used, to revoke it later.
    Create {
        /// Its name, unique among your app passwords (1 to 64 characters).
        name: String,
        /// Print it as JSON (name, password, created_at, user, webdav_url).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List your app passwords, oldest first: names and when they were made and last
    /// used (never the passwords).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Revoke an app password: its next request is refused.
    Revoke {
        /// Its name, from `cairn app-password list`.
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Runs one `cairn app-password` command.
pub async fn run(command: AppPasswordCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        AppPasswordCommand::Create { name, json, opts } => {
            let session = session(&opts)?;
            let made = session
                .client
                .create_app_password(&name)
                .await
                .map_err(|e| explain(e, &format!("cannot make app password '{name}'")))?;
            let user = &session.credentials.user;
            let dav = format!("{}/dav/", session.client.base_url());
            if json {
                let out = serde_json::json!({
                    "name": made.name,
                    "password": made.password,
                    "created_at": made.created_at,
                    "user": user,
                    "webdav_url": dav,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("app password '{}': {}", made.name, made.password);
                println!("It is shown only this once; if it is lost, revoke it and make another.");
                println!(
                    "Use it in a WebDAV client: server {dav}, user name {user}, this password."
                );
            }
        }
        AppPasswordCommand::List { json, opts } => {
            let listed = session(&opts)?
                .client
                .list_app_passwords()
                .await
                .map_err(|e| explain(e, "cannot list your app passwords"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else if listed.is_empty() {
                eprintln!("no app passwords; make one with `cairn app-password create NAME`");
            } else {
                print!("{}", table(&listed));
            }
        }
        AppPasswordCommand::Revoke { name, opts } => {
            session(&opts)?
                .client
                .revoke_app_password(&name)
                .await
                .map_err(|e| {
                    if e.is_not_found() {
                        anyhow!(
                            "cannot revoke app password '{name}': you have none of that name \
                             (see `cairn app-password list`)"
                        )
                    } else {
                        explain(e, &format!("cannot revoke app password '{name}'"))
                    }
                })?;
            eprintln!("revoked app password '{name}'");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `cairn app-password list` as a table.
fn table(listed: &[AppPasswordInfo]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("CREATED (UTC)", Align::Left),
        ("LAST USED (UTC)", Align::Left),
    ]);
    for app_password in listed {
        table.row(vec![
            app_password.name.clone(),
            format_time(app_password.created_at),
            app_password
                .last_used_at
                .map(format_time)
                .unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    table.render()
}
