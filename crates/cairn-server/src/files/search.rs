//! Search by name over the caller's whole tree: its home and the shared folders mounted
//! in it.

use axum::extract::State;
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::Access;
use crate::error::{ApiError, ApiResult};
use crate::extract::{page_size, Json, Query};
use crate::state::AppState;

use super::entry_view;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SearchQuery {
    /// Text the name contains, in any letter case (1 to 255 characters).
    #[param(min_length = 1, max_length = 255)]
    q: String,
    /// Entries to answer at most: 1000 when absent, at most 10,000 (`proto::MAX_PAGE`).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// Files and folders of the caller's tree (home and shared folders, not the trash)
/// whose name contains `q`, case-insensitively: names that start with it first, then
/// shorter names before longer ones.
#[utoipa::path(
    get,
    path = "/files/search",
    params(SearchQuery),
    responses(
        (status = 200, description = "The best matches, and whether there were more", body = proto::SearchResponse),
        (status = 400, description = "An empty or over-long `q`, or a `limit` out of range", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(super) async fn search(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<proto::SearchResponse>> {
    let limit = page_size(q.limit)?;
    if q.q.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q is empty: give some text a name contains",
        ));
    }
    let chars = q.q.chars().count();
    if chars > proto::MAX_SEARCH_QUERY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "q is {chars} characters long; no name is longer than {}",
                proto::MAX_SEARCH_QUERY_CHARS
            ),
        ));
    }
    // No name holds a control character (`ServerPath::parse` refuses them), and
    // PostgreSQL cannot take a NUL in text: such a search finds nothing, without asking.
    if q.q.chars().any(char::is_control) {
        return Ok(Json(proto::SearchResponse {
            entries: Vec::new(),
            truncated: false,
        }));
    }
    let needle = cairn_core::path::search_key(&q.q);
    let (entries, truncated) = state
        .meta
        .search_names(&access.namespaces(), &needle, limit)
        .await?;
    Ok(Json(proto::SearchResponse {
        entries: entries
            .into_iter()
            .map(|e| entry_view(&access, access.outer_entry(e)))
            .collect(),
        truncated,
    }))
}
