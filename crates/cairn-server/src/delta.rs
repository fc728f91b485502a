//! Delta endpoints: what changed after a cursor, and the cursor of the newest change.
//!
//! A cursor names a position in the journal of every namespace the caller reads: today
//! only the home namespace, later the shared folders mounted into it too. It is text,
//! opaque to clients: `v1.` followed by `NS-SEQ` pairs separated by commas. A cursor the
//! server cannot continue from (a namespace the caller cannot read, or a position past
//! the journal's end, as after the server's database was replaced) gets 410
//! `cursor_reset`: the client must list the tree again and take a new cursor.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use cairn_core::{JournalSeq, NamespaceId};
use cairn_meta::{ChangeKind, EntryKind, JournalEntry};
use cairn_proto as proto;
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::state::AppState;

/// Default and largest number of changes per answer.
const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

const CURSOR_PREFIX: &str = "v1.";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/delta", get(delta))
        .route("/delta/latest", get(latest))
}

#[derive(Debug, Deserialize)]
pub struct DeltaQuery {
    /// Without one, the changes from the journal's start.
    cursor: Option<String>,
    limit: Option<u32>,
}

/// A position in one namespace's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) ns: NamespaceId,
    pub(crate) seq: JournalSeq,
}

/// The cursor text for these positions.
pub(crate) fn encode_cursor(positions: &[Position]) -> String {
    let pairs: Vec<String> = positions
        .iter()
        .map(|p| format!("{}-{}", p.ns.0, p.seq.0))
        .collect();
    format!("{CURSOR_PREFIX}{}", pairs.join(","))
}

/// The positions a cursor names; 400 `invalid_cursor` for text this server never
/// hands out.
pub(crate) fn decode_cursor(cursor: &str) -> Result<Vec<Position>, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server hands out; take one from /api/v1/delta/latest",
        )
    };
    let pairs = cursor.strip_prefix(CURSOR_PREFIX).ok_or_else(invalid)?;
    pairs
        .split(',')
        .map(|pair| {
            let (ns, seq) = pair.split_once('-').ok_or_else(invalid)?;
            let ns: i64 = ns.parse().map_err(|_| invalid())?;
            let seq: i64 = seq.parse().map_err(|_| invalid())?;
            if ns < 1 || seq < 0 {
                return Err(invalid());
            }
            Ok(Position {
                ns: NamespaceId(ns),
                seq: JournalSeq(seq),
            })
        })
        .collect()
}

/// 410 `cursor_reset`: the client must list the tree again.
pub(crate) fn reset(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "cursor_reset",
        format!("{why}; list the tree again and take a new cursor from /api/v1/delta/latest"),
    )
}

/// Where to read from in the caller's home namespace: the cursor's position there, or
/// the journal's start.
fn start_position(auth: &AuthUser, cursor: Option<&str>) -> Result<Position, ApiError> {
    let home = auth.user.home_ns;
    let Some(cursor) = cursor else {
        return Ok(Position {
            ns: home,
            seq: JournalSeq(0),
        });
    };
    let positions = decode_cursor(cursor)?;
    match positions.as_slice() {
        [p] if p.ns == home => Ok(*p),
        _ => Err(reset(
            "the cursor names folders this account no longer reads",
        )),
    }
}

async fn delta(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<DeltaQuery>,
) -> ApiResult<Json<proto::DeltaResponse>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let start = start_position(&auth, q.cursor.as_deref())?;
    let head = state.meta.journal_head(start.ns).await?;
    if start.seq > head {
        return Err(reset(
            "the cursor is ahead of this server's journal (was its database replaced?)",
        ));
    }
    let rows = state.meta.journal_since(start.ns, start.seq, limit).await?;
    let last = rows.last().map_or(start.seq, |r| r.seq);
    Ok(Json(proto::DeltaResponse {
        has_more: last < head,
        cursor: encode_cursor(&[Position {
            ns: start.ns,
            seq: last,
        }]),
        changes: rows.iter().map(change_info).collect(),
    }))
}

async fn latest(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<proto::CursorResponse>> {
    let ns = auth.user.home_ns;
    let head = state.meta.journal_head(ns).await?;
    Ok(Json(proto::CursorResponse {
        cursor: encode_cursor(&[Position { ns, seq: head }]),
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
