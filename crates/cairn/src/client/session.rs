//! The login a command runs with, and how a client error is told to the user.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use cairn_client::{Client, ClientError};

use super::config::{self, Credentials};
use crate::ClientOpts;

/// What to tell a user who has no usable login.
pub(crate) const LOGIN_HINT: &str = "run `cairn login URL --user NAME` first";

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
    let client = Client::trusting(
        &credentials.server,
        Some(credentials.token.clone()),
        credentials.ca.as_deref(),
    )
    .with_context(|| format!("the stored login in {} is unusable", dir.display()))?;
    Ok(Session {
        client,
        credentials,
    })
}

/// Adds what the command was doing to a client error, and what to do next when there is
/// something obvious.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T> Doing<T> for Result<T, ClientError> {
    fn doing(self, what: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|err| explain(err, &what()))
    }
}

pub(crate) fn explain(err: ClientError, what: &str) -> anyhow::Error {
    // A disabled account's message already says to ask the administrator; logging
    // in again would not help.
    let hint = if err.is_account_disabled() {
        ""
    } else if err.is_unauthorized() {
        "; run `cairn login URL --user NAME` again"
    } else if matches!(&err, ClientError::Http(e) if e.is_connect()) {
        // rustls says `invalid peer certificate: …` when it refuses the server's.
        match err.to_string().contains("certificate") {
            true => {
                "; if a private CA signed the server's certificate, run \
                 `cairn login URL --user NAME --ca CA.pem`"
            }
            false => "; is the server running?",
        }
    } else {
        ""
    };
    anyhow!("{what}: {err}{hint}")
}
