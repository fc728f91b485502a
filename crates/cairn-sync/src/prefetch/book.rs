//! The prefetcher's decisions, without I/O: which uploads to start on, which blocks to
//! fetch, which upload a download may take, and when one is over. The real
//! [`super::Prefetcher`] runs it against the server and a temp file; the simulation
//! runs it against its model, with lost requests, crashes and abandoned uploads.

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::{BlockHash, ContentHash, ServerPath};

/// How long the blocks of an upload that left the server's list are kept, in ms: its
/// commit may still be on its way (the uploader ends the upload right after
/// committing, so the list can say so before the commit's notification is acted on).
pub const LINGER_MS: i64 = 10_000;

/// An upload in progress as the server lists it, already mapped into the sync folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub path: ServerPath,
    pub content_hash: ContentHash,
    pub blocks: Vec<(BlockHash, u32)>,
    /// The blocks the server holds now.
    pub stored: BTreeSet<BlockHash>,
    /// The server's expiry, in the book's clock (Unix ms for the real one).
    pub expires_at: i64,
}

/// What a download takes over: the upload's id (its temp file), the block list it was
/// laid out for and the blocks written to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub blocks: Vec<(BlockHash, u32)>,
    pub held: BTreeSet<BlockHash>,
}

#[derive(Debug, Clone)]
struct Tracked {
    path: ServerPath,
    content_hash: ContentHash,
    blocks: Vec<(BlockHash, u32)>,
    held: BTreeSet<BlockHash>,
    fetching: BTreeSet<BlockHash>,
    expires_at: i64,
    /// When the server's list first left it out.
    gone_since: Option<i64>,
}

/// What a reading of the list calls for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Work {
    /// Uploads new to the book: make their temp files (or [`Book::forget`] them).
    pub started: Vec<String>,
    /// Blocks to fetch now; report each with [`Book::fetched`].
    pub fetch: Vec<(String, BlockHash)>,
}

/// The uploads being fetched, and what is known of each.
#[derive(Debug, Default, Clone)]
pub struct Book {
    uploads: BTreeMap<String, Tracked>,
}

impl Book {
    /// Takes in the server's list, read at `now`: starts on new uploads (of
    /// `min_size` bytes or more), asks for the blocks stored since, and marks those no
    /// longer listed.
    pub fn listed(&mut self, listed: Vec<Listed>, min_size: u64, now: i64) -> Work {
        let mut work = Work::default();
        let mut seen = BTreeSet::new();
        for upload in listed {
            let size: u64 = upload.blocks.iter().map(|(_, s)| u64::from(*s)).sum();
            if !self.uploads.contains_key(&upload.id) {
                if size < min_size {
                    continue;
                }
                work.started.push(upload.id.clone());
                self.uploads.insert(
                    upload.id.clone(),
                    Tracked {
                        path: upload.path,
                        content_hash: upload.content_hash,
                        blocks: upload.blocks,
                        held: BTreeSet::new(),
                        fetching: BTreeSet::new(),
                        expires_at: upload.expires_at,
                        gone_since: None,
                    },
                );
            }
            let tracked = self.uploads.get_mut(&upload.id).expect("inserted above");
            seen.insert(upload.id.clone());
            tracked.expires_at = upload.expires_at;
            tracked.gone_since = None;
            for hash in upload.stored {
                let listed = tracked.blocks.iter().any(|(h, _)| *h == hash);
                if listed && !tracked.held.contains(&hash) && tracked.fetching.insert(hash) {
                    work.fetch.push((upload.id.clone(), hash));
                }
            }
        }
        for (id, tracked) in &mut self.uploads {
            if !seen.contains(id) {
                tracked.gone_since.get_or_insert(now);
            }
        }
        work
    }

    /// Forgets an upload just started whose temp file could not be made.
    pub fn forget(&mut self, id: &str) {
        self.uploads.remove(id);
    }

    /// Says how the fetch of `hash` for `id` went. Returns whether its bytes may be
    /// written now: `false` once the upload was claimed or dropped (the caller writes
    /// nothing then), or when the fetch failed (it is asked for again at the next
    /// reading of the list).
    pub fn fetched(&mut self, id: &str, hash: BlockHash, ok: bool) -> bool {
        let Some(tracked) = self.uploads.get_mut(id) else {
            return false;
        };
        tracked.fetching.remove(&hash);
        if ok {
            tracked.held.insert(hash);
        }
        ok
    }

    /// The upload a download of `path` with content `hash` takes over, removed from the
    /// book: one announced for exactly that content there.
    pub fn claim(&mut self, path: &ServerPath, hash: &ContentHash) -> Option<Claimed> {
        let id = self
            .uploads
            .iter()
            .find(|(_, t)| t.path == *path && t.content_hash == *hash)?
            .0
            .clone();
        let tracked = self.uploads.remove(&id)?;
        Some(Claimed {
            id,
            blocks: tracked.blocks,
            held: tracked.held,
        })
    }

    /// Removes and returns the uploads that are over at `now`: expired, or left out of
    /// the list for [`LINGER_MS`].
    pub fn over(&mut self, now: i64) -> Vec<String> {
        let over: Vec<String> = self
            .uploads
            .iter()
            .filter(|(_, t)| {
                t.expires_at <= now || t.gone_since.is_some_and(|gone| now >= gone + LINGER_MS)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &over {
            self.uploads.remove(id);
        }
        over
    }

    /// When the next upload will be over, if any is being fetched.
    pub fn next_over(&self) -> Option<i64> {
        self.uploads
            .values()
            .map(|t| match t.gone_since {
                Some(gone) => t.expires_at.min(gone + LINGER_MS),
                None => t.expires_at,
            })
            .min()
    }

    /// Uploads being fetched.
    pub fn len(&self) -> usize {
        self.uploads.len()
    }

    /// Whether nothing is being fetched.
    pub fn is_empty(&self) -> bool {
        self.uploads.is_empty()
    }

    /// Whether `id` is being fetched.
    pub fn tracks(&self, id: &str) -> bool {
        self.uploads.contains_key(id)
    }

    /// Each distinct block of `id` with every offset the file has it at.
    pub fn layout(&self, id: &str) -> Option<BTreeMap<BlockHash, (u32, Vec<u64>)>> {
        let tracked = self.uploads.get(id)?;
        let mut layout: BTreeMap<BlockHash, (u32, Vec<u64>)> = BTreeMap::new();
        let mut offset = 0u64;
        for (hash, size) in &tracked.blocks {
            layout
                .entry(*hash)
                .or_insert((*size, Vec::new()))
                .1
                .push(offset);
            offset += u64::from(*size);
        }
        Some(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(id: &str, blocks: &[&[u8]], stored: usize, expires_at: i64) -> Listed {
        let blocks: Vec<(BlockHash, u32)> = blocks
            .iter()
            .map(|b| (BlockHash::of(b), b.len() as u32))
            .collect();
        Listed {
            id: id.into(),
            path: ServerPath::parse("/big.bin").unwrap(),
            content_hash: cairn_core::content_hash(blocks.iter().map(|(h, _)| h)),
            stored: blocks.iter().take(stored).map(|(h, _)| *h).collect(),
            blocks,
            expires_at,
        }
    }

    #[test]
    fn stored_blocks_are_fetched_once_and_a_download_takes_what_is_held() {
        let mut book = Book::default();
        let parts: [&[u8]; 3] = [b"one", b"two", b"three"];
        let work = book.listed(vec![upload("u", &parts, 1, 100)], 0, 0);
        assert_eq!(work.started, ["u"]);
        assert_eq!(work.fetch, [("u".to_owned(), BlockHash::of(b"one"))]);
        // In flight: not asked for again.
        let work = book.listed(vec![upload("u", &parts, 2, 100)], 0, 1);
        assert_eq!(work.fetch, [("u".to_owned(), BlockHash::of(b"two"))]);
        assert!(book.fetched("u", BlockHash::of(b"one"), true));
        // A failed fetch is asked for again.
        assert!(!book.fetched("u", BlockHash::of(b"two"), false));
        let work = book.listed(vec![upload("u", &parts, 2, 100)], 0, 2);
        assert_eq!(work.fetch, [("u".to_owned(), BlockHash::of(b"two"))]);
        let listed = upload("u", &parts, 2, 100);
        let claimed = book
            .claim(&listed.path, &listed.content_hash)
            .expect("the download takes it");
        assert_eq!(claimed.held, BTreeSet::from([BlockHash::of(b"one")]));
        // Claimed: what is still in flight is not written.
        assert!(!book.fetched("u", BlockHash::of(b"two"), true));
        assert!(book.is_empty());
    }

    #[test]
    fn another_content_at_the_path_is_not_taken() {
        let mut book = Book::default();
        let listed = upload("u", &[b"a", b"b"], 2, 100);
        book.listed(vec![listed.clone()], 0, 0);
        let other = upload("v", &[b"c"], 0, 100);
        assert_eq!(book.claim(&listed.path, &other.content_hash), None);
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn uploads_end_when_they_expire_or_linger_unlisted() {
        let mut book = Book::default();
        book.listed(
            vec![
                upload("a", &[b"a"], 0, 50),
                upload("b", &[b"b"], 0, 1_000_000),
            ],
            0,
            0,
        );
        assert_eq!(book.next_over(), Some(50));
        assert_eq!(book.over(49), Vec::<String>::new());
        assert_eq!(book.over(50), ["a"]);
        // "b" leaves the list at 60: kept for the linger, then over.
        book.listed(Vec::new(), 0, 60);
        assert_eq!(book.next_over(), Some(60 + LINGER_MS));
        assert!(book.over(60 + LINGER_MS - 1).is_empty());
        // Listed again meanwhile, it would have stayed; it was not.
        assert_eq!(book.over(60 + LINGER_MS), ["b"]);
        assert!(book.is_empty());
    }

    #[test]
    fn small_uploads_are_left_alone() {
        let mut book = Book::default();
        let work = book.listed(vec![upload("u", &[b"tiny"], 1, 100)], 1024, 0);
        assert_eq!(work, Work::default());
        assert!(book.is_empty());
    }
}
