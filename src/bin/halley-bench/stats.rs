//! Counters: the live ones shared by the reactor threads (read by the progress line)
//! and the final `Outcome` that threads, processes and the report merge.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch: the clock every process on the machine shares,
/// so a publish timestamp from one process is comparable with a delivery in another.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Seconds as a Duration that is safe to add to an Instant: negative or NaN is 0,
/// huge is capped at about three years.
pub fn secs(v: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(if v.is_nan() { 0.0 } else { v.clamp(0.0, 1e8) })
}

/// Latencies in microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Why a connection did not make it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub refused: u64,
    pub timeout: u64,
    pub http_503: u64,
    pub handshake: u64,
    pub other: u64,
    /// Opened, then closed by the server (or reset) before we closed it.
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy)]
pub enum Cause {
    Refused,
    Timeout,
    Http503,
    Handshake,
    Other,
    Dropped,
}

impl Failures {
    pub fn add(&mut self, c: Cause) {
        match c {
            Cause::Refused => self.refused += 1,
            Cause::Timeout => self.timeout += 1,
            Cause::Http503 => self.http_503 += 1,
            Cause::Handshake => self.handshake += 1,
            Cause::Other => self.other += 1,
            Cause::Dropped => self.dropped += 1,
        }
    }
    pub fn merge(&mut self, o: &Failures) {
        self.refused += o.refused;
        self.timeout += o.timeout;
        self.http_503 += o.http_503;
        self.handshake += o.handshake;
        self.other += o.other;
        self.dropped += o.dropped;
    }
    pub fn total(&self) -> u64 {
        self.refused + self.timeout + self.http_503 + self.handshake + self.other + self.dropped
    }
}

/// Everything one thread, one process or the whole run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub target: u64,
    pub connected: u64,
    pub failed: Failures,
    /// Our close frame was not answered (close frame plus TCP close) within 5 s.
    pub close_timeouts: u64,
    pub start_us: u64,
    /// When the last handshake of the opening phase completed (0: none did).
    pub last_connect_us: u64,
    pub end_us: u64,
    #[serde(with = "hist_pairs")]
    pub handshake: Histogram<u64>,
    /// fanout: publish → delivery; churn: connect → "subscribed"; others: handshake.
    #[serde(with = "hist_pairs")]
    pub latency: Histogram<u64>,
    pub cycles: u64,
    pub expected: u64,
    pub deliveries: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Pushes that were not ours (other data or index) and so were not checked.
    pub foreign: u64,
    /// SSE events whose `id:` differs from the push's seq.
    #[serde(default)]
    pub bad_ids: u64,
    /// reconnect: subscribers dropped at once, and how many of them came back.
    #[serde(default)]
    pub dropped_subs: u64,
    #[serde(default)]
    pub resumed: u64,
    /// reconnect: resumes answered `recovered:false`, or without the field.
    #[serde(default)]
    pub not_recovered: u64,
    /// poll: answers after a connection's first that said `recovered:false`.
    #[serde(default)]
    pub polls_not_recovered: u64,
    #[serde(default)]
    pub no_recovered_field: u64,
    /// reconnect: pushes delivered as catch-up after a resume.
    #[serde(default)]
    pub caught_up: u64,
    /// reconnect: from the drop (plus --away) until the subscriber was live again.
    #[serde(with = "hist_pairs", default = "new_hist")]
    pub resync: Histogram<u64>,
    pub messages: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub first_publish_us: u64,
    pub last_publish_us: u64,
    pub last_delivery_us: u64,
    pub errors: Vec<String>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            target: 0,
            connected: 0,
            failed: Failures::default(),
            close_timeouts: 0,
            start_us: 0,
            last_connect_us: 0,
            end_us: 0,
            handshake: new_hist(),
            latency: new_hist(),
            cycles: 0,
            expected: 0,
            deliveries: 0,
            duplicated: 0,
            out_of_order: 0,
            foreign: 0,
            bad_ids: 0,
            dropped_subs: 0,
            resumed: 0,
            not_recovered: 0,
            polls_not_recovered: 0,
            no_recovered_field: 0,
            caught_up: 0,
            resync: new_hist(),
            messages: 0,
            published: 0,
            publish_errors: 0,
            first_publish_us: 0,
            last_publish_us: 0,
            last_delivery_us: 0,
            errors: Vec::new(),
        }
    }
}

fn min_nonzero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (x, y) => x.min(y),
    }
}

impl Outcome {
    pub fn merge(&mut self, o: &Outcome) {
        self.target += o.target;
        self.connected += o.connected;
        self.failed.merge(&o.failed);
        self.close_timeouts += o.close_timeouts;
        self.start_us = min_nonzero(self.start_us, o.start_us);
        self.last_connect_us = self.last_connect_us.max(o.last_connect_us);
        self.end_us = self.end_us.max(o.end_us);
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.handshake.add(&o.handshake);
        let _ = self.latency.add(&o.latency);
        self.cycles += o.cycles;
        self.expected += o.expected;
        self.deliveries += o.deliveries;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.foreign += o.foreign;
        self.bad_ids += o.bad_ids;
        self.dropped_subs += o.dropped_subs;
        self.resumed += o.resumed;
        self.not_recovered += o.not_recovered;
        self.polls_not_recovered += o.polls_not_recovered;
        self.no_recovered_field += o.no_recovered_field;
        self.caught_up += o.caught_up;
        let _ = self.resync.add(&o.resync);
        self.messages = self.messages.max(o.messages);
        self.published += o.published;
        self.publish_errors += o.publish_errors;
        self.first_publish_us = min_nonzero(self.first_publish_us, o.first_publish_us);
        self.last_publish_us = self.last_publish_us.max(o.last_publish_us);
        self.last_delivery_us = self.last_delivery_us.max(o.last_delivery_us);
        add_errors(&mut self.errors, o.errors.iter().cloned());
    }
}

/// Keeps a few distinct error texts for the report, not one per connection.
pub fn add_errors(into: &mut Vec<String>, new: impl IntoIterator<Item = String>) {
    for e in new {
        if into.len() >= 8 {
            return;
        }
        if !into.contains(&e) {
            into.push(e);
        }
    }
}

/// Histograms travel between processes as `[[value, count], ...]`: hdrhistogram's own
/// serialisation needs features (flate2, nom) this crate does not pull in.
mod hist_pairs {
    use super::new_hist;
    use hdrhistogram::Histogram;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(d)?;
        let mut h = new_hist();
        for (v, c) in pairs {
            h.saturating_record_n(v, c);
        }
        Ok(h)
    }
}

/// Live counters for the progress line; the reactors add, the progress thread reads.
pub struct Live {
    pub open: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// Connection attempts finished (connected or failed) in the opening phase.
    pub resolved: AtomicU64,
    pub messages: AtomicU64,
    pub deliveries: AtomicU64,
    pub expected: AtomicU64,
    pub cycles: AtomicU64,
    /// reconnect: subscribers dropped, resumed, and reactor threads done dropping.
    pub dropped: AtomicU64,
    pub resumed: AtomicU64,
    pub drop_acks: AtomicU64,
    /// Latencies of the last second, merged in by the reactors every 250 ms.
    pub recent: Mutex<Histogram<u64>>,
}

impl Live {
    pub fn new() -> Self {
        Live {
            open: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            drop_acks: AtomicU64::new(0),
            recent: Mutex::new(new_hist()),
        }
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    pub fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}

/// The p99 of `h` in microseconds, 0 when empty.
pub fn p99_us(h: &Histogram<u64>) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(0.99)
    }
}
