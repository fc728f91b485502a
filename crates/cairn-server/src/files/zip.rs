//! A selection of files and folders as one zip, streamed (`GET /files/zip`), so a
//! browser downloads it by a plain link with its session cookie. Written by the server's
//! one zip writer (`zip_stream`), the one the public link pages use.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use cairn_core::ServerPath;
use cairn_meta::EntryKind;
use cairn_proto as proto;
use utoipa::IntoParams;

use crate::access::Access;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;
use crate::zip_stream::{zip_body, ZipRoot};

use super::disposition::{content_disposition, SANDBOX_CSP};
use super::stat_existing;

/// The query of `GET /files/zip` (documentation only: `path` repeats, which the handler
/// reads from the pairs of the query string).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct ZipQuery {
    /// A file or folder to put in the zip, once per item (1 to 1000 of them). Names in
    /// the zip are relative to the folder holding them all.
    #[param(value_type = Vec<proto::EntryPath>, min_items = 1, max_items = 1000, style = Form, explode)]
    path: Vec<String>,
}

/// The files and folders named, with everything below the folders, as a zip streamed
/// as it is written (entries stored, not compressed). Every path is looked up, with the
/// right to read it, before the first byte: one that is missing is a 404 and no zip. A
/// single folder is named `FOLDER.zip`, anything else `cairn-YYYY-MM-DD.zip`. The paths
/// travel in the URL (so that a plain link downloads the zip), and the whole request
/// header must fit the server's limit: a thousand long paths do not, and are refused
/// with 431 before the handler runs.
#[utoipa::path(
    get,
    path = "/files/zip",
    params(ZipQuery),
    responses(
        (status = 200, description = "The zip", body = proto::Binary, content_type = "application/zip"),
        (status = 400, description = "No path, too many, the root, or a bad path", body = proto::ErrorBody),
        (status = 404, description = "A path that does not exist", body = proto::ErrorBody),
        (status = 431, description = "The query is longer than the server takes in a request's header (about 400 KB): zip the folder holding the selection instead")
    ),
    security(("bearer" = []))
)]
pub(super) async fn zip_download(
    State(state): State<AppState>,
    access: Access,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let asked: Vec<&str> = pairs
        .iter()
        .filter(|(key, _)| key == "path")
        .map(|(_, value)| value.as_str())
        .collect();
    if asked.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "name at least one file or folder: ?path=/a&path=/b",
        ));
    }
    if asked.len() > proto::MAX_ZIP_PATHS {
        return Err(ApiError::bad_request(
            "too_many_items",
            format!(
                "a zip names at most {} paths, this one {}; zip their folder instead",
                proto::MAX_ZIP_PATHS,
                asked.len()
            ),
        ));
    }
    let mut paths = Vec::with_capacity(asked.len());
    for raw in asked {
        let path = ServerPath::parse(raw)?;
        if path.is_root() {
            return Err(ApiError::bad_request(
                "invalid_path",
                "the root folder cannot be zipped; name what is in it",
            ));
        }
        paths.push(path);
    }
    // Each path once; then none inside another named one (it is in that one's zip).
    paths.sort_by_key(|p| p.key());
    paths.dedup_by_key(|p| p.key());
    let mut found = Vec::with_capacity(paths.len());
    for path in &paths {
        found.push(stat_existing(&state, &access, path).await?);
    }
    let tops: Vec<ServerPath> = found.iter().map(|(_, e)| e.path.clone()).collect();
    found.retain(|(_, entry)| {
        !tops
            .iter()
            .any(|top| *top != entry.path && entry.path.starts_with(top))
    });
    let parent = common_parent(found.iter().map(|(_, entry)| &entry.path));
    let mut roots = Vec::with_capacity(found.len());
    for (target, entry) in &found {
        let name = entry
            .path
            .as_str()
            .strip_prefix(parent.as_str())
            .unwrap_or(entry.path.as_str())
            .trim_start_matches('/')
            .to_owned();
        roots.push(ZipRoot {
            ns: target.ns,
            path: target.path.clone(),
            name,
            rev: match entry.kind {
                EntryKind::File => entry.rev,
                EntryKind::Folder => None,
            },
            mtime: Some(entry.mtime).filter(|&t| t > 0),
        });
    }
    let file_name = match found.as_slice() {
        [(_, entry)] if entry.kind == EntryKind::Folder => {
            format!("{}.zip", entry.path.name().unwrap_or("cairn"))
        }
        _ => format!("cairn-{}.zip", today()),
    };

    let mut response = Response::new(zip_body(state.clone(), roots));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(false, &file_name),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_CSP),
    );
    Ok(response)
}

/// The deepest folder holding every one of `paths` (none of them the root).
fn common_parent<'a>(paths: impl Iterator<Item = &'a ServerPath>) -> ServerPath {
    let mut common: Option<ServerPath> = None;
    for path in paths {
        let parent = path.parent().unwrap_or_else(ServerPath::root);
        common = Some(match common {
            None => parent,
            Some(c) => parent
                .ancestors()
                .into_iter()
                .chain(std::iter::once(parent.clone()))
                .filter(|a| c.starts_with(a))
                .max_by_key(|a| a.as_str().len())
                .unwrap_or_else(ServerPath::root),
        });
    }
    common.unwrap_or_else(ServerPath::root)
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    let days = crate::now_ms().div_euclid(86_400_000);
    let (y, m, d) = cairn_core::display::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_parents() {
        let check = |paths: &[&str], want: &str| {
            let paths: Vec<ServerPath> = paths
                .iter()
                .map(|p| ServerPath::parse(p).unwrap())
                .collect();
            assert_eq!(common_parent(paths.iter()).as_str(), want, "{paths:?}");
        };
        check(&["/a/b/c.txt"], "/a/b");
        check(&["/a/b/c.txt", "/a/b/d"], "/a/b");
        check(&["/a/b/c.txt", "/a/x"], "/a");
        check(&["/a/b/c.txt", "/ab/x"], "/");
        check(&["/a", "/b"], "/");
    }
}
