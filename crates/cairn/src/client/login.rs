//! `cairn login` and `cairn logout`.

use std::io::{BufRead, IsTerminal};

use anyhow::{anyhow, bail, Context};
use cairn_client::proto::LoginRequest;
use cairn_client::{Client, ClientError};

use super::config::{self, Credentials};
use super::session::{explain, Doing};
use crate::ClientOpts;

pub(super) async fn login(
    opts: &ClientOpts,
    url: &str,
    user: &str,
    password_stdin: bool,
    device: Option<String>,
    ca: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let dir = config::config_dir(opts.config_dir.as_deref())?;
    let (full_url, assumed_https) = with_scheme(url)?;
    // Kept with the login, so an absolute path: later commands run from anywhere.
    let ca = ca
        .map(|path| {
            std::path::absolute(&path)
                .with_context(|| format!("cannot use --ca {}", path.display()))
        })
        .transpose()?;
    let client = Client::trusting(&full_url, None, ca.as_deref()).context("cannot log in")?;
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
        ca,
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

pub(super) async fn logout(opts: &ClientOpts) -> anyhow::Result<()> {
    let dir = config::config_dir(opts.config_dir.as_deref())?;
    let Some(credentials) = config::load_credentials(&dir)? else {
        eprintln!("not logged in");
        return Ok(());
    };
    let client = Client::trusting(
        &credentials.server,
        Some(credentials.token.clone()),
        credentials.ca.as_deref(),
    )?;
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
