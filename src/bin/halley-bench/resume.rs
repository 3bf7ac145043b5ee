//! The reconnect scenario's per-subscriber state: the position (`since`, `epoch`) a
//! subscriber resumes from after the drop, and what its resume reported.
//!
//! A subscriber's position is the channel's last seq when it subscribed, raised by
//! every push it receives and by every poll answer's `last_seq`. A resume's `subscribed`
//! reply (or first poll answer) reports `recovered` and the channel's last seq at that
//! moment: pushes up to that seq are the catch-up of what was missed.

use std::time::Instant;

#[derive(Debug, Default)]
pub struct Resume {
    pub pos: u64,
    pub epoch: Option<Box<str>>,
    /// The current connection is a resume after the drop.
    pub resuming: bool,
    /// When the reconnect began (the drop, plus `--away`).
    pub since_drop: Option<Instant>,
    /// The channel's last seq when the resume was accepted.
    pub catchup_until: u64,
}

/// What the reply or first answer of a connection said, as the sink records it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResumeCounts {
    /// Resumes that answered `recovered:false`: at most one per resume, so in a
    /// reconnect past the history exactly one per dropped subscriber.
    pub not_recovered: u64,
    /// Poll answers after a connection's first that said `recovered:false`: more
    /// than the channel's history arrived within one poll round trip (a slow client
    /// or a small `--history-size`). Apart from `not_recovered`, which counts each
    /// resume's answer, because how often this happens depends on timing.
    pub polls_not_recovered: u64,
    /// Resumes whose answer had no `recovered` field at all.
    pub no_recovered_field: u64,
    /// Pushes received after a resume with seq up to the channel's seq at the resume.
    pub caught_up: u64,
}

impl Resume {
    /// A `subscribed` reply or a poll answer: `seq` is the channel's last seq.
    pub fn on_subscribed(
        &mut self,
        seq: u64,
        epoch: Option<&str>,
        recovered: Option<bool>,
        counts: &mut ResumeCounts,
    ) {
        if let Some(e) = epoch {
            if self.epoch.as_deref() != Some(e) {
                self.epoch = Some(e.into());
            }
        }
        if self.resuming {
            // Catch-up pushes (pos+1 ..= seq) are still to come: the position only
            // moves with them.
            self.catchup_until = seq;
            match recovered {
                Some(true) => {}
                Some(false) => counts.not_recovered += 1,
                None => counts.no_recovered_field += 1,
            }
        } else {
            self.pos = self.pos.max(seq);
        }
    }

    /// A push with this seq arrived.
    pub fn on_push(&mut self, seq: u64, counts: &mut ResumeCounts) {
        if self.resuming && seq <= self.catchup_until && seq > 0 {
            counts.caught_up += 1;
        }
        self.pos = self.pos.max(seq);
    }

    /// A later poll answer (not the first of the connection).
    pub fn on_answer(&mut self, last_seq: u64, epoch: Option<&str>) {
        self.pos = self.pos.max(last_seq);
        if let Some(e) = epoch {
            if self.epoch.as_deref() != Some(e) {
                self.epoch = Some(e.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let mut c = ResumeCounts::default();
        let mut r = Resume::default();
        r.on_subscribed(5, Some("e1"), Some(true), &mut c);
        assert_eq!((r.pos, r.epoch.as_deref()), (5, Some("e1")));
        r.on_push(6, &mut c);
        r.on_push(7, &mut c);
        assert_eq!((r.pos, c.caught_up), (7, 0));
        r.resuming = true;
        r.on_subscribed(10, Some("e1"), Some(false), &mut c);
        assert_eq!((r.pos, r.catchup_until, c.not_recovered), (7, 10, 1));
        for s in 8..=11 {
            r.on_push(s, &mut c);
        }
        assert_eq!((r.pos, c.caught_up), (11, 3));
        r.on_answer(12, Some("e2"));
        assert_eq!((r.pos, r.epoch.as_deref()), (12, Some("e2")));
    }
}
