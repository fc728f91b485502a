//! `cairn link create|list|revoke`: public links to files and folders. Glue over
//! `cairn-client`.

use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::{LinkCreateRequest, LinkInfo};
use cairn_client::ClientError;
use clap::Subcommand;

use crate::client::output::{format_time, normalize_remote, Align, Table};
use crate::client::session::{session, LOGIN_HINT};
use crate::ClientOpts;

/// `cairn link …`.
#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Make a public link to a file or folder and print its URL.
    ///
    /// Anyone with the URL can download the file, or browse the folder and download it
    /// as a zip; with --upload-only, they can only drop files into the folder.
    Create {
        /// The file or folder on the server.
        path: String,
        /// Read a password for the link from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Stop working after this long: a number and a unit, such as 30m, 12h, 7d, 2w.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
        /// Stop working after this many downloads (each file, or each zip of a folder).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_downloads: Option<u64>,
        /// A file drop: visitors can upload into the folder and see nothing in it.
        #[arg(long)]
        upload_only: bool,
        /// Print the link as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List your links, newest first.
    ///
    /// A table with a line per link: its id (for `cairn link revoke`), its status
    /// (active, revoked, expired, exhausted or gone), what it points at, its URL, and
    /// its limits.
    List {
        /// Print a JSON array of links.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Revoke a link: it stops working at once.
    Revoke {
        /// The link's id, from `cairn link list`.
        id: i64,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Runs one `cairn link` command.
pub async fn run(command: LinkCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        LinkCommand::Create {
            path,
            password_stdin,
            expires,
            max_downloads,
            upload_only,
            json,
            opts,
        } => {
            let path = normalize_remote(&path);
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let expires_at = expires.map(|d| now_ms().saturating_add(d.as_millis() as i64));
            let request = LinkCreateRequest {
                path: path.clone(),
                password,
                expires_at,
                max_downloads,
                upload_only,
            };
            let link = session(&opts)?
                .client
                .create_link(&request)
                .await
                .map_err(|e| explain(e, &format!("cannot make a link to {path}")))?;
            if json {
                print_json(&link)?;
            } else {
                println!("{}", link.url);
            }
        }
        LinkCommand::List { json, opts } => {
            let links = session(&opts)?
                .client
                .list_links()
                .await
                .map_err(|e| explain(e, "cannot list your links"))?;
            if json {
                print_json(&links)?;
            } else {
                print!("{}", links_table(&links));
            }
        }
        LinkCommand::Revoke { id, opts } => {
            session(&opts)?.client.revoke_link(id).await.map_err(|e| {
                if e.is_not_found() {
                    // Someone else's link is "not found" too: the server tells no
                    // one which ids exist.
                    anyhow!("cannot revoke link {id}: no link with id {id} (see `cairn link list`)")
                } else {
                    explain(e, &format!("cannot revoke link {id}"))
                }
            })?;
            eprintln!("revoked link {id}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `cairn link list` as a table.
fn links_table(links: &[LinkInfo]) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("STATUS", Align::Left),
        ("PATH", Align::Left),
        ("URL", Align::Left),
        ("LIMITS", Align::Left),
    ]);
    for link in links {
        table.row(vec![
            link.id.to_string(),
            link.status.clone(),
            link.path.as_deref().unwrap_or("(deleted)").to_owned(),
            link.url.clone(),
            link_limits(link),
        ]);
    }
    table.render()
}

/// What limits a link: upload-only, a password, an expiry, downloads.
fn link_limits(link: &LinkInfo) -> String {
    let mut notes = Vec::new();
    if link.upload_only {
        notes.push("upload-only".to_owned());
    }
    if link.has_password {
        notes.push("password".to_owned());
    }
    if let Some(at) = link.expires_at {
        notes.push(format!("expires {} UTC", format_time(at)));
    }
    match link.max_downloads {
        Some(max) => notes.push(format!("downloads {}/{max}", link.downloads)),
        None if !link.upload_only => notes.push(format!("downloads {}", link.downloads)),
        None => {}
    }
    notes.join(", ")
}

/// A duration such as `90s`, `30m`, `12h`, `7d` or `2w`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration; give a number and a unit: 30m, 12h, 7d");
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| invalid())?;
    let secs = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(invalid()),
    };
    if n == 0 {
        return Err(format!(
            "{text:?} is no time at all; give a duration after now"
        ));
    }
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The link's password: one line of standard input.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the link's password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password given: pipe it to --password-stdin, one line");
    }
    Ok(password)
}

fn explain(err: ClientError, what: &str) -> anyhow::Error {
    let hint = if err.is_unauthorized() {
        format!("; {LOGIN_HINT}")
    } else if matches!(&err, ClientError::Http(e) if e.is_connect()) {
        "; is the server running?".to_owned()
    } else {
        String::new()
    };
    anyhow!("{what}: {err}{hint}")
}

fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot format JSON")?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "-1d",
            "1.5h",
            "0d",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
