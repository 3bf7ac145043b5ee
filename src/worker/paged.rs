//! A slab in fixed pages that never move. A plain slab grows by copying every entry
//! into a buffer twice the size, and the old buffer stays resident until jemalloc
//! purges it, so after a burst of arrivals RSS follows the doublings, not the
//! entries held. Here growing adds one page; an entry is touched only when used.
//!
//! A vacant entry holds the next free index, and the enum needs no tag of its own
//! when `T` has a niche (a socket's fd is never -1): a connection's entry is the
//! connection's size (`a_connection_slot_stays_small`).

use std::ops::{Index, IndexMut};

/// Entries per page: 1,024 connections are 32 KiB of address space, which stays
/// untouched (so not resident) until filled.
const PAGE: usize = 1024;

#[derive(Debug)]
pub enum Entry<T> {
    /// Free; holds the next free index plus one (0 = the end of the free list).
    Vacant(u32),
    Occupied(T),
}

#[derive(Debug)]
pub struct PagedSlab<T> {
    pages: Vec<Vec<Entry<T>>>,
    /// The most recently freed index plus one; 0 = none free.
    free: u32,
    len: usize,
}

impl<T> Default for PagedSlab<T> {
    fn default() -> Self {
        PagedSlab {
            pages: Vec::new(),
            free: 0,
            len: 0,
        }
    }
}

impl<T> PagedSlab<T> {
    /// The index the next `insert` returns.
    pub fn next_key(&self) -> usize {
        if self.free != 0 {
            return self.free as usize - 1;
        }
        match self.pages.last() {
            Some(page) if page.len() < PAGE => (self.pages.len() - 1) * PAGE + page.len(),
            _ => self.pages.len() * PAGE,
        }
    }

    pub fn insert(&mut self, value: T) -> usize {
        let key = self.next_key();
        self.len += 1;
        if self.free != 0 {
            let entry = &mut self.pages[key / PAGE][key % PAGE];
            let Entry::Vacant(next) = *entry else {
                unreachable!("the free list holds vacant entries only");
            };
            self.free = next;
            *entry = Entry::Occupied(value);
            return key;
        }
        if key / PAGE == self.pages.len() {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        self.pages[key / PAGE].push(Entry::Occupied(value));
        key
    }

    /// Panics if `index` holds nothing, as `Slab::remove` does.
    pub fn remove(&mut self, index: usize) -> T {
        let entry = &mut self.pages[index / PAGE][index % PAGE];
        match std::mem::replace(entry, Entry::Vacant(self.free)) {
            Entry::Occupied(value) => {
                self.free = index as u32 + 1;
                self.len -= 1;
                value
            }
            vacant => {
                *entry = vacant;
                panic!("removing the vacant entry {index}");
            }
        }
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        match self.pages.get(index / PAGE)?.get(index % PAGE)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        match self.pages.get_mut(index / PAGE)?.get_mut(index % PAGE)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    /// Occupied entries with their index, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.pages.iter().enumerate().flat_map(|(page, entries)| {
            entries
                .iter()
                .enumerate()
                .filter_map(move |(i, entry)| match entry {
                    Entry::Occupied(value) => Some((page * PAGE + i, value)),
                    Entry::Vacant(_) => None,
                })
        })
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T> Index<usize> for PagedSlab<T> {
    type Output = T;
    fn index(&self, index: usize) -> &T {
        self.get(index).expect("an occupied entry")
    }
}

impl<T> IndexMut<usize> for PagedSlab<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        self.get_mut(index).expect("an occupied entry")
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
        assert_eq!(slab.get(keys[5]), None);
        assert_eq!(slab.next_key(), keys[PAGE + 7]);
        let reused = slab.insert(99);
        assert_eq!(
            reused,
            keys[PAGE + 7],
            "the latest freed entry is filled first"
        );
        let again = slab.insert(98);
        assert_eq!(again, keys[5]);
        assert_eq!(slab.pages.len(), 3, "no page added while others had room");
        assert_eq!(slab.len(), 3 * PAGE);
        slab[again] = 1;
        assert_eq!(slab[keys[5]], 1);
        assert_eq!(slab.next_key(), 3 * PAGE);
        assert_eq!(slab.insert(7), 3 * PAGE);
        assert_eq!(slab.pages.len(), 4);
    }

    #[test]
    fn iteration_skips_the_vacant_and_lookups_past_the_end_find_nothing() {
        let mut slab = PagedSlab::default();
        for i in 0..PAGE + 3 {
            slab.insert(i);
        }
        slab.remove(1);
        slab.remove(PAGE + 1);
        let keys: Vec<usize> = slab.iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), PAGE + 1);
        assert!(!keys.contains(&1) && !keys.contains(&(PAGE + 1)));
        assert!(slab.iter().all(|(k, &v)| k == v));
        assert_eq!(slab.get(10 * PAGE), None);
        assert_eq!(slab.get(PAGE + 3), None);
        assert_eq!(slab.get_mut(PAGE + 1), None);
        assert!(!slab.is_empty());
    }

    #[test]
    #[should_panic(expected = "vacant")]
    fn removing_twice_panics_like_a_slab() {
        let mut slab = PagedSlab::default();
        let key = slab.insert(1u8);
        slab.remove(key);
        slab.remove(key);
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
