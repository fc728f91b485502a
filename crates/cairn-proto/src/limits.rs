//! The size and count limits of the batch endpoints, one constant each, read by the
//! server (which refuses what is over them) and by the client (which splits its
//! requests to stay under them and refuses answers that break them).

/// The most hashes one `POST /blocks/check` may name. A client checks a longer list in
/// several calls; the server answers 400 `too_many_hashes` above it.
pub const MAX_CHECK_HASHES: usize = 1000;

/// The most items one `POST /files/commit_batch` or paths one `POST /files/content_batch`
/// may carry: a batch is one transaction (or one response) on the server, and a
/// thousand small files keep either short. The server answers 400 `too_many_items`.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// The largest body of one `POST /blocks/batch`. The server raises its route's limit to
/// fit one frame of a maximal block if that is larger (see
/// [`crate::block_batch::body_limit`]), since a block must always be sendable in a
/// batch of one. It holds the whole body in memory while it verifies every block
/// before storing any, so this bounds that memory per request.
pub const MAX_BLOCK_BATCH_BODY: usize = 64 << 20;

/// The most frames (blocks) one `POST /blocks/batch` may carry. The blocks of a batch
/// are those a check found missing, so a batch never needs more than a check names;
/// without a bound, a body of empty blocks would make the server track and store
/// nearly two million of them in one request.
pub const MAX_BLOCK_BATCH_FRAMES: usize = MAX_CHECK_HASHES;

/// The largest `POST /files/commit_batch` body: a thousand items naming a few blocks
/// each fit easily.
pub const MAX_COMMIT_BATCH_BODY: usize = 16 << 20;

/// The largest file a `content_batch` carries; a larger one is refused with
/// `too_large_for_batch` and is fetched with `GET /files/content`.
pub const MAX_CONTENT_BATCH_FILE: u64 = 4 << 20;

/// The content bytes one `content_batch` response carries at most: the server refuses
/// later files with `batch_full` once it is reached, and the client holds the whole
/// response in memory, so this bounds that memory.
pub const MAX_CONTENT_BATCH_BYTES: u64 = 64 << 20;

/// The longest JSON header of one `content_batch` record. A header holds an entry (two
/// paths of at most 4096 bytes, escaped) or an error naming a path; 256 KiB is far
/// above what the server sends, and lets a client refuse a declared length before it
/// waits for or reads that many bytes.
pub const MAX_CONTENT_BATCH_HEADER: usize = 256 << 10;

/// Items in one page of a listing (a folder, the trash, the delta) when the request
/// does not say.
pub const DEFAULT_PAGE: u32 = 1000;

/// The most items one page of a listing may ask for; the server answers 400
/// `invalid_limit` outside 1 to this.
pub const MAX_PAGE: u32 = 10_000;

/// The longest text `GET /files/search` looks for, in characters (Unicode scalar values,
/// as JSON Schema's `maxLength` counts): no name is longer, since a name holds at most
/// 255 bytes. The server answers 400 `invalid_query` above it.
pub const MAX_SEARCH_QUERY_CHARS: usize = 255;

/// The most paths one `GET /files/zip` may name (each is checked and looked up before
/// the first byte is sent). The server answers 400 `too_many_items` above it.
pub const MAX_ZIP_PATHS: usize = 1000;
