//! Allocator tuning for the long-running sync daemon: the one module of this crate with
//! `unsafe` code.
//!
//! glibc's malloc gives each thread that allocates an arena of its own, up to eight per
//! core, and memory freed into one arena serves only the threads using that arena. A
//! sync daemon builds its trees on one thread out of data that other threads allocated
//! (the folder scan and the disk tasks on the blocking pool, the HTTP client on the
//! runtime's workers), so with an arena per thread its resident memory ran at almost
//! three times its heap: 340 MB for a heap peak of 121 MB (heaptrack) while downloading
//! a 100,000-file tree, and 143 MB with a single arena (`MALLOC_ARENA_MAX=1`), at no
//! cost in speed that the run could tell from noise. The client is not bound by
//! allocation, so one arena it is. The server keeps glibc's default.
//!
//! glibc also raises its mmap threshold each time a large block is freed (up to 32 MiB),
//! after which large buffers (a plan, a listing, a response) come from the heap and
//! their pages stay with the process. A fixed threshold of 256 KiB keeps them mapped,
//! so freeing one returns it: the idle RSS after a 100,000-file download fell from 148
//! to 140 MB.
#![allow(unsafe_code)]

/// Limits glibc's malloc to one arena and fixes its mmap threshold, for the rest of the
/// process. Call it before the process starts its threads.
pub fn tune_for_daemon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator settings; M_ARENA_MAX is a valid
        // parameter, and no other thread is running yet to race with the change.
        let applied = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        if applied != 1 {
            tracing::debug!("mallopt(M_ARENA_MAX) was refused");
        }
        // SAFETY: as above; M_MMAP_THRESHOLD is a valid parameter.
        let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) };
        if applied != 1 {
            tracing::debug!("mallopt(M_MMAP_THRESHOLD) was refused");
        }
    }
}
