//! One load connection: a non-blocking state machine from TCP connect through the
//! WebSocket handshake to the close handshake. It knows nothing of scenarios: text
//! frames go to a callback, and the reactor decides what they mean.

use crate::check::SeqCheck;
use crate::stats::{unix_us, Cause};
use crate::ws::{self, Decoded, Handshake};
use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

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
    pub upgraded: bool,
    pub end: Option<End>,
}

/// The scenario's per-connection state, visible to the text callback.
pub struct Meta {
    /// Global index of the connection over all threads and processes.
    pub slot: usize,
    pub started: Instant,
    /// Deadline of the current phase (connect + handshake, churn's reply, close).
    pub deadline: Instant,
    /// Churn: the reply is awaited under `deadline` even though the socket is open.
    pub awaiting_reply: bool,
    pub check: Option<SeqCheck>,
}

pub struct Conn {
    stream: TcpStream,
    pub phase: Phase,
    pub meta: Meta,
    accept: String,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// The server sent a close first: the end is a drop, with this reason.
    server_closed: Option<String>,
}

/// Starts a non-blocking connect, bound to `source` first if given.
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
    pub fn new(stream: TcpStream, path: &str, host: &str, meta: Meta) -> Conn {
        let (request, accept) = ws::request(path, host);
        Conn {
            stream,
            phase: Phase::Connecting,
            meta,
            accept,
            rbuf: Vec::new(),
            // The request waits here until the TCP connect completes.
            wbuf: request,
            server_closed: None,
        }
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

    /// Sends our close frame and waits (bounded) for the server's close.
    pub fn start_close(&mut self, mask: [u8; 4]) -> Option<End> {
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
        on_text: &mut impl FnMut(&mut Meta, &[u8], u64) -> TextAction,
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
                    if let Err(end) = self.absorb(&scratch[..n], now_us, mask, &mut step, on_text) {
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
        on_text: &mut impl FnMut(&mut Meta, &[u8], u64) -> TextAction,
    ) -> Result<(), End> {
        let mut data = data;
        if !self.rbuf.is_empty() {
            let mut buf = std::mem::take(&mut self.rbuf);
            if self.phase == Phase::Handshaking {
                buf.extend_from_slice(data);
                data = &[];
                let used = self.process(&buf, now_us, mask, step, on_text)?;
                buf.drain(..used);
            }
            // Bounded: each turn moves at least one byte out of `data`.
            while !buf.is_empty() && !data.is_empty() {
                let take = ws::missing(&buf).clamp(1, data.len());
                buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                let used = self.process(&buf, now_us, mask, step, on_text)?;
                buf.drain(..used);
            }
            if !buf.is_empty() {
                // `data` is used up.
                self.rbuf = buf;
                return Ok(());
            }
        }
        let used = self.process(data, now_us, mask, step, on_text)?;
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
        on_text: &mut impl FnMut(&mut Meta, &[u8], u64) -> TextAction,
    ) -> Result<usize, End> {
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
                } => {
                    pos += consumed;
                    self.on_frame(opcode, payload, now_us, mask, on_text)?;
                }
            }
        }
    }

    fn on_frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        now_us: u64,
        mask: [u8; 4],
        on_text: &mut impl FnMut(&mut Meta, &[u8], u64) -> TextAction,
    ) -> Result<(), End> {
        match opcode {
            OpCode::Data(Data::Text) | OpCode::Data(Data::Binary) => {
                match on_text(&mut self.meta, payload, now_us) {
                    TextAction::Continue => {}
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

/// The scenario's answer to a text frame.
pub enum TextAction {
    Continue,
    /// Start the close handshake (churn, after the reply).
    Close,
    Fail(Cause, String),
}
