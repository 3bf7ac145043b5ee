//! Commands per second per connection (`--max-commands-per-second`): a token
//! bucket of twice the rate, refilled each second, kept in the side slab only while
//! a client sends commands. The sweep gives it back once it is full again, so an
//! idle client pays nothing.

use super::Worker;

/// The bucket holds this many seconds of commands: a burst (a page subscribing to
/// its channels at once) passes, a steady excess does not.
const BURST_SECONDS: u32 = 2;

/// Tokens left and the worker second they were counted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRate {
    tokens: u32,
    at: u32,
}

impl CommandRate {
    pub fn full(now: u32, per_second: u32) -> CommandRate {
        CommandRate {
            tokens: per_second.saturating_mul(BURST_SECONDS),
            at: now,
        }
    }

    fn refill(&mut self, now: u32, per_second: u32) {
        let burst = per_second.saturating_mul(BURST_SECONDS);
        let earned = now.saturating_sub(self.at).saturating_mul(per_second);
        self.tokens = self.tokens.saturating_add(earned).min(burst);
        self.at = now;
    }

    /// Spends one command; false when the bucket is empty.
    pub fn take(&mut self, now: u32, per_second: u32) -> bool {
        self.refill(now, per_second);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Full again by `now`: keeping it would change nothing.
    pub fn is_idle(&self, now: u32, per_second: u32) -> bool {
        let mut later = *self;
        later.refill(now, per_second);
        later == CommandRate::full(now, per_second)
    }
}

impl Worker {
    /// Counts one command of `key`; false once it is past its rate.
    pub(super) fn allow_command(&mut self, key: usize) -> bool {
        let per_second = self.settings.max_commands_per_second;
        if per_second == 0 {
            return true;
        }
        let now = self.now;
        let side = self.side_mut(key);
        side.rare_mut()
            .rate
            .get_or_insert_with(|| CommandRate::full(now, per_second))
            .take(now, per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_and_a_steady_excess_does_not() {
        let mut rate = CommandRate::full(0, 10);
        assert!((0..20).all(|_| rate.take(0, 10)), "a burst of two seconds");
        assert!(!rate.take(0, 10));
        // One second later, one second's worth.
        assert!((0..10).all(|_| rate.take(1, 10)));
        assert!(!rate.take(1, 10));
    }

    #[test]
    fn a_quiet_bucket_fills_up_and_can_be_given_back() {
        let mut rate = CommandRate::full(5, 10);
        assert!(rate.take(5, 10));
        assert!(!rate.is_idle(5, 10));
        assert!(rate.is_idle(6, 10));
        for _ in 0..20 {
            rate.take(6, 10);
        }
        assert!(!rate.is_idle(7, 10), "one second refills half");
        assert!(rate.is_idle(8, 10));
    }
}
