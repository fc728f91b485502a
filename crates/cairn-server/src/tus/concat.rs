//! The concatenation extension: a file sent as several parts at once, each a partial
//! upload (`Upload-Concat: partial`), then joined by a final upload
//! (`Upload-Concat: final;URL URL …`). A browser sends one stream at a time far slower
//! than it can send three, so the web interface uploads a large file this way.
//!
//! A file's blocks stay those that one continuous stream would have been cut into, so
//! its content hash does not depend on how it was uploaded (the sync client compares
//! that hash with the one it computes). Each part is cut as if a chunk started at its
//! first byte, and keeps the bytes after its last cut as its tail, even when complete.
//! Joining starts from the last true cut point before a part and cuts again, reading the
//! part's blocks back from the store, until a cut falls on one of the part's own cut
//! points: since a cut point depends only on the bytes after the previous one, the
//! part's cuts from there on are the stream's, and its remaining blocks are taken as
//! they are. That is usually the part's first block or two, so the memory a join needs
//! is bounded by two blocks, whatever the file's length.

use bytes::BytesMut;
use cairn_meta::{BlockRef, Upload, User};

use super::receive::cut_next;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The most parts one file may be joined from.
pub(super) const MAX_PARTS: usize = 64;

/// What `Upload-Concat` says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Concat {
    /// `partial`: this upload is a part of a file.
    Partial,
    /// `final;URL URL …`: the file is these parts (their ids), in order.
    Final(Vec<String>),
}

impl Concat {
    /// Parses the header's value; each URL is an upload's (absolute, or a path), and
    /// only its last segment, the id, matters.
    pub(super) fn parse(value: &str) -> ApiResult<Self> {
        let bad =
            |why: String| ApiError::bad_request("invalid_concat", format!("Upload-Concat: {why}"));
        if value.trim() == "partial" {
            return Ok(Concat::Partial);
        }
        let Some(urls) = value.trim().strip_prefix("final;") else {
            return Err(bad(format!(
                "{value:?} is neither `partial` nor `final;URL URL …`"
            )));
        };
        let mut ids = Vec::new();
        for url in urls.split_ascii_whitespace() {
            let id = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            if !url.contains("/tus/") || id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(bad(format!("{url:?} is not an upload's URL")));
            }
            if ids.iter().any(|seen| seen == id) {
                return Err(bad(format!("{url:?} is named twice")));
            }
            ids.push(id.to_owned());
        }
        match ids.len() {
            0 => Err(bad("a final upload names no part".into())),
            n if n > MAX_PARTS => Err(bad(format!(
                "{n} parts; a file is joined from {MAX_PARTS} at most"
            ))),
            _ => Ok(Concat::Final(ids)),
        }
    }
}

/// The blocks of the file made of `parts` (complete partial uploads, in order), cut as
/// one stream would have been; blocks cut anew are stored for `user`.
pub(super) async fn join(
    state: &AppState,
    user: &User,
    parts: &[Upload],
) -> ApiResult<Vec<BlockRef>> {
    let config = *state.blocks.chunker();
    let mut out: Vec<BlockRef> = Vec::new();
    // The bytes after the last true cut point: they start the next chunk.
    let mut buf = BytesMut::new();
    for part in parts {
        // Where each of the part's blocks ends, counted from the part's start.
        let ends: Vec<i64> = part
            .blocks
            .iter()
            .scan(0i64, |end, b| {
                *end += i64::from(b.size);
                Some(*end)
            })
            .collect();
        // Where `buf` starts, counted from the part's start.
        let mut at = -(buf.len() as i64);
        // The part's blocks read into `buf` so far.
        let mut fed = 0;
        // How many of the part's blocks lie before a cut that is also the stream's;
        // right away when the part starts at a true cut point.
        let mut synced = buf.is_empty().then_some(0);
        let mut tail_fed = false;
        while synced.is_none() {
            if let Some((hash, chunk)) = cut_next(&mut buf, config, false).await? {
                at += chunk.len() as i64;
                out.push(BlockRef {
                    hash,
                    size: chunk.len() as u32,
                });
                state.blocks.store_chunk(user, hash, chunk).await?;
                if let Some(j) = ends.iter().position(|&end| end == at) {
                    synced = Some(j + 1);
                }
            } else if fed < part.blocks.len() {
                buf.extend_from_slice(&state.blocks.read(part.blocks[fed].hash).await?);
                fed += 1;
            } else if !tail_fed {
                buf.extend_from_slice(&part.tail);
                tail_fed = true;
            } else {
                // The whole part is in `buf` after the last cut: it goes on in the next.
                break;
            }
        }
        if let Some(covered) = synced {
            // What `buf` still holds are the part's own blocks after the cut; they are
            // taken as they are, like the ones not read.
            buf.clear();
            out.extend_from_slice(&part.blocks[covered..]);
            buf.extend_from_slice(&part.tail);
        }
    }
    // The file ends here: the rest is its last blocks.
    while let Some((hash, chunk)) = match buf.is_empty() {
        true => None,
        false => cut_next(&mut buf, config, true).await?,
    } {
        out.push(BlockRef {
            hash,
            size: chunk.len() as u32,
        });
        state.blocks.store_chunk(user, hash, chunk).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Concat;

    #[test]
    fn parses_upload_concat() {
        assert_eq!(Concat::parse("partial").unwrap(), Concat::Partial);
        assert_eq!(
            Concat::parse("final;http://h:1/api/v1/tus/ab12 /api/v1/tus/cd34").unwrap(),
            Concat::Final(vec!["ab12".into(), "cd34".into()])
        );
        for bad in [
            "final;",
            "final;/api/v1/tus/ab /api/v1/tus/ab",
            "final;/api/v1/files/ab",
            "final;/api/v1/tus/zz",
            "whole",
        ] {
            assert!(Concat::parse(bad).is_err(), "{bad}");
        }
    }
}
