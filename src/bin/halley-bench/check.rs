//! Fanout bookkeeping: what a push carries and whether each subscriber got every
//! message of its channel exactly once and in `seq` order.
//!
//! Message `i` is published to channel `i % K` with data `{"t":<unix µs>,"i":<i>}`.
//! Several publishers post in parallel, so the server may number a channel's messages
//! in another order than `i`: order is judged by `seq`, identity by `i`.

/// The fields of a push `{"channel":"C","seq":N,"data":{"t":T,"i":I}}` we check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    pub seq: u64,
    pub t: u64,
    pub i: u64,
}

/// The value of 8 ASCII digits loaded little-endian (first digit in the low byte), or
/// None when any of the 8 bytes is not a digit.
#[inline]
fn eight_digits(x: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Each byte is 0x30..=0x39 exactly when its high nibble is 3 and adding 6 does
    // not carry into it.
    if x & (0xF0 * ONES) != 0x30 * ONES
        || (x.wrapping_add(0x06 * ONES) & (0xF0 * ONES)) != 0x30 * ONES
    {
        return None;
    }
    let v = x & (0x0F * ONES);
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF)
}

/// The unsigned decimal at the start of `p` and its digit count: at most 19 digits,
/// so it cannot overflow. Eight digits at a time while they last (the timestamps
/// have 16), then one by one.
#[inline]
fn leading_u64(p: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    let mut n = 0;
    while n + 8 <= 16 {
        let Some(chunk) = p.get(n..n + 8) else { break };
        let Some(d) = eight_digits(u64::from_le_bytes(chunk.try_into().ok()?)) else {
            break;
        };
        v = v * 100_000_000 + d;
        n += 8;
    }
    while let Some(&b) = p.get(n) {
        if !b.is_ascii_digit() {
            break;
        }
        if n == 19 {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// Where `key` (which starts with a quote) first occurs in `hay`: only the positions
/// of quotes are compared, rather than every window.
fn find(hay: &[u8], key: &[u8]) -> Option<usize> {
    let first = key[0];
    let last_start = hay.len().checked_sub(key.len())?;
    let mut at = 0;
    while at <= last_start {
        let q = hay[at..=last_start].iter().position(|&b| b == first)?;
        at += q;
        if &hay[at..at + key.len()] == key {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// The unsigned integer following `key` in `hay`.
fn number_after(hay: &[u8], key: &[u8]) -> Option<(u64, usize)> {
    let at = find(hay, key)? + key.len();
    let (v, digits) = leading_u64(&hay[at..])?;
    Some((v, at + digits))
}

/// The push exactly as the server writes it, `{"channel":"C","seq":N,"data":` followed
/// by the publisher's `{"t":T,"i":I}` byte for byte, read in one pass. It accepts
/// nothing the general scan would read differently: the channel name holds no quote,
/// so the first `"seq":`, `"t":` and `"i":` are the ones matched here.
#[inline]
fn parse_exact(p: &[u8]) -> Option<Push> {
    let rest = p.strip_prefix(b"{\"channel\":\"")?;
    let q = rest.iter().position(|&b| b == b'"')?;
    let rest = rest[q..].strip_prefix(b"\",\"seq\":")?;
    let (seq, n) = leading_u64(rest)?;
    let rest = rest[n..].strip_prefix(b",\"data\":{\"t\":")?;
    let (t, n) = leading_u64(rest)?;
    let rest = rest[n..].strip_prefix(b",\"i\":")?;
    let (i, _) = leading_u64(rest)?;
    Some(Push { seq, t, i })
}

/// A hand-rolled scan rather than serde: it runs once per delivery, millions of
/// times per second at full fan-out, on the same two cores as the server. Channel
/// names cannot contain quotes, so the keys cannot be spoofed by them. The exact
/// server layout is read in one pass; anything else goes through a key search.
pub fn parse_push(p: &[u8]) -> Option<Push> {
    parse_exact(p).or_else(|| parse_general(p))
}

fn parse_general(p: &[u8]) -> Option<Push> {
    let (seq, after) = number_after(p, b"\"seq\":")?;
    let data = &p[after..];
    let (t, _) = number_after(data, b"\"t\":")?;
    let (i, _) = number_after(data, b"\"i\":")?;
    Some(Push { seq, t, i })
}

/// Messages `0..m` that go to channel `c` of `k`.
pub fn messages_for_channel(c: usize, k: usize, m: u64) -> u64 {
    let (c, k) = (c as u64, k as u64);
    if c >= m {
        0
    } else {
        (m - c - 1) / k + 1
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub deliveries: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub foreign: u64,
}

/// One subscriber's state for its one channel.
pub struct SeqCheck {
    channel: usize,
    last_seq: u64,
    /// Bit `i / K` set when message `i` arrived.
    seen: Vec<u64>,
}

impl SeqCheck {
    pub fn new(channel: usize, k: usize, m: u64) -> SeqCheck {
        let n = messages_for_channel(channel, k, m);
        SeqCheck {
            channel,
            last_seq: 0,
            seen: vec![0; n.div_ceil(64) as usize],
        }
    }

    /// Records a push; returns true when it was a new delivery.
    pub fn on_push(&mut self, push: Push, k: usize, m: u64, counts: &mut Counts) -> bool {
        // One division at most (none for one channel): it was a visible share of the
        // client's CPU per delivery.
        let k64 = k as u64;
        let (bit, channel) = if k64 == 1 {
            (push.i, 0)
        } else {
            let q = push.i / k64;
            (q, push.i - q * k64)
        };
        if push.i >= m || channel != self.channel as u64 {
            counts.foreign += 1;
            return false;
        }
        let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
        if self.seen[word] & mask != 0 {
            counts.duplicated += 1;
            return false;
        }
        self.seen[word] |= mask;
        if push.seq <= self.last_seq {
            counts.out_of_order += 1;
        }
        self.last_seq = self.last_seq.max(push.seq);
        counts.deliveries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let p = br#"{"channel":"bench-1","seq":7,"data":{"t":1700000000000000,"i":3}}"#;
        let push = parse_push(p).unwrap();
        assert_eq!(
            push,
            Push {
                seq: 7,
                t: 1700000000000000,
                i: 3
            }
        );
        // Other layouts take the general scan and read the same fields.
        let other = br#"{"seq":7,"channel":"bench-1","data":{"i":3,"t":1700000000000000}}"#;
        assert_eq!(parse_exact(other), None);
        assert_eq!(parse_push(other), Some(push));
        let other = br#"{"channel":"bench-1", "seq":7,"data":{"t":1700000000000000,"i":3}}"#;
        assert_eq!(parse_exact(other), None);
        assert_eq!(parse_push(other), Some(push));
        assert_eq!(parse_general(p), Some(push));
        let long = br#"{"channel":"c","seq":12345678901234567890,"data":{"t":1,"i":3}}"#;
        assert_eq!(parse_push(long), None);
        let max = br#"{"channel":"c","seq":9999999999999999999,"data":{"t":1,"i":3}}"#;
        assert_eq!(
            parse_push(max).map(|p| p.seq),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(
            parse_push(br#"{"channel":"c","seq":1,"data":{"t":1}}"#),
            None
        );
        for text in [
            "0",
            "7",
            "12345678",
            "123456789",
            "1700000000000000",
            "17000000000000001",
        ] {
            let mut b = text.as_bytes().to_vec();
            b.extend_from_slice(b",x");
            assert_eq!(leading_u64(&b), Some((text.parse().unwrap(), text.len())));
        }
        assert_eq!(leading_u64(b"1234567:"), Some((1234567, 7)));
        assert_eq!(leading_u64(b"12345678/0"), Some((12345678, 8)));
        assert_eq!(leading_u64(b"x1"), None);
        assert_eq!(leading_u64(b"99999999999999999999"), None);
        assert_eq!(
            leading_u64(b"9999999999999999999"),
            Some((9_999_999_999_999_999_999, 19))
        );
        assert_eq!(eight_digits(u64::from_le_bytes(*b"1234567:")), None);
        assert_eq!(eight_digits(u64::from_le_bytes(*b"/1234567")), None);
        assert_eq!(
            eight_digits(u64::from_le_bytes(*b"09876543")),
            Some(9876543)
        );
        for pos in 0..8 {
            for byte in 0..=255u8 {
                let mut b = *b"31415926";
                b[pos] = byte;
                let want = std::str::from_utf8(&b)
                    .ok()
                    .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
                    .map(|t| t.parse::<u64>().unwrap());
                assert_eq!(eight_digits(u64::from_le_bytes(b)), want, "{b:?}");
            }
        }
        assert_eq!(find(b"ab\"x\"", b"\"x\""), Some(2));
        assert_eq!(find(b"\"x", b"\"x\""), None);
        assert_eq!(messages_for_channel(0, 2, 5), 3);
        assert_eq!(messages_for_channel(1, 2, 5), 2);
        assert_eq!(messages_for_channel(3, 4, 2), 0);
        let mut c = Counts::default();
        let mut s = SeqCheck::new(1, 2, 5);
        assert!(s.on_push(push, 2, 5, &mut c));
        assert!(!s.on_push(push, 2, 5, &mut c));
        let early = Push { seq: 6, t: 0, i: 1 };
        assert!(s.on_push(early, 2, 5, &mut c));
        assert!(!s.on_push(Push { seq: 9, t: 0, i: 2 }, 2, 5, &mut c));
        assert_eq!(
            (c.deliveries, c.duplicated, c.out_of_order, c.foreign),
            (2, 1, 1, 1)
        );
    }
}
