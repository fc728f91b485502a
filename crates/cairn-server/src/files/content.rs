//! Content endpoints: a file's block list, many small files' contents in one response,
//! and a download with ranges.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::{BlockHash, ServerPath};
use cairn_meta::Entry;
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::Access;
use crate::convert::entry_info;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::metrics::BLOCK_BYTES_SENT;
use crate::state::AppState;

use super::disposition::{content_disposition, Preview, SANDBOX_CSP};
use super::{check_batch_len, file_rev, parse_rev, stat_existing, PathQuery};

#[utoipa::path(
    get,
    path = "/files/blocks",
    params(PathQuery),
    responses(
        (status = 200, description = "The file's block list", body = proto::FileBlocksResponse),
        (status = 404, description = "No such file", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn file_blocks(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<proto::FileBlocksResponse>> {
    let path = ServerPath::parse(&q.path)?;
    let (_, entry) = stat_existing(&state, &access, &path).await?;
    let rev = file_rev(&entry)?;
    let blocks = state.meta.version_blocks(rev).await?;
    Ok(Json(proto::FileBlocksResponse {
        entry: entry_info(&entry),
        blocks: blocks
            .iter()
            .map(|b| proto::BlockRef {
                hash: b.hash.to_hex(),
                size: b.size,
            })
            .collect(),
    }))
}

/// Many small files' contents in one response (see [`proto::ContentBatchRequest`] for
/// the format). Each file is read whole before its record is sent, so a file with a
/// damaged block gets an error record like any other refusal, never wrong bytes, and
/// the response holds at most one file in memory at a time.
#[utoipa::path(
    post,
    path = "/files/content_batch",
    request_body = proto::ContentBatchRequest,
    responses(
        (status = 200, description = "Framed records, one per path: a u32 BE header length, a ContentBatchHeader as JSON, then the content", body = proto::Binary, content_type = "application/octet-stream")
    ),
    security(("bearer" = []))
)]
pub(super) async fn content_batch(
    State(state): State<AppState>,
    access: Access,
    Json(req): Json<proto::ContentBatchRequest>,
) -> ApiResult<Response> {
    check_batch_len(req.paths.len(), "paths")?;
    // A path that is not one is a malformed request, refused whole; what the server
    // refuses about a file (missing, too large, damaged) is that file's error record.
    let paths = req
        .paths
        .iter()
        .map(|p| ServerPath::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let start = (
        state,
        access,
        paths.into_iter(),
        proto::MAX_CONTENT_BATCH_BYTES,
    );
    let body =
        futures::stream::unfold(start, |(state, access, mut paths, mut budget)| async move {
            let path = paths.next()?;
            let record = content_record(&state, &access, &path, &mut budget).await;
            Some((record, (state, access, paths, budget)))
        });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response())
}

/// One record of a `content_batch` response (see [`proto::content_batch`]). A record
/// that cannot be written (never seen: a header over its limit, content not its
/// entry's size) ends the response with an error, which cuts it short for the client.
async fn content_record(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
    budget: &mut u64,
) -> std::io::Result<Bytes> {
    let (header, content) = match whole_small_file(state, access, path, budget).await {
        Ok((entry, content)) => (
            proto::ContentBatchHeader {
                entry: Some(entry_info(&entry)),
                error: None,
            },
            content,
        ),
        Err(err) => (
            proto::ContentBatchHeader {
                entry: None,
                error: Some(err.into_detail()),
            },
            Vec::new(),
        ),
    };
    let mut record = Vec::new();
    proto::content_batch::encode_record(&header, &content, &mut record).map_err(|err| {
        tracing::error!(%path, %err, "content_batch record not written");
        std::io::Error::other(err)
    })?;
    Ok(Bytes::from(record))
}

/// A file's entry and blocks, all read and verified, if it fits what is left of the
/// batch's `budget` (which it then takes).
async fn whole_small_file(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
    budget: &mut u64,
) -> ApiResult<(Entry, Vec<Bytes>)> {
    let (_, entry) = stat_existing(state, access, path).await?;
    let rev = file_rev(&entry)?;
    let size = entry.size.max(0) as u64;
    if size > proto::MAX_CONTENT_BATCH_FILE {
        return Err(ApiError::bad_request(
            "too_large_for_batch",
            format!(
                "{path} is {size} bytes, more than a batch carries ({}); download it with GET /files/content",
                proto::MAX_CONTENT_BATCH_FILE
            ),
        ));
    }
    if size > *budget {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_full",
            format!("this response is full before {path}; ask for it in another batch"),
        ));
    }
    let blocks = state.meta.version_blocks(rev).await?;
    let mut content = Vec::with_capacity(blocks.len());
    for block in &blocks {
        let data = state
            .blocks
            .read(block.hash)
            .await
            .map_err(|err| err.in_file(path))?;
        content.push(data);
    }
    let sent: u64 = content.iter().map(|d| d.len() as u64).sum();
    if sent != size {
        return Err(ApiError::internal(format!(
            "{path} is {size} bytes but its blocks hold {sent}"
        )));
    }
    *budget -= size;
    metrics::counter!(BLOCK_BYTES_SENT).increment(size);
    Ok((entry, content))
}

/// The body of a download: `(block, from, to)` slices of the file's blocks, in order,
/// read and verified by the block manager ([`crate::block_manager::BlockManager::read_pieces`]):
/// a damaged first block is an error status, a later one cuts the body short.
pub(crate) async fn block_body(
    state: &AppState,
    file: &ServerPath,
    pieces: Vec<(BlockHash, usize, usize)>,
) -> ApiResult<Body> {
    Ok(Body::from_stream(
        state.blocks.read_pieces(file, pieces).await?,
    ))
}

/// A parsed `Range` header: the first and last byte wanted, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRange {
    first: u64,
    last: u64,
}

/// Parses a single-range `bytes=` header against a file of `size` bytes. `Ok(None)` means
/// "send the whole file" (no header, or a form we do not support, which RFC 9110 lets us
/// ignore); `Err` means the range cannot be satisfied.
fn parse_range(header: Option<&HeaderValue>, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = header.and_then(|h| h.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        ByteRange {
            first: size.saturating_sub(n),
            last: size - 1,
        }
    } else {
        let first: u64 = start.parse().map_err(|_| ())?;
        let last = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if first >= size || last < first {
            return Err(());
        }
        ByteRange { first, last }
    };
    Ok(Some(range))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ContentQuery {
    /// The file.
    #[param(value_type = proto::ApiPath)]
    path: String,
    /// 1 to show the file in the browser (a preview): pictures, sound, video and PDF with
    /// their own type, any text as `text/plain`, anything else still as a download. 0
    /// or absent: a download (`Content-Disposition: attachment`).
    #[param(minimum = 0, maximum = 1)]
    inline: Option<u8>,
    /// An older version of the file (an id from `/files/versions`) instead of its
    /// current content.
    #[param(value_type = Option<proto::Revision>)]
    version: Option<String>,
}

/// A file's content, or one byte range of it. Whatever it is, the answer can never act
/// in Cairn's origin: `X-Content-Type-Options: nosniff` and a sandboxing
/// `Content-Security-Policy` always, and a download (`attachment`) unless a preview of
/// a kind browsers show passively was asked for (see `files/disposition.rs`).
#[utoipa::path(
    get,
    path = "/files/content",
    params(ContentQuery, ("Range" = Option<String>, Header, description = "One byte range, as bytes=START-END")),
    responses(
        (status = 200, description = "The file's content", body = proto::Binary, content_type = "application/octet-stream",
            headers(
                ("Content-Disposition" = String, description = "attachment (or inline for a preview), with the file's name as filename*=UTF-8''…"),
                ("Content-Security-Policy" = String, description = "default-src 'none'; sandbox"),
                ("X-Content-Type-Options" = String, description = "nosniff")
            )),
        (status = 206, description = "The requested range", body = proto::Binary, content_type = "application/octet-stream"),
        (status = 400, description = "A bad path or `inline` value", body = proto::ErrorBody),
        (status = 404, description = "No such file, or no such version of it", body = proto::ErrorBody),
        (status = 416, description = "The range is outside the file", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn download(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<ContentQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let inline = match q.inline {
        None | Some(0) => false,
        Some(1) => true,
        Some(n) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("inline is 0 or 1, not {n}"),
            ))
        }
    };
    let path = ServerPath::parse(&q.path)?;
    let (target, entry) = stat_existing(&state, &access, &path).await?;
    let name = entry.path.name().unwrap_or("file").to_owned();
    let preview = inline.then(|| Preview::of(&name)).flatten();
    let current = file_rev(&entry)?;
    let rev = match q.version.as_deref().map(parse_rev).transpose()? {
        // Only a version of this file: an id alone names no file, and may be another's.
        Some(asked) if asked != current => {
            let versions = state
                .meta
                .list_versions(target.ns, &target.path)
                .await
                .map_err(|e| access.outer_error(target.ns, e))?;
            if !versions.iter().any(|v| v.id == asked) {
                return Err(cairn_meta::MetaError::NoSuchVersion(asked).into());
            }
            asked
        }
        _ => current,
    };
    let blocks = state.meta.version_blocks(rev).await?;
    let size: u64 = blocks.iter().map(|b| b.size as u64).sum();
    let etag = format!("\"{}\"", rev.0);

    let range = match parse_range(headers.get(header::RANGE), size) {
        Ok(range) => range,
        Err(()) => {
            let mut err = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the requested range is outside the file ({size} bytes)"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                err.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(err);
        }
    };
    let ByteRange { first, last } = range.unwrap_or(ByteRange {
        first: 0,
        last: size.saturating_sub(1),
    });
    let length = if size == 0 { 0 } else { last - first + 1 };

    // Pick the blocks that overlap the range, with the slice of each to send.
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for block in &blocks {
        let (start, end) = (offset, offset + block.size as u64);
        offset = end;
        if length == 0 || end <= first || start > last {
            continue;
        }
        let from = first.saturating_sub(start) as usize;
        let to = ((last + 1).min(end) - start) as usize;
        pieces.push((block.hash, from, to));
    }

    let body = block_body(&state, &path, pieces).await?;

    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        preview
            .as_ref()
            .map(Preview::content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(preview.is_some(), &name),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_CSP),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, size: u64, expect: Result<Option<(u64, u64)>, ()>) {
        let value = HeaderValue::from_str(header).unwrap();
        let got = parse_range(Some(&value), size).map(|r| r.map(|r| (r.first, r.last)));
        assert_eq!(got, expect, "{header} on {size} bytes");
    }

    #[test]
    fn ranges() {
        check("bytes=0-9", 100, Ok(Some((0, 9))));
        check("bytes=90-", 100, Ok(Some((90, 99))));
        check("bytes=-10", 100, Ok(Some((90, 99))));
        check("bytes=-1000", 100, Ok(Some((0, 99))));
        check("bytes=50-5000", 100, Ok(Some((50, 99))));
        check("bytes=100-", 100, Err(()));
        check("bytes=9-1", 100, Err(()));
        check("bytes=x-1", 100, Err(()));
        check("bytes=0-1,5-6", 100, Ok(None));
        check("items=0-1", 100, Ok(None));
        check("bytes=0-0", 0, Err(()));
    }
}
