//! A slab in fixed pages that never move. A plain slab grows by copying every entry
//! into a buffer twice the size, and the old buffer stays resident until jemalloc
//! purges it, so after a burst of arrivals RSS follows the doublings, not the
//! entries held. Here growing adds one page; an entry is touched only when used.
//!
//! A vacant entry holds the next free index, and the enum needs no tag of its own
//! when `T` has a niche (a socket's fd is never -1): a connection's entry is the
//! connection's size (`a_connection_slot_stays_small`). Used for the workers'
//! connections and side entries, and for each worker's channel entries (`topics`).

use std::ops::{Index, IndexMut};

/// Entries per page: 1,024 connections are 24 KiB of address space, which stays
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

    pub fn len(&self) -> usize {
        self.len
    }

    /// Entries the pages have room for, held or not.
    pub fn capacity(&self) -> usize {
        self.pages.len() * PAGE
    }

    /// Entries ever filled below the end: what `compact` can shorten.
    fn used(&self) -> usize {
        self.pages
            .last()
            .map_or(0, |last| (self.pages.len() - 1) * PAGE + last.len())
    }

    fn is_vacant(&self, index: usize) -> bool {
        matches!(self.pages[index / PAGE][index % PAGE], Entry::Vacant(_))
    }

    /// Moves the last entries into the holes below them, then gives back the pages
    /// left empty. `moved(value, from, to)` must re-key each one; if it returns
    /// false the entry stays at `from` and compaction stops there.
    pub fn compact(&mut self, mut moved: impl FnMut(&mut T, usize, usize) -> bool) {
        let mut end = self.used();
        let mut hole = 0;
        loop {
            while end > 0 && self.is_vacant(end - 1) {
                end -= 1;
            }
            while hole < end && !self.is_vacant(hole) {
                hole += 1;
            }
            if hole >= end {
                break;
            }
            let from = end - 1;
            let slot = &mut self.pages[from / PAGE][from % PAGE];
            let Entry::Occupied(mut value) = std::mem::replace(slot, Entry::Vacant(0)) else {
                unreachable!("the entry before `end` is occupied");
            };
            if !moved(&mut value, from, hole) {
                self.pages[from / PAGE][from % PAGE] = Entry::Occupied(value);
                break;
            }
            self.pages[hole / PAGE][hole % PAGE] = Entry::Occupied(value);
            end = from;
        }
        self.pages.truncate(end.div_ceil(PAGE));
        if let Some(last) = self.pages.last_mut() {
            last.truncate(end - (end - 1) / PAGE * PAGE);
        }
        self.pages.shrink_to_fit();
        // The holes left (if `moved` stopped early) are the free list again,
        // lowest first.
        self.free = 0;
        for index in (0..end).rev() {
            if self.is_vacant(index) {
                self.pages[index / PAGE][index % PAGE] = Entry::Vacant(self.free);
                self.free = index as u32 + 1;
            }
        }
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
    fn compacting_fills_the_holes_from_the_end_and_gives_back_pages() {
        let mut slab = PagedSlab::default();
        for i in 0..4 * PAGE {
            slab.insert(i);
        }
        for i in (0..4 * PAGE).filter(|i| i % 8 != 0) {
            slab.remove(i);
        }
        let mut moves = Vec::new();
        slab.compact(|value, from, to| {
            assert_eq!(*value, from);
            *value = to;
            moves.push((from, to));
            true
        });
        assert_eq!(slab.len(), PAGE / 2);
        assert_eq!(slab.capacity(), PAGE, "three pages given back");
        assert!(
            slab.iter().all(|(k, &v)| k == v),
            "each moved value was re-keyed"
        );
        assert!(moves.iter().all(|&(from, to)| to < from && from % 8 == 0));
        assert_eq!(
            slab.next_key(),
            PAGE / 2,
            "no hole left: the next key is the end"
        );
        assert_eq!(slab.insert(7), PAGE / 2);
    }

    #[test]
    fn compaction_stopped_early_keeps_every_entry_and_its_holes_free() {
        let mut slab = PagedSlab::default();
        for i in 0..2 * PAGE {
            slab.insert(i);
        }
        for i in 0..PAGE {
            slab.remove(i);
        }
        let mut allowed = 3;
        slab.compact(|value, _, to| {
            if allowed == 0 {
                return false;
            }
            allowed -= 1;
            *value = to;
            true
        });
        assert_eq!(slab.len(), PAGE);
        assert_eq!(
            slab.capacity(),
            2 * PAGE,
            "the refused entry keeps its page"
        );
        assert!(slab.iter().all(|(k, &v)| k == v || k >= PAGE));
        assert_eq!(slab.iter().filter(|&(k, _)| k < PAGE).count(), 3);
        assert_eq!(slab.next_key(), 3, "the lowest hole is filled first");
        let refilled: Vec<usize> = (0..PAGE - 3).map(|i| slab.insert(i)).collect();
        assert!(refilled.iter().all(|&k| k < PAGE), "every hole was free");
        assert_eq!(
            slab.next_key(),
            2 * PAGE - 3,
            "the three moved out were cut off"
        );
    }

    #[test]
    fn compacting_an_empty_slab_gives_back_every_page() {
        let mut slab = PagedSlab::default();
        let keys: Vec<usize> = (0..PAGE + 1).map(|i| slab.insert(i)).collect();
        for key in keys {
            slab.remove(key);
        }
        slab.compact(|_, _, _| panic!("nothing to move"));
        assert_eq!(slab.capacity(), 0);
        assert_eq!(slab.insert(1), 0);
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
