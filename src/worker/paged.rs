//! A slab in fixed pages that never move. A plain slab grows by copying every entry
//! into a buffer twice the size, and the old buffer stays resident until jemalloc
//! purges it, so after a burst of arrivals RSS follows the doublings, not the
//! entries held. Here growing adds one page; an entry is touched only when used.

use std::ops::{Index, IndexMut};

use slab::Slab;

/// Entries per page: 1,024 side entries are about 48 KiB of address space, which
/// stays untouched (so not resident) until filled.
const PAGE: usize = 1024;

#[derive(Debug)]
pub struct PagedSlab<T> {
    pages: Vec<Slab<T>>,
    /// Pages with a free entry, the most recently freed last.
    with_room: Vec<u32>,
}

impl<T> Default for PagedSlab<T> {
    fn default() -> Self {
        PagedSlab {
            pages: Vec::new(),
            with_room: Vec::new(),
        }
    }
}

impl<T> PagedSlab<T> {
    pub fn insert(&mut self, value: T) -> usize {
        let page = match self.with_room.last() {
            Some(&page) => page as usize,
            None => {
                self.pages.push(Slab::with_capacity(PAGE));
                let page = self.pages.len() - 1;
                self.with_room.push(page as u32);
                page
            }
        };
        let slab = &mut self.pages[page];
        let key = slab.insert(value);
        if slab.len() == PAGE {
            self.with_room.pop();
        }
        page * PAGE + key
    }

    /// Panics if `index` holds nothing, as `Slab::remove` does.
    pub fn remove(&mut self, index: usize) -> T {
        let page = index / PAGE;
        let slab = &mut self.pages[page];
        let was_full = slab.len() == PAGE;
        let value = slab.remove(index % PAGE);
        if was_full {
            self.with_room.push(page as u32);
        }
        value
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pages.iter().map(Slab::len).sum()
    }
}

impl<T> Index<usize> for PagedSlab<T> {
    type Output = T;
    fn index(&self, index: usize) -> &T {
        &self.pages[index / PAGE][index % PAGE]
    }
}

impl<T> IndexMut<usize> for PagedSlab<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        &mut self.pages[index / PAGE][index % PAGE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_put_and_freed_ones_are_reused() {
        let mut slab = PagedSlab::default();
        let keys: Vec<usize> = (0..3 * PAGE).map(|i| slab.insert(i)).collect();
        assert_eq!(slab.pages.len(), 3);
        assert!(keys.iter().enumerate().all(|(i, &k)| slab[k] == i));
        assert_eq!(slab.remove(keys[5]), 5);
        assert_eq!(slab.remove(keys[PAGE + 7]), PAGE + 7);
        let reused = slab.insert(99);
        assert_eq!(
            reused,
            keys[PAGE + 7],
            "the latest freed page is filled first"
        );
        let again = slab.insert(98);
        assert_eq!(again, keys[5]);
        assert_eq!(slab.pages.len(), 3, "no page added while others had room");
        assert_eq!(slab.len(), 3 * PAGE);
        slab[again] = 1;
        assert_eq!(slab[keys[5]], 1);
    }

    #[test]
    fn a_page_never_reallocates() {
        let mut slab = PagedSlab::default();
        let first = slab.insert(0u64);
        let address = &slab[first] as *const u64;
        for i in 1..PAGE as u64 {
            slab.insert(i);
        }
        assert_eq!(&slab[first] as *const u64, address);
    }
}
