//! Shared helpers for the integration tests.
//!
//! - [`Server`] starts the real `halley` binary on ephemeral ports and learns them
//!   from the start-up line (docs/cli.md), so tests can run in parallel.
//! - WebSocket clients are tungstenite ([`Ws`]) for well-formed traffic and
//!   [`RawWs`] (hand-made frames) for malformed traffic that a library refuses to send.
//! - HTTP is spoken by hand over `TcpStream`, so the tests see exact status codes,
//!   headers and bytes.
//!
//! Every socket gets a read timeout, and every loop is bounded, so no test can hang.
#![allow(dead_code)] // each test file uses a different subset of these helpers

pub mod comet;
pub mod redis;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, Message};

/// Upper bound for any single wait on the server (start-up, a read, an exit).
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// A running `halley serve`, killed on drop.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub client_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub workers: usize,
    /// `resp=` on the start-up line: set when started with `--resp-listen`.
    pub resp_addr: Option<SocketAddr>,
    /// The server's stderr, when started with [`Server::start_capturing_stderr`].
    pub stderr: Option<std::process::ChildStderr>,
}

impl Server {
    /// Spawns `halley serve` on 127.0.0.1 ephemeral ports plus `extra` args and waits
    /// (at most [`TIMEOUT`]) for `halley listening: clients=.. api=.. workers=..`.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// [`Server::start`] with `env` (`HALLEY_*` options) added to its environment.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(extra, env, Stdio::inherit())
    }

    /// [`Server::start_with_env`] with stderr piped to [`Server::stderr`] rather than
    /// the test's: for a test that reads what the server says there. It must read
    /// it, or a server that writes much would block on the full pipe.
    pub fn start_capturing_stderr(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(extra, env, Stdio::piped())
    }

    fn spawn(extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_halley"))
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--api-listen", "127.0.0.1:0", "--stats", "false"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn halley");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take();
        let (tx, rx) = mpsc::channel();
        // The thread keeps draining stdout after the start-up line, so the server can
        // never block on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("no start-up line from halley ({e}); exit: {status:?}");
                }
            };
            if let Some((client_addr, api_addr, workers, resp_addr)) = parse_startup(&line) {
                return Server {
                    pid: child.id(),
                    child,
                    client_addr,
                    api_addr,
                    workers,
                    resp_addr,
                    stderr,
                };
            }
        }
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.client_addr, path)
    }

    /// WebSocket handshake on `path`; `Err(tungstenite::Error::Http(..))` carries an
    /// HTTP refusal (e.g. 503).
    pub fn try_connect(&self, path: &str) -> Result<Ws, tungstenite::Error> {
        let stream = tcp(self.client_addr);
        // A small read buffer: the fan-out test holds 2,000 of these.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        match tungstenite::client::client_with_config(self.ws_url(path), stream, Some(config)) {
            Ok((ws, _response)) => Ok(ws),
            Err(HandshakeError::Failure(e)) => Err(e),
            Err(HandshakeError::Interrupted(_)) => panic!("handshake on {path} timed out"),
        }
    }

    pub fn connect(&self, path: &str) -> Ws {
        self.try_connect(path)
            .unwrap_or_else(|e| panic!("connect {path}: {e}"))
    }

    /// A hand-driven WebSocket on `path` (handshake checked to be 101).
    pub fn raw(&self, path: &str) -> RawWs {
        RawWs::handshake(tcp(self.client_addr), path)
    }

    pub fn publisher(&self) -> Publisher {
        Publisher::connect(self.api_addr)
    }

    /// One publish on a fresh API connection: `(status, body)`.
    pub fn publish(&self, channel: &str, data_json: &str) -> (u16, String) {
        self.publisher().publish(channel, data_json)
    }

    /// `GET /api/stats`, asserted 200 and parsed.
    pub fn stats(&self) -> Value {
        let (status, body) = self.publisher().request("GET", "/api/stats", b"");
        assert_eq!(status, 200, "GET /api/stats: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats not JSON ({e}): {body}"))
    }

    /// The stats once `settled` holds of them, or the last ones after 5 s: a worker
    /// copies its counters out at the end of its turn, after the bytes it wrote.
    #[allow(dead_code)]
    pub fn stats_when(&self, settled: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let stats = self.stats();
            if settled(&stats) || std::time::Instant::now() > deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `halley listening: clients=A api=B workers=N [resp=C]`.
fn parse_startup(line: &str) -> Option<(SocketAddr, SocketAddr, usize, Option<SocketAddr>)> {
    let rest = line.strip_prefix("halley listening: ")?;
    let (mut clients, mut api, mut workers, mut resp) = (None, None, None, None);
    for field in rest.split_whitespace() {
        match field.split_once('=')? {
            ("clients", v) => clients = v.parse().ok(),
            ("api", v) => api = v.parse().ok(),
            ("workers", v) => workers = v.parse().ok(),
            ("resp", v) => resp = Some(v.parse().ok()?),
            _ => {}
        }
    }
    Some((clients?, api?, workers?, resp))
}

/// A TCP connection with read/write timeouts and no Nagle delay.
/// A process's resident memory, from /proc, in KiB.
#[allow(dead_code)]
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[allow(unsafe_code)] // kill(2)
pub fn send_sigterm(pid: u32) {
    // SAFETY: kill(2) with a PID we spawned and a valid signal number.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM) failed");
}

// ---------------------------------------------------------------- WebSocket (tungstenite)

pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send text");
}

/// The next text message; pings/pongs are skipped (tungstenite answers pings itself),
/// anything else fails the test.
pub fn recv_text(ws: &mut Ws) -> String {
    for _ in 0..100 {
        match ws.read().expect("read a frame") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
    panic!("only pings and pongs");
}

pub fn recv_json(ws: &mut Ws) -> Value {
    let text = recv_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
}

/// A `subscribed` reply without its epoch (checked to be a non-empty string), for
/// comparing the rest exactly.
pub fn without_epoch(mut reply: Value) -> Value {
    let epoch = reply.as_object_mut().and_then(|o| o.remove("epoch"));
    assert!(
        epoch
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty()),
        "no epoch in {reply}"
    );
    reply
}

/// Subscribes with a command and returns the `seq` of the `subscribed` reply.
pub fn subscribe(ws: &mut Ws, channel: &str) -> u64 {
    send_text(
        ws,
        &format!(r#"{{"op":"subscribe","channel":"{channel}"}}"#),
    );
    let reply = recv_json(ws);
    assert_eq!(reply["op"], "subscribed", "reply: {reply}");
    assert_eq!(reply["channel"], channel, "reply: {reply}");
    let seq = reply["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq: {reply}"));
    assert_eq!(reply["recovered"], true, "reply: {reply}");
    assert!(
        reply["epoch"].as_str().is_some_and(|e| !e.is_empty()),
        "no epoch: {reply}"
    );
    assert_eq!(reply.as_object().unwrap().len(), 5, "extra fields: {reply}");
    seq
}

/// Reads the next frame and checks it is the push `{"channel":C,"seq":N,"data":D}`
/// with `data` byte-identical to `data_json` (the raw text must contain it verbatim).
pub fn expect_push(ws: &mut Ws, channel: &str, seq: u64, data_json: &str) {
    let text = recv_text(ws);
    check_push(&text, channel, seq, data_json);
}

pub fn check_push(text: &str, channel: &str, seq: u64, data_json: &str) {
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("push is not JSON ({e}): {text}"));
    let want_data: Value = serde_json::from_str(data_json).expect("test data is JSON");
    assert!(
        v.get("op").is_none(),
        "expected a push, got a reply: {text}"
    );
    assert_eq!(v["channel"], channel, "push: {text}");
    assert_eq!(v["seq"], seq, "push: {text}");
    assert_eq!(v["data"], want_data, "push: {text}");
    assert!(
        text.contains(data_json),
        "data not byte-identical: sent {data_json}, got {text}"
    );
}

/// Client-initiated close, then reads until the server closes (bounded).
pub fn close(mut ws: Ws) {
    ws.close(None).expect("send close");
    for _ in 0..100 {
        if ws.read().is_err() {
            return;
        }
    }
    panic!("server never closed");
}

// ---------------------------------------------------------------- HTTP by hand

pub type Headers = Vec<(String, String)>;

/// Case-insensitive header lookup.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A parsed response head.
pub struct Head {
    pub status: u16,
    pub headers: Headers,
    /// The head exactly as received, up to and including the blank line.
    pub raw: String,
}

/// Reads one response head from `stream`; `buf` holds bytes already read and keeps
/// what follows the head.
pub fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Head {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 64 * 1024, "response head too long");
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("read response head");
        assert!(
            n > 0,
            "EOF before a complete response head; got {:?}",
            lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let raw = String::from_utf8(buf.drain(..end).collect()).expect("ASCII head");
    let mut lines = raw.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Head {
        status,
        headers,
        raw,
    }
}

/// Reads one response: head, then a `Content-Length` body, or everything to EOF.
pub fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, Headers, String) {
    let head = read_head(stream, buf);
    let body = match header(&head.headers, "content-length") {
        // 1xx answers have no body (RFC 9112 6.3).
        _ if head.status < 200 => Vec::new(),
        Some(len) => {
            let len: usize = len.parse().expect("numeric Content-Length");
            read_at_least(stream, buf, len);
            buf.drain(..len).collect::<Vec<u8>>()
        }
        None => {
            read_to_eof(stream, buf);
            std::mem::take(buf)
        }
    };
    (head.status, head.headers, lossy(&body))
}

/// Reads until EOF. A reset also ends the body: a server that closes with our
/// request partly unread makes the kernel send RST after its answer.
fn read_to_eof(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    for _ in 0..100_000 {
        let mut chunk = [0u8; 16384];
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("read body to EOF: {e}"),
        }
    }
    panic!("body never ended");
}

fn read_at_least(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) {
    while buf.len() < len {
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "EOF after {} of {len} bytes", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `request` as is on a new connection and reads one response.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, Headers, String) {
    let mut s = tcp(addr);
    s.write_all(request).expect("write request");
    read_response(&mut s, &mut Vec::new())
}

/// A valid upgrade request for `path`, with the RFC 6455 sample key.
pub fn upgrade_request(path: &str) -> String {
    upgrade_request_with(path, "")
}

/// [`upgrade_request`] with `extra` header lines (each ending in CRLF).
pub fn upgrade_request_with(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// One keep-alive connection to the API listener, for many requests.
pub struct Publisher {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Publisher {
    pub fn connect(api_addr: SocketAddr) -> Publisher {
        Publisher {
            stream: tcp(api_addr),
            buf: Vec::new(),
        }
    }

    /// One HTTP/1.1 request with a `Content-Length` body; returns `(status, body)`.
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req).expect("write request");
        let (status, _headers, body) = read_response(&mut self.stream, &mut self.buf);
        (status, body)
    }

    /// `POST /api/publish {"channel":C,"data":D}`; `data_json` goes in verbatim.
    pub fn publish(&mut self, channel: &str, data_json: &str) -> (u16, String) {
        let body = format!(r#"{{"channel":"{channel}","data":{data_json}}}"#);
        self.request("POST", "/api/publish", body.as_bytes())
    }

    /// Publishes, asserts `200 {"channel":C,"seq":N}`, returns N.
    pub fn publish_ok(&mut self, channel: &str, data_json: &str) -> u64 {
        let (status, body) = self.publish(channel, data_json);
        publish_reply_seq(status, &body, channel)
    }
}

/// Checks a publish answer is `200 {"channel":C,"seq":N,"epoch":E}` and returns N.
pub fn publish_reply_seq(status: u16, body: &str, channel: &str) -> u64 {
    assert_eq!(status, 200, "publish to {channel}: {body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["channel"], channel, "publish reply: {body}");
    assert!(v["epoch"].is_string(), "publish reply: {body}");
    assert_eq!(v.as_object().unwrap().len(), 3, "publish reply: {body}");
    v["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq: {body}"))
}

// ---------------------------------------------------------------- WebSocket by hand

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// permessage-deflate's "compressed" bit.
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// A WebSocket client that writes frames byte by byte, so tests can send what a
/// conforming library never would (unmasked frames, bad opcodes, invalid UTF-8...).
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Sends a valid upgrade request on `stream` and asserts a 101 answer.
    pub fn handshake(stream: TcpStream, path: &str) -> RawWs {
        RawWs::handshake_with(stream, path, "").0
    }

    /// [`RawWs::handshake`] with `extra` request header lines; returns the 101 head too.
    pub fn handshake_with(mut stream: TcpStream, path: &str, extra: &str) -> (RawWs, Head) {
        stream
            .write_all(upgrade_request_with(path, extra).as_bytes())
            .expect("write upgrade");
        let mut buf = Vec::new();
        let head = read_head(&mut stream, &mut buf);
        assert_eq!(head.status, 101, "upgrade on {path}:\n{}", head.raw);
        (RawWs { stream, buf }, head)
    }

    /// Writes one frame; `masked: false` breaks RFC 6455 on purpose.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        self.send_raw_frame((fin as u8) << 7 | opcode, payload, masked);
    }

    /// Writes one frame with the given first byte (FIN, RSV bits, opcode) verbatim.
    pub fn send_raw_frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        self.stream.write_all(&f).expect("write frame");
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes(), true);
    }

    /// A close frame with `code` and no reason.
    pub fn send_close(&mut self, code: u16) {
        self.send_frame(true, OP_CLOSE, &code.to_be_bytes(), true);
    }

    pub fn recv_frame(&mut self) -> Frame {
        self.fill(2);
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
        let (len, hdr) = match b1 & 0x7f {
            126 => {
                self.fill(4);
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10);
                let b: [u8; 8] = self.buf[2..10].try_into().unwrap();
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(hdr + len);
        let payload = self.buf[hdr..hdr + len].to_vec();
        self.buf.drain(..hdr + len);
        Frame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            payload,
        }
    }

    /// The next frame must be a close; returns its code.
    pub fn expect_close(&mut self) -> u16 {
        let f = self.recv_frame();
        assert_eq!(f.opcode, OP_CLOSE, "expected close, got {f:?}");
        assert!(f.payload.len() >= 2, "close without a code: {f:?}");
        u16::from_be_bytes([f.payload[0], f.payload[1]])
    }

    /// True when the server has closed the TCP connection (read returns 0).
    pub fn at_eof(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
    }

    fn fill(&mut self, n: usize) {
        while self.buf.len() < n {
            let mut chunk = [0u8; 16384];
            let got = match self.stream.read(&mut chunk) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("read frame: {e} (have {:?})", self.buf),
            };
            assert!(got > 0, "EOF inside a frame (have {:?})", self.buf);
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }
}

// ---------------------------------------------------------------- permessage-deflate

/// Inflates one permessage-deflate message payload (RFC 7692 section 7.2.2) with
/// flate2 directly, not through the server's code.
pub fn inflate_message(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut inflater = flate2::Decompress::new(false);
    for _ in 0..1000 {
        let done = inflater.total_in() as usize;
        if done == input.len() {
            return out;
        }
        out.reserve(64 * 1024);
        inflater
            .decompress_vec(&input[done..], &mut out, flate2::FlushDecompress::Sync)
            .expect("valid DEFLATE data");
    }
    panic!("inflate made no progress");
}

/// Compresses `message` as a client would (raw DEFLATE, sync flush, tail removed).
pub fn deflate_message(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut deflater = flate2::Compress::new(flate2::Compression::default(), false);
    for _ in 0..1000 {
        let done = deflater.total_in() as usize;
        if done == message.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(message.len() / 2 + 64);
        deflater
            .compress_vec(&message[done..], &mut out, flate2::FlushCompress::Sync)
            .expect("deflate");
    }
    assert!(out.ends_with(&[0x00, 0x00, 0xff, 0xff]), "sync flush tail");
    out.truncate(out.len() - 4);
    out
}
