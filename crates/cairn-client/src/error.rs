//! The client's one error type.
//!
//! Every variant prints as one complete line that already names its cause ("cannot
//! connect to http://…: Connection refused"), so callers can show it as it is or wrap it
//! with what they were doing. For that reason no variant also returns its cause from
//! [`std::error::Error::source`]: printing the chain would say everything twice. The
//! underlying errors stay reachable as fields.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::path::PathBuf;

use cairn_core::BlockHash;
use cairn_proto::EntryInfo;

/// What went wrong talking to a Cairn server or moving content between it and the disk.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status and (normally) the API's error body.
    #[error("{}", describe_api(*.status, .code, .message))]
    Api {
        /// The HTTP status code, such as 404 or 409.
        status: u16,
        /// The API's machine-readable code, such as `not_found` or `conflict`. When the
        /// body was not the API's error shape (a proxy's page, say) it is `http_STATUS`.
        code: String,
        /// The server's explanation, one sentence.
        message: String,
        /// On a revision conflict: the entry as it is now on the server.
        current: Option<Box<EntryInfo>>,
        /// On a commit naming blocks the server does not hold for the caller: their hashes.
        missing: Vec<String>,
    },
    /// The request did not complete: connection refused or reset, a timeout, a TLS
    /// failure.
    #[error("{}", describe_http(.0))]
    Http(reqwest::Error),
    /// The server answered 2xx with a body that is not what the API promises.
    #[error("unexpected answer from the server to {endpoint}: {error}")]
    Decode {
        /// The endpoint that was called, such as `GET /api/v1/files/stat`.
        endpoint: String,
        /// Why the body did not parse.
        error: serde_json::Error,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The local file or folder involved.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },
    /// A block from the server did not match its hash; nothing of it was written.
    #[error("block {hash} sent by the server does not match its hash (corrupt or tampered)")]
    Corrupt {
        /// The block's expected hash, in hex.
        hash: String,
    },
    /// A block the file's block list names is not on the server: the server found it
    /// damaged and set it aside after listing the file.
    #[error("block {hash} of the file is missing on the server (found damaged and set aside)")]
    ListedBlockMissing {
        /// The block's hash, in hex.
        hash: String,
    },
    /// A file's block list does not add up to its recorded content hash or size.
    #[error(
        "the block list of {path} does not match its content hash; the download was not written"
    )]
    ContentMismatch {
        /// The remote path.
        path: String,
    },
    /// A local file changed while it was being uploaded, so its blocks no longer match.
    #[error("{} changed while it was being uploaded; try again", .path.display())]
    ChangedDuringUpload {
        /// The local file.
        path: PathBuf,
    },
    /// The download was complete, but the caller's check refused to let it replace
    /// what is now at the destination (someone changed it meanwhile); nothing was
    /// written there.
    #[error("{} changed while it was being downloaded; the download was not put in place", .path.display())]
    DestinationChanged {
        /// The local file.
        path: PathBuf,
    },
    /// The operation needs a file, and the path is a folder (or something else).
    #[error("{path} is not a file")]
    NotAFile {
        /// The local or remote path.
        path: String,
    },
    /// The base URL given to [`crate::Client::new`] is not an `http://` or `https://` URL.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server broke the protocol in some other way (an invalid hash, a block larger
    /// than announced, a chunker configuration the client cannot use).
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn describe_api(status: u16, code: &str, message: &str) -> String {
    let what = if status >= 500 {
        "server error"
    } else {
        "server refused"
    };
    let message = message.trim_end_matches('.');
    if message.is_empty() {
        format!("{what}: HTTP {status} ({code})")
    } else {
        format!("{what}: {message} ({code})")
    }
}

/// reqwest's own message is "error sending request for url (…)" with the real cause
/// three levels down; we print the URL and the innermost cause instead.
fn describe_http(err: &reqwest::Error) -> String {
    let mut cause: Option<String> = None;
    let mut source = err.source();
    while let Some(inner) = source {
        cause = Some(inner.to_string());
        source = inner.source();
    }
    let url = err
        .url()
        .map(|u| {
            let mut u = u.clone();
            u.set_query(None);
            u.to_string()
        })
        .unwrap_or_else(|| "the server".to_owned());
    let head = if err.is_connect() {
        format!("cannot connect to {url}")
    } else if err.is_timeout() {
        format!("request to {url} timed out")
    } else {
        format!("request to {url} failed")
    };
    match cause {
        Some(cause) => format!("{head}: {cause}"),
        None => format!("{head}: {}", Display(err)),
    }
}

/// Prints an error's own message without the URL reqwest puts in it.
struct Display<'a>(&'a reqwest::Error);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        f.write_str(text.split(" for url (").next().unwrap_or(&text))
    }
}

/// How freely a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryPolicy {
    /// Reads, block uploads and checks: sending twice does no harm, so connection
    /// errors, 5xx and 429 are retried.
    Idempotent,
    /// Commits, moves, logins: retried only when the connection could not even be
    /// opened, since then the server cannot have seen the request.
    ConnectOnly,
}

impl ClientError {
    /// The API error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the server said the path (or block) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. }) || self.code() == Some("not_found")
    }

    /// True when the server reported that a block of the file is missing or corrupt in
    /// its store: the file cannot be downloaded until an administrator repairs it.
    pub fn is_block_damaged(&self) -> bool {
        self.code() == Some("block_damaged")
            || matches!(self, ClientError::ListedBlockMissing { .. })
    }

    /// A failed fetch of a block that a file's block list names: the server holding no
    /// such block means the file is damaged there, not that the block never existed.
    pub(crate) fn of_listed_block(self, hash: &BlockHash) -> Self {
        match self.is_not_found() {
            true => ClientError::ListedBlockMissing {
                hash: hash.to_hex(),
            },
            false => self,
        }
    }

    /// True when a commit was refused because its base revision is stale.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some("conflict")
    }

    /// True when the server did not accept the credentials (missing, expired, revoked).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// True when the account is disabled by an administrator: logging in again does
    /// not help until it is enabled.
    pub fn is_account_disabled(&self) -> bool {
        self.code() == Some("account_disabled")
    }

    /// On a conflict, the entry as it is now on the server.
    pub fn conflict_current(&self) -> Option<&EntryInfo> {
        match self {
            ClientError::Api {
                current: Some(current),
                ..
            } => Some(current),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, error: io::Error) -> Self {
        ClientError::Io {
            path: path.into(),
            error,
        }
    }

    /// Whether sending the same request again could succeed.
    pub(crate) fn is_retryable(&self, policy: RetryPolicy) -> bool {
        match self {
            ClientError::Http(err) => {
                err.is_connect()
                    || (policy == RetryPolicy::Idempotent
                        && !err.is_builder()
                        && !err.is_redirect())
            }
            // A damaged block stays damaged until someone uploads it again.
            ClientError::Api { code, .. } if code == "block_damaged" => false,
            ClientError::Api { status, .. } => {
                policy == RetryPolicy::Idempotent && (*status >= 500 || *status == 429)
            }
            // A block that arrived damaged may arrive whole the next time.
            ClientError::Corrupt { .. } => policy == RetryPolicy::Idempotent,
            _ => false,
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(err: reqwest::Error) -> Self {
        ClientError::Http(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, message: &str) -> ClientError {
        ClientError::Api {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
            current: None,
            missing: Vec::new(),
        }
    }

    #[test]
    fn api_errors_print_one_line() {
        assert_eq!(
            api(409, "conflict", "file /a.txt was changed on the server.").to_string(),
            "server refused: file /a.txt was changed on the server (conflict)"
        );
        assert_eq!(
            api(503, "unavailable", "").to_string(),
            "server error: HTTP 503 (unavailable)"
        );
    }

    #[test]
    fn retry_policy() {
        assert!(api(503, "x", "y").is_retryable(RetryPolicy::Idempotent));
        assert!(api(429, "x", "y").is_retryable(RetryPolicy::Idempotent));
        assert!(!api(429, "x", "y").is_retryable(RetryPolicy::ConnectOnly));
        assert!(!api(404, "not_found", "y").is_retryable(RetryPolicy::Idempotent));
        assert!(!api(500, "x", "y").is_retryable(RetryPolicy::ConnectOnly));
        assert!(!api(500, "block_damaged", "y").is_retryable(RetryPolicy::Idempotent));
        assert!(api(500, "block_damaged", "y").is_block_damaged());
    }

    #[test]
    fn a_listed_block_the_server_does_not_hold_is_damage() {
        let hash = BlockHash::of(b"x");
        let missing = api(404, "not_found", "block not found").of_listed_block(&hash);
        assert!(missing.is_block_damaged(), "{missing}");
        assert!(missing.to_string().contains(&hash.to_hex()));
        // Other failures keep their meaning.
        let busy = api(503, "unavailable", "").of_listed_block(&hash);
        assert!(!busy.is_block_damaged());
        assert_eq!(busy.status(), Some(503));
    }
}
