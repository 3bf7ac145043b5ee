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
        self.next_epoch().as_str().into()
    }

    /// The same, held inline.
    pub fn next_epoch(&self) -> Epoch {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Epoch::parse(&base36(splitmix64(n) & ((1 << 41) - 1))).expect("8 base-36 digits")
    }
}

/// An epoch held inline in 8 bytes (what [`Epochs`] makes, and so what Redis keeps
/// for a channel): a channel stores no separate allocation for it.
/// The default is empty: a placeholder's, never a channel's.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Epoch([u8; 8]);

impl Epoch {
    /// 1 to 8 bytes without NUL (the padding); anything else is not an epoch
    /// Halley made.
    pub fn parse(text: &str) -> Option<Epoch> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > 8 || bytes.contains(&0) {
            return None;
        }
        let mut inline = [0u8; 8];
        inline[..bytes.len()].copy_from_slice(bytes);
        Some(Epoch(inline))
    }

    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(8);
        // Made from a &str, cut at a byte the text did not contain.
        std::str::from_utf8(&self.0[..len]).unwrap_or_default()
    }
}

impl std::ops::Deref for Epoch {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    fn an_epoch_is_one_to_eight_bytes_inline() {
        assert_eq!(std::mem::size_of::<Epoch>(), 8);
        assert_eq!(Epoch::parse("e1").unwrap().as_str(), "e1");
        assert_eq!(&*Epoch::parse("abcdefgh").unwrap(), "abcdefgh");
        assert_eq!(Epoch::parse(""), None);
        assert_eq!(
            Epoch::parse("abcdefghi"),
            None,
            "longer than any epoch Halley makes"
        );
        assert_eq!(Epoch::parse("a\0b"), None);
        assert_eq!(format!("{:?}", Epoch::parse("x").unwrap()), "\"x\"");
    }

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
        let inline = epochs.next_epoch();
        assert!(!inline.is_empty() && inline.len() <= 8);
        assert_eq!(
            Epoch::parse(&inline).map(|e| e.to_string()),
            Some(inline.to_string())
        );
        assert_eq!(base36(36 * 36 - 1), "zz");
    }
}
