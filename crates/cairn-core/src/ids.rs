//! Typed identifiers, so a user id cannot be passed where a namespace id is meant.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId
);
id_type!(
    /// A registered device (a login from one machine or program).
    DeviceId
);
id_type!(
    /// A namespace: a tree of entries with its own journal. Each user has a home one.
    NamespaceId
);
id_type!(
    /// An entry (file or folder) in a namespace.
    EntryId
);
id_type!(
    /// One committed version of a file. Its number is the file's revision.
    VersionId
);
id_type!(
    /// A position in a namespace's journal; strictly increasing per namespace.
    JournalSeq
);
id_type!(
    /// An item in a namespace's trash: one delete operation (a file, or a folder with
    /// everything that was below it).
    TrashId
);
