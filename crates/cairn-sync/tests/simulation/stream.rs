//! Streaming sync and sub-block deltas in the simulation.
//!
//! **Streaming.** An upload may be announced before its blocks go (as the real client
//! does for large files), its blocks stored in steps, and then committed, or abandoned
//! midway by a crash or a failed request. Each device runs the real prefetcher's
//! decisions ([`cairn_sync::prefetch::Book`]) whenever a notification reaches it (as a
//! step of its own, and racing other devices' calls): it reads the uploads it may see,
//! fetches stored blocks (the fetches complete later, in any order, or fail), claims
//! what it holds when the engine downloads the committed file, and drops what is over.
//! The invariants: a block written ahead belongs to the upload it was fetched for and
//! was stored when fetched; a download takes only blocks of exactly the content it
//! downloads; nothing is written for an upload once it was claimed or dropped; and
//! once uploads have expired, no device holds anything fetched ahead.
//!
//! **Deltas.** A file's content stands for a list of blocks with real bytes, some of
//! which consecutive contents share. When a download replaces a file, or an upload
//! replaces a version, each changed block goes as a delta from the old block that
//! [`cairn_core::delta::pick_bases`] picks: a zstd patch down, an rsync delta up, made
//! and rebuilt with the real codecs, sometimes corrupted on the way or refused because
//! the server collected the base. The invariant: [`cairn_core::delta::rebuild`] accepts
//! exactly the block's bytes, or nothing (and the block then goes whole).

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::delta::{self, Form};
use cairn_core::{BlockHash, ServerPath};
use cairn_sync::prefetch::{fetch_ahead, Book, Listed};
use rand::Rng;

use crate::server::{content_hash, Content};
use crate::world::World;

/// How long an announced upload lives after its last block, in the world's clock
/// (milliseconds: [`World::tick`] moves it by 1,000 a write).
pub const GRACE: i64 = 20_000;

/// The bytes of each block a simulated block may hold: enough for real deltas.
const BLOCK_BYTES: usize = 2048;

/// Block `i` of content `content`: even blocks are the same in every content (the
/// parts an edit leaves alone); odd ones are the same pattern with a few bytes of
/// their own (an edit inside the block), so a delta from another content's block is
/// small.
pub fn block_bytes(content: Content, i: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..BLOCK_BYTES)
        .map(|j| ((j as u64).wrapping_mul(2_654_435_761) >> 7 ^ i as u64) as u8)
        .collect();
    if i % 2 == 1 {
        let at = (content as usize * 37) % (BLOCK_BYTES - 8);
        bytes[at..at + 8].copy_from_slice(&content.to_le_bytes());
    }
    bytes
}

/// The blocks of `content`, in order: one to four. Each is listed as
/// [`delta::DELTA_MIN_BLOCK`] bytes, the smallest block a delta is tried for, though
/// its bytes are [`BLOCK_BYTES`]: a scale model, which is all the codecs need.
pub fn blocks(content: Content) -> Vec<(BlockHash, u32)> {
    (0..1 + content as usize % 4)
        .map(|i| {
            (
                BlockHash::of(&block_bytes(content, i)),
                delta::DELTA_MIN_BLOCK,
            )
        })
        .collect()
}

/// An announced upload on the simulated server.
#[derive(Debug, Clone)]
pub struct Pending {
    pub uploader: usize,
    pub path: ServerPath,
    pub content: Content,
    /// How many of its blocks are stored (they go in order).
    pub stored: usize,
    pub expires_at: i64,
}

/// Each device's prefetcher: the real decisions, and what it wrote ahead.
#[derive(Debug, Default, Clone)]
pub struct Prefetch {
    pub book: Book,
    /// Per upload id: the blocks written to its temp file.
    pub staged: BTreeMap<String, BTreeSet<BlockHash>>,
    /// Fetches sent and not answered yet.
    pub in_flight: Vec<(String, BlockHash)>,
}

/// The server's side: announced uploads, by id.
#[derive(Debug, Default)]
pub struct Uploads {
    pub pending: BTreeMap<String, Pending>,
    next: u64,
}

impl Uploads {
    pub fn announce(
        &mut self,
        uploader: usize,
        path: &ServerPath,
        content: Content,
        now: i64,
    ) -> String {
        self.next += 1;
        let id = format!("u{}", self.next);
        self.pending.insert(
            id.clone(),
            Pending {
                uploader,
                path: path.clone(),
                content,
                stored: 0,
                expires_at: now + GRACE,
            },
        );
        id
    }

    /// Stores the upload's blocks up to `upto`; false when it is gone or expired.
    pub fn store(&mut self, id: &str, upto: usize, now: i64) -> bool {
        match self.pending.get_mut(id) {
            Some(p) if p.expires_at > now => {
                p.stored = p.stored.max(upto);
                p.expires_at = now + GRACE;
                true
            }
            _ => false,
        }
    }

    /// What `dev` is shown: others' unexpired uploads.
    fn listed_for(&self, dev: usize, now: i64) -> Vec<Listed> {
        self.pending
            .iter()
            .filter(|(_, p)| p.uploader != dev && p.expires_at > now)
            .map(|(id, p)| {
                let blocks = blocks(p.content);
                Listed {
                    id: id.clone(),
                    path: p.path.clone(),
                    content_hash: content_hash(p.content),
                    stored: blocks.iter().take(p.stored).map(|(h, _)| *h).collect(),
                    blocks,
                    expires_at: p.expires_at,
                }
            })
            .collect()
    }

    /// Whether block `hash` of upload `id` can be fetched now.
    fn serves(&self, id: &str, hash: &BlockHash, now: i64) -> bool {
        self.pending.get(id).is_some_and(|p| {
            p.expires_at > now
                && blocks(p.content)
                    .iter()
                    .take(p.stored)
                    .any(|(h, _)| h == hash)
        })
    }
}

/// A notification about uploads reaches `dev`: fetches sent earlier come back (some,
/// in any order), the list is read, and what is over is dropped.
pub fn prefetch_step(w: &mut World, dev: usize) -> String {
    if w.devices[dev].offline || w.devices[dev].crashed {
        return format!("dev{dev} prefetch: not running");
    }
    let now = w.clock * 1_000;
    let mut did = Vec::new();
    // Answers to earlier fetches.
    let mut flight = std::mem::take(&mut w.prefetch[dev].in_flight);
    let mut left = Vec::new();
    while !flight.is_empty() {
        let (id, hash) = flight.swap_remove(w.rng.gen_range(0..flight.len()));
        if w.rng.gen_bool(0.3) {
            left.push((id, hash));
            continue;
        }
        let ok = !w.chance(w.faults.drop_response) && w.server.uploads.serves(&id, &hash, now);
        let p = &mut w.prefetch[dev];
        let write = ok && p.book.tracks(&id);
        if write {
            p.staged.entry(id.clone()).or_default().insert(hash);
        }
        p.book.fetched(&id, hash, write);
        did.push(format!(
            "fetched {id}/{} {}",
            &hash.to_hex()[..6],
            if write { "written" } else { "not written" }
        ));
        if write {
            let content = w.server.uploads.pending[&id].content;
            if !blocks(content).iter().any(|(h, _)| *h == hash) {
                w.violation(format!("dev{dev} wrote a block not of upload {id}"));
            }
        }
    }
    w.prefetch[dev].in_flight = left;
    // The list.
    if !w.chance(w.faults.drop_request) {
        let mut listed = w.server.uploads.listed_for(dev, now);
        // As the daemon does: of a new version of a file the device has, only blocks
        // its copy neither has nor has a base for are fetched ahead.
        for upload in &mut listed {
            if let Some(content) = w.disks[dev].nodes.get(&upload.path).and_then(|n| n.content) {
                let stored = std::mem::take(&mut upload.stored);
                upload.stored = fetch_ahead(&blocks(content), &upload.blocks, stored);
            }
        }
        let work = w.prefetch[dev].book.listed(listed, 0, now);
        for id in work.started {
            // The temp file could not be made (no space, say).
            if w.chance(w.faults.drop_request / 2.0) {
                w.prefetch[dev].book.forget(&id);
                did.push(format!("no temp file for {id}"));
                continue;
            }
            w.prefetch[dev].staged.insert(id.clone(), BTreeSet::new());
            did.push(format!("started {id}"));
        }
        let p = &mut w.prefetch[dev];
        for (id, hash) in work.fetch {
            // A fetch of an upload the temp file of which was not made is not sent.
            if p.staged.contains_key(&id) {
                p.in_flight.push((id, hash));
            } else {
                p.book.fetched(&id, hash, false);
            }
        }
    }
    let p = &mut w.prefetch[dev];
    for id in p.book.over(now) {
        p.staged.remove(&id);
        did.push(format!("dropped {id}"));
    }
    format!("dev{dev} prefetch: {}", did.join(", "))
}

/// The engine downloads `content` to `path` on `dev`: the prefetcher's temp file for it,
/// if any, is taken; checks it holds only blocks of that content.
pub fn claim(w: &mut World, dev: usize, path: &ServerPath, content: Content) -> usize {
    let Some(claimed) = w.prefetch[dev].book.claim(path, &content_hash(content)) else {
        return 0;
    };
    let written = w.prefetch[dev]
        .staged
        .remove(&claimed.id)
        .unwrap_or_default();
    let expected = blocks(content);
    if claimed.blocks != expected {
        w.violation(format!(
            "dev{dev} claimed {} for another content",
            claimed.id
        ));
    }
    if !claimed.held.is_subset(&written) {
        w.violation(format!(
            "dev{dev}: {} says it holds blocks it never wrote",
            claimed.id
        ));
    }
    if written
        .iter()
        .any(|h| !expected.iter().any(|(e, _)| e == h))
    {
        w.violation(format!(
            "dev{dev}: {} holds a block of another content",
            claimed.id
        ));
    }
    claimed.held.len()
}

/// Once every upload has expired: no device holds anything fetched ahead.
pub fn check_drained(w: &mut World) -> Result<(), String> {
    w.clock += (GRACE + cairn_sync::prefetch::LINGER_MS) / 1_000 + 1;
    let now = w.clock * 1_000;
    w.server.uploads.pending.retain(|_, p| p.expires_at > now);
    for dev in 0..w.devices.len() {
        prefetch_step(w, dev);
        // Fetches still out come back empty (the uploads are gone).
        for (id, hash) in std::mem::take(&mut w.prefetch[dev].in_flight) {
            if w.prefetch[dev].book.fetched(&id, hash, false) {
                return Err(format!("dev{dev}: a failed fetch counted as written"));
            }
        }
        let p = &w.prefetch[dev];
        if !p.book.is_empty() || !p.staged.is_empty() {
            return Err(format!(
                "dev{dev} still holds blocks fetched ahead after every upload expired: {:?}",
                p.staged.keys().collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// One block sent as a delta from `base` (contents and block indices), perhaps
/// corrupted on the way or refused for a base the server no longer holds; `true` if
/// the delta was accepted, `false` if the block had to go whole. Checks that whatever
/// was accepted is exactly the block.
fn one_delta(w: &mut World, form: Form, base: &[u8], new: &[u8]) -> bool {
    let expected = BlockHash::of(new);
    let mut body = match form {
        Form::Patch => match delta::patch_encode(base, new) {
            Some(patch) => patch,
            None => return false,
        },
        Form::Rsync => {
            let signature = delta::signature(base);
            match delta::rsync_diff(&signature, new, BLOCK_BYTES) {
                Ok(diff) => diff,
                Err(_) => return false,
            }
        }
        Form::Whole => new.to_vec(),
    };
    if !body.is_empty() && w.chance(w.faults.drop_response) {
        let at = w.rng.gen_range(0..body.len());
        body[at] ^= 1 << w.rng.gen_range(0..8);
    }
    match delta::rebuild(form, base, &body, expected, BLOCK_BYTES) {
        Ok(rebuilt) if rebuilt == new => true,
        Ok(_) => {
            w.violation("a delta was accepted for bytes other than its block".to_owned());
            false
        }
        Err(_) => false,
    }
}

/// The changed blocks of `new` replacing `old`, each sent as a delta from its base
/// (`form`); returns (blocks sent as deltas, blocks sent whole).
pub fn replace(w: &mut World, form: Form, old: Content, new: Content) -> (usize, usize) {
    let (old_blocks, new_blocks) = (blocks(old), blocks(new));
    let bases = delta::pick_bases(&old_blocks, &new_blocks);
    let (mut deltas, mut whole) = (0, 0);
    for (i, ((hash, _), base)) in new_blocks.iter().zip(bases).enumerate() {
        if old_blocks.iter().any(|(h, _)| h == hash) {
            continue;
        }
        let Some(at) = base else {
            whole += 1;
            continue;
        };
        // The base was collected on the server meanwhile: the block goes whole.
        if w.chance(w.faults.drop_request / 2.0) {
            whole += 1;
            continue;
        }
        let (base_bytes, new_bytes) = (block_bytes(old, at), block_bytes(new, i));
        if old_blocks[at].0 != BlockHash::of(&base_bytes) {
            w.violation("pick_bases chose a block the old version does not have".to_owned());
        }
        if one_delta(w, form, &base_bytes, &new_bytes) {
            deltas += 1;
        } else {
            whole += 1;
        }
    }
    (deltas, whole)
}
