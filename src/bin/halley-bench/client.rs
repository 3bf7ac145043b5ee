//! One load connection: a non-blocking state machine from TCP connect through the
//! WebSocket handshake to the close handshake, or through an SSE stream or a chain of
//! long-polls. It knows nothing of scenarios: pushes and replies go to a callback, and
//! the reactor decides what they mean.

use crate::check::SeqCheck;
use crate::comet::{self, Parsed};
use crate::stats::{unix_us, Cause};
use crate::ws::{self, Decoded, Handshake};
use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// How a subscriber talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket `/ws`
    Ws,
    /// Server-Sent Events `GET /sse`
    Sse,
    /// HTTP/1.1 keep-alive long-polling `GET /poll`
    Poll,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
        }
    }
}

/// Bound on an SSE event or a poll answer still incomplete in the read buffer.
const MAX_PENDING_BYTES: usize = 4 << 20;

/// Bound on our close handshake: close frame answered and TCP closed by the server.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Handshaking,
    Open,
    /// A close frame went out; waiting for the server's close and its TCP close
    /// (RFC 6455: the server closes TCP first, so the TIME_WAIT stays on its side and
    /// our source ports are not used up).
    Closing,
}

/// How a connection ended.
pub enum End {
    /// The close handshake we started completed.
    Closed,
    /// Our close was not answered within `CLOSE_TIMEOUT`.
    CloseTimeout,
    Failed(Cause, String),
}

/// What one `drive` call produced.
#[derive(Default)]
pub struct Step {
    /// The handshake completed: a 101 (ws), the stream's 200 head (sse), the first
    /// answer's head (poll).
    pub upgraded: bool,
    /// The scenario saw the reply it was waiting for (`TextAction::Ready`).
    pub ready: bool,
    pub end: Option<End>,
}

/// What the connection hands to the scenario.
pub enum Incoming<'a> {
    /// A WebSocket text frame, an SSE event's data (with its `id:`), or one message of
    /// a poll answer.
    Text {
        data: &'a [u8],
        id: Option<&'a [u8]>,
    },
    /// A poll answer, before its messages are handed over one by one.
    Answer {
        last_seq: u64,
        epoch: Option<&'a str>,
        recovered: Option<bool>,
    },
}

/// Per-connection state of a long-poll subscriber: where the next poll starts.
struct PollState {
    channel: Box<str>,
    host: Box<str>,
    since: u64,
    epoch: Option<Box<str>>,
    /// The outstanding request is the first one's probe (see `comet::PROBE_SINCE`):
    /// the messages of its answer precede the subscription and are not handed over.
    probe: bool,
    /// The connection's token: the server takes a poll's token from each request.
    token: Option<Box<str>>,
}

impl PollState {
    fn request(&self, out: &mut Vec<u8>) {
        let q = comet::query(&self.channel, Some(self.since), self.epoch.as_deref());
        let mut path = format!("/poll?{q}");
        crate::tokens::append(&mut path, self.token.as_deref());
        comet::poll_request(&path, &self.host, out);
    }
}

/// Where a new connection goes and what it asks for.
pub struct Target<'a> {
    pub transport: Transport,
    pub host: &'a str,
    /// ws: the whole path (`/ws?subscribe=...`); sse and poll: the channel.
    pub path_or_channel: &'a str,
    /// sse and poll: resume from this seq (poll without it: probe first).
    pub since: Option<u64>,
    pub epoch: Option<&'a str>,
    /// ws: offer permessage-deflate.
    pub deflate: bool,
    /// `?token=` on the request (each poll's).
    pub token: Option<&'a str>,
}

/// The scenario's per-connection state, visible to the text callback.
pub struct Meta {
    /// Global index of the connection over all threads and processes.
    pub slot: usize,
    pub started: Instant,
    /// Deadline of the current phase (connect + handshake, churn's reply, close).
    pub deadline: Instant,
    /// The reply that makes the subscriber live (churn's, a resume's, SSE's
    /// `subscribed` event, the first poll answer) is awaited under `deadline` even
    /// though the socket is open.
    pub awaiting_reply: bool,
    /// The subscriber is in place (counted as connected, or resumed).
    pub live: bool,
    pub check: Option<SeqCheck>,
    /// reconnect: the subscriber's position, carried over to its next connection.
    pub resume: Option<Box<crate::resume::Resume>>,
}

pub struct Conn {
    stream: TcpStream,
    transport: Transport,
    pub phase: Phase,
    pub meta: Meta,
    accept: String,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// The server sent a close first: the end is a drop, with this reason.
    server_closed: Option<String>,
    poll: Option<Box<PollState>>,
}

/// Starts a non-blocking connect, bound to `source` first if given.
#[allow(unsafe_code)] // setsockopt(IP_BIND_ADDRESS_NO_PORT), which socket2 lacks
pub fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        // Without IP_BIND_ADDRESS_NO_PORT, bind(port 0) picks a port for any
        // destination, capping each source address at the ephemeral range overall.
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and a c_int option of the right size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// Maps an OS error to a failure cause.
pub fn cause_of(e: &io::Error) -> Cause {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Cause::Refused,
        io::ErrorKind::TimedOut => Cause::Timeout,
        _ => Cause::Other,
    }
}

impl Conn {
    pub fn new(stream: TcpStream, to: &Target<'_>, meta: Meta) -> Conn {
        let mut poll = None;
        let (request, accept) = match to.transport {
            Transport::Ws => {
                let mut path = to.path_or_channel.to_string();
                crate::tokens::append(&mut path, to.token);
                ws::request(&path, to.host, to.deflate)
            }
            Transport::Sse => {
                let mut path = format!(
                    "/sse?{}",
                    comet::query(to.path_or_channel, to.since, to.epoch)
                );
                crate::tokens::append(&mut path, to.token);
                (comet::sse_request(&path, to.host), String::new())
            }
            Transport::Poll => {
                let state = PollState {
                    channel: to.path_or_channel.into(),
                    host: to.host.into(),
                    since: to.since.unwrap_or(comet::PROBE_SINCE),
                    epoch: to.epoch.map(Into::into),
                    probe: to.since.is_none(),
                    token: to.token.map(Into::into),
                };
                let mut req = Vec::new();
                state.request(&mut req);
                poll = Some(Box::new(state));
                (req, String::new())
            }
        };
        Conn {
            stream,
            transport: to.transport,
            phase: Phase::Connecting,
            meta,
            accept,
            rbuf: Vec::new(),
            // The request waits here until the TCP connect completes.
            wbuf: request,
            server_closed: None,
            poll,
        }
    }

    /// The scenario state, once the connection is done with.
    pub fn into_meta(self) -> Meta {
        self.meta
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Queues bytes and writes as much as the socket takes now.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wbuf.extend_from_slice(bytes);
        if self.phase != Phase::Connecting {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > 4096 {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    /// Sends our close frame and waits (bounded) for the server's close. SSE and
    /// poll have no close handshake: they end at once (the socket closes when the
    /// connection is dropped).
    pub fn start_close(&mut self, mask: [u8; 4]) -> Option<End> {
        if self.transport != Transport::Ws {
            return Some(End::Closed);
        }
        if self.phase == Phase::Closing {
            return None;
        }
        self.phase = Phase::Closing;
        self.meta.awaiting_reply = false;
        self.meta.deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut frame = Vec::with_capacity(8);
        ws::encode_close(mask, &mut frame);
        self.send(&frame).err().map(|_| End::Closed)
    }

    /// Handles readiness: completes the connect, flushes, reads and decodes.
    /// `closed` says the event reported a hang-up or error: then read to the end.
    pub fn drive(
        &mut self,
        scratch: &mut [u8],
        mask: [u8; 4],
        closed: bool,
        on_in: &mut impl FnMut(&mut Meta, Incoming<'_>, u64) -> TextAction,
    ) -> Step {
        let mut step = Step::default();
        if self.phase == Phase::Connecting {
            match self.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    step.end = Some(End::Failed(cause_of(&e), e.to_string()));
                    return step;
                }
                Ok(None) => {}
            }
            match self.stream.peer_addr() {
                Ok(_) => self.phase = Phase::Handshaking,
                // Spurious wake-up: the connect is still in progress.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return step,
                Err(e) => {
                    step.end = Some(End::Failed(cause_of(&e), e.to_string()));
                    return step;
                }
            }
        }
        if let Err(e) = self.flush() {
            step.end = Some(self.io_end(&e));
            return step;
        }
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    step.end = Some(self.eof_end());
                    return step;
                }
                Ok(n) => {
                    // Every frame of one read arrived at the same moment: one clock read.
                    let now_us = unix_us();
                    if let Err(end) = self.absorb(&scratch[..n], now_us, mask, &mut step, on_in) {
                        step.end = Some(end);
                        return step;
                    }
                    // A short read emptied the socket, and epoll is edge-triggered: new
                    // data raises a new event. Skipping the read that would only say
                    // WouldBlock halves the syscalls per push at full fan-out. Not while
                    // closing or after a hang-up, where the EOF must be seen now.
                    if n < scratch.len() && !closed && self.phase == Phase::Open {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    step.end = Some(self.io_end(&e));
                    return step;
                }
            }
        }
        if let Err(e) = self.flush() {
            step.end = Some(self.io_end(&e));
        }
        step
    }

    fn eof_end(&self) -> End {
        match (self.phase, &self.server_closed) {
            (Phase::Closing, None) => End::Closed,
            (Phase::Closing | Phase::Open, Some(reason)) => {
                End::Failed(Cause::Dropped, reason.clone())
            }
            (Phase::Open, None) => End::Failed(Cause::Dropped, "server closed TCP".into()),
            _ => End::Failed(Cause::Other, "closed before the handshake completed".into()),
        }
    }

    fn io_end(&self, e: &io::Error) -> End {
        match self.phase {
            Phase::Closing if self.server_closed.is_none() => End::Closed,
            Phase::Open | Phase::Closing => End::Failed(Cause::Dropped, e.to_string()),
            _ => End::Failed(cause_of(e), e.to_string()),
        }
    }

    /// Adds freshly read bytes; decodes straight from `data` when nothing is buffered
    /// so that idle connections keep no read buffer. A buffered frame is completed
    /// with just the bytes it lacks, then the rest is decoded in place: only an
    /// incomplete tail is ever copied.
    fn absorb(
        &mut self,
        data: &[u8],
        now_us: u64,
        mask: [u8; 4],
        step: &mut Step,
        on_in: &mut impl FnMut(&mut Meta, Incoming<'_>, u64) -> TextAction,
    ) -> Result<(), End> {
        let mut data = data;
        if self.transport != Transport::Ws {
            // SSE events and poll answers: the unit's end is only found by scanning,
            // so a buffered tail simply takes the new bytes.
            let mut buf = std::mem::take(&mut self.rbuf);
            let whole: &[u8] = if buf.is_empty() {
                data
            } else {
                buf.extend_from_slice(data);
                &buf
            };
            let used = self.process(whole, now_us, mask, step, on_in)?;
            if whole.len() - used > MAX_PENDING_BYTES {
                return Err(End::Failed(
                    Cause::Dropped,
                    format!("over {MAX_PENDING_BYTES} bytes without the end of an event or answer"),
                ));
            }
            if buf.is_empty() {
                self.rbuf.extend_from_slice(&data[used..]);
            } else {
                buf.drain(..used);
                self.rbuf = buf;
            }
            return Ok(());
        }
        if !self.rbuf.is_empty() {
            let mut buf = std::mem::take(&mut self.rbuf);
            if self.phase == Phase::Handshaking {
                buf.extend_from_slice(data);
                data = &[];
                let used = self.process(&buf, now_us, mask, step, on_in)?;
                buf.drain(..used);
            }
            // Bounded: each turn moves at least one byte out of `data`.
            while !buf.is_empty() && !data.is_empty() {
                let take = ws::missing(&buf).clamp(1, data.len());
                buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                let used = self.process(&buf, now_us, mask, step, on_in)?;
                buf.drain(..used);
            }
            if !buf.is_empty() {
                // `data` is used up.
                self.rbuf = buf;
                return Ok(());
            }
        }
        let used = self.process(data, now_us, mask, step, on_in)?;
        self.rbuf.extend_from_slice(&data[used..]);
        Ok(())
    }

    /// Consumes whole units (the response head, frames) from `buf`; returns the bytes used.
    fn process(
        &mut self,
        buf: &[u8],
        now_us: u64,
        mask: [u8; 4],
        step: &mut Step,
        on_in: &mut impl FnMut(&mut Meta, Incoming<'_>, u64) -> TextAction,
    ) -> Result<usize, End> {
        match self.transport {
            Transport::Ws => {}
            Transport::Sse => return self.process_sse(buf, now_us, step, on_in),
            Transport::Poll => return self.process_poll(buf, now_us, step, on_in),
        }
        let mut pos = 0;
        if self.phase == Phase::Handshaking {
            match ws::check_response(buf, &self.accept) {
                Handshake::Incomplete => return Ok(0),
                Handshake::Upgraded(n) => {
                    pos = n;
                    self.phase = Phase::Open;
                    step.upgraded = true;
                    self.accept = String::new();
                }
                Handshake::Status(503) => {
                    return Err(End::Failed(Cause::Http503, "HTTP 503".into()))
                }
                Handshake::Status(code) => {
                    return Err(End::Failed(Cause::Handshake, format!("HTTP {code}")))
                }
                Handshake::Bad(msg) => return Err(End::Failed(Cause::Handshake, msg)),
            }
        }
        loop {
            match ws::decode(&buf[pos..]) {
                Decoded::Incomplete => return Ok(pos),
                Decoded::Error(msg) => return Err(End::Failed(Cause::Dropped, msg)),
                Decoded::Frame {
                    opcode,
                    payload,
                    consumed,
                    compressed,
                } => {
                    pos += consumed;
                    if compressed {
                        let message = ws::inflate(payload, ws::INFLATED_PREFIX)
                            .map_err(|e| End::Failed(Cause::Dropped, e))?;
                        self.on_frame(opcode, &message, now_us, mask, step, on_in)?;
                    } else {
                        self.on_frame(opcode, payload, now_us, mask, step, on_in)?;
                    }
                }
            }
        }
    }

    /// The response head, then events until the buffer holds no complete one.
    fn process_sse(
        &mut self,
        buf: &[u8],
        now_us: u64,
        step: &mut Step,
        on_in: &mut impl FnMut(&mut Meta, Incoming<'_>, u64) -> TextAction,
    ) -> Result<usize, End> {
        let mut pos = 0;
        if self.phase == Phase::Handshaking {
            let head = match comet::response_head(buf) {
                Parsed::Incomplete => return Ok(0),
                Parsed::Bad(msg) => return Err(End::Failed(Cause::Handshake, msg)),
                Parsed::Head(h) => h,
            };
            refuse_status(head.code)?;
            if !head.event_stream {
                return Err(End::Failed(
                    Cause::Handshake,
                    "SSE answer without Content-Type: text/event-stream".into(),
                ));
            }
            if head.chunked || head.content_length.is_some() {
                return Err(End::Failed(
                    Cause::Handshake,
                    "SSE body is not close-delimited (chunked or Content-Length)".into(),
                ));
            }
            pos = head.len;
            self.phase = Phase::Open;
            step.upgraded = true;
        }
        while let Some((n, event)) = comet::sse_event(&buf[pos..]) {
            pos += n;
            let Some(ev) = event else { continue };
            let text = Incoming::Text {
                data: &ev.data,
                id: ev.id,
            };
            let action = on_in(&mut self.meta, text, now_us);
            act(action, step)?;
        }
        Ok(pos)
    }

    /// Whole answers: each one's summary, then its messages; then the next poll.
    fn process_poll(
        &mut self,
        buf: &[u8],
        now_us: u64,
        step: &mut Step,
        on_in: &mut impl FnMut(&mut Meta, Incoming<'_>, u64) -> TextAction,
    ) -> Result<usize, End> {
        let mut pos = 0;
        loop {
            let head = match comet::response_head(&buf[pos..]) {
                Parsed::Incomplete => return Ok(pos),
                Parsed::Bad(msg) => return Err(End::Failed(self.fail_cause(), msg)),
                Parsed::Head(h) => h,
            };
            refuse_status(head.code)?;
            let Some(len) = head.content_length else {
                return Err(End::Failed(
                    self.fail_cause(),
                    "poll answer without Content-Length".into(),
                ));
            };
            if buf.len() - pos < head.len + len {
                return Ok(pos);
            }
            let body = &buf[pos + head.len..pos + head.len + len];
            pos += head.len + len;
            if self.phase == Phase::Handshaking {
                self.phase = Phase::Open;
                step.upgraded = true;
            }
            let answer = comet::poll_answer(body).map_err(|e| End::Failed(self.fail_cause(), e))?;
            let summary = Incoming::Answer {
                last_seq: answer.last_seq,
                epoch: answer.epoch.as_deref(),
                recovered: answer.recovered,
            };
            let action = on_in(&mut self.meta, summary, now_us);
            act(action, step)?;
            let state = self.poll.as_mut().expect("a poll connection has its state");
            let probe = std::mem::replace(&mut state.probe, false);
            state.since = answer.last_seq;
            if let Some(e) = &answer.epoch {
                state.epoch = Some(e.as_ref().into());
            }
            if !probe {
                for m in &answer.messages {
                    let text = Incoming::Text {
                        data: m.get().as_bytes(),
                        id: None,
                    };
                    let action = on_in(&mut self.meta, text, now_us);
                    act(action, step)?;
                }
            }
            let state = self.poll.as_ref().expect("a poll connection has its state");
            state.request(&mut self.wbuf);
        }
    }

    fn fail_cause(&self) -> Cause {
        if self.phase == Phase::Open {
            Cause::Dropped
        } else {
            Cause::Handshake
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        now_us: u64,
        mask: [u8; 4],
        step: &mut Step,
        on_in: &mut impl FnMut(&mut Meta, Incoming<'_>, u64) -> TextAction,
    ) -> Result<(), End> {
        match opcode {
            OpCode::Data(Data::Text) | OpCode::Data(Data::Binary) => {
                let text = Incoming::Text {
                    data: payload,
                    id: None,
                };
                match on_in(&mut self.meta, text, now_us) {
                    TextAction::Continue => {}
                    TextAction::Ready => step.ready = true,
                    TextAction::Close => {
                        if let Some(end) = self.start_close(mask) {
                            return Err(end);
                        }
                    }
                    TextAction::Fail(cause, msg) => return Err(End::Failed(cause, msg)),
                }
            }
            OpCode::Control(Control::Ping) => {
                let mut frame = Vec::with_capacity(payload.len() + 8);
                ws::encode(ws::PONG, payload, mask, &mut frame);
                self.send(&frame).map_err(|e| self.io_end(&e))?;
            }
            OpCode::Control(Control::Close) => {
                if self.phase != Phase::Closing {
                    let reason = if payload.len() >= 2 {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        let text = String::from_utf8_lossy(&payload[2..]);
                        format!("server closed with {code} {text}")
                    } else {
                        "server closed without a code".to_string()
                    };
                    self.server_closed = Some(reason);
                    // Echo the close; the server then closes TCP.
                    let _ = self.start_close(mask);
                }
            }
            OpCode::Control(Control::Pong) => {}
            other => {
                return Err(End::Failed(
                    Cause::Dropped,
                    format!("unexpected opcode {other:?}"),
                ))
            }
        }
        Ok(())
    }
}

/// Applies the scenario's answer for SSE and poll (they have no close handshake).
fn act(action: TextAction, step: &mut Step) -> Result<(), End> {
    match action {
        TextAction::Continue => Ok(()),
        TextAction::Ready => {
            step.ready = true;
            Ok(())
        }
        TextAction::Close => Err(End::Closed),
        TextAction::Fail(cause, msg) => Err(End::Failed(cause, msg)),
    }
}

/// A status other than 200 on an SSE or poll answer.
fn refuse_status(code: u16) -> Result<(), End> {
    match code {
        200 => Ok(()),
        503 => Err(End::Failed(Cause::Http503, "HTTP 503".into())),
        c => Err(End::Failed(Cause::Handshake, format!("HTTP {c}"))),
    }
}

/// The scenario's answer to a text frame.
pub enum TextAction {
    Continue,
    /// The reply the scenario waited for came: the subscriber is live.
    Ready,
    /// Start the close handshake (churn, after the reply).
    Close,
    Fail(Cause, String),
}
