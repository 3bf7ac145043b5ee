//! A channel's local subscribers (slab keys of the worker's connections) in 4 bytes:
//! one key inline, or the index of a longer list that the worker keeps in its
//! `Lists`. A per-user channel has one subscriber per worker, and with the 32-bit
//! position beside it (`topics`) its entry is 16 B; two inline keys made it 24 B,
//! the price of a second tab on the same worker now (a list: docs/benchmarks.md).

use slab::Slab;

/// One key below `SPILLED`, or `SPILLED | index`, or `NONE`. Slab keys stay below
/// `SPILLED`: a worker's slab holds at most its open sockets, and Linux caps a
/// process's files below 2^31 (`fs.nr_open` at most `INT_MAX & -64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribers(u32);

const NONE: u32 = u32::MAX;
const SPILLED: u32 = 1 << 31;

impl Default for Subscribers {
    fn default() -> Self {
        Subscribers(NONE)
    }
}

/// The lists of channels with more than one local subscriber.
#[derive(Debug, Default)]
pub struct Lists {
    lists: Slab<Vec<u32>>,
}

/// A channel's subscribers taken out while its connections are written.
#[derive(Debug)]
pub enum Taken {
    Inline(Subscribers),
    List(usize, Vec<u32>),
}

impl Taken {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Taken::Inline(inline) => inline.inline(),
            Taken::List(_, keys) => keys,
        }
    }
}

impl Subscribers {
    fn spilled(&self) -> Option<usize> {
        (self.0 != NONE && self.0 & SPILLED != 0).then_some((self.0 & !SPILLED) as usize)
    }

    fn inline(&self) -> &[u32] {
        if self.0 < SPILLED {
            std::slice::from_ref(&self.0)
        } else {
            &[]
        }
    }

    pub fn as_slice<'a>(&'a self, lists: &'a Lists) -> &'a [u32] {
        match self.spilled() {
            Some(index) => &lists.lists[index],
            None => self.inline(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0 == NONE
    }

    /// Adds `key`; returns its position.
    pub fn push(&mut self, lists: &mut Lists, key: u32) -> u32 {
        assert!(key < SPILLED, "slab key {key} collides with a marker");
        if let Some(index) = self.spilled() {
            let list = &mut lists.lists[index];
            list.push(key);
            return (list.len() - 1) as u32;
        }
        if self.0 == NONE {
            self.0 = key;
            return 0;
        }
        let index = lists.lists.insert(vec![self.0, key]);
        let index = u32::try_from(index)
            .ok()
            .filter(|&i| i < SPILLED - 1)
            .expect("fewer than 2^31 - 1 crowded channels on a worker");
        self.0 = SPILLED | index;
        1
    }

    /// Moves the last key into `position` (panics past the end, as `Vec` does).
    /// A list down to one key comes back inline.
    pub fn swap_remove(&mut self, lists: &mut Lists, position: usize) {
        let Some(index) = self.spilled() else {
            let len = self.inline().len();
            assert!(position < len, "no subscriber at {position}");
            self.0 = NONE;
            return;
        };
        let list = &mut lists.lists[index];
        list.swap_remove(position);
        if list.len() <= 1 {
            let list = lists.lists.remove(index);
            self.0 = list.first().copied().unwrap_or(NONE);
        } else if list.capacity() > 4 * list.len() + 16 {
            list.shrink_to_fit();
        }
    }

    /// Takes the keys out for a fan-out (nothing joins or leaves meanwhile).
    pub fn take(&self, lists: &mut Lists) -> Taken {
        match self.spilled() {
            Some(index) => Taken::List(index, std::mem::take(&mut lists.lists[index])),
            None => Taken::Inline(*self),
        }
    }

    /// Puts back what `take` took.
    pub fn put_back(&self, lists: &mut Lists, taken: Taken) {
        if let (Some(index), Taken::List(taken_from, keys)) = (self.spilled(), taken) {
            if index == taken_from {
                lists.lists[index] = keys;
            }
        }
    }

    /// Gives the list's memory back once the channel has no subscriber here.
    pub fn release(self, lists: &mut Lists) {
        if let Some(index) = self.spilled() {
            lists.lists.remove(index);
        }
    }
}

impl Lists {
    /// Lists held now (channels with more than one subscriber here).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Gives back the slab of a worker that once held many more crowded channels.
    pub fn shrink(&mut self) {
        if self.lists.capacity() > 4 * self.lists.len() + 64 {
            self.lists.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subscriber_stays_inline_and_more_spill_and_come_back() {
        assert_eq!(std::mem::size_of::<Subscribers>(), 4);
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        assert!(subs.is_empty());
        assert!(subs.as_slice(&lists).is_empty());
        assert_eq!(subs.push(&mut lists, 7), 0);
        assert_eq!(subs.spilled(), None);
        assert_eq!(subs.as_slice(&lists), &[7]);
        assert_eq!(subs.push(&mut lists, 8), 1);
        assert!(subs.spilled().is_some());
        assert_eq!(subs.push(&mut lists, 9), 2);
        assert_eq!(subs.as_slice(&lists), &[7, 8, 9]);
        subs.swap_remove(&mut lists, 0);
        assert_eq!(subs.as_slice(&lists), &[9, 8]);
        subs.swap_remove(&mut lists, 1);
        assert_eq!(subs.as_slice(&lists), &[9]);
        assert_eq!(subs.spilled(), None, "back inline at one");
        assert_eq!(lists.lists.len(), 0, "the list was given back");
        subs.swap_remove(&mut lists, 0);
        assert!(subs.is_empty());
        assert!(subs.as_slice(&lists).is_empty());
    }

    #[test]
    fn the_largest_key_and_a_late_list_index_keep_their_meaning() {
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        let largest = SPILLED - 1;
        assert_eq!(subs.push(&mut lists, largest), 0);
        assert_eq!(subs.as_slice(&lists), &[largest], "not read as a list");
        // Lists 0..3 taken by other channels: this one spills to index 3.
        let mut others: Vec<Subscribers> = (0..3).map(|_| Subscribers::default()).collect();
        for other in &mut others {
            other.push(&mut lists, 1);
            other.push(&mut lists, 2);
        }
        assert_eq!(subs.push(&mut lists, 0), 1);
        assert_eq!(subs.spilled(), Some(3));
        assert_eq!(subs.as_slice(&lists), &[largest, 0]);
        for other in &others {
            assert_eq!(other.as_slice(&lists), &[1, 2]);
        }
    }

    #[test]
    #[should_panic(expected = "collides with a marker")]
    fn a_key_at_the_marker_is_refused() {
        let mut lists = Lists::default();
        Subscribers::default().push(&mut lists, SPILLED);
    }

    #[test]
    fn a_taken_list_comes_back_whole() {
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        for key in 0..5 {
            subs.push(&mut lists, key);
        }
        let taken = subs.take(&mut lists);
        assert_eq!(taken.as_slice(), &[0, 1, 2, 3, 4]);
        subs.put_back(&mut lists, taken);
        assert_eq!(subs.as_slice(&lists), &[0, 1, 2, 3, 4]);
        let inline = Subscribers::default();
        assert!(inline.take(&mut lists).as_slice().is_empty());
        let mut one = Subscribers::default();
        one.push(&mut lists, 42);
        assert_eq!(one.take(&mut lists).as_slice(), &[42]);
        subs.release(&mut lists);
        assert_eq!(lists.lists.len(), 0);
    }

    #[test]
    fn a_large_list_gives_memory_back_as_it_empties() {
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        for key in 0..1000 {
            subs.push(&mut lists, key);
        }
        for _ in 0..990 {
            subs.swap_remove(&mut lists, 0);
        }
        let spilled = subs.as_slice(&lists);
        assert_eq!(spilled.len(), 10);
        let index = subs.spilled().expect("ten stay spilled");
        assert!(lists.lists[index].capacity() <= 4 * 10 + 16);
    }

    #[test]
    #[should_panic(expected = "no subscriber at 1")]
    fn removing_past_the_end_panics_as_a_vec_does() {
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        subs.push(&mut lists, 3);
        subs.swap_remove(&mut lists, 1);
    }
}
