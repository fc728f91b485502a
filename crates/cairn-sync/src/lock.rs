//! One reconciler per sync folder: an exclusive advisory lock (`flock`) on a file
//! beside the folder's state file, held for as long as a `cairn sync` runs. Two
//! daemons on one folder would each carry the other's changes as their own and race on
//! the same state file; the second one is refused instead, and told which process
//! holds the folder.
//!
//! The lock goes with the process, however it ends (the kernel drops it when the file
//! is closed), so a crash never leaves a folder locked. The file itself stays: removing
//! it would let a third process lock a new file of the same name while the second
//! still holds the old one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Why a sync folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock; its PID, if it wrote one.
    #[error("another `cairn sync`{} is already syncing this folder", .pid.map(|p| format!(" (PID {p})")).unwrap_or_default())]
    Held { pid: Option<u32> },
    #[error("cannot lock {}: {err}", .path.display())]
    Io { path: PathBuf, err: io::Error },
}

/// The lock on one sync folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct FolderLock {
    file: File,
}

impl FolderLock {
    /// Takes the lock on the file at `path` (created if needed) without waiting, and
    /// writes this process's PID into it for the message another process would show.
    pub fn acquire(path: &Path) -> Result<FolderLock, LockError> {
        let io_error = |err: io::Error| LockError::Io {
            path: path.to_owned(),
            err,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(err) if err == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    pid: text.trim().parse().ok(),
                });
            }
            Err(err) => return Err(io_error(err.into())),
        }
        file.set_len(0).map_err(io_error)?;
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        write!(file, "{}", std::process::id()).map_err(io_error)?;
        Ok(FolderLock { file })
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // The PID would name a process that no longer holds the folder.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holder_pid_until_the_first_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("folder.lock");
        let first = FolderLock::acquire(&path).unwrap();
        // flock locks belong to the open file, so a second open in the same process
        // conflicts just as another process would.
        match FolderLock::acquire(&path) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected the lock to be held: {other:?}"),
        }
        drop(first);
        let again = FolderLock::acquire(&path);
        assert!(again.is_ok(), "{again:?}");
    }
}
