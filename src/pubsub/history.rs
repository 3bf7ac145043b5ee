//! A channel's history: its last messages, bounded by count and by age. Pure data:
//! the caller passes the clock, so the rules are tested without waiting.

use std::collections::VecDeque;

use bytes::Bytes;

/// One kept message: its push JSON, shared with every transport that sends it.
#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    /// Hub clock (seconds) when it was published.
    at_s: u32,
    payload: Bytes,
}

/// Not in the channel itself: a channel keeps one only while it has messages to
/// keep (`Sequence`).
#[derive(Debug, Default)]
pub struct History {
    kept: VecDeque<Kept>,
}

/// What a resume from `since` gets: the messages to deliver, oldest first, and
/// whether they close the gap exactly.
#[derive(Debug, PartialEq, Eq)]
pub struct CatchUp {
    pub messages: Vec<(u64, Bytes)>,
    pub recovered: bool,
}

impl History {
    pub const fn new() -> History {
        History {
            kept: VecDeque::new(),
        }
    }

    /// Appends message `seq` and drops the oldest past `size`.
    pub fn push(&mut self, seq: u64, at_s: u32, payload: Bytes, size: usize) {
        if size == 0 {
            return;
        }
        while self.kept.len() >= size {
            self.kept.pop_front();
        }
        self.kept.push_back(Kept { seq, at_s, payload });
    }

    /// Drops messages older than `ttl_s` at `now_s`.
    pub fn expire(&mut self, now_s: u32, ttl_s: u32) {
        while self
            .kept
            .front()
            .is_some_and(|k| now_s.saturating_sub(k.at_s) >= ttl_s)
        {
            self.kept.pop_front();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    fn kept(&self) -> &VecDeque<Kept> {
        &self.kept
    }

    /// The messages after `since` up to and including `upto` (the position the
    /// caller will be live from). `since: None` asks for nothing. A resume that
    /// cannot be exact (the gap left history, `since` is beyond `upto`, or the
    /// epoch changed: `same_epoch` false) gets every kept message up to `upto`.
    pub fn catch_up(&self, since: Option<u64>, same_epoch: bool, upto: u64) -> CatchUp {
        let Some(since) = since else {
            return CatchUp {
                messages: Vec::new(),
                recovered: true,
            };
        };
        let oldest = self.kept().front().map_or(upto + 1, |k| k.seq);
        let recovered = same_epoch && since <= upto && (since == upto || since + 1 >= oldest);
        let from = if recovered { since } else { 0 };
        let messages = self
            .kept()
            .iter()
            .filter(|k| k.seq > from && k.seq <= upto)
            .map(|k| (k.seq, k.payload.clone()))
            .collect();
        CatchUp {
            messages,
            recovered,
        }
    }

    /// Up to `limit` messages after `since`, oldest first (the history API).
    pub fn after(&self, since: u64, limit: usize) -> Vec<(u64, Bytes)> {
        self.kept()
            .iter()
            .filter(|k| k.seq > since)
            .take(limit)
            .map(|k| (k.seq, k.payload.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(seqs: std::ops::RangeInclusive<u64>, size: usize) -> History {
        let mut history = History::default();
        for seq in seqs {
            history.push(seq, seq as u32, Bytes::from(seq.to_string()), size);
        }
        history
    }

    fn seqs(catch_up: &CatchUp) -> Vec<u64> {
        catch_up.messages.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn keeps_the_last_size_messages() {
        let history = filled(1..=10, 4);
        assert_eq!(
            seqs(&history.catch_up(Some(6), true, 10)),
            vec![7, 8, 9, 10]
        );
        assert_eq!(history.after(0, 2).len(), 2);
    }

    #[test]
    fn a_gap_inside_history_is_recovered_exactly() {
        let history = filled(1..=10, 100);
        let up = history.catch_up(Some(7), true, 10);
        assert!(up.recovered);
        assert_eq!(seqs(&up), vec![8, 9, 10]);
        // Messages past `upto` are still on their way to the worker: not repeated.
        assert_eq!(seqs(&history.catch_up(Some(7), true, 9)), vec![8, 9]);
        let none = history.catch_up(Some(10), true, 10);
        assert!(none.recovered && none.messages.is_empty());
    }

    #[test]
    fn a_gap_beyond_history_or_an_epoch_change_is_not_recovered() {
        let history = filled(1..=10, 3); // keeps 8, 9, 10
        let lost = history.catch_up(Some(5), true, 10);
        assert!(!lost.recovered);
        assert_eq!(seqs(&lost), vec![8, 9, 10], "what is kept still arrives");
        assert!(
            history.catch_up(Some(7), true, 10).recovered,
            "7 -> 8 is exact"
        );
        let moved = history.catch_up(Some(9), false, 10);
        assert!(!moved.recovered);
        assert_eq!(seqs(&moved), vec![8, 9, 10]);
        assert!(!history.catch_up(Some(11), true, 10).recovered);
    }

    #[test]
    fn no_since_asks_for_nothing() {
        let up = filled(1..=3, 10).catch_up(None, false, 3);
        assert!(up.recovered && up.messages.is_empty());
    }

    #[test]
    fn messages_expire_by_age() {
        let mut history = filled(1..=10, 100); // message n published at n s
        history.expire(15, 10);
        assert_eq!(history.after(0, 100).first().map(|m| m.0), Some(6));
        history.expire(100, 10);
        assert!(history.is_empty());
        assert!(!history.catch_up(Some(3), true, 10).recovered);
    }
}
