//! Memory figures: the process's resident set, split into file-backed pages (the
//! binary's code) and the rest, and what jemalloc holds, split the way an RSS
//! figure needs explaining: bytes in use, pages they sit on, pages kept resident.

use tikv_jemalloc_ctl::{background_thread, epoch, stats};

/// Lets jemalloc return freed pages to the kernel on its own thread: without it,
/// pages freed after a burst (100,000 channels gone at once) are purged only on
/// later allocator calls, so an idle server keeps them resident.
pub fn purge_in_background() {
    // Best effort: a jemalloc built without background threads keeps them.
    let _ = background_thread::write(true);
}

/// One reading of every memory figure, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS.
    pub rss: u64,
    /// The file-backed part of `rss` (RssFile + RssShmem): the binary's and the
    /// libraries' pages, shared with the page cache. `rss - rss_file` is RssAnon.
    pub rss_file: u64,
    /// jemalloc `stats.allocated`: bytes the application holds, size classes
    /// rounded up.
    pub allocated: u64,
    /// `stats.active`: the pages those allocations sit on. Above `allocated` by
    /// the free slots of partly used slabs.
    pub active: u64,
    /// `stats.resident`: jemalloc's resident pages, `active` plus its metadata
    /// and the freed pages it has not purged yet. An upper bound: jemalloc counts
    /// whole slabs and extents, touched or not, so it can exceed what the kernel
    /// has resident for them.
    pub resident: u64,
    /// `stats.metadata`: jemalloc's own bookkeeping.
    pub metadata: u64,
}

impl Memory {
    pub fn read() -> Memory {
        let (rss, rss_file) = resident_pages();
        // jemalloc's statistics are a snapshot refreshed by advancing the epoch;
        // if that fails, the figures read 0 rather than stale values.
        let fresh = epoch::advance().is_ok();
        let jemalloc = |read: fn() -> tikv_jemalloc_ctl::Result<usize>| {
            if fresh {
                read().map(|b| b as u64).unwrap_or(0)
            } else {
                0
            }
        };
        Memory {
            rss,
            rss_file,
            allocated: jemalloc(stats::allocated::read),
            active: jemalloc(stats::active::read),
            resident: jemalloc(stats::resident::read),
            metadata: jemalloc(stats::metadata::read),
        }
    }
}

/// VmRSS and its file-backed part, from /proc/self/statm (the second and third
/// fields: resident and shared pages).
#[allow(unsafe_code)] // sysconf
fn resident_pages() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut fields = statm
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let resident = fields.next().unwrap_or(0);
    let shared = fields.next().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    (resident * page, shared * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // a block of jemalloc's own
    fn the_figures_nest_as_documented() {
        use std::alloc::{GlobalAlloc, Layout};
        // The library's tests run on the system allocator, so hold a block of
        // jemalloc's own, that every jemalloc figure is above zero.
        let layout = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: a non-zero size; freed below with the same layout.
        let held = unsafe { tikv_jemallocator::Jemalloc.alloc(layout) };
        assert!(!held.is_null());
        let m = Memory::read();
        // SAFETY: allocated above with this layout.
        unsafe { tikv_jemallocator::Jemalloc.dealloc(held, layout) };
        assert!(m.allocated >= layout.size() as u64, "{m:?}");
        assert!(m.active >= m.allocated, "{m:?}");
        assert!(m.resident >= m.active, "{m:?}");
        assert!(m.metadata > 0 && m.metadata < m.resident, "{m:?}");
        assert!(m.rss_file > 0 && m.rss_file < m.rss, "{m:?}");
    }
}
