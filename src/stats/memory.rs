//! Memory figures: the process's resident set and jemalloc's allocated bytes.

use tikv_jemalloc_ctl::{background_thread, epoch, stats};

/// Lets jemalloc return freed pages to the kernel on its own thread: without it,
/// pages freed after a burst (100,000 channels gone at once) are purged only on
/// later allocator calls, so an idle server keeps them resident.
pub fn purge_in_background() {
    // Best effort: a jemalloc built without background threads keeps them.
    let _ = background_thread::write(true);
}

/// VmRSS in bytes, from /proc/self/statm (resident pages × page size).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// Bytes currently allocated by the application through jemalloc.
pub fn allocated_bytes() -> u64 {
    // jemalloc's statistics are a snapshot refreshed by advancing the epoch.
    if epoch::advance().is_err() {
        return 0;
    }
    stats::allocated::read().map(|b| b as u64).unwrap_or(0)
}
