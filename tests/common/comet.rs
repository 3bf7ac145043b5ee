//! Clients of the HTTP transports: a keep-alive long-poller and an SSE reader.
//! Both read with the socket timeout of [`super::tcp`], so no test can hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

use super::{read_head, read_response, tcp, Head, Headers};

/// One keep-alive connection for many `GET /poll` requests.
pub struct Poller {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Poller {
    pub fn connect(addr: SocketAddr) -> Poller {
        Poller {
            stream: tcp(addr),
            buf: Vec::new(),
        }
    }

    /// Sends the request without waiting for the answer (a held poll).
    pub fn send(&mut self, target: &str) {
        let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.stream
            .write_all(request.as_bytes())
            .expect("write poll");
    }

    pub fn answer(&mut self) -> (u16, Headers, Value) {
        let (status, headers, body) = read_response(&mut self.stream, &mut self.buf);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, headers, json)
    }

    /// A poll that must answer 200; returns its body.
    pub fn poll(&mut self, target: &str) -> Value {
        self.send(target);
        let (status, _, body) = self.answer();
        assert_eq!(status, 200, "{target}: {body}");
        body
    }
}

/// The `seq`s of a poll answer's messages, after checking each names `channel`.
pub fn seqs(answer: &Value, channel: &str) -> Vec<u64> {
    answer["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {answer}"))
        .iter()
        .filter(|m| m["channel"] == channel)
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Event {
    pub kind: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// An open `GET /sse` stream.
pub struct Sse {
    stream: TcpStream,
    buf: Vec<u8>,
    pub head: Head,
}

impl Sse {
    pub fn open(addr: SocketAddr, target: &str, extra_headers: &str) -> Sse {
        let mut stream = tcp(addr);
        let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n");
        stream.write_all(request.as_bytes()).expect("write sse");
        let mut buf = Vec::new();
        let head = read_head(&mut stream, &mut buf);
        Sse { stream, buf, head }
    }

    /// The next event (comments and `retry:` alone are skipped).
    pub fn next(&mut self) -> Event {
        for _ in 0..10_000 {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("UTF-8 events");
                let mut event = Event::default();
                let mut data: Vec<&str> = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.kind = Some(v.to_owned());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                event.data = data.join("\n");
                return event;
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).expect("read sse");
            assert!(n > 0, "the stream ended");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        panic!("no event");
    }

    /// Reads raw bytes until `needle` appears (e.g. a heartbeat comment).
    pub fn read_until(&mut self, needle: &[u8]) {
        for _ in 0..1000 {
            if self.buf.windows(needle.len()).any(|w| w == needle) {
                return;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read sse");
            assert!(n > 0, "the stream ended");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        panic!("never saw {needle:?}");
    }
}
