//! The domain types the store hands out. Plain Rust, deliberately not `Serialize`: wire
//! types live in `cairn-proto`, and the server converts by hand.

use cairn_core::{
    BlockHash, ContentHash, DeviceId, EntryId, JournalSeq, NamespaceId, ServerPath, TrashId,
    UserId, VersionId,
};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The account's id.
    pub id: UserId,
    /// The login name, unique (compared exactly, case-sensitively).
    pub name: String,
    /// The password hash in PHC string form; the store never sees a password.
    pub password_hash: String,
    /// Whether the account may use the admin endpoints.
    pub is_admin: bool,
    /// Storage limit in bytes; `None` means unlimited.
    pub quota_bytes: Option<i64>,
    /// The namespace holding the user's own files.
    pub home_ns: NamespaceId,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// When an administrator disabled the account (Unix ms); `None` while it is
    /// enabled. A disabled account cannot log in, its tokens are refused and its links
    /// do not work.
    pub disabled_at: Option<i64>,
}

impl User {
    /// Whether the account may act: log in, use its tokens, serve its links.
    pub fn is_enabled(&self) -> bool {
        self.disabled_at.is_none()
    }
}

/// A registered device: one login from one machine or program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device's id.
    pub id: DeviceId,
    /// The account the device belongs to.
    pub user_id: UserId,
    /// A name the user recognises ("laptop"); it appears in conflict-copy names.
    pub name: String,
    /// Registration time, Unix milliseconds.
    pub created_at: i64,
}

/// Whether an entry is a file or a folder.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum EntryKind {
    /// A file with versions and content.
    File,
    /// A folder; it has no content of its own.
    Folder,
}

impl EntryKind {
    /// The spelling in the database (`file`, `dir`).
    pub(crate) fn as_db(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Folder => "dir",
        }
    }

    pub(crate) fn from_db(s: &str) -> Option<Self> {
        match s {
            "file" => Some(EntryKind::File),
            "dir" => Some(EntryKind::Folder),
            _ => None,
        }
    }
}

/// A live file or folder in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's id; it survives moves. The implicit root folder has id 0.
    pub id: EntryId,
    /// The namespace the entry lives in.
    pub ns: NamespaceId,
    /// The path as stored, in the case it was created with.
    pub path: ServerPath,
    /// File or folder.
    pub kind: EntryKind,
    /// The size in bytes of the current version; 0 for folders.
    pub size: i64,
    /// The current version (the file's revision); `None` for folders.
    pub rev: Option<VersionId>,
    /// The content hash of the current version; `None` for folders.
    pub content_hash: Option<ContentHash>,
    /// The modification time the client reported (or the commit time), Unix ms.
    pub mtime: i64,
    /// When the server last changed the entry's content (the last commit of a file, the
    /// creation of a folder), Unix ms. Moves do not change it.
    pub modified_at: i64,
}

/// One block of a file: its hash and its plaintext size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// BLAKE3 of the block's plaintext.
    pub hash: BlockHash,
    /// The block's plaintext size in bytes.
    pub size: u32,
}

/// What happened to an entry, as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new version of a file was committed (the file may be new).
    Commit,
    /// A folder was created.
    Mkdir,
    /// The entry moved from `from` to the journal row's path. A folder move records one
    /// row for the folder and one for every entry below it.
    Move {
        /// The path before the move.
        from: ServerPath,
    },
    /// The entry was created as a copy of `from` (a folder copy records one row per
    /// copied entry). A client that has `from` locally can copy instead of downloading.
    Copy {
        /// The path of the source entry.
        from: ServerPath,
    },
    /// The entry was deleted (moved to the trash). A folder delete records one row for
    /// every entry below it, deepest first, then one for the folder.
    Delete,
    /// The entry came back from the trash to the journal row's path (its original path,
    /// or a non-clobbering name next to it). A folder restore records one row for the
    /// folder and one for every entry restored with it, parents first.
    Restore,
    /// A trash item was removed for good: the row's path is where the entry was when it
    /// was deleted. The live tree does not change; one row per purged item.
    Purge,
}

impl ChangeKind {
    /// A short lowercase name: `commit`, `mkdir`, `move`, `copy`, `delete`, `restore`,
    /// `purge`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeKind::Commit => "commit",
            ChangeKind::Mkdir => "mkdir",
            ChangeKind::Move { .. } => "move",
            ChangeKind::Copy { .. } => "copy",
            ChangeKind::Delete => "delete",
            ChangeKind::Restore => "restore",
            ChangeKind::Purge => "purge",
        }
    }

    /// The source path of a move or copy.
    pub fn from_path(&self) -> Option<&ServerPath> {
        match self {
            ChangeKind::Move { from } | ChangeKind::Copy { from } => Some(from),
            _ => None,
        }
    }
}

/// One row of a namespace's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The namespace the change happened in.
    pub ns: NamespaceId,
    /// The change's position; consecutive, starting at 1, per namespace.
    pub seq: JournalSeq,
    /// What happened.
    pub kind: ChangeKind,
    /// Whether the changed entry is a file or a folder.
    pub entry_kind: EntryKind,
    /// The entry's path after the change (for a delete: the path it had).
    pub path: ServerPath,
    /// The changed entry.
    pub entry_id: EntryId,
    /// For a file: the version a commit or copy created, or the (unchanged) current
    /// version of a moved or deleted file. `None` for folders.
    pub version_id: Option<VersionId>,
    /// The size of `version_id`'s content, when there is a version (a version pruned
    /// since by retention leaves these three `None`).
    pub size: Option<i64>,
    /// The content hash of `version_id`.
    pub content_hash: Option<ContentHash>,
    /// The modification time `version_id` recorded, Unix ms.
    pub mtime: Option<i64>,
    /// The account that made the change.
    pub user_id: UserId,
    /// The device that made the change, if a registered one did.
    pub device_id: Option<DeviceId>,
    /// When the change was made, Unix ms.
    pub created_at: i64,
}

/// Who is making a change (for version attribution and conflict names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The account making the change.
    pub user_id: UserId,
    /// The device making it, if it is a registered one.
    pub device_id: Option<DeviceId>,
    /// The device's name, used in conflict-copy names.
    pub device_name: String,
}

/// One version of a file, as its history lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version's id, which is also the file's revision while it is current.
    pub id: VersionId,
    pub size: i64,
    pub content_hash: ContentHash,
    /// The file's modification time this version recorded (Unix ms).
    pub mtime: i64,
    /// When the version was committed (Unix ms).
    pub created_at: i64,
    pub user_id: UserId,
    pub user_name: String,
    pub device_id: Option<DeviceId>,
    pub device_name: Option<String>,
}

/// One item in a namespace's trash: what one delete operation removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashItem {
    /// The item's id.
    pub id: TrashId,
    /// The namespace it was deleted from.
    pub ns: NamespaceId,
    /// The entry that was deleted (the top of the item when it is a folder).
    pub entry_id: EntryId,
    /// Whether the deleted entry is a file or a folder.
    pub kind: EntryKind,
    /// Where the entry was when it was deleted, in its stored case.
    pub path: ServerPath,
    /// Bytes of the current versions of the files in the item.
    pub size: i64,
    /// How many files the item holds (1 for a file).
    pub file_count: i64,
    /// When it was deleted, Unix ms.
    pub deleted_at: i64,
    /// The account that deleted it.
    pub user_id: UserId,
    /// That account's name.
    pub user_name: String,
    /// The device that deleted it, if a registered one did.
    pub device_id: Option<DeviceId>,
    /// That device's name.
    pub device_name: Option<String>,
}

/// A request to store a new version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitFile {
    /// The namespace to write into.
    pub ns: NamespaceId,
    /// Where the file goes. Missing parent folders are created.
    pub path: ServerPath,
    /// The file's blocks, in order; each must be one the actor's account possesses.
    pub blocks: Vec<BlockRef>,
    /// The client's modification time (Unix ms); `None` means now.
    pub mtime: Option<i64>,
    /// The revision this content was based on; `None` for a new file.
    pub base_rev: Option<VersionId>,
    /// On a conflict, store under a conflict-copy name instead of refusing.
    pub autorename: bool,
    /// Who commits.
    pub actor: Actor,
}

/// A file commit inside a [`MetaStore::commit_batch`](crate::MetaStore::commit_batch):
/// a [`CommitFile`] without the namespace and actor, which the batch gives once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCommit {
    /// Where the file goes. Missing parent folders are created.
    pub path: ServerPath,
    /// The file's blocks, in order; each must be one the actor's account possesses.
    pub blocks: Vec<BlockRef>,
    /// The client's modification time (Unix ms); `None` means now.
    pub mtime: Option<i64>,
    /// The revision this content was based on; `None` for a new file.
    pub base_rev: Option<VersionId>,
    /// On a conflict, store under a conflict-copy name instead of refusing.
    pub autorename: bool,
}

/// One step of a [`MetaStore::commit_batch`](crate::MetaStore::commit_batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchItem {
    /// Store a new version of a file, as `commit_file` does.
    File(FileCommit),
    /// Make sure a folder exists, creating missing folders above it; a folder already
    /// there is fine, a file there is [`MetaError::AlreadyExists`](crate::MetaError).
    Mkdir(ServerPath),
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The entry as it is now.
    pub entry: Entry,
    /// Whether the content was stored as a conflict copy rather than at the path asked.
    pub renamed: bool,
}

/// A block's bookkeeping row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block's hash.
    pub hash: BlockHash,
    /// Plaintext size in bytes.
    pub size: i64,
    /// Bytes the block store holds for it (after compression).
    pub stored_size: i64,
    /// How many version_blocks rows name the block.
    pub refcount: i64,
    /// Since when the block has had no references (Unix ms); `None` while referenced.
    pub zero_since: Option<i64>,
    /// When a garbage collection claimed the block for deletion (Unix ms); while set,
    /// the block counts as absent to everyone but the collector.
    pub gc_started: Option<i64>,
    /// When the block was first recorded, Unix ms.
    pub created_at: i64,
}

/// Row counts, for metrics, the admin view and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaStats {
    /// User accounts.
    pub users: i64,
    /// Live (not deleted) files.
    pub live_files: i64,
    /// Live (not deleted) folders.
    pub live_folders: i64,
    /// Versions of all files, live or deleted.
    pub versions: i64,
    /// Blocks recorded.
    pub blocks: i64,
    /// Sum of all blocks' reference counts.
    pub block_references: i64,
    /// Journal rows in all namespaces.
    pub journal_rows: i64,
}
