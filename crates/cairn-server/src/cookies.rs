//! The server's two cookies: a browser session's (`cairn_session`, see `auth`) and the
//! proof that a visitor gave a public link's password (`cairn_link`, see `links`).
//!
//! Written here rather than taken from the `cookie` crate: the server reads one name
//! and writes one fixed shape (HttpOnly, SameSite=Strict, a path, Secure over HTTPS),
//! which is a dozen lines; a crate's parser and builder would add nothing they need.

use axum::http::{header, HeaderMap, HeaderValue};

/// The values of the cookies named `name` in the request.
pub(crate) fn values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then_some(v.trim())
        })
}

/// Whether the browser reached the server over HTTPS: told by a TLS-terminating proxy
/// in `X-Forwarded-Proto`, or by the server's own accept loop when it serves TLS itself
/// (`serve.rs`). Trusting it can only add `Secure` to a cookie, never take it away, so
/// a forged header weakens nothing; the links made from it are the caller's own.
pub(crate) fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// A `Set-Cookie` value: `name=value` for `path`, unreadable by scripts, never sent
/// by another site's requests, `Secure` over HTTPS; it lasts `max_age_secs` (0
/// deletes it) or, without one, until the browser closes.
pub(crate) fn set(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: Option<u64>,
    headers: &HeaderMap,
) -> Option<HeaderValue> {
    let max_age = max_age_secs
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let secure = if is_https(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict{max_age}{secure}"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b = 2 ;a=3"));
        assert_eq!(values(&headers, "a").collect::<Vec<_>>(), ["1", "3"]);
        assert_eq!(values(&headers, "b").collect::<Vec<_>>(), ["2"]);
        assert_eq!(values(&headers, "c").count(), 0);
        assert_eq!(
            set("s", "v", "/", Some(0), &headers).unwrap(),
            "s=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        assert_eq!(
            set("s", "v", "/x", None, &headers).unwrap(),
            "s=v; Path=/x; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
