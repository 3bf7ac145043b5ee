//! One reactor thread: a mio poll over a slab of load connections, opening them at the
//! planned pace, feeding their pushes and replies to the scenario's checks, enforcing
//! every deadline, dropping and resuming them (reconnect) and closing them when told to.

use crate::check::{self, Counts, SeqCheck};
use crate::client::{self, Conn, End, Incoming, Meta, Phase, Target, TextAction, Transport};
use crate::comet;
use crate::resume::{Resume, ResumeCounts};
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
    Reconnect,
}

impl Kind {
    /// Every connection is open before the go, and children are released together.
    pub fn gated(self) -> bool {
        matches!(self, Kind::Hold | Kind::Fanout | Kind::Reconnect)
    }

    /// Each subscriber checks every message of its channel (`SeqCheck`).
    pub fn checks_deliveries(self) -> bool {
        matches!(self, Kind::Fanout | Kind::Reconnect)
    }

    /// A connection is live only once the server confirmed the subscription: a
    /// `subscribed` reply, an SSE `subscribed` event, a poll answer. A WebSocket
    /// subscribed through `?subscribe=` in hold and fanout is live at its 101.
    fn needs_reply(self, transport: Transport) -> bool {
        match self {
            Kind::Churn | Kind::Reconnect => true,
            Kind::Hold | Kind::Fanout | Kind::Burst => transport != Transport::Ws,
        }
    }
}

/// What every reactor of a process does; rates and limits are per thread.
pub struct Plan {
    pub kind: Kind,
    pub transport: Transport,
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
    /// reconnect: how long dropped subscribers stay away before reconnecting.
    pub away: Duration,
    /// hold --no-subscribe: WebSockets subscribed to nothing.
    pub subscribe: bool,
    /// WebSocket subscribers offer permessage-deflate (--deflate).
    pub deflate: bool,
    /// --token-secret-file: each connection carries a token made at its connect.
    pub tokens: Option<Arc<crate::tokens::Minter>>,
}

/// Set by the scenario driver.
pub struct Control {
    /// Close every connection and stop.
    pub close: AtomicBool,
    /// reconnect: drop every subscriber now and resume it.
    pub drop: AtomicBool,
}

/// Pause before a churn loop reconnects after a failure, so a dead server is not
/// hammered in a tight loop.
const CHURN_BACKOFF: Duration = Duration::from_millis(100);
/// A resuming long-poll is answered only when a message arrives (or at the server's
/// `--poll-timeout`, 25 s by default): its first answer gets this much beyond the
/// connect timeout.
const POLL_HOLD: Duration = Duration::from_secs(30);
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
    resume: ResumeCounts,
    /// SSE events whose `id:` is not the push's seq.
    bad_ids: u64,
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

    /// What a connection handed over at `now_us` (unix µs).
    fn on_in(&mut self, meta: &mut Meta, inc: Incoming<'_>, now_us: u64) -> TextAction {
        match inc {
            Incoming::Text { data, id } => self.on_text(meta, data, id, now_us),
            Incoming::Answer {
                last_seq,
                epoch,
                recovered,
            } => {
                let first = std::mem::replace(&mut meta.awaiting_reply, false);
                if !first && recovered == Some(false) {
                    // A poll that continues the previous answer's position lost nothing
                    // unless more than the history arrived before it came back.
                    self.resume.polls_not_recovered += 1;
                }
                if let Some(r) = meta.resume.as_mut() {
                    if first {
                        r.on_subscribed(last_seq, epoch, recovered, &mut self.resume);
                    } else {
                        r.on_answer(last_seq, epoch);
                    }
                }
                if first {
                    TextAction::Ready
                } else {
                    TextAction::Continue
                }
            }
        }
    }

    /// A text frame, an SSE event's data or a message of a poll answer.
    fn on_text(
        &mut self,
        meta: &mut Meta,
        payload: &[u8],
        id: Option<&[u8]>,
        now_us: u64,
    ) -> TextAction {
        self.messages += 1;
        if meta.awaiting_reply {
            if contains(payload, b"\"op\":\"subscribed\"") {
                meta.awaiting_reply = false;
                if self.kind == Kind::Churn {
                    self.cycles += 1;
                    self.record((meta.started.elapsed().as_micros() as u64).max(1));
                    return TextAction::Close;
                }
                let Some(sub) = comet::subscribed(payload) else {
                    return TextAction::Fail(
                        Cause::Other,
                        format!("bad reply: {}", String::from_utf8_lossy(payload)),
                    );
                };
                if let Some(r) = meta.resume.as_mut() {
                    r.on_subscribed(
                        sub.seq,
                        sub.epoch.as_deref(),
                        sub.recovered,
                        &mut self.resume,
                    );
                }
                return TextAction::Ready;
            }
            if contains(payload, b"\"op\":\"error\"") {
                return TextAction::Fail(
                    Cause::Other,
                    String::from_utf8_lossy(payload).into_owned(),
                );
            }
            if self.kind == Kind::Churn {
                return TextAction::Continue;
            }
        }
        if !self.kind.checks_deliveries() {
            return TextAction::Continue;
        }
        let (Some(push), Some(chk)) = (check::parse_push(payload), meta.check.as_mut()) else {
            self.counts.foreign += 1;
            return TextAction::Continue;
        };
        if let Some(id) = id {
            let same = std::str::from_utf8(id)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                == Some(push.seq);
            if !same {
                self.bad_ids += 1;
            }
        }
        if let Some(r) = meta.resume.as_mut() {
            r.on_push(push.seq, &mut self.resume);
        }
        if chk.on_push(push, self.k, self.m, &mut self.counts) {
            self.record(now_us.saturating_sub(push.t).max(1));
            self.last_delivery_us = self.last_delivery_us.max(now_us);
        }
        TextAction::Continue
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
    /// reconnect: dropped subscribers waiting to reconnect, by time (the drop plus
    /// `--away` for all, then retries after the backoff: still ordered).
    reconnects: VecDeque<(Instant, Meta)>,
    /// reconnect: this thread dropped its subscribers.
    dropped: bool,
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
            resume: ResumeCounts::default(),
            bad_ids: 0,
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
        reconnects: VecDeque::new(),
        dropped: false,
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
            if self.plan.kind == Kind::Reconnect && !self.dropped && ctl.drop.load(Relaxed) {
                self.drop_all(now);
            }
            if !self.closing_all && !self.reconnects.is_empty() {
                more_to_open = self.open_reconnects(now);
            }
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
                    more_to_open |= opened < count;
                }
            }
            let wait = if more_to_open || !self.reconnects.is_empty() {
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

    /// Reopens the dropped subscribers that are due, within the pending bound.
    fn open_reconnects(&mut self, now: Instant) -> bool {
        let mut batch = 0;
        while batch < OPEN_BATCH && self.pending < self.plan.max_pending {
            match self.reconnects.front() {
                Some((when, _)) if *when <= now => {}
                _ => break,
            }
            let (_, meta) = self.reconnects.pop_front().expect("front exists");
            self.open_meta(meta, now);
            batch += 1;
        }
        self.reconnects.front().is_some_and(|(w, _)| *w <= now)
    }

    fn open(&mut self, slot: usize, now: Instant) {
        let plan = &self.plan;
        let check = plan
            .kind
            .checks_deliveries()
            .then(|| SeqCheck::new(slot % plan.channels, plan.channels, plan.messages));
        let resume = (plan.kind == Kind::Reconnect).then(Box::<Resume>::default);
        let meta = Meta {
            slot,
            started: now,
            deadline: now,
            awaiting_reply: false,
            live: false,
            check,
            resume,
        };
        self.open_meta(meta, now);
    }

    /// Starts a connection for `meta`'s subscriber: a first one, or a resume.
    fn open_meta(&mut self, mut meta: Meta, now: Instant) {
        let plan = self.plan.clone();
        let slot = meta.slot;
        let channel = format!("{}-{}", plan.prefix, slot % plan.channels);
        let (since, epoch) = match meta.resume.as_deref() {
            Some(r) if r.resuming => (Some(r.pos), r.epoch.as_deref().map(str::to_string)),
            _ => (None, None),
        };
        let token = plan.tokens.as_ref().map(|minter| {
            let joins = plan.subscribe.then_some(channel.as_str());
            minter.mint(slot, joins, unix_us() / 1_000_000)
        });
        let ws_path = match (plan.kind, since) {
            (Kind::Churn, _) | (Kind::Reconnect, None) => "/ws".to_string(),
            _ if !plan.subscribe => "/ws".to_string(),
            (Kind::Reconnect, Some(_)) => format!(
                "/ws?subscribe={channel}{}",
                comet::position(since, epoch.as_deref())
            ),
            _ => format!("/ws?subscribe={channel}"),
        };
        let source = (!plan.sources.is_empty()).then(|| plan.sources[slot % plan.sources.len()]);
        let mut stream = match client::connect(plan.server.addr, source) {
            Ok(s) => s,
            Err(e) => {
                let cause = client::cause_of(&e);
                self.conn_failed(meta, cause, format!("connect: {e}"));
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.conn_failed(meta, Cause::Other, format!("register: {e}"));
            return;
        }
        meta.started = now;
        meta.deadline = now + plan.connect_timeout;
        if plan.transport == Transport::Poll && since.is_some() {
            meta.deadline += POLL_HOLD;
        }
        // A reply the server sends by itself (SSE's `subscribed` event, the first poll
        // answer, a WebSocket resume's reply) may come in the same read as the head.
        meta.awaiting_reply = plan.kind.needs_reply(plan.transport)
            && (plan.transport != Transport::Ws || since.is_some());
        meta.live = false;
        let target = Target {
            transport: plan.transport,
            host: &plan.server.host,
            path_or_channel: if plan.transport == Transport::Ws {
                &ws_path
            } else {
                &channel
            },
            since,
            epoch: epoch.as_deref(),
            deflate: plan.deflate,
            token: token.as_deref(),
        };
        entry.insert(Conn::new(stream, &target, meta));
        self.pending += 1;
    }

    fn drive(&mut self, key: usize, closed: bool, scratch: &mut [u8]) {
        let mask = self.mask();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let sink = &mut self.sink;
        let step = conn.drive(scratch, mask, closed, &mut |meta, inc, now| {
            sink.on_in(meta, inc, now)
        });
        if step.upgraded {
            self.upgraded(key);
        }
        if step.ready && self.conns.contains(key) {
            self.live(key);
        }
        if let Some(end) = step.end {
            self.end(key, end);
        }
    }

    /// The handshake completed (101, or the first HTTP head of SSE and poll).
    fn upgraded(&mut self, key: usize) {
        self.pending -= 1;
        let now = Instant::now();
        let plan = self.plan.clone();
        let conn = &mut self.conns[key];
        let resuming = conn.meta.resume.as_ref().is_some_and(|r| r.resuming);
        if !resuming {
            let lat = (now.duration_since(conn.meta.started).as_micros() as u64).max(1);
            self.out.handshake.saturating_record(lat);
        }
        if plan.kind == Kind::Churn {
            self.out.connected += 1;
            Live::bump(&self.live.connected, 1);
        }
        Live::bump(&self.live.open, 1);
        if !plan.kind.needs_reply(plan.transport) {
            self.live(key);
            return;
        }
        if plan.transport != Transport::Ws || resuming {
            // The server sends the subscription's confirmation by itself
            // (`awaiting_reply` was set at the connect); the deadline set there runs.
            return;
        }
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
    }

    /// The subscriber is in place: counted once in the opening phase, or resumed.
    fn live(&mut self, key: usize) {
        let plan = self.plan.clone();
        let conn = &mut self.conns[key];
        conn.meta.live = true;
        conn.meta.awaiting_reply = false;
        if let Some(r) = conn.meta.resume.as_deref() {
            if r.resuming {
                let from = r.since_drop.unwrap_or(conn.meta.started);
                let us = (from.elapsed().as_micros() as u64).max(1);
                self.out.resync.saturating_record(us);
                self.out.resumed += 1;
                Live::bump(&self.live.resumed, 1);
                return;
            }
        }
        if plan.kind != Kind::Churn {
            self.out.connected += 1;
            Live::bump(&self.live.connected, 1);
        }
        match plan.kind {
            Kind::Fanout | Kind::Reconnect => {
                let n = check::messages_for_channel(
                    conn.meta.slot % plan.channels,
                    plan.channels,
                    plan.messages,
                );
                self.out.expected += n;
                Live::bump(&self.live.expected, n);
            }
            Kind::Hold | Kind::Burst => {
                let lat = (conn.meta.started.elapsed().as_micros() as u64).max(1);
                self.sink.record(lat);
            }
            Kind::Churn => return,
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
        let meta = conn.into_meta();
        match end {
            End::Closed => self.requeue(meta.slot, Duration::ZERO),
            End::CloseTimeout => {
                self.out.close_timeouts += 1;
                self.requeue(meta.slot, Duration::ZERO);
            }
            // The server may close first once we are closing everything.
            End::Failed(Cause::Dropped, _) if self.closing_all => {}
            End::Failed(cause, msg) => self.conn_failed(meta, cause, msg),
        }
    }

    /// A connection failed: a resume that had not gone live yet is retried after the
    /// backoff (as a client would); anything else is a failure of its subscriber.
    fn conn_failed(&mut self, meta: Meta, cause: Cause, msg: String) {
        let resuming = meta.resume.as_ref().is_some_and(|r| r.resuming);
        if resuming && !meta.live && !self.closing_all {
            self.out.failed.add(cause);
            Live::bump(&self.live.failed, 1);
            add_errors(&mut self.out.errors, [format!("resume: {msg}")]);
            self.reconnects
                .push_back((Instant::now() + CHURN_BACKOFF, meta));
            return;
        }
        self.failed(meta.slot, meta.live || resuming, cause, msg);
    }

    /// Counts a failure; `counted` says the subscriber already resolved (went live).
    fn failed(&mut self, slot: usize, counted: bool, cause: Cause, msg: String) {
        self.out.failed.add(cause);
        Live::bump(&self.live.failed, 1);
        add_errors(&mut self.out.errors, [msg]);
        if self.plan.kind == Kind::Churn {
            self.requeue(slot, CHURN_BACKOFF);
        } else if !counted {
            Live::bump(&self.live.resolved, 1);
        }
    }

    /// reconnect: closes every live subscriber's socket at once (a plain close, no
    /// WebSocket close handshake: the network went away) and queues its resume.
    fn drop_all(&mut self, now: Instant) {
        self.dropped = true;
        let start = now + self.plan.away;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let mut n = 0;
        for key in keys {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(conn.stream());
            if matches!(conn.phase, Phase::Open | Phase::Closing) {
                self.live.open.fetch_sub(1, Relaxed);
            } else {
                self.pending -= 1;
            }
            // The socket closes here.
            let mut meta = conn.into_meta();
            match meta.resume.as_mut() {
                Some(r) if meta.live => {
                    r.resuming = true;
                    r.since_drop = Some(start);
                    meta.live = false;
                    n += 1;
                    self.reconnects.push_back((start, meta));
                }
                _ => {
                    let counted = meta.live;
                    self.failed(
                        meta.slot,
                        counted,
                        Cause::Other,
                        "not subscribed at the drop".into(),
                    );
                }
            }
        }
        self.out.dropped_subs += n;
        Live::bump(&self.live.dropped, n);
        Live::bump(&self.live.drop_acks, 1);
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
        if !self.reconnects.is_empty() {
            let n = self.reconnects.len();
            add_errors(
                &mut self.out.errors,
                [format!(
                    "{n} dropped subscribers had not resumed at the end"
                )],
            );
            self.reconnects.clear();
        }
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
        self.out.not_recovered = s.resume.not_recovered;
        self.out.polls_not_recovered = s.resume.polls_not_recovered;
        self.out.no_recovered_field = s.resume.no_recovered_field;
        self.out.caught_up = s.resume.caught_up;
        self.out.bad_ids = s.bad_ids;
        self.out.last_delivery_us = s.last_delivery_us;
        self.out.end_us = unix_us();
        self.out
    }
}
