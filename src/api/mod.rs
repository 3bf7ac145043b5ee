//! The publish API thread: HTTP/1.1 (and 1.0) keep-alive connections from backends,
//! on their own listener, pipelined requests answered in order with bounded buffers.
//! Publishing is a call into the hub; the workers do the writing.

pub mod keepalive;
pub mod publish;
pub mod request;
pub mod stream;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::broker::publisher::{Item, Publisher};
use crate::proto::poll;
use crate::stats::snapshot::Snapshot;
use crate::stats::{prometheus, report, Shared};
use crate::worker::inbox::{self, Inbox, Mail};
use keepalive::{Again, Link, Phase, OUTPUT_HIGH};
use request::{ApiParsed, ApiRequest, ApiRules, Persistence};
use stream::{StatsFeed, MAX_STREAMS};

const LISTENER: Token = Token(usize::MAX);
const TICK: Duration = Duration::from_secs(1);

/// API connections held at once, as for RESP: backends keep a few keep-alive
/// connections each, and without a bound, connections that send nothing would hold
/// descriptors the client listener needs until the idle timeout.
pub const MAX_CONNECTIONS: usize = 1024;
pub const TOO_MANY_CONNECTIONS: &str = "too many API connections; retry later";

/// How long the API waits on its clients.
#[derive(Debug, Clone, Copy)]
pub struct ApiTimeouts {
    /// From a request's first byte to its last (408 past it); also bounds an answer
    /// the client does not read and the drain after a closing answer.
    pub request: Duration,
    /// A keep-alive connection with nothing in flight is closed after this.
    pub idle: Option<Duration>,
}

/// An API connection: whether the `100 Continue` of the request now arriving was
/// sent beside the shared keep-alive state.
type ApiConnection = Link<ContinueSent>;

#[derive(Debug, Default)]
struct ContinueSent(bool);

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
    /// Connections that used up their reads for a turn with bytes maybe left, or
    /// whose publish waits for a worker that is behind.
    again: Again,
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
            again: Again::default(),
            streams: Streams::default(),
            publisher: Publisher::default(),
        })
    }

    /// Serves until the process exits.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + TICK;
        loop {
            let timeout = self
                .again
                .timeout(next_sweep.saturating_duration_since(Instant::now()));
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
            for key in self.again.take() {
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

    /// `short_reads_drain`: see [`Link::serve`].
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
            if !conn.flush(now) {
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
                Ok((stream, _)) if self.conns.len() >= MAX_CONNECTIONS => {
                    self.shared.api_errors.fetch_add(1, Ordering::Relaxed);
                    refuse_connection(stream);
                }
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
                        entry.insert(Link::new(stream, ContinueSent(false), now));
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

    /// Serves the connection until its socket has nothing more to give (see
    /// [`Link::serve`]). Returns false to drop the connection.
    fn serve(&mut self, key: usize, now: Instant, short_reads_drain: bool) -> bool {
        let rules = ApiRules {
            max_body: self.max_body,
            api_key: self.api_key.map(str::as_bytes),
        };
        let (shared, inboxes) = (&self.shared, &self.inboxes);
        let (streams, publisher) = (&mut self.streams, &mut self.publisher);
        let served = self.conns[key].serve(now, short_reads_drain, |conn| {
            answer_complete(conn, rules, shared, inboxes, streams, publisher, now)
        });
        self.again.note(key, served);
        served != keepalive::Served::Drop
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
                let (status, body) = if conn.held {
                    let reason = "not published: the workers were behind for the whole API request timeout; publish again later";
                    (503, refusal_body(reason))
                } else {
                    let reason = "request not complete within the API request timeout";
                    (408, refusal_body(reason))
                };
                self.shared.api_errors.fetch_add(1, Ordering::Relaxed);
                conn.output.extend_from_slice(&request::response(
                    status,
                    &body,
                    Persistence::Close,
                ));
                conn.input.clear();
                conn.phase = Phase::Closing;
                if !conn.flush(now) {
                    expired.push(key);
                } else if conn.output.is_empty() {
                    conn.start_draining(now);
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
    let mut was_held = std::mem::take(&mut conn.held);
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
                if expects_continue && !conn.state.0 {
                    conn.output.extend_from_slice(request::CONTINUE);
                    conn.state.0 = true;
                }
            }
            ApiParsed::Done {
                consumed,
                request,
                keep_alive,
            } => {
                if waits_for_workers(shared, &request) {
                    // Left unparsed: it is parsed again once the workers catch up.
                    if !was_held {
                        shared.publishes_held.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.held = true;
                    break;
                }
                was_held = false; // the next one held is another publish: counted again
                pos += consumed.max(1).min(conn.input.len() - pos);
                conn.request_began = now; // the next request, maybe partly here, begins
                conn.wants = 1;
                conn.state.0 = false;
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
                        shared.api_errors.fetch_add(1, Ordering::Relaxed);
                        let body = refusal_body("too many stats streams open; try again later");
                        conn.output
                            .extend_from_slice(&request::response(503, &body, keep_alive));
                    }
                    request => {
                        let content_type = request.content_type();
                        let (status, body) = answer(shared, inboxes, publisher, request);
                        if status >= 400 {
                            shared.api_errors.fetch_add(1, Ordering::Relaxed);
                        }
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

/// A publish that would add to a worker that is behind waits (`worker::inbox`).
fn waits_for_workers(shared: &Shared, request: &ApiRequest) -> bool {
    if !shared.hub.workers_behind() {
        return false;
    }
    match request {
        ApiRequest::Publish { channel, .. } => shared.hub.behind_for(channel),
        ApiRequest::PublishBatch { messages } => {
            messages.iter().any(|m| shared.hub.behind_for(&m.channel))
        }
        _ => false,
    }
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

/// A 503 to a connection past [`MAX_CONNECTIONS`], best effort: what the client has
/// sent is read first, so that closing does not reset the answer away.
fn refuse_connection(mut stream: mio::net::TcpStream) {
    use std::io::{Read, Write};
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    let body = refusal_body(TOO_MANY_CONNECTIONS);
    let _ = stream.write(&request::response(503, &body, Persistence::Close));
    let _ = stream.shutdown(std::net::Shutdown::Write);
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
