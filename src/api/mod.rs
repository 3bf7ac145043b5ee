//! The publish API thread: HTTP/1.1 (and 1.0) keep-alive connections from backends,
//! on their own listener, pipelined requests answered in order with bounded buffers.
//! Publishing is a call into the hub; the workers do the writing.

pub mod keepalive;
pub mod listener;
pub mod publish;
pub mod request;
pub mod stream;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use crate::broker::publisher::{Item, Publisher};
use crate::proto::poll;
use crate::stats::snapshot::Snapshot;
use crate::stats::{prometheus, report, Shared};
use crate::worker::inbox::{Inbox, Mail};
use keepalive::{Link, Phase, OUTPUT_HIGH};
use listener::{Listener, Protocol};
use request::{ApiParsed, ApiRequest, ApiRules, Persistence};
use stream::{StatsFeed, MAX_STREAMS};

pub use listener::MAX_CONNECTIONS;
pub const TOO_MANY_CONNECTIONS: &str = "too many API connections; retry later";

/// How long the API waits on its clients.
pub type ApiTimeouts = listener::Timeouts;

/// An API connection: whether the `100 Continue` of the request now arriving was
/// sent beside the shared keep-alive state.
type ApiConnection = Link<ContinueSent>;

#[derive(Debug, Default)]
pub struct ContinueSent(bool);

/// The HTTP API's part of the shared loop (`listener.rs`).
#[derive(Debug)]
pub struct Api {
    shared: Arc<Shared>,
    /// For orders to every worker (drop-connections).
    inboxes: Vec<Arc<Inbox>>,
    max_body: usize,
    api_key: Option<&'static str>,
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
    /// The API's loop on its bound listener, ready to `run`.
    pub fn listen(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        inboxes: Vec<Arc<Inbox>>,
        max_body: usize,
        api_key: Option<&'static str>,
        timeouts: ApiTimeouts,
    ) -> io::Result<Listener<Api>> {
        let api = Api {
            shared: Arc::clone(&shared),
            inboxes,
            max_body,
            api_key,
            streams: Streams::default(),
            publisher: Publisher::default(),
        };
        Listener::new(listener, shared, timeouts, api)
    }
}

impl Protocol for Api {
    type State = ContinueSent;

    fn refuse(&mut self, stream: mio::net::TcpStream) {
        self.shared.api_errors.fetch_add(1, Ordering::Relaxed);
        refuse_connection(stream);
    }

    fn accepted(&mut self) -> ContinueSent {
        ContinueSent(false)
    }

    fn answer(&mut self, conn: &mut ApiConnection, _connected: usize, now: Instant) {
        let rules = ApiRules {
            max_body: self.max_body,
            api_key: self.api_key.map(str::as_bytes),
        };
        let (shared, inboxes) = (&self.shared, &self.inboxes);
        let (streams, publisher) = (&mut self.streams, &mut self.publisher);
        answer_complete(conn, rules, shared, inboxes, streams, publisher, now)
    }

    fn removed(&mut self, conn: &ApiConnection) {
        if conn.phase == Phase::Streaming {
            self.streams.open -= 1;
        }
    }

    fn timed_out(&mut self, conn: &mut ApiConnection) {
        let (status, body) = if conn.held {
            let reason = "not published: the workers were behind for the whole API request timeout; publish again later";
            (503, refusal_body(reason))
        } else {
            let reason = "request not complete within the API request timeout";
            (408, refusal_body(reason))
        };
        self.shared.api_errors.fetch_add(1, Ordering::Relaxed);
        conn.output
            .extend_from_slice(&request::response(status, &body, Persistence::Close));
    }

    /// One stats event to every stream. A client that does not read is dropped
    /// once its unread events would pass the bound of queued answers.
    fn tick(&mut self, conns: &mut Slab<ApiConnection>, now: Instant) -> Vec<usize> {
        let mut gone = Vec::new();
        if self.streams.open == 0 {
            return gone;
        }
        let event = self
            .streams
            .feed
            .event(&report::stats_json(&self.shared), now);
        for (key, conn) in conns.iter_mut() {
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
        gone
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
