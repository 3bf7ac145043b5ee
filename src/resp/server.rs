//! The RESP thread: a mio loop over the `--resp-listen` connections, pipelined
//! commands answered in order with bounded buffers, as the HTTP API does. Publishers
//! are few, so each connection may own its buffers.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::command::{self, Action, Rules, Session};
use super::encode;
use super::parse::{self, Limits, Parsed};
use crate::api::keepalive::{Again, Link, Phase, Served, OUTPUT_HIGH, READ_CHUNK};
use crate::api::publish::publish_one;
use crate::broker::publisher::Publisher;
use crate::stats::Shared;
use crate::worker::inbox;

const LISTENER: Token = Token(usize::MAX);
/// Room beside the message for the command's name, the channel and the framing.
const COMMAND_SLACK: usize = 4096;
const MAX_ARGS: usize = 1024;
/// RESP connections held at once; past it a new one is told and closed.
pub const MAX_CONNECTIONS: usize = 1024;
/// Redis's own words for it, which clients recognise.
pub const TOO_MANY_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";
const TICK: Duration = Duration::from_secs(1);

/// A RESP connection: the shared keep-alive state and the client's session.
type RespConnection = Link<Session>;

#[derive(Debug)]
pub struct RespServer {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<RespConnection>,
    shared: Arc<Shared>,
    api_key: Option<&'static str>,
    max_message: usize,
    /// A command not complete this long after its first byte is refused.
    request_timeout: Duration,
    next_id: u64,
    /// Connections to serve again without an event: spent turns, held publishes.
    again: Again,
    /// With `--broker`: this thread's connections to Redis.
    publisher: Publisher,
}

impl RespServer {
    pub fn new(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        api_key: Option<&'static str>,
        max_message: usize,
        request_timeout: Duration,
    ) -> io::Result<RespServer> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(RespServer {
            poll,
            listener,
            conns: Slab::new(),
            shared,
            api_key,
            max_message,
            request_timeout,
            next_id: 1,
            again: Again::default(),
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
                next_sweep = now + TICK;
            }
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) if self.conns.len() >= MAX_CONNECTIONS => {
                    // Best effort, as Redis does; what the client sent is read first,
                    // so that closing does not reset the error away.
                    let _ = stream.read(&mut [0u8; 4096]);
                    let _ = stream.write(TOO_MANY_CLIENTS);
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    self.shared.resp_errors.fetch_add(1, Ordering::Relaxed);
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
                        entry.insert(Link::new(stream, Session::new(self.next_id), now));
                        self.next_id += 1;
                        self.shared.resp_connections.fetch_add(1, Ordering::Relaxed);
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

    /// `short_reads_drain`: see [`Link::serve`].
    fn serve_or_drop(&mut self, key: usize, now: Instant, short_reads_drain: bool) {
        if self.conns.contains(key) && !self.serve(key, now, short_reads_drain) {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: usize) {
        self.conns.remove(key);
        self.shared.resp_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Serves the connection until its socket has nothing more to give (see
    /// [`Link::serve`]). Returns false to drop the connection.
    fn serve(&mut self, key: usize, now: Instant, short_reads_drain: bool) -> bool {
        let ctx = Context {
            shared: &self.shared,
            rules: Rules {
                api_key: self.api_key.map(str::as_bytes),
                max_message: self.max_message,
                uptime_s: self.shared.started.elapsed().as_secs(),
                connected: self.conns.len(),
            },
            limits: Limits {
                max_args: MAX_ARGS,
                max_command: self.max_message + COMMAND_SLACK,
            },
        };
        let publisher = &mut self.publisher;
        let served = self.conns[key].serve(now, short_reads_drain, |conn| {
            answer_complete(conn, &ctx, publisher, now)
        });
        self.again.note(key, served);
        served != Served::Drop
    }

    /// Once a second: a command that is taking too long is refused, and replies
    /// nobody reads and drains past the timeout end their connection.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.request_timeout;
        let mut expired = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let quiet = now.saturating_duration_since(conn.last_active);
            let pending = now.saturating_duration_since(conn.request_began);
            let unread = !conn.output.is_empty() && quiet > timeout;
            let drained = conn.phase == Phase::Draining && pending > timeout;
            if unread || drained {
                expired.push(key);
            } else if conn.phase == Phase::Open
                && !conn.input.is_empty()
                && conn.output.is_empty()
                && pending > timeout
            {
                let error = if conn.held {
                    "ERR not published: the workers were behind for the whole --api-request-timeout; publish again later"
                } else {
                    "ERR Protocol error: command not complete within --api-request-timeout"
                };
                encode::error(&mut conn.output, error);
                self.shared.resp_errors.fetch_add(1, Ordering::Relaxed);
                conn.input.clear();
                conn.phase = Phase::Closing;
                if !conn.flush(now) {
                    expired.push(key);
                } else if conn.output.is_empty() {
                    conn.start_draining(now);
                }
            }
        }
        for key in expired {
            self.remove(key);
        }
    }
}

/// What answering needs besides the connection.
struct Context<'a> {
    shared: &'a Shared,
    rules: Rules<'a>,
    limits: Limits,
}

/// A `PUBLISH` that would add to a worker that is behind waits (`worker::inbox`).
fn waits_for_workers(shared: &Shared, args: &[std::borrow::Cow<'_, [u8]>]) -> bool {
    match args {
        [name, channel, ..] if name.eq_ignore_ascii_case(b"PUBLISH") => {
            shared.hub.workers_behind()
                && std::str::from_utf8(channel).is_ok_and(|c| shared.hub.behind_for(c))
        }
        _ => false,
    }
}

/// Parses and answers every complete command in the input while replies fit; the
/// answered bytes are removed once at the end.
fn answer_complete(
    conn: &mut RespConnection,
    ctx: &Context<'_>,
    publisher: &mut Publisher,
    now: Instant,
) {
    let (mut commands, mut errors) = (0, 0);
    let mut pos = 0;
    let mut was_held = std::mem::take(&mut conn.held);
    while conn.phase == Phase::Open
        && conn.input.len() - pos >= conn.wants
        && conn.output.len() < OUTPUT_HIGH
    {
        match parse::parse(&conn.input[pos..], ctx.limits) {
            Parsed::Partial { wants } => conn.wants = wants.max(1),
            Parsed::Command { consumed, args } => {
                if waits_for_workers(ctx.shared, &args) {
                    // Left unparsed: it is read again once the workers catch up.
                    if !was_held {
                        ctx.shared.publishes_held.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.held = true;
                    break;
                }
                was_held = false; // the next one held is another publish: counted again
                pos += consumed;
                conn.wants = 1;
                conn.request_began = now;
                if args.is_empty() {
                    continue;
                }
                commands += 1;
                let before = conn.output.len();
                match command::execute(&mut conn.state, &args, ctx.rules, &mut conn.output) {
                    Action::Replied => {}
                    Action::Publish { channel, data } => {
                        match publish_one(ctx.shared, publisher, &channel, &data) {
                            Ok(published) => {
                                encode::integer(&mut conn.output, published.seq as i64)
                            }
                            Err(e) => {
                                encode::error(&mut conn.output, &format!("ERR {}", e.reason()))
                            }
                        }
                    }
                    Action::Quit => {
                        conn.phase = Phase::Closing;
                        pos = conn.input.len();
                    }
                }
                if conn.output.get(before) == Some(&b'-') {
                    errors += 1;
                }
            }
            Parsed::Invalid { reason } => {
                encode::error(&mut conn.output, &format!("ERR Protocol error: {reason}"));
                errors += 1;
                conn.phase = Phase::Closing;
                pos = conn.input.len();
            }
        }
    }
    conn.input.drain(..pos);
    // One large command must not keep its buffer for the life of a pooled connection.
    if conn.input.is_empty() && conn.input.capacity() > READ_CHUNK {
        conn.input = Vec::new();
    }
    if commands > 0 {
        ctx.shared
            .resp_commands
            .fetch_add(commands, Ordering::Relaxed);
    }
    if errors > 0 {
        ctx.shared.resp_errors.fetch_add(errors, Ordering::Relaxed);
    }
}
