//! Delta endpoints: what changed after a cursor, and the cursor of the newest change.
//!
//! A cursor names a position in the journal of every namespace the caller reads: the
//! home namespace and the shared folders mounted into it. It is text,
//! opaque to clients: `v1.` followed by `NS-SEQ` pairs separated by commas. A cursor the
//! server cannot continue from (a position past the journal's end, as after the
//! server's database was replaced) gets 410
//! `cursor_reset`: the client must list the tree again and take a new cursor.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use cairn_core::{JournalSeq, NamespaceId};
use cairn_meta::{ChangeKind, EntryKind, JournalEntry};
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::Access;
use crate::error::{ApiError, ApiResult};
use crate::extract::{page_size, Json, Query};
use crate::routes::{endpoint, Routes};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(delta))
        .at(endpoint!(latest))
        .build()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeltaQuery {
    /// Without one, the changes from the journal's start.
    #[param(value_type = Option<proto::DeltaCursor>)]
    cursor: Option<String>,
    /// Changes per answer: 1000 when absent, at most 10,000 (`proto::MAX_PAGE`).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// A position in one namespace's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) ns: NamespaceId,
    pub(crate) seq: JournalSeq,
}

/// The cursor text for these positions (the format is `cairn_proto::cursor`'s).
pub(crate) fn encode_cursor(positions: &[Position]) -> String {
    proto::cursor::encode(positions.iter().map(|p| (p.ns.0, p.seq.0)))
}

/// The positions a cursor names; 400 `invalid_cursor` for text this server never
/// hands out.
pub(crate) fn decode_cursor(cursor: &str) -> Result<Vec<Position>, ApiError> {
    let positions = proto::cursor::decode(cursor).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server hands out; take one from /api/v1/delta/latest",
        )
    })?;
    Ok(positions
        .into_iter()
        .map(|(ns, seq)| Position {
            ns: NamespaceId(ns),
            seq: JournalSeq(seq),
        })
        .collect())
}

/// 410 `cursor_reset`: the client must list the tree again.
pub(crate) fn reset(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "cursor_reset",
        format!("{why}; list the tree again and take a new cursor from /api/v1/delta/latest"),
    )
}

/// Where the caller stands in every namespace it reads, the home first: the cursor's
/// position, or the journal's start for a namespace the cursor does not name (a folder
/// shared with the caller since, or no cursor at all). Positions in namespaces the
/// caller no longer reads are dropped: their mount folder's delete, journaled in the
/// home, tells the client they went. `readable` starts with the home.
pub(crate) fn positions(
    readable: &[NamespaceId],
    cursor: Option<&str>,
) -> Result<Vec<Position>, ApiError> {
    let given = match cursor {
        Some(cursor) => decode_cursor(cursor)?,
        None => Vec::new(),
    };
    // Every cursor of an account names its home: one that does not was handed to
    // another account.
    if cursor.is_some() && !given.iter().any(|p| Some(&p.ns) == readable.first()) {
        return Err(reset("the cursor was not handed out to this account"));
    }
    Ok(readable
        .iter()
        .map(|ns| {
            given
                .iter()
                .find(|p| p.ns == *ns)
                .copied()
                .unwrap_or(Position {
                    ns: *ns,
                    seq: JournalSeq(0),
                })
        })
        .collect())
}

/// The changes after the cursor in every namespace the caller reads, with paths as the
/// caller sees them.
///
/// The home namespace is read to its head before any shared one. That order matters: a
/// shared folder's changes are placed under its mount as it is now, and the home's
/// journal holds the mount folder's creation, renames and removal, so a client must
/// have applied those first.
#[utoipa::path(
    get,
    path = "/delta",
    params(DeltaQuery),
    responses(
        (status = 200, description = "Changes after the cursor, oldest first", body = proto::DeltaResponse),
        (status = 410, description = "cursor_reset: the cursor cannot be continued; list the tree again", body = proto::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn delta(
    State(state): State<AppState>,
    access: Access,
    Query(q): Query<DeltaQuery>,
) -> ApiResult<Json<proto::DeltaResponse>> {
    let limit = page_size(q.limit)?;
    let mut positions = positions(&access.namespaces(), q.cursor.as_deref())?;
    let mut changes = Vec::new();
    let mut has_more = false;
    for position in &mut positions {
        let head = state.meta.journal_head(position.ns).await?;
        if position.seq > head {
            return Err(reset(
                "the cursor is ahead of this server's journal (was its database replaced?)",
            ));
        }
        let room = limit as usize - changes.len();
        if room == 0 || has_more {
            has_more |= position.seq < head;
            continue;
        }
        let rows = state
            .meta
            .journal_since(position.ns, position.seq, room as u32)
            .await?;
        if let Some(last) = rows.last() {
            position.seq = last.seq;
        }
        has_more |= position.seq < head;
        changes.extend(
            rows.into_iter()
                .map(|row| change_info(&access.outer_change(row))),
        );
    }
    Ok(Json(proto::DeltaResponse {
        has_more,
        cursor: encode_cursor(&positions),
        changes,
    }))
}

#[utoipa::path(
    get,
    path = "/delta/latest",
    responses(
        (status = 200, description = "A cursor at the newest change", body = proto::CursorResponse)
    ),
    security(("bearer" = []))
)]
async fn latest(
    State(state): State<AppState>,
    access: Access,
) -> ApiResult<Json<proto::CursorResponse>> {
    let mut positions = Vec::new();
    for ns in access.namespaces() {
        positions.push(Position {
            ns,
            seq: state.meta.journal_head(ns).await?,
        });
    }
    Ok(Json(proto::CursorResponse {
        cursor: encode_cursor(&positions),
    }))
}

fn change_info(row: &JournalEntry) -> proto::Change {
    proto::Change {
        seq: row.seq.0,
        kind: match row.kind {
            ChangeKind::Commit => proto::ChangeKind::Commit,
            ChangeKind::Mkdir => proto::ChangeKind::Mkdir,
            ChangeKind::Move { .. } => proto::ChangeKind::Move,
            ChangeKind::Copy { .. } => proto::ChangeKind::Copy,
            ChangeKind::Delete => proto::ChangeKind::Delete,
            ChangeKind::Restore => proto::ChangeKind::Restore,
            ChangeKind::Purge => proto::ChangeKind::Purge,
        },
        entry_kind: match row.entry_kind {
            EntryKind::File => proto::EntryKind::File,
            EntryKind::Folder => proto::EntryKind::Folder,
        },
        path: row.path.as_str().to_owned(),
        from_path: row.kind.from_path().map(|p| p.as_str().to_owned()),
        entry_id: row.entry_id.0,
        rev: row.version_id.map(|v| v.0.to_string()),
        size: row.size.map(|s| s.max(0) as u64),
        content_hash: row.content_hash.map(|h| h.to_hex()),
        mtime: row.mtime,
        user_id: row.user_id.0,
        device_id: row.device_id.map(|d| d.0),
        at: row.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let positions = [Position {
            ns: NamespaceId(7),
            seq: JournalSeq(42),
        }];
        let text = encode_cursor(&positions);
        assert_eq!(text, "v1.7-42");
        assert_eq!(decode_cursor(&text).unwrap(), positions);
        for bad in [
            "", "v1.", "v2.7-42", "v1.7", "v1.7-x", "v1.0-1", "v1.7--1", "7-42",
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
