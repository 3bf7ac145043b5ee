//! One reactor thread: a mio poll over a slab of load connections, opening them at the
//! planned pace, feeding their text frames to the scenario's checks, enforcing every
//! deadline and closing them when told to.

use crate::check::{self, Counts, SeqCheck};
use crate::client::{self, Conn, End, Meta, Phase, TextAction};
use crate::stats::{add_errors, new_hist, unix_us, Cause, Live, Outcome};
use crate::target::Endpoint;
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hold,
    Fanout,
    Churn,
    Burst,
}

/// What every reactor of a process does; rates and limits are per thread.
pub struct Plan {
    pub kind: Kind,
    pub server: Endpoint,
    pub sources: Vec<IpAddr>,
    pub channels: usize,
    pub prefix: String,
    pub connect_timeout: Duration,
    /// New connections per second for this thread; 0 = no limit.
    pub rate: f64,
    /// Handshakes in progress at once for this thread (ignored by burst).
    pub max_pending: usize,
    pub messages: u64,
    /// Churn: no new cycle starts after this.
    pub churn_until: Instant,
}

/// Set by the scenario driver: close every connection and stop.
pub struct Control {
    pub close: AtomicBool,
}

/// Pause before a churn loop reconnects after a failure, so a dead server is not
/// hammered in a tight loop.
const CHURN_BACKOFF: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(100);
/// Connects started per loop turn, so events keep being served while opening.
const OPEN_BATCH: usize = 256;

/// Readiness events taken per poll: a whole fan-out round of this thread's share of
/// 10,000 connections in one or two calls.
const EVENTS: usize = 4096;
/// Read buffer shared by a thread's connections; only an incomplete tail is kept
/// per connection.
const SCRATCH: usize = 256 * 1024;

/// Text-frame handling, apart from the slab so the callback can borrow it.
struct Sink {
    kind: Kind,
    k: usize,
    m: u64,
    counts: Counts,
    latency: Histogram<u64>,
    recent: Histogram<u64>,
    messages: u64,
    cycles: u64,
    last_delivery_us: u64,
}

impl Sink {
    /// One latency sample: into `recent` only; each tick folds it into `latency`.
    #[inline]
    fn record(&mut self, lat: u64) {
        self.recent.saturating_record(lat);
    }

    /// A text frame read at `now_us` (unix µs).
    fn on_text(&mut self, meta: &mut Meta, payload: &[u8], now_us: u64) -> TextAction {
        self.messages += 1;
        match self.kind {
            Kind::Fanout => {
                let (Some(push), Some(chk)) = (check::parse_push(payload), meta.check.as_mut())
                else {
                    self.counts.foreign += 1;
                    return TextAction::Continue;
                };
                if chk.on_push(push, self.k, self.m, &mut self.counts) {
                    self.record(now_us.saturating_sub(push.t).max(1));
                    self.last_delivery_us = self.last_delivery_us.max(now_us);
                }
                TextAction::Continue
            }
            Kind::Churn if meta.awaiting_reply => {
                if contains(payload, b"\"op\":\"subscribed\"") {
                    meta.awaiting_reply = false;
                    self.cycles += 1;
                    self.record((meta.started.elapsed().as_micros() as u64).max(1));
                    TextAction::Close
                } else if contains(payload, b"\"op\":\"error\"") {
                    TextAction::Fail(Cause::Other, String::from_utf8_lossy(payload).into_owned())
                } else {
                    TextAction::Continue
                }
            }
            _ => TextAction::Continue,
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

struct Reactor {
    plan: Arc<Plan>,
    live: Arc<Live>,
    poll: Poll,
    conns: Slab<Conn>,
    sink: Sink,
    out: Outcome,
    /// Connections in connect or handshake.
    pending: usize,
    rng: u64,
    /// Churn loops whose cycle ended well: restart now.
    again: VecDeque<usize>,
    /// Churn loops whose cycle failed: restart after the backoff. One fixed delay, so
    /// pushing at the back keeps it ordered by time.
    backoff: VecDeque<(Instant, usize)>,
    closing_all: bool,
    // Deltas not yet added to `live`.
    flushed_messages: u64,
    flushed_deliveries: u64,
    flushed_cycles: u64,
}

/// Runs connections `first .. first + count` (global indices) until the plan is done.
pub fn run(
    plan: Arc<Plan>,
    first: usize,
    count: usize,
    live: Arc<Live>,
    ctl: Arc<Control>,
) -> Outcome {
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            let mut out = Outcome {
                target: count as u64,
                errors: vec![format!("mio poll: {e}")],
                ..Outcome::default()
            };
            out.failed.other = count as u64;
            Live::bump(&live.resolved, count as u64);
            return out;
        }
    };
    let out = Outcome {
        target: count as u64,
        start_us: unix_us(),
        messages: plan.messages,
        ..Outcome::default()
    };
    let mut r = Reactor {
        sink: Sink {
            kind: plan.kind,
            k: plan.channels,
            m: plan.messages,
            counts: Counts::default(),
            latency: new_hist(),
            recent: new_hist(),
            messages: 0,
            cycles: 0,
            last_delivery_us: 0,
        },
        plan,
        live,
        poll,
        conns: Slab::with_capacity(count),
        out,
        pending: 0,
        rng: unix_us() ^ ((first as u64) << 32) | 1,
        again: VecDeque::new(),
        backoff: VecDeque::new(),
        closing_all: false,
        flushed_messages: 0,
        flushed_deliveries: 0,
        flushed_cycles: 0,
    };
    r.main_loop(first, count, &ctl);
    r.finish()
}

impl Reactor {
    fn mask(&mut self) -> [u8; 4] {
        // xorshift64: masks only need to be unpredictable to intermediaries.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_le_bytes()
    }

    fn main_loop(&mut self, first: usize, count: usize, ctl: &Control) {
        let start = Instant::now();
        let mut events = Events::with_capacity(EVENTS);
        let mut scratch = vec![0u8; SCRATCH];
        let mut opened = 0usize;
        let mut last_tick = Instant::now();
        loop {
            let now = Instant::now();
            let mut more_to_open = false;
            if !self.closing_all {
                if self.plan.kind == Kind::Churn {
                    more_to_open = self.open_churn(first, count, &mut opened, now);
                } else {
                    let allowed = if self.plan.rate > 0.0 {
                        let due = (now - start).as_secs_f64() * self.plan.rate;
                        count.min(due as usize + 1)
                    } else {
                        count
                    };
                    let mut batch = 0;
                    while opened < allowed
                        && batch < OPEN_BATCH
                        && (self.plan.kind == Kind::Burst || self.pending < self.plan.max_pending)
                    {
                        self.open(first + opened, now);
                        opened += 1;
                        batch += 1;
                    }
                    more_to_open = opened < count;
                }
            }
            let wait = if more_to_open {
                Duration::from_millis(2)
            } else {
                Duration::from_millis(50)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    add_errors(&mut self.out.errors, [format!("poll: {e}")]);
                    break;
                }
            }
            for ev in events.iter() {
                let closed = ev.is_read_closed() || ev.is_error();
                self.drive(ev.token().0, closed, &mut scratch);
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.expire(last_tick);
                self.publish_live();
                if ctl.close.load(Relaxed) && !self.closing_all {
                    self.close_all();
                }
            }
            let done = match self.plan.kind {
                Kind::Churn => {
                    (Instant::now() >= self.plan.churn_until || self.closing_all)
                        && self.conns.is_empty()
                }
                _ => self.closing_all && self.conns.is_empty(),
            };
            if done {
                break;
            }
        }
        self.publish_live();
    }

    /// Starts the first cycle of each loop, then restarts loops whose cycle ended.
    fn open_churn(&mut self, first: usize, count: usize, opened: &mut usize, now: Instant) -> bool {
        if now >= self.plan.churn_until {
            self.again.clear();
            self.backoff.clear();
            return false;
        }
        let mut batch = 0;
        while *opened < count && batch < OPEN_BATCH && self.pending < self.plan.max_pending {
            self.open(first + *opened, now);
            *opened += 1;
            batch += 1;
        }
        while batch < OPEN_BATCH && self.pending < self.plan.max_pending {
            let slot = match self.backoff.front() {
                Some(&(when, slot)) if when <= now => {
                    self.backoff.pop_front();
                    slot
                }
                _ => match self.again.pop_front() {
                    Some(slot) => slot,
                    None => break,
                },
            };
            self.open(slot, now);
            batch += 1;
        }
        *opened < count
            || !self.again.is_empty()
            || self.backoff.front().is_some_and(|&(w, _)| w <= now)
    }

    fn path(&self, slot: usize) -> String {
        match self.plan.kind {
            Kind::Churn => "/ws".to_string(),
            _ => format!(
                "/ws?subscribe={}-{}",
                self.plan.prefix,
                slot % self.plan.channels
            ),
        }
    }

    fn open(&mut self, slot: usize, now: Instant) {
        let plan = &self.plan;
        let source = (!plan.sources.is_empty()).then(|| plan.sources[slot % plan.sources.len()]);
        let mut stream = match client::connect(plan.server.addr, source) {
            Ok(s) => s,
            Err(e) => {
                let cause = client::cause_of(&e);
                self.failed(slot, false, cause, format!("connect: {e}"));
                return;
            }
        };
        let path = self.path(slot);
        let entry = self.conns.vacant_entry();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.failed(slot, false, Cause::Other, format!("register: {e}"));
            return;
        }
        let check = (plan.kind == Kind::Fanout)
            .then(|| SeqCheck::new(slot % plan.channels, plan.channels, plan.messages));
        let meta = Meta {
            slot,
            started: now,
            deadline: now + plan.connect_timeout,
            awaiting_reply: false,
            check,
        };
        entry.insert(Conn::new(stream, &path, &self.plan.server.host, meta));
        self.pending += 1;
    }

    fn drive(&mut self, key: usize, closed: bool, scratch: &mut [u8]) {
        let mask = self.mask();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let sink = &mut self.sink;
        let step = conn.drive(scratch, mask, closed, &mut |meta, p, now| {
            sink.on_text(meta, p, now)
        });
        if step.upgraded {
            self.upgraded(key);
        }
        if let Some(end) = step.end {
            self.end(key, end);
        }
    }

    fn upgraded(&mut self, key: usize) {
        self.pending -= 1;
        let now = Instant::now();
        let plan = self.plan.clone();
        let conn = &mut self.conns[key];
        let lat = (now.duration_since(conn.meta.started).as_micros() as u64).max(1);
        self.out.handshake.saturating_record(lat);
        self.out.connected += 1;
        Live::bump(&self.live.connected, 1);
        Live::bump(&self.live.open, 1);
        match plan.kind {
            Kind::Churn => {
                conn.meta.awaiting_reply = true;
                conn.meta.deadline = now + plan.connect_timeout;
                let cmd = format!(
                    r#"{{"op":"subscribe","channel":"{}-{}"}}"#,
                    plan.prefix,
                    conn.meta.slot % plan.channels
                );
                let mut frame = Vec::with_capacity(cmd.len() + 8);
                let mask = self.mask();
                crate::ws::encode(crate::ws::TEXT, cmd.as_bytes(), mask, &mut frame);
                if let Err(e) = self.conns[key].send(&frame) {
                    self.end(key, End::Failed(Cause::Dropped, e.to_string()));
                }
                return;
            }
            Kind::Fanout => {
                let n = check::messages_for_channel(
                    conn.meta.slot % plan.channels,
                    plan.channels,
                    plan.messages,
                );
                self.out.expected += n;
                Live::bump(&self.live.expected, n);
            }
            Kind::Hold | Kind::Burst => {
                self.sink.record(lat);
            }
        }
        self.out.last_connect_us = unix_us();
        Live::bump(&self.live.resolved, 1);
    }

    /// Removes a finished connection and accounts for how it ended.
    fn end(&mut self, key: usize, end: End) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream());
        let was_open = matches!(conn.phase, Phase::Open | Phase::Closing);
        if was_open {
            self.live.open.fetch_sub(1, Relaxed);
        } else {
            self.pending -= 1;
        }
        match end {
            End::Closed => self.requeue(conn.meta.slot, Duration::ZERO),
            End::CloseTimeout => {
                self.out.close_timeouts += 1;
                self.requeue(conn.meta.slot, Duration::ZERO);
            }
            // The server may close first once we are closing everything.
            End::Failed(Cause::Dropped, _) if self.closing_all => {}
            End::Failed(cause, msg) => self.failed(conn.meta.slot, was_open, cause, msg),
        }
    }

    fn failed(&mut self, slot: usize, was_open: bool, cause: Cause, msg: String) {
        self.out.failed.add(cause);
        Live::bump(&self.live.failed, 1);
        add_errors(&mut self.out.errors, [msg]);
        if self.plan.kind == Kind::Churn {
            self.requeue(slot, CHURN_BACKOFF);
        } else if !was_open {
            Live::bump(&self.live.resolved, 1);
        }
    }

    fn requeue(&mut self, slot: usize, after: Duration) {
        if self.plan.kind == Kind::Churn && !self.closing_all {
            if after.is_zero() {
                self.again.push_back(slot);
            } else {
                self.backoff.push_back((Instant::now() + after, slot));
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<(usize, Phase)> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                now >= c.meta.deadline && (c.phase != Phase::Open || c.meta.awaiting_reply)
            })
            .map(|(k, c)| (k, c.phase))
            .collect();
        let secs = self.plan.connect_timeout.as_secs_f64();
        for (key, phase) in expired {
            let end = match phase {
                Phase::Closing => End::CloseTimeout,
                Phase::Open => End::Failed(Cause::Timeout, format!("no reply within {secs} s")),
                _ => End::Failed(Cause::Timeout, format!("no handshake within {secs} s")),
            };
            self.end(key, end);
        }
    }

    fn close_all(&mut self) {
        self.closing_all = true;
        self.again.clear();
        self.backoff.clear();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let mask = self.mask();
            let conn = &mut self.conns[key];
            let end = match conn.phase {
                Phase::Open => conn.start_close(mask),
                Phase::Closing => None,
                _ => Some(End::Failed(
                    Cause::Other,
                    "still connecting at close".into(),
                )),
            };
            if let Some(end) = end {
                self.end(key, end);
            }
        }
    }

    /// Hands the deltas of the last tick to the progress line and the driver.
    fn publish_live(&mut self) {
        let s = &mut self.sink;
        Live::bump(&self.live.messages, s.messages - self.flushed_messages);
        self.flushed_messages = s.messages;
        Live::bump(
            &self.live.deliveries,
            s.counts.deliveries - self.flushed_deliveries,
        );
        self.flushed_deliveries = s.counts.deliveries;
        Live::bump(&self.live.cycles, s.cycles - self.flushed_cycles);
        self.flushed_cycles = s.cycles;
        if !s.recent.is_empty() {
            let _ = s.latency.add(&s.recent);
            if let Ok(mut h) = self.live.recent.lock() {
                let _ = h.add(&s.recent);
            }
            s.recent.reset();
        }
    }

    fn finish(mut self) -> Outcome {
        let s = self.sink;
        self.out.latency = s.latency;
        self.out.cycles = s.cycles;
        self.out.deliveries = s.counts.deliveries;
        self.out.duplicated = s.counts.duplicated;
        self.out.out_of_order = s.counts.out_of_order;
        self.out.foreign = s.counts.foreign;
        self.out.last_delivery_us = s.last_delivery_us;
        self.out.end_us = unix_us();
        self.out
    }
}
