//! Channel epochs: a short name for one run of a channel's sequence. A channel that
//! is removed and comes back, or a restarted server, starts a new epoch, so a
//! client resuming from an old position learns that its position means nothing now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Hands out epochs: distinct within a process (a counter) and across restarts
/// (seeded by the start time), mixed so that consecutive epochs look unrelated.
#[derive(Debug)]
pub struct Epochs {
    next: AtomicU64,
}

impl Epochs {
    pub fn new() -> Epochs {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Epochs::seeded(seed)
    }

    pub fn seeded(seed: u64) -> Epochs {
        Epochs {
            next: AtomicU64::new(seed),
        }
    }

    /// At most 8 characters of `[0-9a-z]` (41 bits).
    pub fn next(&self) -> Box<str> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        base36(splitmix64(n) & ((1 << 41) - 1)).into_boxed_str()
    }
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs::new()
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(8);
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_short_distinct_and_change_with_the_seed() {
        let epochs = Epochs::seeded(42);
        let a = epochs.next();
        let b = epochs.next();
        assert_ne!(a, b);
        for e in [&a, &b] {
            assert!(!e.is_empty() && e.len() <= 8, "{e}");
            assert!(e
                .bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        }
        assert_ne!(Epochs::seeded(43).next(), a, "another start, another epoch");
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 - 1), "zz");
    }
}
