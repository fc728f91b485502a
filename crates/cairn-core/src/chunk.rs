//! Content-defined chunking (FastCDC) with BLAKE3 block hashes.
//!
//! A file is cut into blocks at positions chosen by its content, so that an insert or a
//! delete inside a file changes only the blocks around the edit and every other block
//! keeps its name (its BLAKE3 hash) and deduplicates.
//!
//! # The cut-point rule is part of the storage format
//!
//! Block names are hashes of chunk contents, so two versions of Cairn that cut the same
//! file differently store it twice and send it twice. Everything below is therefore frozen;
//! a change needs a new, versioned rule, never an edit of this one.
//!
//! - The gear table [`GEAR`] is the first 256 outputs of SplitMix64 seeded with 0.
//! - For a chunk starting at byte 0 of `data`, with `n = data.len()`: if `n <= min`, the
//!   chunk is all of `data`. Otherwise the hash starts at `h = 0` and, for each position
//!   `i` in `min..min(n, max)`, `h = (h << 1) + GEAR[data[i]]` (wrapping, 64 bits). The
//!   chunk ends after byte `i` (its length is `i + 1`) at the first `i` where
//!   `h & mask == 0`, with `mask = MASK_S` while `i < avg` and `mask = MASK_L` from `avg`
//!   on. If no position matches, the chunk is `min(n, max)` bytes long.
//! - With `b = log2(avg)`, `MASK_S` is the top `b + 2` bits of a `u64` set and `MASK_L`
//!   the top `b - 2` bits: FastCDC's normalized chunking at level 2 ("NC2"), which keeps
//!   chunk sizes close to `avg`. The top bits are used because bit `k` of the hash depends
//!   on the last `k + 1` bytes, so the top bits see a window of about 64 bytes.
//!
//! This is the rule of FastCDC 2020 (Xia et al.), with its own gear table and masks: it
//! does not produce the same cut points as the `fastcdc` crate.
//!
//! # Speed
//!
//! The rule above updates the hash one byte at a time, which as written is a chain of two
//! dependent instructions per byte. [`find_cut`] computes the same hashes four bytes at a
//! time (`h[i+4] = (h[i] << 4) + (g0 << 3) + (g1 << 2) + (g2 << 1) + g3`, where the sum of
//! the table values does not depend on `h`), which shortens the chain and lets the CPU
//! work on several bytes at once; and it never looks at the first `min` bytes of a chunk.
//!
//! [`chunk_and_hash`] reads and searches for cut points on the calling thread and hashes
//! on a second one, with at most two chunks in flight between them. The reading side
//! reuses a pool of fixed-size read buffers, so it never waits on fresh pages from the
//! kernel; the hashing side, which has time to spare, copies each chunk out of them into
//! a vector of its own for the sink. On the 2-core development machine this chunks and
//! hashes a 1 GiB file from the page cache in about 0.36-0.40 s, 40-45% of the speed of
//! `b3sum --num-threads 1`, which only hashes (`examples/chunk_bench.rs --read`): the
//! `read` copy and the copy into vectors cost about 0.1 s each.
//!
//! [`chunk_and_hash_parallel_slice`] takes the input as one slice (a memory-mapped file,
//! say) and so copies nothing, and splits the work by position instead of by stage: a
//! second thread chunks and hashes the second half as if a chunk started at its
//! midpoint, and the calling thread joins that chain where its own meets it, a few
//! chunks past the midpoint. Both cores then do the same work (cut search and hashing,
//! about 0.45 s of CPU per GiB together): about 0.22 s per GiB, 70-75% of `b3sum`'s
//! speed (`examples/chunk_bench.rs`, which maps the file).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

use crate::hash::{content_hash, BlockHash, ContentHash};

/// Chunk size bounds. Defaults: min 1 MiB, average 4 MiB, max 8 MiB.
///
/// The sizes shape block boundaries as much as the cut-point rule does: a file chunked
/// with other sizes shares few blocks with its old version, so a server should keep one
/// configuration for its lifetime. See [`ChunkerConfig::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// No chunk except the last of a file is shorter than this; the cut-point search
    /// skips these bytes entirely.
    pub min_size: usize,
    /// The size chunks aim for; a power of two.
    pub avg_size: usize,
    /// No chunk is longer than this.
    pub max_size: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            min_size: 1 << 20,
            avg_size: 4 << 20,
            max_size: 8 << 20,
        }
    }
}

/// A chunker configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunk sizes (min {min}, avg {avg}, max {max}): need 64 <= min <= avg <= max <= 1 GiB and avg a power of two")]
pub struct ChunkerConfigError {
    /// The rejected `min_size`.
    pub min: usize,
    /// The rejected `avg_size`.
    pub avg: usize,
    /// The rejected `max_size`.
    pub max: usize,
}

/// The largest accepted `max_size`. Chunk lengths are stored as `u32`, and a block must
/// fit in memory several times over (read buffer, hashing, upload).
pub const MAX_CHUNK_SIZE_LIMIT: usize = 1 << 30;

/// The smallest accepted `min_size`: below it the per-block overhead (a 32-byte hash, a
/// database row) outweighs the data. It also keeps `avg` at 64 or more, so the large
/// mask keeps at least 4 bits.
pub const MIN_CHUNK_SIZE_LIMIT: usize = 64;

impl ChunkerConfig {
    /// Checks that `64 <= min <= avg <= max <= 1 GiB` and that `avg` is a power of two.
    ///
    /// Every function here that chunks panics on a configuration this rejects, so check
    /// configurations where they enter the program (config files, server handshake).
    pub fn validate(&self) -> Result<(), ChunkerConfigError> {
        let ok = MIN_CHUNK_SIZE_LIMIT <= self.min_size
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            && self.max_size <= MAX_CHUNK_SIZE_LIMIT
            && self.avg_size.is_power_of_two();
        if ok {
            Ok(())
        } else {
            Err(ChunkerConfigError {
                min: self.min_size,
                avg: self.avg_size,
                max: self.max_size,
            })
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-known generator, so anyone can
/// rebuild the gear table from its description.
const fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state: u64 = 0;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// The gear table: one random 64-bit value per byte value, the first 256 outputs of
/// SplitMix64 seeded with 0. Part of the storage format (see the module docs): never
/// change it.
pub static GEAR: [u64; 256] = gear_table();

/// A `u64` with its top `bits` bits set.
const fn top_bits(bits: u32) -> u64 {
    !0u64 << (64 - bits)
}

/// A validated configuration with its masks, ready for scanning.
#[derive(Debug, Clone, Copy)]
struct Cutter {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl Cutter {
    fn new(config: &ChunkerConfig) -> Self {
        if let Err(err) = config.validate() {
            panic!("{err}");
        }
        let bits = config.avg_size.trailing_zeros();
        Self {
            min: config.min_size,
            avg: config.avg_size,
            max: config.max_size,
            mask_s: top_bits(bits + 2),
            mask_l: top_bits(bits - 2),
        }
    }

    /// Continues the search for the end of the current chunk over `piece`, which holds
    /// the chunk's bytes at positions `at..at + piece.len()` (counted from the chunk's
    /// first byte). Pieces must come in order, without gaps; positions before
    /// `state.pos` are skipped. Returns the chunk's length if a position in `piece`
    /// matches; the caller decides the `max` cut, which needs no byte to match.
    fn scan_piece(&self, piece: &[u8], at: usize, state: &mut ScanState) -> Option<usize> {
        let limit = (at + piece.len()).min(self.max);
        for (end, mask) in [(self.avg.min(limit), self.mask_s), (limit, self.mask_l)] {
            if state.pos < end {
                debug_assert!(state.pos >= at, "pieces must be scanned in order");
                match scan(&piece[state.pos - at..end - at], state.hash, mask) {
                    Ok(len) => return Some(state.pos + len),
                    Err(hash) => {
                        state.hash = hash;
                        state.pos = end;
                    }
                }
            }
        }
        None
    }

    /// The length of the chunk that starts at `data[0]`: [`find_cut`] without the
    /// validation.
    fn cut(&self, data: &[u8]) -> usize {
        self.scan_piece(data, 0, &mut self.start())
            .unwrap_or(data.len().min(self.max))
    }

    fn start(&self) -> ScanState {
        ScanState {
            pos: self.min,
            hash: 0,
        }
    }
}

/// How far a cut-point search got: every position before `pos` was checked and did not
/// match, and `hash` is the gear hash up to `pos`.
#[derive(Debug, Clone, Copy)]
struct ScanState {
    pos: usize,
    hash: u64,
}

/// Runs the gear hash over `bytes`, starting from `hash`. Returns the length of the
/// prefix that ends at the first position where `hash & mask == 0`, or the final hash if
/// no position matches.
///
/// This is the hot loop of chunking, and it is limited by how many instructions the CPU
/// can issue per byte (about five here: load the byte, add its table value, shift, test,
/// branch). The byte-at-a-time rule is also a chain of two dependent instructions per
/// byte; to break it, bytes go in groups of four: the table values of a group are summed
/// into partial sums that do not depend on the running hash, so the loop-carried chain
/// is a shift and an add per four bytes and the four checks are independent. Two groups
/// per iteration halve the loop overhead. `chunks_exact` lets the compiler drop bounds
/// checks. On the 2-core AMD EPYC (Zen 4) development machine this scans cached data at
/// about 3.5 GB/s, against about 1.9 GB/s for the byte-at-a-time loop.
#[inline]
fn scan(bytes: &[u8], mut hash: u64, mask: u64) -> Result<usize, u64> {
    let mut octets = bytes.chunks_exact(8);
    let mut done = 0;
    for octet in &mut octets {
        for quad in octet.chunks_exact(4) {
            let g0 = GEAR[quad[0] as usize];
            let g1 = GEAR[quad[1] as usize];
            let g2 = GEAR[quad[2] as usize];
            let g3 = GEAR[quad[3] as usize];
            let s1 = (g0 << 1).wrapping_add(g1);
            let s2 = (s1 << 1).wrapping_add(g2);
            let s3 = (s2 << 1).wrapping_add(g3);
            let h0 = (hash << 1).wrapping_add(g0);
            let h1 = (hash << 2).wrapping_add(s1);
            let h2 = (hash << 3).wrapping_add(s2);
            let h3 = (hash << 4).wrapping_add(s3);
            if h0 & mask == 0 {
                return Ok(done + 1);
            }
            if h1 & mask == 0 {
                return Ok(done + 2);
            }
            if h2 & mask == 0 {
                return Ok(done + 3);
            }
            if h3 & mask == 0 {
                return Ok(done + 4);
            }
            hash = h3;
            done += 4;
        }
    }
    for &byte in octets.remainder() {
        hash = (hash << 1).wrapping_add(GEAR[byte as usize]);
        done += 1;
        if hash & mask == 0 {
            return Ok(done);
        }
    }
    Err(hash)
}

/// The length of the chunk that starts at `data[0]`, by the rule in the module docs.
///
/// `data` should hold at least `config.max_size` bytes unless it is the end of the
/// input: a result equal to `data.len()` (when that is below `max_size`) may mean "no
/// cut yet" rather than a cut. The result is `data.len()` when `data` is at most
/// `min_size` bytes (including empty input), and never more than `max_size`.
///
/// # Panics
///
/// If `config` fails [`ChunkerConfig::validate`].
pub fn find_cut(data: &[u8], config: &ChunkerConfig) -> usize {
    Cutter::new(config).cut(data)
}

/// One chunk of a file, as [`chunk_and_hash`] hands it to its sink.
pub struct Chunk {
    /// Where the chunk starts in the file.
    pub offset: u64,
    /// BLAKE3 of `data`: the block's name.
    pub hash: BlockHash,
    /// The chunk's bytes, in a vector allocated for them alone (not a larger read
    /// buffer), so keeping it costs what its length says.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Chunk {
    // The data is megabytes long; its length says enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("offset", &self.offset)
            .field("hash", &self.hash)
            .field("len", &self.data.len())
            .finish()
    }
}

/// What a file is made of: its block list, size and content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedFile {
    /// The file's blocks in order, each with its length in bytes.
    pub blocks: Vec<(BlockHash, u32)>,
    /// The file's length in bytes: the sum of the block lengths.
    pub size: u64,
    /// [`content_hash`] of the block hashes.
    pub content_hash: ContentHash,
}

impl ChunkedFile {
    fn from_blocks(blocks: Vec<(BlockHash, u32)>) -> Self {
        let size = blocks.iter().map(|&(_, len)| u64::from(len)).sum();
        let content_hash = content_hash(blocks.iter().map(|(hash, _)| hash));
        Self {
            blocks,
            size,
            content_hash,
        }
    }
}

/// Why [`chunk_and_hash`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError<E> {
    /// The reader failed; chunks before the failure may have reached the sink.
    #[error("reading input: {0}")]
    Read(std::io::Error),
    /// The sink returned an error; no chunk was given to it afterwards.
    #[error(transparent)]
    Sink(E),
}

/// The size of the buffers the input is read into. Small enough that the bytes are
/// still in the CPU cache when the cut-point search runs over them right after the read,
/// large enough that system calls cost little.
const READ_BLOCK: usize = 256 << 10;

/// The size of the first buffer; each new one is twice the last, up to [`READ_BLOCK`].
/// Most files of a sync are small, and a zeroed 256 KiB buffer per 4 KiB file would cost
/// more than reading the file.
const FIRST_READ_BLOCK: usize = 16 << 10;

/// A read buffer, shared read-only with the chunks it holds bytes of once it is filled.
type Block = Arc<Vec<u8>>;

/// A block that holds `len` bytes of input.
struct Filled {
    block: Block,
    len: usize,
}

/// A chunk's bytes as pieces of read blocks, before they are copied out.
struct ChunkPieces {
    offset: u64,
    len: usize,
    pieces: Vec<(Block, Range<usize>)>,
}

/// Splits a reader into chunks.
///
/// The input is read into fixed-size blocks that are reused once the chunks that hold
/// pieces of them are done with them, so the reading thread never waits for the kernel
/// to hand it fresh zeroed pages, and never zeroes memory itself. Copying a chunk out of
/// its blocks into one vector of exactly its size is the hashing side's job
/// ([`Hasher::push`]), which has time to spare.
struct ChunkStream<R> {
    reader: R,
    cutter: Cutter,
    /// Blocks that hold the current chunk's bytes and whatever was read after them; the
    /// chunk starts at `start` in the first.
    pending: VecDeque<Filled>,
    start: usize,
    /// How many bytes `pending` holds from `start` on.
    available: usize,
    state: ScanState,
    /// Where the current chunk starts in the input.
    offset: u64,
    eof: bool,
    /// Blocks that chunks took pieces of, oldest first: reusable once only this list
    /// holds them.
    spent: VecDeque<Block>,
    /// The size of the next block to allocate.
    block_size: usize,
}

impl<R: Read> ChunkStream<R> {
    fn new(reader: R, config: &ChunkerConfig) -> Self {
        let cutter = Cutter::new(config);
        Self {
            reader,
            cutter,
            pending: VecDeque::new(),
            start: 0,
            available: 0,
            state: cutter.start(),
            offset: 0,
            eof: false,
            spent: VecDeque::new(),
            block_size: FIRST_READ_BLOCK,
        }
    }

    /// The next chunk, or `None` at the end of the input.
    fn next_chunk(&mut self) -> io::Result<Option<ChunkPieces>> {
        loop {
            if let Some(len) = self.find_cut() {
                return Ok(Some(self.take(len)));
            }
            if self.eof {
                if self.available == 0 {
                    return Ok(None);
                }
                return Ok(Some(self.take(self.available)));
            }
            self.read_block()?;
        }
    }

    /// Scans what has been read of the current chunk and not scanned yet.
    fn find_cut(&mut self) -> Option<usize> {
        let mut at = 0;
        for (i, filled) in self.pending.iter().enumerate() {
            let from = if i == 0 { self.start } else { 0 };
            let piece = &filled.block[from..filled.len];
            if let Some(len) = self.cutter.scan_piece(piece, at, &mut self.state) {
                return Some(len);
            }
            at += piece.len();
        }
        (self.available >= self.cutter.max).then_some(self.cutter.max)
    }

    /// Hands out the current chunk's first `len` bytes and starts the next chunk.
    fn take(&mut self, len: usize) -> ChunkPieces {
        let mut pieces = Vec::new();
        let mut left = len;
        while left > 0 {
            let filled = self
                .pending
                .front()
                .expect("a chunk ends within what was read");
            let end = filled.len.min(self.start + left);
            pieces.push((Arc::clone(&filled.block), self.start..end));
            left -= end - self.start;
            if end == filled.len {
                let filled = self.pending.pop_front().expect("it was there");
                self.spent.push_back(filled.block);
                self.start = 0;
            } else {
                self.start = end;
            }
        }
        let chunk = ChunkPieces {
            offset: self.offset,
            len,
            pieces,
        };
        self.offset += len as u64;
        self.available -= len;
        self.state = self.cutter.start();
        chunk
    }

    /// A block to read into: the oldest spent one if no chunk holds it any more, else a
    /// new one.
    fn free_block(&mut self) -> Block {
        while let Some(oldest) = self.spent.front_mut() {
            match Arc::get_mut(oldest) {
                Some(free) if free.len() == READ_BLOCK => {
                    return self.spent.pop_front().expect("it was there")
                }
                // One of the small first blocks: too small to keep.
                Some(_) => drop(self.spent.pop_front()),
                None => break,
            }
        }
        let block = Arc::new(vec![0; self.block_size]);
        self.block_size = (self.block_size * 2).min(READ_BLOCK);
        block
    }

    /// Reads one block's worth of input (less at the end of the input).
    fn read_block(&mut self) -> io::Result<()> {
        let mut block = self.free_block();
        let buf = Arc::get_mut(&mut block).expect("nothing else holds a reused block");
        let mut len = 0;
        // Fill the whole block: once chunks take pieces of it, it cannot change.
        while len < buf.len() {
            match self.reader.read(&mut buf[len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => len += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if len > 0 {
            self.pending.push_back(Filled { block, len });
            self.available += len;
        }
        Ok(())
    }
}

/// Hashes chunks and feeds them to the sink, collecting the block list.
struct Hasher<S> {
    sink: S,
    blocks: Vec<(BlockHash, u32)>,
}

impl<S> Hasher<S> {
    fn new(sink: S) -> Self {
        Self {
            sink,
            blocks: Vec::new(),
        }
    }

    /// Copies a chunk out of its read blocks into a vector of its own, hashing it on
    /// the way (each piece is hashed while it is in the cache), and gives it to the
    /// sink.
    fn push<E>(&mut self, chunk: ChunkPieces) -> Result<(), E>
    where
        S: FnMut(Chunk) -> Result<(), E>,
    {
        let mut hasher = blake3::Hasher::new();
        let mut data = Vec::with_capacity(chunk.len);
        for (block, range) in &chunk.pieces {
            let piece = &block[range.clone()];
            hasher.update(piece);
            data.extend_from_slice(piece);
        }
        // Let the reader reuse the blocks while the sink works.
        drop(chunk.pieces);
        let hash = BlockHash(*hasher.finalize().as_bytes());
        let len = u32::try_from(data.len()).expect("chunks are at most 1 GiB");
        self.blocks.push((hash, len));
        (self.sink)(Chunk {
            offset: chunk.offset,
            hash,
            data,
        })
    }
}

/// How many chunks may wait between the reading thread and the hashing thread. Two
/// keep both threads busy when their speeds wobble; more would only use memory.
const PIPELINE_DEPTH: usize = 2;

/// Cuts `reader`'s bytes into chunks, hashes each, gives each to `sink` in order, and
/// returns the file's block list.
///
/// Reading and cut-point search run on the calling thread, hashing and the sink on a
/// second thread, so the two overlap; chunks pass between them through a channel that
/// holds at most two, so memory stays at a few times `max_size` whatever the input's
/// length (plus 36 bytes per block for the block list). Inputs that end within their
/// first chunk are handled on the calling thread alone, without starting a thread. The
/// sink may block (for example on a bounded channel to an uploader); reading stops
/// while it does, once the channel is full.
///
/// # Errors
///
/// [`ChunkError::Read`] if the reader fails, [`ChunkError::Sink`] with the sink's first
/// error, after which no more chunks are read.
///
/// # Panics
///
/// If `config` fails [`ChunkerConfig::validate`], or if the sink panics.
pub fn chunk_and_hash<R, E, S>(
    reader: R,
    config: &ChunkerConfig,
    sink: S,
) -> Result<ChunkedFile, ChunkError<E>>
where
    R: Read + Send,
    E: Send,
    S: FnMut(Chunk) -> Result<(), E> + Send,
{
    let mut stream = ChunkStream::new(reader, config);
    let mut hasher = Hasher::new(sink);
    let Some(first) = stream.next_chunk().map_err(ChunkError::Read)? else {
        return Ok(ChunkedFile::from_blocks(Vec::new()));
    };
    if stream.eof {
        // The input ended while its first chunk was read, so the rest is in memory
        // already: a thread would cost more than it saves on the many small files of a
        // sync.
        hasher.push(first).map_err(ChunkError::Sink)?;
        return finish_on_this_thread(stream, hasher);
    }
    std::thread::scope(|scope| {
        let (sender, receiver) = crossbeam_channel::bounded::<ChunkPieces>(PIPELINE_DEPTH);
        let hashing = scope.spawn(move || -> Result<_, E> {
            for chunk in receiver {
                hasher.push(chunk)?;
            }
            Ok(hasher.blocks)
        });
        let mut read_result = Ok(());
        let mut next = Some(first);
        while let Some(chunk) = next {
            if sender.send(chunk).is_err() {
                // The hashing thread has stopped: the sink failed or panicked.
                break;
            }
            match stream.next_chunk() {
                Ok(chunk) => next = chunk,
                Err(err) => {
                    read_result = Err(err);
                    break;
                }
            }
        }
        drop(sender);
        let hashed = match hashing.join() {
            Ok(hashed) => hashed,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let blocks = hashed.map_err(ChunkError::Sink)?;
        read_result.map_err(ChunkError::Read)?;
        Ok(ChunkedFile::from_blocks(blocks))
    })
}

/// [`chunk_and_hash`] on the calling thread alone: for callers that already keep every
/// core busy (many files at once), and for inputs that are not `Send`.
///
/// # Errors
///
/// As [`chunk_and_hash`].
///
/// # Panics
///
/// If `config` fails [`ChunkerConfig::validate`].
pub fn chunk_and_hash_single_thread<R, E, S>(
    reader: R,
    config: &ChunkerConfig,
    sink: S,
) -> Result<ChunkedFile, ChunkError<E>>
where
    R: Read,
    S: FnMut(Chunk) -> Result<(), E>,
{
    finish_on_this_thread(ChunkStream::new(reader, config), Hasher::new(sink))
}

fn finish_on_this_thread<R, E, S>(
    mut stream: ChunkStream<R>,
    mut hasher: Hasher<S>,
) -> Result<ChunkedFile, ChunkError<E>>
where
    R: Read,
    S: FnMut(Chunk) -> Result<(), E>,
{
    while let Some(chunk) = stream.next_chunk().map_err(ChunkError::Read)? {
        hasher.push(chunk).map_err(ChunkError::Sink)?;
    }
    Ok(ChunkedFile::from_blocks(hasher.blocks))
}

/// The block list of `data`, chunked and hashed in memory on the calling thread.
///
/// # Panics
///
/// If `config` fails [`ChunkerConfig::validate`].
pub fn chunk_and_hash_slice(data: &[u8], config: &ChunkerConfig) -> ChunkedFile {
    let mut blocks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let len = find_cut(rest, config);
        let (chunk, tail) = rest.split_at(len);
        let len = u32::try_from(len).expect("chunks are at most 1 GiB");
        blocks.push((BlockHash::of(chunk), len));
        rest = tail;
    }
    ChunkedFile::from_blocks(blocks)
}

/// One chunk of an input held in memory, as [`chunk_and_hash_parallel_slice`] hands it
/// to its sink: the bytes are borrowed from the input, not copied.
#[derive(Clone, Copy)]
pub struct ChunkRef<'a> {
    /// Where the chunk starts in the input.
    pub offset: u64,
    /// BLAKE3 of `data`: the block's name.
    pub hash: BlockHash,
    /// The chunk's bytes.
    pub data: &'a [u8],
}

impl std::fmt::Debug for ChunkRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkRef")
            .field("offset", &self.offset)
            .field("hash", &self.hash)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Inputs shorter than this many `max_size` are chunked on the calling thread alone by
/// [`chunk_and_hash_parallel_slice`]: the second thread would cost more than it saves,
/// and the speculative work around the midpoint would be a large share of the input.
pub const PARALLEL_MIN_CHUNKS: usize = 4;

/// The block list of `data`, the same as [`chunk_and_hash_slice`]'s, computed on two
/// threads; each chunk goes to `sink` in order, borrowed from `data`.
///
/// Cut points depend on where the chunk they end starts, so the second half of the
/// input cannot simply be chunked on its own. But a cut decision depends only on the
/// chunk's start and the bytes, so two chains of chunks that share one cut point are
/// identical from there on; and since the gear hash sees only the last 64 bytes, two
/// chains that start at different places almost always meet within a few chunks. So a
/// second thread chunks and hashes the second half as if a chunk started at the
/// midpoint, while the calling thread chunks and hashes the first half. The calling
/// thread then follows its own chain past the midpoint and the second thread's chain
/// from the midpoint (cut-point search only, a few chunks) until they share a cut
/// point, hashes its own chunks up to that point, and takes the second thread's chunks
/// from there. If the chains never meet, they meet at the end of the input: the
/// calling thread then chunks the rest itself, correct but slower.
///
/// Inputs shorter than four `max_size` are chunked on the calling thread alone. The
/// sink runs on the calling thread: for the first half while the second thread works,
/// for the rest once it has finished.
///
/// # Errors
///
/// The sink's first error, after which it is not called again.
///
/// # Panics
///
/// If `config` fails [`ChunkerConfig::validate`], or if the sink panics.
pub fn chunk_and_hash_parallel_slice<E, S>(
    data: &[u8],
    config: &ChunkerConfig,
    mut sink: S,
) -> Result<ChunkedFile, E>
where
    S: FnMut(ChunkRef<'_>) -> Result<(), E>,
{
    let cutter = Cutter::new(config);
    let mut blocks = Vec::new();
    // Hands over the chunk at `offset..offset + len`, hashing it unless `hash` is known.
    let mut emit = |offset: usize, len: usize, hash: Option<BlockHash>| -> Result<(), E> {
        let chunk = &data[offset..offset + len];
        let hash = hash.unwrap_or_else(|| BlockHash::of(chunk));
        blocks.push((hash, u32::try_from(len).expect("chunks are at most 1 GiB")));
        sink(ChunkRef {
            offset: offset as u64,
            hash,
            data: chunk,
        })
    };
    if data.len() < PARALLEL_MIN_CHUNKS * cutter.max {
        let mut pos = 0;
        while pos < data.len() {
            let len = cutter.cut(&data[pos..]);
            emit(pos, len, None)?;
            pos += len;
        }
        return Ok(ChunkedFile::from_blocks(blocks));
    }

    let mid = data.len() / 2;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            // (offset, length, hash) of the chain that starts at the midpoint.
            let mut chunks = Vec::new();
            let mut pos = mid;
            while pos < data.len() && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let len = cutter.cut(&data[pos..]);
                chunks.push((pos, len, BlockHash::of(&data[pos..pos + len])));
                pos += len;
            }
            chunks
        });
        let stop_on_error = |result: Result<(), E>| {
            if result.is_err() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            result
        };

        let mut pos = 0;
        while pos < mid {
            let len = cutter.cut(&data[pos..]);
            stop_on_error(emit(pos, len, None))?;
            pos += len;
        }
        // Follow both chains, always advancing the one behind, until they meet; the
        // calling thread's chunks on the way are its own to hash.
        let mut own = Vec::new();
        let (mut a, mut b) = (pos, mid);
        while a != b {
            if a < b {
                let len = cutter.cut(&data[a..]);
                own.push((a, len));
                a += len;
            } else {
                b += cutter.cut(&data[b..]);
            }
        }
        let meet = a;
        for (offset, len) in own {
            stop_on_error(emit(offset, len, None))?;
        }
        let chunks = match second.join() {
            Ok(chunks) => chunks,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if meet < data.len() {
            let first = chunks
                .binary_search_by_key(&meet, |&(offset, _, _)| offset)
                .expect("the second chain passes through the meeting point");
            for &(offset, len, hash) in &chunks[first..] {
                emit(offset, len, Some(hash))?;
            }
        }
        Ok(())
    })?;
    Ok(ChunkedFile::from_blocks(blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test data that does not depend on any crate's generator staying the
    /// same across versions (the golden tests below pin cut points on it).
    fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Small sizes so that tests see many chunks in little data.
    const SMALL: ChunkerConfig = ChunkerConfig {
        min_size: 4 << 10,
        avg_size: 16 << 10,
        max_size: 64 << 10,
    };

    /// Smallest valid sizes: a cut every few hundred bytes, both mask regions exercised.
    const TINY: ChunkerConfig = ChunkerConfig {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };

    /// Chunks several times the size of a read block, so that they span many blocks.
    const LARGE: ChunkerConfig = ChunkerConfig {
        min_size: 256 << 10,
        avg_size: 1 << 20,
        max_size: 2 << 20,
    };

    /// The rule from the module docs, one byte at a time.
    fn reference_cut(data: &[u8], config: &ChunkerConfig) -> usize {
        let n = data.len();
        if n <= config.min_size {
            return n;
        }
        let bits = config.avg_size.trailing_zeros();
        let (mask_s, mask_l) = (top_bits(bits + 2), top_bits(bits - 2));
        let mut h = 0u64;
        for (i, &byte) in data
            .iter()
            .enumerate()
            .take(config.max_size)
            .skip(config.min_size)
        {
            h = (h << 1).wrapping_add(GEAR[byte as usize]);
            let mask = if i < config.avg_size { mask_s } else { mask_l };
            if h & mask == 0 {
                return i + 1;
            }
        }
        n.min(config.max_size)
    }

    fn reference_chunks(mut data: &[u8], config: &ChunkerConfig) -> Vec<usize> {
        let mut lens = Vec::new();
        while !data.is_empty() {
            let len = reference_cut(data, config);
            lens.push(len);
            data = &data[len..];
        }
        lens
    }

    fn lens(file: &ChunkedFile) -> Vec<usize> {
        file.blocks.iter().map(|&(_, len)| len as usize).collect()
    }

    /// A reader that returns short reads of varying, odd sizes and sometimes
    /// `Interrupted`, as pipes and network streams do.
    struct ChoppyReader<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        call: usize,
    }

    impl<'a> ChoppyReader<'a> {
        fn new(data: &'a [u8], seed: u64) -> Self {
            let sizes = pseudo_random(seed, 64)
                .iter()
                .map(|&b| match b % 8 {
                    0 => 0, // stands for Interrupted
                    1 => 1,
                    2 => 7,
                    3 => 4093,
                    4 => 65_537,
                    _ => 1 + usize::from(b) * 97,
                })
                .collect();
            Self {
                data,
                sizes,
                call: 0,
            }
        }
    }

    impl Read for ChoppyReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.call % self.sizes.len()];
            self.call += 1;
            if size == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Chunks `data` through `chunk_and_hash` and checks everything that must hold:
    /// chunks in order and contiguous, reassembling to `data`, hashes right, the same
    /// result as the in-memory path and the single-threaded path.
    fn check_streaming(data: &[u8], config: &ChunkerConfig, read_seed: u64) -> ChunkedFile {
        let mut reassembled = Vec::with_capacity(data.len());
        let file = chunk_and_hash(ChoppyReader::new(data, read_seed), config, |chunk| {
            assert_eq!(chunk.offset, reassembled.len() as u64);
            assert_eq!(chunk.hash, BlockHash::of(&chunk.data));
            assert!(chunk.data.len() <= config.max_size);
            reassembled.extend_from_slice(&chunk.data);
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        assert!(reassembled == data, "chunks do not reassemble to the input");
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file, chunk_and_hash_slice(data, config));
        let single =
            chunk_and_hash_single_thread(ChoppyReader::new(data, read_seed + 1), config, |_| {
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(file, single);
        file
    }

    #[test]
    fn validate_accepts_default_and_boundaries() {
        ChunkerConfig::default().validate().unwrap();
        TINY.validate().unwrap();
        let equal = ChunkerConfig {
            min_size: 1 << 20,
            avg_size: 1 << 20,
            max_size: 1 << 20,
        };
        equal.validate().unwrap();
        let largest = ChunkerConfig {
            min_size: 1 << 30,
            avg_size: 1 << 30,
            max_size: 1 << 30,
        };
        largest.validate().unwrap();
    }

    #[test]
    fn validate_rejects_impossible_sizes() {
        for (min_size, avg_size, max_size) in [
            (32, 64, 128),                // min too small
            (0, 256, 1024),               // zero
            (512, 256, 1024),             // min > avg
            (64, 2048, 1024),             // avg > max
            (64, 300, 1024),              // avg not a power of two
            (64, 1 << 30, (1 << 30) + 1), // max too large
            (1 << 20, 1 << 31, 1 << 31),  // avg too large
            (usize::MAX, usize::MAX, usize::MAX),
        ] {
            let config = ChunkerConfig {
                min_size,
                avg_size,
                max_size,
            };
            let err = config.validate().unwrap_err();
            assert_eq!((err.min, err.avg, err.max), (min_size, avg_size, max_size));
            assert!(err.to_string().contains("power of two"));
        }
    }

    #[test]
    #[should_panic(expected = "invalid chunk sizes")]
    fn find_cut_rejects_invalid_config() {
        let config = ChunkerConfig {
            min_size: 0,
            avg_size: 0,
            max_size: 0,
        };
        find_cut(b"abc", &config);
    }

    /// The gear table and the cut points are part of the storage format: if this test
    /// fails, stored blocks no longer match what a client computes.
    #[test]
    fn format_is_frozen() {
        assert_eq!(GEAR[0], 0xE220_A839_7B1D_CDAF);
        assert_eq!(GEAR[1], 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(GEAR[255], GOLDEN_GEAR_255);
        let table: Vec<u8> = GEAR.iter().flat_map(|g| g.to_le_bytes()).collect();
        assert_eq!(blake3::hash(&table).to_hex().as_str(), GOLDEN_GEAR_HASH);

        let data = pseudo_random(1, 300_000);
        assert_eq!(reference_chunks(&data, &SMALL), GOLDEN_SMALL_CUTS);
        assert_eq!(
            lens(&chunk_and_hash_slice(&data, &SMALL)),
            GOLDEN_SMALL_CUTS
        );
        let file = chunk_and_hash_slice(&data, &SMALL);
        assert_eq!(file.content_hash.to_hex(), GOLDEN_SMALL_CONTENT_HASH);
    }

    const GOLDEN_GEAR_255: u64 = 0x5A58_32BB_47BC_F19E;
    const GOLDEN_GEAR_HASH: &str =
        "897dbd8ccacf1cb8748f90906da8bb3a00b189f3abb7b83a4ebd380ccc8f4be9";
    const GOLDEN_SMALL_CUTS: &[usize] = &[
        32703, 18439, 16357, 20588, 16847, 16753, 22689, 17364, 22704, 16803, 17159, 23438, 23142,
        26676, 8338,
    ];
    const GOLDEN_SMALL_CONTENT_HASH: &str =
        "66d12188d7e2ea0dff87d39453a804033f42cdbe1c92fe91055e660a9e3791dd";

    #[test]
    fn fast_scan_matches_reference_rule() {
        for (seed, config) in [(2, TINY), (3, SMALL)] {
            let data = pseudo_random(seed, 400_000);
            let lens = lens(&chunk_and_hash_slice(&data, &config));
            assert_eq!(lens, reference_chunks(&data, &config));
            assert!(lens.len() > 10);
        }
        // Every length and alignment around the quad loop's remainder handling.
        let data = pseudo_random(4, 2048);
        for start in 0..8 {
            for end in start..data.len() {
                let slice = &data[start..end];
                assert_eq!(
                    find_cut(slice, &TINY),
                    reference_cut(slice, &TINY),
                    "{start}..{end}"
                );
            }
        }
    }

    #[test]
    fn empty_input_has_no_blocks() {
        assert_eq!(find_cut(&[], &SMALL), 0);
        let file = check_streaming(&[], &SMALL, 0);
        assert!(file.blocks.is_empty());
        assert_eq!(file.size, 0);
        assert_eq!(file.content_hash, content_hash([]));
    }

    #[test]
    fn input_up_to_min_is_one_chunk() {
        let data = pseudo_random(5, SMALL.min_size + 1);
        for len in [1, 100, SMALL.min_size - 1, SMALL.min_size] {
            assert_eq!(find_cut(&data[..len], &SMALL), len);
            let file = check_streaming(&data[..len], &SMALL, 1);
            assert_eq!(file.blocks, vec![(BlockHash::of(&data[..len]), len as u32)]);
            assert_eq!(
                file.content_hash,
                content_hash([&BlockHash::of(&data[..len])])
            );
        }
    }

    #[test]
    fn max_is_enforced() {
        // Constant input never matches a mask (its hash settles on one value that does
        // not), so every chunk is exactly max long.
        let zeros = vec![0u8; 3 * SMALL.max_size + 5];
        assert_eq!(reference_cut(&zeros, &SMALL), SMALL.max_size);
        assert_eq!(find_cut(&zeros, &SMALL), SMALL.max_size);
        let file = check_streaming(&zeros, &SMALL, 2);
        assert_eq!(
            lens(&file),
            [SMALL.max_size, SMALL.max_size, SMALL.max_size, 5]
        );
        // Identical chunks have identical names.
        assert_eq!(file.blocks[0], file.blocks[1]);
    }

    #[test]
    fn exact_boundaries() {
        let zeros = vec![0u8; 2 * SMALL.max_size + 1];
        for (len, expect) in [
            (SMALL.max_size - 1, vec![SMALL.max_size - 1]),
            (SMALL.max_size, vec![SMALL.max_size]),
            (SMALL.max_size + 1, vec![SMALL.max_size, 1]),
            (2 * SMALL.max_size, vec![SMALL.max_size, SMALL.max_size]),
        ] {
            assert_eq!(lens(&check_streaming(&zeros[..len], &SMALL, 3)), expect);
        }
        // A cut found in random data: the chunk ends right after the matching byte, and
        // that cut does not move when the input ends right there or runs on.
        let data = pseudo_random(6, 200_000);
        let first = find_cut(&data, &SMALL);
        assert!(first > SMALL.min_size && first < SMALL.max_size);
        assert_eq!(find_cut(&data[..first], &SMALL), first);
        assert_eq!(find_cut(&data[..first + 1], &SMALL), first);
        let file = check_streaming(&data[..first], &SMALL, 4);
        assert_eq!(lens(&file), [first]);
    }

    #[test]
    fn several_chunks_reassemble() {
        let data = pseudo_random(7, 1_000_000);
        let file = check_streaming(&data, &SMALL, 5);
        let lens = lens(&file);
        assert!(lens.len() > 20, "{lens:?}");
        assert!(lens[..lens.len() - 1]
            .iter()
            .all(|&len| len > SMALL.min_size && len <= SMALL.max_size));
        let mean = data.len() / lens.len();
        assert!(
            (SMALL.avg_size / 2..SMALL.avg_size * 2).contains(&mean),
            "mean {mean}"
        );
    }

    #[test]
    fn chunks_spanning_many_read_blocks() {
        let data = pseudo_random(9, 12 << 20);
        let file = check_streaming(&data, &LARGE, 6);
        assert!(file.blocks.len() >= 6, "{:?}", lens(&file));
        let zeros = vec![0u8; 2 * LARGE.max_size + READ_BLOCK + 3];
        let file = check_streaming(&zeros, &LARGE, 7);
        assert_eq!(
            lens(&file),
            [LARGE.max_size, LARGE.max_size, READ_BLOCK + 3]
        );
    }

    #[test]
    fn reading_stays_a_bounded_distance_ahead_of_the_sink() {
        /// Counts what has been read.
        struct Counting<'a> {
            data: &'a [u8],
            read: &'a std::sync::atomic::AtomicUsize,
        }
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.data.read(buf)?;
                self.read.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                Ok(n)
            }
        }
        let data = pseudo_random(10, 24 << 20);
        let read = std::sync::atomic::AtomicUsize::new(0);
        let reader = Counting {
            data: &data,
            read: &read,
        };
        // The reader may have filled the channel and cut one more chunk that waits to
        // be sent, plus the rest of the block it was reading.
        let bound = (PIPELINE_DEPTH + 1) * LARGE.max_size + READ_BLOCK;
        let mut most_ahead = 0;
        chunk_and_hash(reader, &LARGE, |chunk| {
            // Give the reader time to run ahead as far as it can.
            std::thread::sleep(std::time::Duration::from_millis(5));
            let done = chunk.offset as usize + chunk.data.len();
            let ahead = read.load(std::sync::atomic::Ordering::SeqCst) - done;
            most_ahead = most_ahead.max(ahead);
            assert!(ahead <= bound, "{ahead} bytes read ahead, bound {bound}");
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        assert!(most_ahead > LARGE.max_size, "the pipeline never ran ahead");
    }

    #[test]
    fn sink_error_stops_chunking() {
        let data = pseudo_random(8, 1_000_000);
        let mut calls = 0;
        let result = chunk_and_hash(&data[..], &SMALL, |_| {
            calls += 1;
            if calls == 3 {
                Err("disk full")
            } else {
                Ok(())
            }
        });
        assert!(matches!(result, Err(ChunkError::Sink("disk full"))));
        assert_eq!(calls, 3);
    }

    #[test]
    fn read_error_is_reported() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("device gone"));
                }
                let n = buf.len().min(self.0).min(10_000);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        for len in [0, 100, 500_000] {
            let result = chunk_and_hash(Failing(len), &SMALL, |_| {
                Ok::<_, std::convert::Infallible>(())
            });
            let err = result.unwrap_err();
            assert!(err.to_string().contains("device gone"), "{err}");
            assert!(matches!(err, ChunkError::Read(_)));
        }
    }

    /// Chunks `data` with `chunk_and_hash_parallel_slice` and checks that the sink sees
    /// every chunk in order, borrowed from the right place, and that the result is
    /// `chunk_and_hash_slice`'s.
    fn check_parallel(data: &[u8], config: &ChunkerConfig) -> ChunkedFile {
        let mut next = 0usize;
        let file = chunk_and_hash_parallel_slice(data, config, |chunk| {
            assert_eq!(chunk.offset, next as u64);
            assert!(std::ptr::eq(
                chunk.data,
                &data[next..next + chunk.data.len()]
            ));
            assert_eq!(chunk.hash, BlockHash::of(chunk.data));
            next += chunk.data.len();
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        assert_eq!(next, data.len());
        assert_eq!(
            file,
            chunk_and_hash_slice(data, config),
            "{} bytes",
            data.len()
        );
        file
    }

    #[test]
    fn parallel_slice_matches_sequential() {
        // Every chunk exactly max long: the chains from 0 and from the midpoint meet only
        // if the midpoint is a multiple of max, else at the end.
        let fixed = ChunkerConfig {
            min_size: 4096,
            avg_size: 4096,
            max_size: 4096,
        };
        let mut seed = 100;
        for config in [TINY, SMALL, fixed] {
            let threshold = PARALLEL_MIN_CHUNKS * config.max_size;
            let mut sizes = vec![
                0,
                1,
                config.min_size,
                threshold - 1,
                threshold,
                threshold + 1,
                2 * threshold + 2,
                2 * threshold + 3,
            ];
            sizes.extend(
                pseudo_random(seed, 12).iter().map(|&b| {
                    threshold + usize::from(b) * config.max_size / 8 + usize::from(b) * 13
                }),
            );
            for len in sizes {
                seed += 1;
                let random = pseudo_random(seed, len);
                check_parallel(&random, &config);
                check_parallel(&vec![0u8; len], &config);
                let mut few = random.clone();
                few.iter_mut().for_each(|b| *b %= 3);
                check_parallel(&few, &config);
                // Random data with a long constant run across the midpoint.
                let mut mixed = random;
                let mid = len / 2;
                let run =
                    (mid.saturating_sub(3 * config.max_size))..(mid + 2 * config.max_size).min(len);
                mixed[run].fill(7);
                check_parallel(&mixed, &config);
            }
        }
        // Large enough for the default sizes to take the two-thread path.
        let data = pseudo_random(99, 5 * ChunkerConfig::default().max_size + 12_345);
        let file = check_parallel(&data, &ChunkerConfig::default());
        assert!(file.blocks.len() > 5);
    }

    #[test]
    fn parallel_slice_stops_at_sink_error() {
        let data = pseudo_random(11, 1_000_000);
        let expected = chunk_and_hash_slice(&data, &SMALL);
        let n = expected.blocks.len();
        assert!(n > 20);
        // Fail in the first half, in the second (after the second thread has finished)
        // and at the last chunk.
        for fail_at in [3, n / 2 + 5, n] {
            let mut calls = 0;
            let result = chunk_and_hash_parallel_slice(&data, &SMALL, |_| {
                calls += 1;
                if calls == fail_at {
                    Err("disk full")
                } else {
                    Ok(())
                }
            });
            assert_eq!(result, Err("disk full"));
            assert_eq!(calls, fail_at);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::RngSeed;
        use std::collections::HashSet;

        /// Random data of the given length, drawn from an alphabet of `alphabet` byte
        /// values, so that low-entropy inputs (long runs, few symbols) show up too.
        fn data(seed: u64, len: usize, alphabet: u8) -> Vec<u8> {
            let mut bytes = pseudo_random(seed, len);
            if alphabet != 0 {
                bytes.iter_mut().for_each(|b| *b %= alphabet);
            }
            bytes
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]

            #[test]
            fn parallel_slice_matches_sequential(
                seed in any::<u64>(),
                len in 0usize..600_000,
                alphabet in prop_oneof![Just(0u8), 1u8..4, Just(255u8)],
                tiny in any::<bool>(),
            ) {
                let data = data(seed, len, alphabet);
                check_parallel(&data, if tiny { &TINY } else { &SMALL });
            }

            #[test]
            fn chunking_reassembles_to_the_input(
                seed in any::<u64>(),
                len in 0usize..300_000,
                alphabet in prop_oneof![Just(0u8), 1u8..4, Just(255u8)],
                read_seed in any::<u64>(),
            ) {
                let data = data(seed, len, alphabet);
                check_streaming(&data, &SMALL, read_seed);
            }
        }

        proptest! {
            // Unlike reassembly, this property is not certain. An insert can create a
            // new cut point near it (the hash sees 64 bytes), or move a position across
            // `avg` where the mask changes; the chunk after that new cut may then skip
            // the old boundary (it lies within `min`) and a short cascade follows. With
            // these sizes, 0.7% of random inserts of 1-100 bytes change 3 or more chunks
            // (0.3% for 1 byte; 20,000 trials each with `chunk_and_hash_slice`). With the
            // default sizes a small edit gives about 65 positions a new hash, each
            // matching with a chance of 2^-20 or less, so by estimate fewer than 1 in
            // 10,000 small edits do. A fixed seed keeps this test from failing at
            // random, and its cases replay exactly.
            #![proptest_config(ProptestConfig {
                cases: 32,
                rng_seed: RngSeed::Fixed(1),
                ..ProptestConfig::default()
            })]

            #[test]
            fn an_insert_changes_at_most_two_chunks(
                seed in any::<u64>(),
                len in 200_000usize..400_000,
                at in 0.25f64..0.75,
                inserted in proptest::collection::vec(any::<u8>(), 1..=100),
            ) {
                let old = pseudo_random(seed, len);
                let pos = (len as f64 * at) as usize;
                let mut new = old[..pos].to_vec();
                new.extend_from_slice(&inserted);
                new.extend_from_slice(&old[pos..]);

                let old_file = chunk_and_hash_slice(&old, &SMALL);
                let new_file = chunk_and_hash_slice(&new, &SMALL);
                prop_assert!(old_file.blocks.len() > 8);
                let known: HashSet<BlockHash> =
                    old_file.blocks.iter().map(|&(hash, _)| hash).collect();
                let changed = new_file
                    .blocks
                    .iter()
                    .filter(|(hash, _)| !known.contains(hash))
                    .count();
                prop_assert!(changed <= 2, "{changed} chunks changed");
                prop_assert!(changed >= 1);
            }
        }
    }
}
