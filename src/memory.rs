//! Giving freed heap back to the system.
//!
//! glibc keeps freed memory in its arenas (one per thread that allocated:
//! tokio's workers and the blocking pool) and returns it to the system only
//! from the top of the heap. After a load of large messages the daemon
//! stayed at 245–395 MiB resident though it had started at 13 MiB (issue 7);
//! `malloc_trim(0)` walks every arena and releases the free pages. It costs
//! about a millisecond on such a heap, so it runs only after work that
//! handled at least [`TRIM_AFTER_BYTES`].

/// Work below this many bytes of mail does not trim.
pub const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Returns free heap pages to the system after `bytes` of mail were
/// handled, when that is at least [`TRIM_AFTER_BYTES`]. A no-op on other
/// C libraries.
pub fn trim_after(bytes: usize) {
    if bytes < TRIM_AFTER_BYTES {
        return;
    }
    // The crate's one unsafe block (Cargo.toml denies the rest): no safe
    // wrapper of malloc_trim exists, and without it resident memory stays
    // near the peak of the largest message handled.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own
    // arenas under their locks; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
