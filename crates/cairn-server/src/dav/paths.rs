//! Between WebDAV's paths (percent-decoded by `dav-server`, below the `/dav` prefix,
//! a folder's with a trailing slash) and the caller's tree.

use cairn_core::ServerPath;
use dav_server::davpath::DavPath;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::error::{ApiError, ApiResult};

/// Where WebDAV is served.
pub(crate) const PREFIX: &str = "/dav";

/// What is escaped in a path segment of a URL: everything but unreserved characters
/// and the sub-delimiters that are safe in a path.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The path of the caller's tree a WebDAV path names; a name Cairn refuses (`..`, NUL,
/// over-long, not UTF-8 …) is a 400 that says why.
pub(crate) fn server_path(path: &DavPath) -> ApiResult<ServerPath> {
    let text = std::str::from_utf8(path.as_bytes())
        .map_err(|_| ApiError::bad_request("invalid_path", "a path must be UTF-8 text"))?;
    let text = text.trim_end_matches('/');
    if text.is_empty() {
        return Ok(ServerPath::root());
    }
    Ok(ServerPath::parse(text)?)
}

/// A path of the caller's tree as a WebDAV path (with the prefix).
pub(crate) fn dav_path(path: &ServerPath) -> DavPath {
    let encoded: String = path
        .segments()
        .map(|s| format!("/{}", utf8_percent_encode(s, SEGMENT)))
        .collect();
    let full = format!(
        "{PREFIX}{}",
        if encoded.is_empty() { "/" } else { &encoded }
    );
    let mut dav = DavPath::new(&full).unwrap_or_else(|_| DavPath::new("/").expect("the root"));
    let _ = dav.set_prefix(PREFIX);
    dav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_survive_the_round_trip() {
        for text in ["/", "/a b/ü ß.txt", "/100% sure/#1?.md", "/x/y"] {
            let path = ServerPath::parse(text).unwrap();
            let dav = dav_path(&path);
            assert_eq!(server_path(&dav).unwrap(), path, "{text}");
        }
    }

    #[test]
    fn names_cairn_refuses_are_a_bad_request() {
        let mut dav = DavPath::new("/dav/a/%FFb").unwrap();
        dav.set_prefix(PREFIX).unwrap();
        let err = server_path(&dav).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
