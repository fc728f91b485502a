//! The web interface: the built front end (`web/dist`, made by `web/build.sh` and
//! committed) embedded in the binary, served at `/` (the page) and `/assets/NAME`
//! (scripts, styles, icons, the manifest). Nothing is fetched from anywhere else, so
//! the interface works on a LAN with no internet.
//!
//! Every asset is gzipped once, on first use, and sent compressed to browsers that
//! accept it. The page runs under a Content-Security-Policy without inline script or
//! style, so a file name or a preview can never run script in Cairn's origin.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use rust_embed::Embed;

use crate::routes::Routes;
use crate::state::AppState;

#[derive(Embed)]
#[folder = "../../web/dist/"]
struct Dist;

/// The policy of the page: script, style and everything else from Cairn's origin only;
/// images and media also from `blob:` (previews) and `data:` (icons); frames from the
/// origin (sandboxed previews); no plugins, no `<base>`, no framing by other sites.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
     frame-src 'self' blob:; worker-src 'self'; manifest-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub fn router() -> Router<AppState> {
    Routes::nested_at("")
        .page("/", get(page))
        .page("/assets/{name}", get(asset))
        .build()
}

/// One embedded file, ready to send.
struct Asset {
    body: Arc<[u8]>,
    /// The gzipped body, when that is smaller.
    gzipped: Option<Arc<[u8]>>,
    content_type: HeaderValue,
    etag: HeaderValue,
}

/// Every embedded file by its path under `web/dist`, prepared once.
fn assets() -> &'static HashMap<String, Asset> {
    static ASSETS: OnceLock<HashMap<String, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        Dist::iter()
            .filter_map(|name| {
                let file = Dist::get(&name)?;
                let body: Arc<[u8]> = file.data.into_owned().into();
                let content_type = HeaderValue::from_str(file.metadata.mimetype()).ok()?;
                let etag = HeaderValue::from_str(&format!(
                    "\"{}\"",
                    hex::encode(&file.metadata.sha256_hash()[..16])
                ))
                .ok()?;
                Some((
                    name.into_owned(),
                    Asset {
                        gzipped: gzip(&body),
                        body,
                        content_type,
                        etag,
                    },
                ))
            })
            .collect()
    })
}

fn gzip(body: &[u8]) -> Option<Arc<[u8]>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).ok()?;
    let out = encoder.finish().ok()?;
    (out.len() + 64 < body.len()).then(|| out.into())
}

/// The path under `web/dist` of every embedded file.
pub fn asset_names() -> Vec<String> {
    let mut names: Vec<String> = assets().keys().cloned().collect();
    names.sort();
    names
}

async fn page(headers: HeaderMap) -> Response {
    let mut response = send("index.html", &headers);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Always asked again (a 304 when unchanged), so a new version of Cairn's page is
    // picked up at the next load; the assets it names carry their hash in their name.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let mut response = send(&format!("assets/{name}"), &headers);
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let cache = if is_hashed(&name) {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    response
}

/// Whether a file name carries its content's hash (`app-3FZ2K7QX.js`), so it may be
/// cached for ever: a changed file gets a new name.
fn is_hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 8 && hash.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn send(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = assets().get(path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v == asset.etag)
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let accepts_gzip = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"));
        match (&asset.gzipped, accepts_gzip) {
            (Some(gzipped), true) => {
                let mut r = Bytes::from_owner(gzipped.clone()).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => Bytes::from_owner(asset.body.clone()).into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, asset.content_type.clone());
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashed_names() {
        assert!(super::is_hashed("app-3FZ2K7QX.js"));
        assert!(super::is_hashed("app-3FZ2K7QX.css"));
        assert!(!super::is_hashed("manifest.webmanifest"));
        assert!(!super::is_hashed("icon-192.png"));
    }

    #[test]
    fn the_page_is_embedded() {
        assert!(super::assets().contains_key("index.html"));
    }
}
