//! The publish API thread: HTTP/1.1 (and 1.0) keep-alive connections from backends,
//! on their own listener, pipelined requests answered in order with bounded buffers.
//! Publishing is a call into the hub; the workers do the writing.

pub mod publish;
pub mod request;
pub mod stream;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::broker::publisher::{Item, Publisher};
use crate::proto::poll;
use crate::stats::snapshot::Snapshot;
use crate::stats::{prometheus, report, Shared};
use crate::worker::inbox::{self, Inbox, Mail};
use request::{ApiParsed, ApiRequest, ApiRules, Persistence};
use stream::{StatsFeed, MAX_STREAMS};

const LISTENER: Token = Token(usize::MAX);
/// One read. Backends are few, so each API connection may own buffers.
const READ_CHUNK: usize = 16 * 1024;
/// Answers queued for a client that does not read them: past this the connection
/// is neither read nor parsed until the socket takes them (its writable event).
const OUTPUT_HIGH: usize = 256 * 1024;
/// Reads one connection gets per turn before the others are served; it is resumed
/// after them, as its socket may hold bytes no new edge will announce.
const READS_PER_TURN: usize = 64;
const TICK: Duration = Duration::from_secs(1);

/// How long the API waits on its clients.
#[derive(Debug, Clone, Copy)]
pub struct ApiTimeouts {
    /// From a request's first byte to its last (408 past it); also bounds an answer
    /// the client does not read and the drain after a closing answer.
    pub request: Duration,
    /// A keep-alive connection with nothing in flight is closed after this.
    pub idle: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The last answer is queued; shut down writing once it is out.
    Closing,
    /// Writing is shut down; what the client still sends is read and dropped, so the
    /// answer is not lost to a reset (the 413 of an unread body).
    Draining,
    /// `GET /api/stats/stream`: held until the client goes, written once a second;
    /// what the client sends is read and dropped.
    Streaming,
}

#[derive(Debug)]
struct ApiConnection {
    stream: TcpStream,
    input: Vec<u8>,
    /// The parser needs `input` to hold this many bytes before it can say more.
    wants: usize,
    output: Vec<u8>,
    continue_sent: bool,
    phase: Phase,
    /// The client shut down its side: answer what is complete, then close.
    peer_closed: bool,
    /// When the server began waiting for the request in `input` (its first byte, or
    /// the end of the answers before it), or when draining began.
    request_began: Instant,
    /// The last byte read or written.
    last_active: Instant,
}

#[derive(Debug)]
pub struct Api {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<ApiConnection>,
    shared: Arc<Shared>,
    /// For orders to every worker (drop-connections).
    inboxes: Vec<Arc<Inbox>>,
    max_body: usize,
    api_key: Option<&'static str>,
    timeouts: ApiTimeouts,
    /// Connections that used up their reads for a turn with bytes maybe left.
    resume: Vec<usize>,
    streams: Streams,
    /// With `--broker`: this thread's connections to Redis.
    publisher: Publisher,
}

/// The stats streams: how many are open, and the feed that frames their events.
#[derive(Debug, Default)]
struct Streams {
    open: usize,
    feed: StatsFeed,
}

impl Api {
    pub fn new(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        inboxes: Vec<Arc<Inbox>>,
        max_body: usize,
        api_key: Option<&'static str>,
        timeouts: ApiTimeouts,
    ) -> io::Result<Api> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Api {
            poll,
            listener,
            conns: Slab::new(),
            shared,
            inboxes,
            max_body,
            api_key,
            timeouts,
            resume: Vec::new(),
            streams: Streams::default(),
            publisher: Publisher::default(),
        })
    }

    /// Serves until the process exits.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + TICK;
        loop {
            let timeout = if self.resume.is_empty() {
                next_sweep.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            crate::reactor::wait(&mut self.poll, &mut events, Some(timeout))?;
            let now = Instant::now();
            // This turn's publications reach each worker with one wake. Not with
            // --broker: publishing then waits on Redis, and wakes must not wait.
            let held = self.shared.broker.get().is_none().then(inbox::hold_wakes);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    Token(key) => self.serve_or_drop(key, now, !event.is_read_closed()),
                }
            }
            for key in std::mem::take(&mut self.resume) {
                self.serve_or_drop(key, now, false);
            }
            drop(held);
            if now >= next_sweep {
                self.sweep(now);
                self.write_streams(now);
                next_sweep = now + TICK;
            }
        }
    }

    /// `short_reads_drain`: a read shorter than the chunk emptied the socket and a
    /// new edge announces more, so the read that would say `WouldBlock` is skipped;
    /// not when the event also said the peer closed (its EOF must be read).
    fn serve_or_drop(&mut self, key: usize, now: Instant, short_reads_drain: bool) {
        if self.conns.contains(key) && !self.serve(key, now, short_reads_drain) {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: usize) {
        if self.conns.remove(key).phase == Phase::Streaming {
            self.streams.open -= 1;
        }
    }

    /// Once a second: one stats event to every stream. A client that does not read
    /// is dropped once its unread events would pass the bound of queued answers.
    fn write_streams(&mut self, now: Instant) {
        if self.streams.open == 0 {
            return;
        }
        let event = self
            .streams
            .feed
            .event(&report::stats_json(&self.shared), now);
        let mut gone = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if conn.phase != Phase::Streaming {
                continue;
            }
            if conn.output.len() + event.len() > OUTPUT_HIGH {
                gone.push(key);
                continue;
            }
            conn.output.extend_from_slice(&event);
            if !flush(conn, now) {
                gone.push(key);
            }
        }
        for key in gone {
            self.remove(key);
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_ok()
                    {
                        entry.insert(ApiConnection {
                            stream,
                            input: Vec::new(),
                            wants: 1,
                            output: Vec::new(),
                            continue_sent: false,
                            phase: Phase::Open,
                            peer_closed: false,
                            request_began: now,
                            last_active: now,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    return
                }
                Err(_) => continue,
            }
        }
    }

    /// Answers what is complete, writes, reads, until the socket has nothing more
    /// to give, the client stops taking answers, or the turn's reads are used up.
    /// It never stops reading with bytes unread and nothing to resume it: a
    /// writable edge follows a partial write, and `resume` follows a spent turn.
    /// Returns false to drop the connection.
    fn serve(&mut self, key: usize, now: Instant, short_reads_drain: bool) -> bool {
        let rules = ApiRules {
            max_body: self.max_body,
            api_key: self.api_key.map(str::as_bytes),
        };
        let conn = &mut self.conns[key];
        let mut chunk = [0u8; READ_CHUNK];
        let mut drained = false;
        for _ in 0..READS_PER_TURN {
            answer_complete(
                conn,
                rules,
                &self.shared,
                &self.inboxes,
                &mut self.streams,
                &mut self.publisher,
                now,
            );
            if !flush(conn, now) {
                return false;
            }
            if conn.output.len() >= OUTPUT_HIGH {
                return true; // the socket is full: its writable edge brings us back
            }
            if conn.phase == Phase::Closing && conn.output.is_empty() {
                start_draining(conn, now);
            }
            if conn.phase == Phase::Open && conn.input.len() >= conn.wants {
                continue; // answers stopped at the bound, which the flush has freed
            }
            if conn.peer_closed {
                // Nothing more will come: close once the answers are out.
                return !conn.output.is_empty();
            }
            if drained {
                return true;
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => conn.peer_closed = true,
                Ok(n) => {
                    drained = short_reads_drain && n < READ_CHUNK;
                    conn.last_active = now;
                    if conn.phase == Phase::Open {
                        if conn.input.is_empty() {
                            conn.request_began = now;
                        }
                        conn.input.extend_from_slice(&chunk[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.resume.push(key);
        true
    }

    /// Once a second: 408 for a request that is taking too long, and the end of
    /// idle keep-alive connections, of unread answers and of drains.
    fn sweep(&mut self, now: Instant) {
        let timeouts = self.timeouts;
        let mut expired = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let quiet = now.saturating_duration_since(conn.last_active);
            let pending = now.saturating_duration_since(conn.request_began);
            let unread = !conn.output.is_empty() && quiet > timeouts.request;
            let drained = conn.phase == Phase::Draining && pending > timeouts.request;
            if unread || drained {
                expired.push(key);
            } else if conn.phase == Phase::Open
                && !conn.input.is_empty()
                && conn.output.is_empty()
                && pending > timeouts.request
            {
                let status = 408;
                let body = refusal_body("request not complete within the API request timeout");
                conn.output.extend_from_slice(&request::response(
                    status,
                    &body,
                    Persistence::Close,
                ));
                conn.input.clear();
                conn.phase = Phase::Closing;
                if !flush(conn, now) {
                    expired.push(key);
                } else if conn.output.is_empty() {
                    start_draining(conn, now);
                }
            } else if conn.phase != Phase::Streaming
                && conn.input.is_empty()
                && conn.output.is_empty()
                && timeouts.idle.is_some_and(|idle| quiet > idle)
            {
                expired.push(key);
            }
        }
        for key in expired {
            self.remove(key);
        }
    }
}

/// Shuts down writing once the closing answer is out; what the client still sends
/// is read and dropped, for at most the request timeout from now.
fn start_draining(conn: &mut ApiConnection, now: Instant) {
    let _ = conn.stream.shutdown(Shutdown::Write);
    conn.phase = Phase::Draining;
    conn.request_began = now;
}

/// Parses and answers every complete request in the input while answers fit. The
/// answered bytes are removed once at the end, so a long pipelined input is not
/// moved once per request.
fn answer_complete(
    conn: &mut ApiConnection,
    rules: ApiRules<'_>,
    shared: &Shared,
    inboxes: &[Arc<Inbox>],
    streams: &mut Streams,
    publisher: &mut Publisher,
    now: Instant,
) {
    let mut pos = 0;
    while conn.phase == Phase::Open
        && conn.input.len() - pos >= conn.wants
        && conn.output.len() < OUTPUT_HIGH
    {
        match request::parse(&conn.input[pos..], rules) {
            ApiParsed::Partial {
                expects_continue,
                wants,
            } => {
                conn.wants = wants.max(1);
                if expects_continue && !conn.continue_sent {
                    conn.output.extend_from_slice(request::CONTINUE);
                    conn.continue_sent = true;
                }
            }
            ApiParsed::Done {
                consumed,
                request,
                keep_alive,
            } => {
                pos += consumed.max(1).min(conn.input.len() - pos);
                conn.request_began = now; // the next request, maybe partly here, begins
                conn.wants = 1;
                conn.continue_sent = false;
                match request {
                    ApiRequest::Dashboard => {
                        conn.output
                            .extend_from_slice(&stream::page_response(keep_alive));
                    }
                    ApiRequest::StatsStream if streams.open < MAX_STREAMS => {
                        streams.open += 1;
                        conn.phase = Phase::Streaming;
                        conn.output
                            .extend_from_slice(&crate::proto::sse::response_head(None));
                        let stats = report::stats_json(shared);
                        conn.output
                            .extend_from_slice(&streams.feed.event(&stats, now));
                        pos = conn.input.len();
                        break;
                    }
                    ApiRequest::StatsStream => {
                        let body = refusal_body("too many stats streams open; try again later");
                        conn.output
                            .extend_from_slice(&request::response(503, &body, keep_alive));
                    }
                    request => {
                        let content_type = request.content_type();
                        let (status, body) = answer(shared, inboxes, publisher, request);
                        request::write_response(
                            &mut conn.output,
                            status,
                            content_type,
                            &body,
                            keep_alive,
                        );
                    }
                }
                if !keep_alive.keeps() {
                    conn.phase = Phase::Closing;
                    pos = conn.input.len();
                }
            }
        }
    }
    conn.input.drain(..pos);
}

/// `{"channel":C,"seq":N,"epoch":E}` (channel names never need escaping).
fn published_json(channel: &str, published: &publish::Published) -> String {
    let (seq, epoch) = (published.seq, published.epoch());
    format!("{{\"channel\":\"{channel}\",\"seq\":{seq},\"epoch\":\"{epoch}\"}}")
}

/// A batch, in order: a JSON array with each message's answer, as a single publish
/// would give it; 503 if any was refused (the others still went out).
fn publish_batch(
    shared: &Shared,
    publisher: &mut Publisher,
    messages: &[request::BatchMessage],
) -> (u16, String) {
    let mut status = 200;
    let mut body = String::with_capacity(messages.len() * 48 + 2);
    body.push('[');
    let items: Vec<Item<'_>> = messages
        .iter()
        .map(|m| Item {
            channel: &m.channel,
            data: &m.data,
        })
        .collect();
    let results = publish::publish_many(shared, publisher, &items);
    for (i, (message, result)) in messages.iter().zip(results).enumerate() {
        if i > 0 {
            body.push(',');
        }
        match result {
            Ok(published) => body.push_str(&published_json(&message.channel, &published)),
            Err(e) => {
                status = 503;
                let refused =
                    serde_json::json!({ "channel": message.channel, "error": e.reason() });
                body.push_str(&refused.to_string());
            }
        }
    }
    body.push(']');
    (status, body)
}

fn refusal_body(reason: &str) -> String {
    serde_json::json!({ "error": reason }).to_string()
}

fn answer(
    shared: &Shared,
    inboxes: &[Arc<Inbox>],
    publisher: &mut Publisher,
    request: ApiRequest,
) -> (u16, String) {
    match request {
        ApiRequest::Publish { channel, data } => {
            match publish::publish_one(shared, publisher, &channel, &data) {
                Ok(published) => (200, published_json(&channel, &published)),
                Err(e) => (503, refusal_body(e.reason())),
            }
        }
        ApiRequest::PublishBatch { messages } => publish_batch(shared, publisher, &messages),
        ApiRequest::History {
            channel,
            since,
            limit,
        } => (200, history(shared, publisher, &channel, since, limit)),
        ApiRequest::Presence { channel } if shared.hub.keeps_presence(&channel) => {
            let merged = shared
                .broker
                .get()
                .and_then(|broker| broker.presence_json(publisher, &channel));
            match merged {
                Some(body) => (200, body),
                None => match shared.hub.presence_json(&channel) {
                    Ok(body) => (200, body),
                    Err(reason) => (400, serde_json::json!({ "error": reason }).to_string()),
                },
            }
        }
        ApiRequest::Presence { channel } => match shared.hub.presence_json(&channel) {
            Ok(body) => (200, body),
            Err(reason) => (400, serde_json::json!({ "error": reason }).to_string()),
        },
        ApiRequest::DropConnections => {
            for inbox in inboxes {
                inbox.push(Mail::DropConnections);
            }
            (200, "{\"dropped\":true}".into())
        }
        ApiRequest::Stats => (200, report::stats_json(shared)),
        ApiRequest::Metrics => (200, prometheus::render(&Snapshot::take(shared))),
        // Answered by `answer_complete`, which owns the page and the streams.
        ApiRequest::StatsStream | ApiRequest::Dashboard => (404, refusal_body("not found")),
        ApiRequest::Health => (200, "{\"status\":\"ok\"}".into()),
        ApiRequest::Refuse { status, reason } => {
            if status == 401 {
                shared.api_unauthorized.fetch_add(1, Ordering::Relaxed);
            }
            (status, refusal_body(&reason))
        }
    }
}

/// Writes what the socket takes; the rest waits for the next writable event.
fn flush(conn: &mut ApiConnection, now: Instant) -> bool {
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(n) => {
                conn.output.drain(..n);
                conn.last_active = now;
                if conn.output.is_empty() {
                    // The server waits on the client again from now on.
                    conn.request_began = now;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// `GET /api/history`: the long-poll answer's JSON. A channel that does not exist
/// now has nothing kept: an empty answer at seq 0, with no epoch to resume in.
fn history(
    shared: &Shared,
    publisher: &mut Publisher,
    channel: &str,
    since: u64,
    limit: usize,
) -> String {
    let mut from_redis = || {
        let broker = shared.broker.get()?;
        broker.backlog(publisher, channel)
    };
    let body = match shared.hub.backlog(channel, since, limit) {
        Some(backlog) => {
            let standing = poll::Standing {
                name: channel,
                last_seq: backlog.messages.last().map_or(backlog.last_seq, |m| m.0),
                epoch: &backlog.epoch,
                recovered: backlog.recovered,
            };
            poll::body(backlog.messages.iter().map(|(_, p)| &p[..]), &[standing])
        }
        None => match from_redis() {
            // A node that does not hold the channel answers from Redis's log.
            Some(crate::broker::publisher::Backlog {
                epoch,
                last_seq,
                messages: log,
            }) => {
                let oldest = log.first().map_or(last_seq + 1, |m| m.0);
                let recovered = since <= last_seq && (since == last_seq || since + 1 >= oldest);
                let pushes: Vec<(u64, Vec<u8>)> = log
                    .iter()
                    .filter(|(seq, _)| *seq > since)
                    .take(limit)
                    .map(|(seq, data)| {
                        (
                            *seq,
                            crate::pubsub::hub::remote::push_of(channel, *seq, data),
                        )
                    })
                    .collect();
                let standing = poll::Standing {
                    name: channel,
                    last_seq: pushes.last().map_or(last_seq, |m| m.0),
                    epoch: &epoch,
                    recovered,
                };
                poll::body(pushes.iter().map(|(_, p)| &p[..]), &[standing])
            }
            None => {
                let standing = poll::Standing {
                    name: channel,
                    last_seq: 0,
                    epoch: "",
                    recovered: since == 0,
                };
                poll::body([], &[standing])
            }
        },
    };
    String::from_utf8(body).expect("the body is JSON text")
}
