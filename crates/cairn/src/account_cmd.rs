//! `cairn passwd`: change your own password on the server. Glue over `cairn-client`.

use std::io::{BufRead, IsTerminal};

use anyhow::{anyhow, bail, Context};
use clap::Args;

use crate::client::session::session;
use crate::ClientOpts;

/// `cairn passwd`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Read the current password and the new one from standard input, one per line
    /// (without it, both are asked on the terminal without echo).
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    opts: ClientOpts,
}

pub async fn run(args: PasswdArgs) -> anyhow::Result<std::process::ExitCode> {
    let session = session(&args.opts)?;
    let who = format!(
        "{} at {}",
        session.credentials.user, session.credentials.server
    );
    let (old, new) = if args.password_stdin || !std::io::stdin().is_terminal() {
        let mut lines = std::io::stdin().lock().lines();
        let mut next = |what: &str| -> anyhow::Result<String> {
            let line = lines
                .next()
                .transpose()
                .context("cannot read the passwords from standard input")?
                .ok_or_else(|| {
                    anyhow!("standard input ended before the {what}: give the current password and the new one, one per line")
                })?;
            Ok(line.trim_end_matches('\r').to_owned())
        };
        (next("current password")?, next("new password")?)
    } else {
        let ask = |prompt: String| {
            rpassword::prompt_password(prompt).context("cannot read the password from the terminal")
        };
        let old = ask(format!("current password for {who}: "))?;
        let new = ask("new password: ".to_owned())?;
        if ask("new password again: ".to_owned())? != new {
            bail!("the two new passwords differ; nothing was changed");
        }
        (old, new)
    };
    if old.is_empty() || new.is_empty() {
        bail!("a password is empty; nothing was changed");
    }
    let changed = session
        .client
        .change_password(&old, &new)
        .await
        .map_err(|err| anyhow!("cannot change the password of {who}: {err}"))?;
    let others = match changed.sessions_revoked {
        0 => "no other session was signed in".to_owned(),
        1 => "1 other session was signed out".to_owned(),
        n => format!("{n} other sessions were signed out"),
    };
    eprintln!("password of {who} changed; this login stays signed in, {others}");
    Ok(std::process::ExitCode::SUCCESS)
}
