//! `GET /api/stats/stream` and `GET /dashboard`: the stats as Server-Sent Events
//! once a second (the /api/stats JSON plus rates), and the page that charts them.
//! The framing and the rates are computed here from bytes and a `now` passed in;
//! the API loop owns the sockets and the timer.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::request::Persistence;
use crate::proto::sse;

/// Stream clients held at once; past it a new one gets 503.
pub const MAX_STREAMS: usize = 64;

/// The dashboard: one self-contained file (inline script and style, no CDN).
const PAGE: &[u8] = include_bytes!("../../www/dashboard.html");

/// Samples closer than this reuse the last rates (a stream opened between ticks
/// would otherwise divide by a few milliseconds).
const MIN_RATE_INTERVAL: Duration = Duration::from_millis(500);

/// The totals the rates are computed from, and when they were read.
#[derive(Debug, Clone, Copy)]
struct Totals {
    at: Instant,
    accepted: u64,
    delivered: u64,
    published: u64,
}

/// Turns successive /api/stats documents into stream events with per-second rates.
#[derive(Debug, Default)]
pub struct StatsFeed {
    last: Option<Totals>,
    rates: [f64; 3],
    next_id: u64,
}

impl StatsFeed {
    /// One `event: stats` carrying `stats_json` plus `rates` (new connections,
    /// deliveries and publishes per second since the last sample).
    pub fn event(&mut self, stats_json: &str, now: Instant) -> Vec<u8> {
        let mut stats: Value = serde_json::from_str(stats_json).unwrap_or_else(|_| json!({}));
        let total = |key: &str| stats[key].as_u64().unwrap_or(0);
        let current = Totals {
            at: now,
            accepted: total("connections_total"),
            delivered: total("delivered_total"),
            published: total("published_total"),
        };
        match self.last {
            Some(last) if now.saturating_duration_since(last.at) < MIN_RATE_INTERVAL => {}
            Some(last) => {
                let secs = now.saturating_duration_since(last.at).as_secs_f64();
                let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
                self.rates = [
                    per_s(current.accepted, last.accepted),
                    per_s(current.delivered, last.delivered),
                    per_s(current.published, last.published),
                ];
                self.last = Some(current);
            }
            None => self.last = Some(current),
        }
        let round = |x: f64| (x * 10.0).round() / 10.0;
        if let Some(map) = stats.as_object_mut() {
            map.insert(
                "rates".into(),
                json!({
                    "connections_per_s": round(self.rates[0]),
                    "delivered_per_s": round(self.rates[1]),
                    "published_per_s": round(self.rates[2]),
                }),
            );
        }
        self.next_id += 1;
        let mut out = Vec::with_capacity(stats_json.len() + 128);
        let id = sse::id([self.next_id]);
        sse::event(
            &mut out,
            Some("stats"),
            Some(&id),
            stats.to_string().as_bytes(),
        );
        out
    }
}

/// The answer to `GET /dashboard`: the page, never cached, under a policy that runs
/// only its own inline script and style (by hash) and connects only to this origin.
pub fn page_response(keep_alive: Persistence) -> Vec<u8> {
    let connection = match keep_alive {
        Persistence::KeepAlive => "",
        Persistence::KeepAlive10 => "Connection: keep-alive\r\n",
        Persistence::Close => "Connection: close\r\n",
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nContent-Security-Policy: {}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n{connection}\r\n",
        PAGE.len(),
        content_security_policy(),
    )
    .into_bytes();
    out.extend_from_slice(PAGE);
    out
}

/// Computed once from the page itself, so an edit of the page cannot leave a stale hash.
pub fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            inline_hash(PAGE, b"<script>", b"</script>"),
            inline_hash(PAGE, b"<style>", b"</style>"),
        )
    })
}

/// `sha256-BASE64` of the text between the first `open` and the `close` after it.
fn inline_hash(page: &[u8], open: &[u8], close: &[u8]) -> String {
    let find = |from: usize, needle: &[u8]| {
        page[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| from + i)
    };
    let start = find(0, open).map_or(0, |i| i + open.len());
    let end = find(start, close).unwrap_or(start);
    format!("sha256-{}", base64(&Sha256::digest(&page[start..end])))
}

/// Standard base64 with padding (RFC 4648 section 4), as CSP hashes are written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_of(event: &[u8]) -> Value {
        let text = std::str::from_utf8(event).unwrap();
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn events_carry_the_stats_and_rates_per_second() {
        let mut feed = StatsFeed::default();
        let t0 = Instant::now();
        let stats = |accepted: u64, delivered: u64| {
            format!(
                r#"{{"online":2,"connections_total":{accepted},"delivered_total":{delivered},"published_total":0}}"#
            )
        };
        let first = feed.event(&stats(10, 100), t0);
        assert!(
            first.starts_with(b"event: stats\nid: 1\ndata: {"),
            "{first:?}"
        );
        assert!(first.ends_with(b"}\n\n"));
        assert_eq!(data_of(&first)["rates"]["delivered_per_s"], 0.0);
        assert_eq!(data_of(&first)["online"], 2);
        let second = feed.event(&stats(14, 600), t0 + Duration::from_secs(2));
        let rates = &data_of(&second)["rates"];
        assert_eq!(rates["connections_per_s"], 2.0);
        assert_eq!(rates["delivered_per_s"], 250.0);
        // A sample soon after (a stream opened between ticks) keeps the last rates.
        let soon = feed.event(&stats(20, 700), t0 + Duration::from_millis(2100));
        assert_eq!(data_of(&soon)["rates"]["delivered_per_s"], 250.0);
        assert!(soon.starts_with(b"event: stats\nid: 3\n"));
    }

    #[test]
    fn the_page_is_served_uncached_under_a_hash_policy() {
        let answer = String::from_utf8(page_response(Persistence::KeepAlive)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(head.contains("\r\nCache-Control: no-cache\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        let policy = content_security_policy();
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(!body.contains("http://") && !body.contains("https://"));
    }

    #[test]
    fn base64_pads_as_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
