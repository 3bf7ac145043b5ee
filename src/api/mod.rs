//! The publish API thread: HTTP/1.1 keep-alive connections from backends, on their
//! own listener. Publishing is a call into the hub; the workers do the writing.

pub mod request;

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::proto::poll;
use crate::pubsub::hub::TOO_MANY_CHANNELS;
use crate::stats::{report, Shared};
use crate::worker::inbox::{Inbox, Mail};
use request::{ApiParsed, ApiRequest};

const LISTENER: Token = Token(usize::MAX);
/// Backends are few, so each API connection may own buffers.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug)]
struct ApiConnection {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    continue_sent: bool,
    close_after_flush: bool,
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
}

impl Api {
    pub fn new(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        inboxes: Vec<Arc<Inbox>>,
        max_body: usize,
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
        })
    }

    /// Serves until the process exits.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            crate::reactor::wait(&mut self.poll, &mut events, None)?;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    Token(key) => {
                        let alive = self.serve(key);
                        if !alive {
                            self.conns.remove(key);
                        }
                    }
                }
            }
        }
    }

    fn accept_all(&mut self) {
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
                            output: Vec::new(),
                            continue_sent: false,
                            close_after_flush: false,
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

    /// Reads, answers every complete request, writes. Returns false to drop it.
    fn serve(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return true;
        };
        let mut eof = false;
        let mut chunk = [0u8; 4096];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    conn.input.extend_from_slice(&chunk[..n]);
                    if conn.input.len() > READ_CHUNK + self.max_body {
                        break; // the parser refuses it below
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        while !conn.close_after_flush {
            match request::parse(&conn.input, self.max_body) {
                ApiParsed::Partial { expects_continue } => {
                    if expects_continue && !conn.continue_sent {
                        conn.output.extend_from_slice(request::CONTINUE);
                        conn.continue_sent = true;
                    }
                    break;
                }
                ApiParsed::Done {
                    consumed,
                    request,
                    keep_alive,
                } => {
                    conn.input.drain(..consumed.min(conn.input.len()));
                    conn.continue_sent = false;
                    let (status, body) = answer(&self.shared, &self.inboxes, request);
                    conn.output
                        .extend_from_slice(&request::response(status, &body, keep_alive));
                    conn.close_after_flush = !keep_alive;
                }
            }
        }
        if !flush(conn) {
            return false;
        }
        !(eof || conn.close_after_flush && conn.output.is_empty())
    }
}

fn answer(shared: &Shared, inboxes: &[Arc<Inbox>], request: ApiRequest) -> (u16, String) {
    match request {
        ApiRequest::Publish { channel, data } => {
            let Ok((published, seq)) = shared.hub.publish(&channel, &data) else {
                return (
                    503,
                    serde_json::json!({ "error": TOO_MANY_CHANNELS }).to_string(),
                );
            };
            let epoch = &published.epoch;
            (
                200,
                format!("{{\"channel\":\"{channel}\",\"seq\":{seq},\"epoch\":\"{epoch}\"}}"),
            )
        }
        ApiRequest::History {
            channel,
            since,
            limit,
        } => (200, history(shared, &channel, since, limit)),
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
        ApiRequest::Health => (200, "{\"status\":\"ok\"}".into()),
        ApiRequest::Refuse { status, reason } => {
            (status, serde_json::json!({ "error": reason }).to_string())
        }
    }
}

/// Writes what the socket takes; the rest waits for the next writable event.
fn flush(conn: &mut ApiConnection) -> bool {
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(n) => {
                conn.output.drain(..n);
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
fn history(shared: &Shared, channel: &str, since: u64, limit: usize) -> String {
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
        None => {
            let standing = poll::Standing {
                name: channel,
                last_seq: 0,
                epoch: "",
                recovered: since == 0,
            };
            poll::body([], &[standing])
        }
    };
    String::from_utf8(body).expect("the body is JSON text")
}
