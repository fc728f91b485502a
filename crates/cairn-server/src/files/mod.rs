//! File and folder endpoints: the tree ([`tree`]: list, stat, space, mkdir, move, copy,
//! delete), commits ([`commit`]: a block list committed one at a time or in a batch, a
//! whole-file upload, versions and restore), content ([`content`]: a file's blocks, many
//! small files in one response, a download or a preview, with the headers of
//! [`disposition`]), and what the web interface reads besides: [`search`] by name,
//! [`zip`] of a selection, [`thumbnail`] of a picture. Here: the router and what the
//! parts share.

use axum::http::StatusCode;
use axum::Router;
use cairn_core::{ServerPath, VersionId};
use cairn_meta::{Actor, Entry, EntryKind};
use cairn_proto as proto;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::{Access, Need, Target};
use crate::convert::entry_info;
use crate::error::{ApiError, ApiResult};
use crate::routes::{endpoint, BodyLimit, Routes};
use crate::state::AppState;

mod commit;
mod content;
mod disposition;
mod search;
mod thumbnail;
mod tree;
mod zip;

use commit::{
    __path_commit, __path_commit_batch, __path_restore, __path_upload, __path_versions, commit,
    commit_batch, restore, upload, versions,
};
use content::{
    __path_content_batch, __path_download, __path_file_blocks, content_batch, download, file_blocks,
};
use search::{__path_search, search};
use thumbnail::{__path_thumbnail, thumbnail};
use tree::{
    __path_copy_entry, __path_delete, __path_list, __path_mkdir, __path_move_entry, __path_space,
    __path_stat, copy_entry, delete, list, mkdir, move_entry, space, stat,
};
use zip::{__path_zip_download, zip_download};

pub(crate) use commit::{block_refs, check_upload_fits, commit_blocks};
pub(crate) use content::block_body;
pub(crate) use disposition::SANDBOX_CSP;
pub(crate) use tree::{copy_path, delete_path, make_folder, move_path};

/// Refuses a batch request of more than [`proto::MAX_BATCH_ITEMS`] `what`.
fn check_batch_len(len: usize, what: &str) -> ApiResult<()> {
    if len > proto::MAX_BATCH_ITEMS {
        return Err(ApiError::bad_request(
            "too_many_items",
            format!(
                "a batch holds at most {} {what}, this one {len}; split it",
                proto::MAX_BATCH_ITEMS
            ),
        ));
    }
    Ok(())
}

pub fn router() -> Router<AppState> {
    Routes::api()
        .at(endpoint!(list))
        .at(endpoint!(stat))
        .at(endpoint!(search))
        .at(endpoint!(space))
        .at(endpoint!(mkdir))
        .at(endpoint!(move_entry))
        .at(endpoint!(copy_entry))
        .at(endpoint!(delete))
        .at(endpoint!(commit))
        .at_limited(
            BodyLimit::Bytes(proto::MAX_COMMIT_BATCH_BODY),
            endpoint!(commit_batch),
        )
        .at(endpoint!(file_blocks))
        .at(endpoint!(content_batch))
        .at(endpoint!(zip_download))
        .at(endpoint!(thumbnail))
        .at(endpoint!(versions))
        .at(endpoint!(restore))
        // The body is chunked as it streams in, so its size needs no cap here.
        .at_limited(BodyLimit::Streamed, endpoint!(download, upload))
        .build()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// The entry.
    #[param(value_type = proto::ApiPath)]
    path: String,
}

fn actor(access: &Access, device_name: String) -> Actor {
    Actor {
        user_id: access.auth.user.id,
        device_id: access.auth.device,
        device_name,
    }
}

/// The device name that conflict copies carry; only looked up when one may be made.
async fn device_name(state: &AppState, access: &Access) -> ApiResult<String> {
    let auth = &access.auth;
    Ok(match auth.device {
        Some(id) => state
            .meta
            .device(id)
            .await?
            .map(|d| d.name)
            .unwrap_or_else(|| auth.user.name.clone()),
        None => auth.user.name.clone(),
    })
}

fn parse_rev(rev: &str) -> ApiResult<VersionId> {
    proto::revision::parse(rev).map(VersionId).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_rev",
            format!("revision {rev:?} is not one this server issued"),
        )
    })
}

/// The entry at `path` of the caller's tree (a mount folder is the home's folder
/// entry), as the caller sees it.
pub(crate) async fn stat_existing(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
) -> ApiResult<(Target, Entry)> {
    let target = access.resolve(path, Need::Read)?;
    let (ns, inner) = match target.is_mount_point() {
        true => (access.home(), path),
        false => (target.ns, &target.path),
    };
    let entry = state
        .meta
        .stat(ns, inner)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{path} does not exist")))?;
    let entry = match target.is_mount_point() {
        true => entry,
        false => access.outer_entry(entry),
    };
    Ok((target, entry))
}

/// An entry for the wire, marked as a shared folder when it is a mount folder.
fn entry_view(access: &Access, entry: Entry) -> proto::EntryInfo {
    let mut info = entry_info(&entry);
    if entry.ns == access.home() {
        info.shared = access
            .mounts()
            .iter()
            .find(|m| m.mount_entry == entry.id)
            .map(shared_info);
    }
    info
}

fn shared_info(m: &cairn_meta::Membership) -> proto::SharedInfo {
    proto::SharedInfo {
        owner: m.owner_name.clone(),
        role: m.role.as_str().to_owned(),
    }
}

fn file_rev(entry: &Entry) -> ApiResult<VersionId> {
    match (entry.kind, entry.rev) {
        (EntryKind::File, Some(rev)) => Ok(rev),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "is_a_folder",
            format!("{} is a folder, not a file", entry.path),
        )),
    }
}
