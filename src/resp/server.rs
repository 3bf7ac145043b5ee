//! The RESP thread: a mio loop over the `--resp-listen` connections, pipelined
//! commands answered in order with bounded buffers, as the HTTP API does. Publishers
//! are few, so each connection may own its buffers.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::command::{self, Action, Rules, Session};
use super::encode;
use super::parse::{self, Limits, Parsed};
use crate::api::keepalive::{Link, Phase, OUTPUT_HIGH, READ_CHUNK};
use crate::api::listener::{Listener, Protocol, Timeouts};
use crate::api::publish::publish_one;
use crate::broker::publisher::Publisher;
use crate::stats::Shared;

/// Room beside the message for the command's name, the channel and the framing.
const COMMAND_SLACK: usize = 4096;
const MAX_ARGS: usize = 1024;
/// RESP connections held at once; past it a new one is told and closed.
pub use crate::api::listener::MAX_CONNECTIONS;
/// Redis's own words for it, which clients recognise.
pub const TOO_MANY_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";

/// A RESP connection: the shared keep-alive state and the client's session.
type RespConnection = Link<Session>;

/// The RESP listener's part of the shared loop (`api/listener.rs`).
#[derive(Debug)]
pub struct RespServer {
    shared: Arc<Shared>,
    api_key: Option<&'static str>,
    max_message: usize,
    next_id: u64,
    /// With `--broker`: this thread's connections to Redis.
    publisher: Publisher,
}

impl RespServer {
    /// The RESP loop on its bound listener, ready to `run`. A command not complete
    /// `request_timeout` after its first byte is refused; idle connections stay, as
    /// Redis keeps them.
    pub fn listen(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        api_key: Option<&'static str>,
        max_message: usize,
        request_timeout: Duration,
    ) -> io::Result<Listener<RespServer>> {
        let resp = RespServer {
            shared: Arc::clone(&shared),
            api_key,
            max_message,
            next_id: 1,
            publisher: Publisher::default(),
        };
        let timeouts = Timeouts {
            request: request_timeout,
            idle: None,
        };
        Listener::new(listener, shared, timeouts, resp)
    }
}

impl Protocol for RespServer {
    type State = Session;

    fn refuse(&mut self, mut stream: TcpStream) {
        // Best effort, as Redis does; what the client sent is read first, so that
        // closing does not reset the error away.
        let _ = stream.read(&mut [0u8; 4096]);
        let _ = stream.write(TOO_MANY_CLIENTS);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        self.shared.resp_errors.fetch_add(1, Ordering::Relaxed);
    }

    fn accepted(&mut self) -> Session {
        self.next_id += 1;
        self.shared.resp_connections.fetch_add(1, Ordering::Relaxed);
        Session::new(self.next_id - 1)
    }

    fn answer(&mut self, conn: &mut RespConnection, connected: usize, now: Instant) {
        let ctx = Context {
            shared: &self.shared,
            rules: Rules {
                api_key: self.api_key.map(str::as_bytes),
                max_message: self.max_message,
                uptime_s: self.shared.started.elapsed().as_secs(),
                connected,
            },
            limits: Limits {
                max_args: MAX_ARGS,
                max_command: self.max_message + COMMAND_SLACK,
            },
        };
        answer_complete(conn, &ctx, &mut self.publisher, now)
    }

    fn removed(&mut self, _conn: &RespConnection) {
        self.shared.resp_connections.fetch_sub(1, Ordering::Relaxed);
    }

    fn timed_out(&mut self, conn: &mut RespConnection) {
        let error = if conn.held {
            "ERR not published: the workers were behind for the whole --api-request-timeout; publish again later"
        } else {
            "ERR Protocol error: command not complete within --api-request-timeout"
        };
        encode::error(&mut conn.output, error);
        self.shared.resp_errors.fetch_add(1, Ordering::Relaxed);
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
