//! Channel ids, unique among the channels alive in the process: an id is handed out
//! again only once the channel that had it is dropped.
//!
//! A counter would wrap after 2^32 channels made (50 days at 1,000 a second, as
//! per-user channels come and go with their users), and a new channel would then
//! share its id with a long-lived one. Workers index their channels, and connections
//! their subscriptions, by id: the two would share one entry in a worker's index,
//! the old one's subscribers there would get nothing more, and their leaving would
//! remove the new one's.
//!
//! One bit per id, lowest free first, so ids stay dense and the bitmap (1/8 byte
//! per channel) shrinks back after a churn.

use std::sync::{Mutex, PoisonError};

use super::channel::ChannelId;

/// Never handed out: the id of a placeholder, which stands for a channel that
/// could not be made and is never indexed.
pub const PLACEHOLDER: ChannelId = ChannelId::MAX;

static IDS: Mutex<Ids> = Mutex::new(Ids::new(PLACEHOLDER));

/// An id no live channel has, or `None` when all 2^32 - 1 are taken.
pub fn take() -> Option<ChannelId> {
    IDS.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Frees the id of a channel being dropped. When that leaves every id of its
/// block of `1 << block_bits` free, `emptied` runs with the block's first id, still
/// under the lock, so that no id of the block is handed out before it returns.
pub fn give_back(id: ChannelId, block_bits: u32, emptied: impl FnOnce(ChannelId)) {
    let mut ids = IDS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(first) = ids.give_back_in_block(id, block_bits) {
        emptied(first);
    }
}

#[derive(Debug)]
struct Ids {
    /// Bit `id % 64` of word `id / 64` is set while `id` is taken.
    words: Vec<u64>,
    /// Every word before this one is full.
    first_free: usize,
    /// Ids from here up are never handed out.
    limit: ChannelId,
}

impl Ids {
    const fn new(limit: ChannelId) -> Ids {
        Ids {
            words: Vec::new(),
            first_free: 0,
            limit,
        }
    }

    fn take(&mut self) -> Option<ChannelId> {
        while self.words.get(self.first_free) == Some(&u64::MAX) {
            self.first_free += 1;
        }
        if self.first_free == self.words.len() {
            if self.words.len() as u64 * 64 >= u64::from(self.limit) {
                return None;
            }
            self.words.push(0);
        }
        let word = &mut self.words[self.first_free];
        let bit = (!*word).trailing_zeros();
        let id = self.first_free as u64 * 64 + u64::from(bit);
        if id >= u64::from(self.limit) {
            return None;
        }
        *word |= 1 << bit;
        ChannelId::try_from(id).ok()
    }

    /// `give_back`, and the first id of the block of `1 << block_bits` around
    /// `id` if none of it is taken now. Blocks are at least a word (64 ids).
    fn give_back_in_block(&mut self, id: ChannelId, block_bits: u32) -> Option<ChannelId> {
        self.give_back(id);
        let first = id >> block_bits << block_bits;
        let (from, to) = (
            first as usize / 64,
            (first as usize >> 6) + (1 << (block_bits - 6)),
        );
        let emptied = match self.words.get(from..to.min(self.words.len())) {
            Some(words) => words.iter().all(|&w| w == 0),
            None => true, // the block is past the last word kept: all free
        };
        emptied.then_some(first)
    }

    fn give_back(&mut self, id: ChannelId) {
        let at = id as usize / 64;
        let Some(word) = self.words.get_mut(at) else {
            debug_assert!(false, "channel id {id} was never taken");
            return;
        };
        debug_assert!(
            *word & (1 << (id % 64)) != 0,
            "channel id {id} given back twice"
        );
        *word &= !(1 << (id % 64));
        self.first_free = self.first_free.min(at);
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
        if self.words.capacity() > 4 * self.words.len() + 64 {
            self.words.shrink_to(2 * self.words.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_id_comes_first_and_a_freed_one_comes_back() {
        let mut ids = Ids::new(1000);
        let taken: Vec<_> = (0..130).map(|_| ids.take().unwrap()).collect();
        assert_eq!(taken, (0..130).collect::<Vec<_>>());
        ids.give_back(70);
        ids.give_back(3);
        assert_eq!(ids.take(), Some(3));
        assert_eq!(ids.take(), Some(70));
        assert_eq!(ids.take(), Some(130));
    }

    #[test]
    fn an_id_still_alive_is_never_handed_out_however_many_come_and_go() {
        // With a counter, the 2^32nd channel would get the long-lived one's id.
        let mut ids = Ids::new(4);
        let long_lived = ids.take().unwrap();
        for _ in 0..10_000 {
            let id = ids.take().unwrap();
            assert_ne!(id, long_lived);
            ids.give_back(id);
        }
    }

    #[test]
    fn past_the_limit_nothing_is_handed_out_until_an_id_is_freed() {
        let mut ids = Ids::new(3);
        assert_eq!(
            (ids.take(), ids.take(), ids.take()),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(ids.take(), None);
        ids.give_back(1);
        assert_eq!(ids.take(), Some(1));
        assert_eq!(ids.take(), None);
    }

    #[test]
    fn the_bitmap_shrinks_back_after_a_churn() {
        let mut ids = Ids::new(PLACEHOLDER);
        let kept = ids.take().unwrap();
        let churn: Vec<_> = (0..100_000).map(|_| ids.take().unwrap()).collect();
        assert_eq!(ids.words.len(), 100_001_usize.div_ceil(64));
        for id in churn {
            ids.give_back(id);
        }
        assert_eq!(ids.words, vec![1 << kept]);
        assert!(ids.words.capacity() <= 64, "{}", ids.words.capacity());
        assert_eq!(ids.take(), Some(1), "dense again");
    }

    #[test]
    fn a_block_is_reported_once_its_last_id_is_freed() {
        let mut ids = Ids::new(PLACEHOLDER);
        let taken: Vec<_> = (0..300).map(|_| ids.take().unwrap()).collect();
        // Blocks of 128: 0..128, 128..256, 256..384.
        for &id in &taken[128..255] {
            assert_eq!(ids.give_back_in_block(id, 7), None, "255 is still taken");
        }
        assert_eq!(ids.give_back_in_block(255, 7), Some(128));
        for &id in &taken[257..] {
            assert_eq!(ids.give_back_in_block(id, 7), None, "256 is still taken");
        }
        // The last block's words are popped once empty: still reported.
        assert_eq!(ids.give_back_in_block(256, 7), Some(256));
        assert_eq!(ids.give_back_in_block(0, 7), None, "1..128 still taken");
        assert_eq!(ids.take(), Some(0));
    }

    #[test]
    fn a_limit_inside_a_word_is_kept() {
        // As PLACEHOLDER is: the last id of its word.
        let mut ids = Ids::new(70);
        assert_eq!((0..70).filter_map(|_| ids.take()).count(), 70);
        assert_eq!(ids.take(), None);
        assert_eq!(ids.words.len(), 2);
    }
}
