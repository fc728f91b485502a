//! Where the client keeps its state, and the credentials file in it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The file, inside the config folder, that holds the login.
const CREDENTIALS_FILE: &str = "credentials.json";

/// What `cairn login` stores and every other client command reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The server's base URL, such as `http://127.0.0.1:8080`.
    pub server: String,
    /// The bearer token; as good as the password, hence the file's mode 0600.
    pub token: String,
    /// The user name the token belongs to.
    pub user: String,
    /// The device the token is bound to.
    #[serde(default)]
    pub device: Option<String>,
    /// A PEM file of CA certificates trusted besides the usual roots (`login --ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// The config folder: `--config-dir` / `CAIRN_CONFIG_DIR`, else `$XDG_CONFIG_HOME/cairn`,
/// else `~/.config/cairn`.
pub fn config_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    // The XDG spec says relative values are to be ignored.
    if let Some(xdg) = non_empty("XDG_CONFIG_HOME").map(PathBuf::from) {
        if xdg.is_absolute() {
            return Ok(xdg.join("cairn"));
        }
    }
    if let Some(home) = non_empty("HOME").or_else(|| non_empty("USERPROFILE")) {
        return Ok(PathBuf::from(home).join(".config").join("cairn"));
    }
    bail!("cannot tell where to keep the client's settings: set CAIRN_CONFIG_DIR or pass --config-dir")
}

/// The credentials stored in `dir`, or `None` when nobody has logged in there.
pub fn load_credentials(dir: &Path) -> anyhow::Result<Option<Credentials>> {
    let path = dir.join(CREDENTIALS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let credentials = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is damaged: run `cairn login URL --user NAME` again",
            path.display()
        )
    })?;
    Ok(Some(credentials))
}

/// Writes the credentials to `dir` with mode 0600 (the folder gets 0700 when created),
/// atomically: a temp file, fsync, rename.
pub fn save_credentials(dir: &Path, credentials: &Credentials) -> anyhow::Result<PathBuf> {
    create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(CREDENTIALS_FILE);
    let temp = dir.join(format!(".{CREDENTIALS_FILE}.tmp-{}", std::process::id()));
    let write = || -> io::Result<()> {
        // A leftover temp file might have wider permissions; start afresh.
        match fs::remove_file(&temp) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let mut file = open_private(&temp)?;
        let mut json = serde_json::to_vec_pretty(credentials).map_err(io::Error::other)?;
        json.push(b'\n');
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&temp, &path)?;
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&temp);
        anyhow::Error::new(err).context(format!("cannot write {}", path.display()))
    })?;
    Ok(path)
}

/// Removes the stored credentials; true when there were some.
pub fn remove_credentials(dir: &Path) -> anyhow::Result<bool> {
    let path = dir.join(CREDENTIALS_FILE);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn open_private(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("nested").join("cairn");
        assert_eq!(load_credentials(&config).unwrap(), None);
        let credentials = Credentials {
            server: "http://127.0.0.1:8080".into(),
            token: "secret".into(),
            user: "alice".into(),
            device: Some("laptop".into()),
            ca: Some("/etc/cairn/lan-ca.pem".into()),
        };
        let path = save_credentials(&config, &credentials).unwrap();
        assert_eq!(
            load_credentials(&config).unwrap(),
            Some(credentials.clone())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let mode = fs::metadata(&config).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        // Saving again replaces the file and keeps the mode.
        let other = Credentials {
            user: "bob".into(),
            device: None,
            ca: None,
            ..credentials
        };
        save_credentials(&config, &other).unwrap();
        assert_eq!(load_credentials(&config).unwrap(), Some(other));
        let names: Vec<_> = fs::read_dir(&config)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CREDENTIALS_FILE)]);
        assert!(remove_credentials(&config).unwrap());
        assert!(!remove_credentials(&config).unwrap());
        assert_eq!(load_credentials(&config).unwrap(), None);
    }

    #[test]
    fn damaged_credentials_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CREDENTIALS_FILE), "{not json").unwrap();
        let err = load_credentials(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("cairn login"), "{err:#}");
    }

    #[test]
    fn explicit_config_dir_wins() {
        let dir = Path::new("/some/where");
        assert_eq!(config_dir(Some(dir)).unwrap(), dir);
    }
}
