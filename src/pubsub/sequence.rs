//! A channel's last seq and its history in one word. Most channels keep nothing
//! most of the time (a user's own channel between two messages): the word then
//! holds the seq itself, and only a channel that keeps messages has a block for
//! them, with its seq beside them. That is 8 bytes in the channel instead of 16,
//! and what lets a channel fit jemalloc's 48 B class.

// A tagged word: a seq or a pointer, told apart by the low bit.
#![allow(unsafe_code)]

use bytes::Bytes;

use super::history::{CatchUp, History};

/// The seq and what is kept, as the channel's lock guards them.
pub struct Sequence {
    word: Word,
}

/// Bit 0 set: `seq << 1 | 1`. Clear: a `Box<Kept>` made by `into_raw`, which is
/// 8-aligned, so its low bit is always 0.
#[repr(C)]
union Word {
    bare: u64,
    kept: *mut Kept,
}

#[derive(Debug, Default)]
struct Kept {
    last_seq: u64,
    history: History,
}

/// Seqs from here up do not fit beside the tag bit, and are kept in a block.
/// Redis's INCR stops at 2^63 - 1, so only a corrupt answer reaches it.
const BARE_LIMIT: u64 = 1 << 63;

static NOTHING: History = History::new();

// SAFETY: a `Sequence` owns its block as a `Box` would, and `Kept` is Send.
unsafe impl Send for Sequence {}

impl Default for Sequence {
    fn default() -> Sequence {
        Sequence {
            word: Sequence::bare(0),
        }
    }
}

impl Sequence {
    fn bare(seq: u64) -> Word {
        debug_assert!(seq < BARE_LIMIT);
        Word { bare: seq << 1 | 1 }
    }

    /// The word's bits, whichever field was written.
    fn bits(&self) -> u64 {
        // SAFETY: both fields are 8 bytes, and reading a pointer's bits as an
        // integer is defined.
        unsafe { self.word.bare }
    }

    /// The tag: the word holds the seq itself, not a block.
    fn is_bare(&self) -> bool {
        self.bits() & 1 == 1
    }

    fn kept(&self) -> Option<&Kept> {
        if self.is_bare() {
            return None;
        }
        // SAFETY: tag clear: `kept` came from `Box::into_raw` and is owned here.
        Some(unsafe { &*self.word.kept })
    }

    fn kept_mut(&mut self) -> Option<&mut Kept> {
        if self.is_bare() {
            return None;
        }
        // SAFETY: as in `kept`, and exclusive through `&mut self`.
        Some(unsafe { &mut *self.word.kept })
    }

    /// The block, made on first need with the seq moved into it.
    fn boxed(&mut self) -> &mut Kept {
        if self.kept().is_none() {
            let kept = Box::new(Kept {
                last_seq: self.last_seq(),
                history: History::new(),
            });
            self.word = Word {
                kept: Box::into_raw(kept),
            };
        }
        self.kept_mut().expect("just boxed")
    }

    /// Back to one word once nothing is kept.
    fn unbox_if_empty(&mut self) {
        let Some(kept) = self.kept() else {
            return;
        };
        if !kept.history.is_empty() || kept.last_seq >= BARE_LIMIT {
            return;
        }
        let seq = kept.last_seq;
        // SAFETY: tag clear (checked above): the block is ours to free, once.
        drop(unsafe { Box::from_raw(self.word.kept) });
        // A plain write: the word has no drop of its own, and the block is gone.
        self.word = Sequence::bare(seq);
    }

    pub fn last_seq(&self) -> u64 {
        match self.kept() {
            Some(kept) => kept.last_seq,
            None => self.bits() >> 1,
        }
    }

    pub fn set_last_seq(&mut self, seq: u64) {
        match self.kept_mut() {
            Some(kept) => kept.last_seq = seq,
            None if seq < BARE_LIMIT => self.word = Sequence::bare(seq),
            None => self.boxed().last_seq = seq,
        }
        self.unbox_if_empty();
    }

    pub fn history(&self) -> &History {
        self.kept().map_or(&NOTHING, |kept| &kept.history)
    }

    /// Keeps message `seq` (see `History::push`); a `size` of 0 keeps nothing.
    pub fn keep(&mut self, seq: u64, at_s: u32, payload: Bytes, size: usize) {
        if size == 0 {
            return;
        }
        self.boxed().history.push(seq, at_s, payload, size);
    }

    /// Drops messages older than `ttl_s` at `now_s`, and the block with the last.
    pub fn expire(&mut self, now_s: u32, ttl_s: u32) {
        if let Some(kept) = self.kept_mut() {
            kept.history.expire(now_s, ttl_s);
        }
        self.unbox_if_empty();
    }

    pub fn catch_up(&self, since: Option<u64>, same_epoch: bool, upto: u64) -> CatchUp {
        self.history().catch_up(since, same_epoch, upto)
    }
}

impl Drop for Sequence {
    fn drop(&mut self) {
        if self.kept().is_some() {
            // SAFETY: tag clear: the block is ours, freed once, here.
            drop(unsafe { Box::from_raw(self.word.kept) });
        }
    }
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence")
            .field("last_seq", &self.last_seq())
            .field("history", self.history())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(sequence: &Sequence) -> Vec<u64> {
        sequence
            .history()
            .after(0, usize::MAX)
            .iter()
            .map(|m| m.0)
            .collect()
    }

    #[test]
    fn one_word() {
        assert_eq!(std::mem::size_of::<Sequence>(), 8);
    }

    #[test]
    fn the_seq_moves_into_the_block_and_back() {
        let mut sequence = Sequence::default();
        assert_eq!(sequence.last_seq(), 0);
        sequence.set_last_seq(41);
        assert!(sequence.kept().is_none());
        sequence.keep(42, 10, Bytes::from_static(b"a"), 4);
        sequence.set_last_seq(42);
        assert!(sequence.kept().is_some(), "a kept message needs the block");
        assert_eq!((sequence.last_seq(), kept(&sequence)), (42, vec![42]));
        sequence.expire(12, 5);
        assert_eq!(kept(&sequence), vec![42], "not old enough yet");
        sequence.expire(20, 5);
        assert!(sequence.kept().is_none(), "nothing kept: one word again");
        assert_eq!(sequence.last_seq(), 42, "the seq survives the unboxing");
        assert!(sequence.history().is_empty());
    }

    #[test]
    fn a_size_of_zero_keeps_nothing_and_makes_no_block() {
        let mut sequence = Sequence::default();
        sequence.keep(1, 0, Bytes::from_static(b"a"), 0);
        assert!(sequence.kept().is_none());
    }

    #[test]
    fn seqs_past_63_bits_are_kept_whole() {
        let mut sequence = Sequence::default();
        for seq in [BARE_LIMIT - 1, BARE_LIMIT, u64::MAX, 7] {
            sequence.set_last_seq(seq);
            assert_eq!(sequence.last_seq(), seq);
            assert_eq!(sequence.kept().is_some(), seq >= BARE_LIMIT, "{seq}");
        }
    }

    #[test]
    fn history_size_bounds_what_is_kept_and_catch_up_reads_it() {
        let mut sequence = Sequence::default();
        for seq in 1..=10 {
            sequence.keep(seq, 0, Bytes::from(seq.to_string()), 3);
            sequence.set_last_seq(seq);
        }
        assert_eq!(kept(&sequence), vec![8, 9, 10]);
        let up = sequence.catch_up(Some(8), true, 10);
        assert!(up.recovered);
        assert_eq!(up.messages.len(), 2);
    }
}
