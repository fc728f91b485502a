//! A whole upload committed as a file, through the commit every other upload goes
//! through (`files::commit_blocks`: journaled, versioned, quota-checked, notified), with
//! the name its `onconflict` chooses.

use axum::http::StatusCode;
use cairn_core::ServerPath;
use cairn_meta::{BlockRef, EntryKind, OnConflict, Upload};

use super::metadata::Destination;
use crate::access::{Access, Need};
use crate::error::{ApiError, ApiResult};
use crate::files::commit_blocks;
use crate::state::AppState;

/// How many names `rename` tries (`a (1).jpg` … `a (N).jpg`) before it gives up.
const RENAME_ATTEMPTS: u32 = 1000;

/// Commits the complete upload as a file, removes the upload, and returns the file's
/// path in the caller's tree.
pub(super) async fn finish(
    state: &AppState,
    access: &Access,
    upload: &Upload,
) -> ApiResult<String> {
    let dest = Destination {
        path: ServerPath::parse(&upload.path)?,
        on_conflict: upload.on_conflict,
        mtime: upload.mtime,
    };
    let committed = commit(state, access, &dest, upload.blocks.clone()).await?;
    state.meta.delete_upload(&upload.id).await?;
    Ok(committed)
}

/// Commits `blocks` as the file `dest` names, with the name its `onconflict` chooses;
/// returns the file's path in the caller's tree.
pub(super) async fn commit(
    state: &AppState,
    access: &Access,
    dest: &Destination,
    blocks: Vec<BlockRef>,
) -> ApiResult<String> {
    let (path, mtime) = (&dest.path, dest.mtime);
    match dest.on_conflict {
        OnConflict::Fail => commit_new(state, access, path, blocks, mtime).await,
        OnConflict::Replace => replace(state, access, path, blocks, mtime).await,
        OnConflict::Rename => rename(state, access, path, blocks, mtime).await,
    }
}

/// Commits at `path`, which must be free.
async fn commit_new(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
    blocks: Vec<BlockRef>,
    mtime: Option<i64>,
) -> ApiResult<String> {
    let target = access.resolve(path, Need::Write)?;
    let response = commit_blocks(state, access, &target, blocks, None, false, mtime).await?;
    Ok(response.entry.path)
}

/// Commits a new version of the file at `path` (or the first one); a commit that races
/// another writer is tried again on top of it.
async fn replace(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
    blocks: Vec<BlockRef>,
    mtime: Option<i64>,
) -> ApiResult<String> {
    let target = access.resolve(path, Need::Write)?;
    let mut last = None;
    for _ in 0..3 {
        let base = match state.meta.stat(target.ns, &target.path).await? {
            Some(e) if e.kind == EntryKind::File => e.rev,
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "is_a_folder",
                    format!("{path} is a folder; a file cannot replace it"),
                ))
            }
            None => None,
        };
        match commit_blocks(state, access, &target, blocks.clone(), base, false, mtime).await {
            Ok(response) => return Ok(response.entry.path),
            Err(err) if err.status == StatusCode::CONFLICT && err.code == "conflict" => {
                last = Some(err)
            }
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::internal("replace gave up")))
}

/// Commits at `path`, or, when it is taken, at the first free `NAME (N).EXT`.
async fn rename(
    state: &AppState,
    access: &Access,
    path: &ServerPath,
    blocks: Vec<BlockRef>,
    mtime: Option<i64>,
) -> ApiResult<String> {
    let parent = path.parent().unwrap_or_else(ServerPath::root);
    let name = path.name().unwrap_or_default();
    for n in 0..RENAME_ATTEMPTS {
        let candidate = match n {
            0 => path.clone(),
            n => match parent.join(&numbered(name, n)) {
                Ok(p) => p,
                // Too long with the number: no numbered name will fit.
                Err(_) => break,
            },
        };
        let target = access.resolve(&candidate, Need::Write)?;
        if state.meta.stat(target.ns, &target.path).await?.is_some() {
            continue;
        }
        match commit_blocks(state, access, &target, blocks.clone(), None, false, mtime).await {
            Ok(response) => return Ok(response.entry.path),
            // Taken meanwhile: the next number.
            Err(err) if err.status == StatusCode::CONFLICT => continue,
            Err(err) => return Err(err),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "already_exists",
        format!("{path} and the names numbered after it are taken"),
    ))
}

/// `a.jpg` → `a (N).jpg`; `.profile` → `.profile (N)`; `a.tar.gz` → `a (N).tar.gz`.
fn numbered(name: &str, n: u32) -> String {
    let cut = if let Some(stem) = name.strip_suffix(".tar.gz") {
        stem.len()
    } else {
        match name.rfind('.') {
            Some(0) | None => name.len(),
            Some(dot) => dot,
        }
    };
    format!("{} ({n}){}", &name[..cut], &name[cut..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_names() {
        assert_eq!(super::numbered("a.jpg", 1), "a (1).jpg");
        assert_eq!(super::numbered("a", 2), "a (2)");
        assert_eq!(super::numbered(".profile", 1), ".profile (1)");
        assert_eq!(super::numbered("x.tar.gz", 3), "x (3).tar.gz");
    }
}
