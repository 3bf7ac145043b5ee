//! A channel's local subscribers (slab keys of the worker's connections) in 4 bytes:
//! one key inline, or the index of a pair or of a longer list that the worker keeps
//! in its `Lists`. A per-user channel has one subscriber per worker, and with the
//! 32-bit position beside it (`topics`) its entry is 16 B; two inline keys made it
//! 24 B. A user's second tab on the same worker takes a 16 B pair, not a list.

use slab::Slab;

/// One key below `SPILLED`; or `SPILLED | index << 1`, a pair, or
/// `SPILLED | index << 1 | 1`, a list; or `NONE`. Slab keys stay below
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

/// The subscribers of channels with more than one here: two in a pair, more in a
/// list.
#[derive(Debug, Default)]
pub struct Lists {
    pairs: Slab<[u32; 2]>,
    lists: Slab<Vec<u32>>,
}

/// Where a channel's subscribers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Empty,
    Inline,
    Pair(usize),
    List(usize),
}

/// A channel's subscribers taken out while its connections are written.
#[derive(Debug)]
pub enum Taken {
    Inline(Subscribers),
    Pair([u32; 2]),
    List(usize, Vec<u32>),
}

impl Taken {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Taken::Inline(inline) => inline.inline(),
            Taken::Pair(pair) => pair,
            Taken::List(_, keys) => keys,
        }
    }
}

impl Subscribers {
    fn held(&self) -> Held {
        match self.0 {
            NONE => Held::Empty,
            key if key < SPILLED => Held::Inline,
            spilled if spilled & 1 == 0 => Held::Pair(((spilled & !SPILLED) >> 1) as usize),
            spilled => Held::List(((spilled & !SPILLED) >> 1) as usize),
        }
    }

    fn pair(index: usize) -> Subscribers {
        Subscribers::spilled(index, 0)
    }

    fn list(index: usize) -> Subscribers {
        Subscribers::spilled(index, 1)
    }

    fn spilled(index: usize, kind: u32) -> Subscribers {
        let index = u32::try_from(index)
            .ok()
            .filter(|&i| i < (SPILLED >> 1) - 1)
            .expect("fewer than 2^30 - 1 crowded channels on a worker");
        Subscribers(SPILLED | index << 1 | kind)
    }

    fn inline(&self) -> &[u32] {
        if self.0 < SPILLED {
            std::slice::from_ref(&self.0)
        } else {
            &[]
        }
    }

    pub fn as_slice<'a>(&'a self, lists: &'a Lists) -> &'a [u32] {
        match self.held() {
            Held::Pair(index) => &lists.pairs[index],
            Held::List(index) => &lists.lists[index],
            Held::Empty | Held::Inline => self.inline(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0 == NONE
    }

    /// Adds `key`; returns its position.
    pub fn push(&mut self, lists: &mut Lists, key: u32) -> u32 {
        assert!(key < SPILLED, "slab key {key} collides with a marker");
        match self.held() {
            Held::Empty => {
                self.0 = key;
                0
            }
            Held::Inline => {
                *self = Subscribers::pair(lists.pairs.insert([self.0, key]));
                1
            }
            Held::Pair(index) => {
                let [a, b] = lists.pairs.remove(index);
                *self = Subscribers::list(lists.lists.insert(vec![a, b, key]));
                2
            }
            Held::List(index) => {
                let list = &mut lists.lists[index];
                list.push(key);
                (list.len() - 1) as u32
            }
        }
    }

    /// Moves the last key into `position` (panics past the end, as `Vec` does).
    /// A list down to two keys becomes a pair, and a pair down to one is inline.
    pub fn swap_remove(&mut self, lists: &mut Lists, position: usize) {
        let len = self.as_slice(lists).len();
        assert!(position < len, "no subscriber at {position}");
        match self.held() {
            Held::Empty | Held::Inline => self.0 = NONE,
            Held::Pair(index) => {
                let pair = lists.pairs.remove(index);
                self.0 = pair[1 - position];
            }
            Held::List(index) => {
                let list = &mut lists.lists[index];
                list.swap_remove(position);
                if let [a, b] = list[..] {
                    lists.lists.remove(index);
                    *self = Subscribers::pair(lists.pairs.insert([a, b]));
                } else if list.capacity() > 4 * list.len() + 16 {
                    list.shrink_to_fit();
                }
            }
        }
    }

    /// Takes the keys out for a fan-out (nothing joins or leaves meanwhile).
    pub fn take(&self, lists: &mut Lists) -> Taken {
        match self.held() {
            Held::List(index) => Taken::List(index, std::mem::take(&mut lists.lists[index])),
            Held::Pair(index) => Taken::Pair(lists.pairs[index]),
            Held::Empty | Held::Inline => Taken::Inline(*self),
        }
    }

    /// Puts back what `take` took.
    pub fn put_back(&self, lists: &mut Lists, taken: Taken) {
        if let (Held::List(index), Taken::List(taken_from, keys)) = (self.held(), taken) {
            if index == taken_from {
                lists.lists[index] = keys;
            }
        }
    }

    /// Gives the list's memory back once the channel has no subscriber here.
    pub fn release(self, lists: &mut Lists) {
        match self.held() {
            Held::Pair(index) => {
                lists.pairs.remove(index);
            }
            Held::List(index) => {
                lists.lists.remove(index);
            }
            Held::Empty | Held::Inline => {}
        }
    }
}

impl Lists {
    /// Pairs and lists held now (channels with more than one subscriber here).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pairs.len() + self.lists.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives back the slabs of a worker that once held many more crowded channels.
    pub fn shrink(&mut self) {
        if self.pairs.capacity() > 4 * self.pairs.len() + 64 {
            self.pairs.shrink_to_fit();
        }
        if self.lists.capacity() > 4 * self.lists.len() + 64 {
            self.lists.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stays_inline_two_pair_up_more_spill_and_each_comes_back() {
        assert_eq!(std::mem::size_of::<Subscribers>(), 4);
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        assert!(subs.is_empty());
        assert!(subs.as_slice(&lists).is_empty());
        assert_eq!(subs.push(&mut lists, 7), 0);
        assert_eq!(subs.held(), Held::Inline);
        assert_eq!(subs.as_slice(&lists), &[7]);
        assert_eq!(subs.push(&mut lists, 8), 1);
        assert_eq!(subs.held(), Held::Pair(0));
        assert_eq!(subs.as_slice(&lists), &[7, 8]);
        assert_eq!(subs.push(&mut lists, 9), 2);
        assert_eq!(subs.held(), Held::List(0));
        assert_eq!(lists.pairs.len(), 0, "the pair was given back");
        assert_eq!(subs.as_slice(&lists), &[7, 8, 9]);
        subs.swap_remove(&mut lists, 0);
        assert_eq!(subs.as_slice(&lists), &[9, 8]);
        assert!(matches!(subs.held(), Held::Pair(_)), "a pair again at two");
        assert_eq!(lists.lists.len(), 0, "the list was given back");
        subs.swap_remove(&mut lists, 0);
        assert_eq!(subs.as_slice(&lists), &[8]);
        assert_eq!(subs.held(), Held::Inline, "inline again at one");
        assert_eq!(lists.len(), 0);
        subs.swap_remove(&mut lists, 0);
        assert!(subs.is_empty());
        assert!(subs.as_slice(&lists).is_empty());
    }

    #[test]
    fn removing_from_a_pair_keeps_the_other_at_the_front() {
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        subs.push(&mut lists, 1);
        subs.push(&mut lists, 2);
        subs.swap_remove(&mut lists, 1);
        assert_eq!(subs.as_slice(&lists), &[1]);
        subs.push(&mut lists, 3);
        subs.swap_remove(&mut lists, 0);
        assert_eq!(subs.as_slice(&lists), &[3], "the last moved into 0");
    }

    #[test]
    fn the_largest_key_and_late_indexes_keep_their_meaning() {
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        let largest = SPILLED - 1;
        assert_eq!(subs.push(&mut lists, largest), 0);
        assert_eq!(
            subs.as_slice(&lists),
            &[largest],
            "not read as a pair or list"
        );
        // Pairs 0..3 and lists 0..2 taken by other channels.
        let mut others: Vec<Subscribers> = (0..5).map(|_| Subscribers::default()).collect();
        for (i, other) in others.iter_mut().enumerate() {
            for key in 0..if i < 3 { 2 } else { 3 } {
                other.push(&mut lists, key);
            }
        }
        assert_eq!(subs.push(&mut lists, 0), 1);
        assert_eq!(subs.held(), Held::Pair(3));
        assert_eq!(subs.as_slice(&lists), &[largest, 0]);
        assert_eq!(subs.push(&mut lists, 5), 2);
        assert_eq!(subs.held(), Held::List(2));
        assert_eq!(subs.as_slice(&lists), &[largest, 0, 5]);
        for (i, other) in others.iter().enumerate() {
            let want: &[u32] = if i < 3 { &[0, 1] } else { &[0, 1, 2] };
            assert_eq!(other.as_slice(&lists), want, "{i}");
        }
    }

    /// A deterministic xorshift, so a failure replays.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn many_channels_agree_with_plain_vectors_through_every_shape() {
        // Random joins, leaves, takes and put-backs over 64 channels, checked against
        // a Vec each after every step: inline, pair and list, and each way back.
        let mut lists = Lists::default();
        let mut subs = vec![Subscribers::default(); 64];
        let mut model: Vec<Vec<u32>> = vec![Vec::new(); 64];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..20_000 {
            let roll = next(&mut state);
            let c = (roll % 64) as usize;
            match (roll >> 8) % 8 {
                0..=3 if model[c].len() < 6 => {
                    let key = (roll >> 16) as u32 % 1000;
                    let at = subs[c].push(&mut lists, key);
                    assert_eq!(at as usize, model[c].len(), "step {step}");
                    model[c].push(key);
                }
                0..=5 if !model[c].is_empty() => {
                    let position = (roll >> 16) as usize % model[c].len();
                    subs[c].swap_remove(&mut lists, position);
                    model[c].swap_remove(position);
                }
                6 => {
                    let taken = subs[c].take(&mut lists);
                    assert_eq!(taken.as_slice(), &model[c][..], "step {step}");
                    subs[c].put_back(&mut lists, taken);
                }
                _ => {}
            }
            assert_eq!(subs[c].as_slice(&lists), &model[c][..], "step {step}");
            assert_eq!(subs[c].is_empty(), model[c].is_empty(), "step {step}");
        }
        let crowded = model.iter().filter(|m| m.len() > 1).count();
        assert_eq!(lists.len(), crowded, "one pair or list per crowded channel");
        for (c, sub) in subs.iter().enumerate() {
            assert_eq!(sub.as_slice(&lists), &model[c][..]);
            sub.release(&mut lists);
        }
        assert!(lists.is_empty());
    }

    #[test]
    #[should_panic(expected = "collides with a marker")]
    fn a_key_at_the_marker_is_refused() {
        let mut lists = Lists::default();
        Subscribers::default().push(&mut lists, SPILLED);
    }

    #[test]
    fn what_is_taken_comes_back_whole() {
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
        one.push(&mut lists, 43);
        let pair = one.take(&mut lists);
        assert_eq!(pair.as_slice(), &[42, 43]);
        one.put_back(&mut lists, pair);
        assert_eq!(one.as_slice(&lists), &[42, 43], "a pair stays where it was");
        subs.release(&mut lists);
        one.release(&mut lists);
        assert_eq!(lists.len(), 0);
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
        let Held::List(index) = subs.held() else {
            panic!("ten stay in a list");
        };
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

    #[test]
    #[should_panic(expected = "no subscriber at 2")]
    fn removing_past_the_end_of_a_pair_panics_too() {
        let mut lists = Lists::default();
        let mut subs = Subscribers::default();
        subs.push(&mut lists, 3);
        subs.push(&mut lists, 4);
        subs.swap_remove(&mut lists, 2);
    }
}
