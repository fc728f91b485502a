//! `GET /files/thumbnail`: a picture's thumbnail, made once per version and size, then
//! served from the cache (`crate::thumbnails`).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::ServerPath;
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::Access;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;
use crate::thumbnails::{ThumbnailError, SIZES};

use super::disposition::{Preview, SANDBOX_CSP};
use super::{file_rev, stat_existing};

/// How long a browser may show a thumbnail without asking again. The URL names a path,
/// whose file may change, so not long; asking again costs a 304.
const MAX_AGE_SECS: u32 = 60;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ThumbnailQuery {
    /// The picture.
    #[param(value_type = proto::ApiPath)]
    path: String,
    /// The longest side in pixels: 64, 256 (when absent) or 1024. A picture smaller
    /// than that keeps its size.
    #[param(schema_with = size_schema)]
    size: Option<u32>,
}

fn size_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .enum_values(Some(SIZES))
        .build()
}

/// A JPEG thumbnail of a picture (JPEG, PNG, GIF or WebP), made on the server from the
/// file's current version and cached: the same version and size are served from the
/// cache, with a strong ETag (a 304 for `If-None-Match`).
#[utoipa::path(
    get,
    path = "/files/thumbnail",
    params(ThumbnailQuery),
    responses(
        (status = 200, description = "The thumbnail", body = proto::Binary, content_type = "image/jpeg",
            headers(("ETag" = String, description = "Names the version and size"))),
        (status = 304, description = "Unchanged since the ETag given in If-None-Match"),
        (status = 400, description = "A bad path or size", body = proto::ErrorBody),
        (status = 404, description = "No such file", body = proto::ErrorBody),
        (status = 409, description = "A folder", body = proto::ErrorBody),
        (status = 415, description = "Not a picture a thumbnail can be made of, or too large", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn thumbnail(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<ThumbnailQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let size = q.size.unwrap_or(256);
    if !SIZES.contains(&size) {
        return Err(ApiError::bad_request(
            "invalid_size",
            format!("size is one of 64, 256 or 1024, not {size}"),
        ));
    }
    let path = ServerPath::parse(&q.path)?;
    let (_, entry) = stat_existing(&state, &access, &path).await?;
    let rev = file_rev(&entry)?;
    let etag = format!("\"thumb-{}-{size}\"", rev.0);
    if if_none_match(&headers, &etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        cache_headers(response.headers_mut(), &etag);
        return Ok(response);
    }

    let jpeg = match state
        .thumbnails
        .cached(rev, size)
        .await
        .map_err(ApiError::internal)?
    {
        Some(jpeg) => jpeg,
        None => {
            let name = entry.path.name().unwrap_or("");
            if !matches!(Preview::of(name), Some(Preview::Media(m)) if is_decodable(&m)) {
                return Err(unsupported(
                    "not_an_image",
                    format!("{path} is not a JPEG, PNG, GIF or WebP picture; no thumbnail"),
                ));
            }
            let max = state.thumbnails.max_source_bytes;
            if u64::try_from(entry.size).unwrap_or(u64::MAX) > max {
                return Err(unsupported(
                    "too_large_for_thumbnail",
                    format!(
                        "{path} is larger than the {} a thumbnail is made from",
                        cairn_core::display::human_size(max)
                    ),
                ));
            }
            let mut source = Vec::with_capacity(entry.size.max(0) as usize);
            for block in state.meta.version_blocks(rev).await? {
                source.extend_from_slice(&state.blocks.read(block.hash).await?);
            }
            match state.thumbnails.make(rev, size, source).await {
                Ok(jpeg) => jpeg,
                Err(ThumbnailError::Io(err)) => return Err(ApiError::internal(err)),
                Err(err @ ThumbnailError::NotAnImage) => {
                    return Err(unsupported("not_an_image", format!("{path}: {err}")))
                }
                Err(err @ ThumbnailError::TooLarge(_)) => {
                    return Err(unsupported(
                        "too_large_for_thumbnail",
                        format!("{path}: {err}"),
                    ))
                }
                Err(err @ ThumbnailError::Unreadable(_)) => {
                    return Err(unsupported("unreadable_image", format!("{path}: {err}")))
                }
            }
        }
    };
    let mut response = Response::new(axum::body::Body::from(jpeg));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_CSP),
    );
    cache_headers(h, &etag);
    Ok(response)
}

/// The media types the thumbnailer decodes.
fn is_decodable(mime: &str) -> bool {
    matches!(
        mime,
        "image/jpeg" | "image/png" | "image/gif" | "image/webp"
    )
}

fn unsupported(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, message)
}

fn cache_headers(h: &mut HeaderMap, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={MAX_AGE_SECS}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}
