//! A connection's life in the worker: adoption, the handshake answer, closing,
//! timers and removal.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::connection::{Connection, Flags, Stage};
use super::{Worker, CLOSE_TIMEOUT_S};
use crate::proto::http::{self, ClientRequest, Endpoint, Refusal};
use crate::proto::ws;

/// Seconds a refused client is told to wait before retrying.
const RETRY_AFTER_S: u32 = 1;

impl Worker {
    pub(super) fn adopt(&mut self, mut stream: TcpStream, admitted: bool) {
        self.counters.accepted += 1;
        if self.shutdown_deadline.is_some() {
            self.release_admission(admitted);
            return; // dropping the stream closes it
        }
        let entry = self.conns.vacant_entry();
        if self
            .poll
            .registry()
            .register(&mut stream, Token(entry.key()), Interest::READABLE)
            .is_err()
        {
            self.release_admission(admitted);
            return;
        }
        entry.insert(Connection::new(stream, self.now, admitted));
    }

    fn release_admission(&self, admitted: bool) {
        if admitted {
            self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Answers a complete request head: 101 and the upgrade, or an HTTP answer that
    /// ends the connection.
    pub(super) fn answer_request(&mut self, key: usize, request: ClientRequest) {
        let admitted = self.conns[key].flags.has(Flags::ADMITTED);
        match request {
            _ if !admitted => {
                self.counters.rejected += 1;
                let body = "too many connections, retry later";
                self.end_with_http(key, http::closing_response(503, body, Some(RETRY_AFTER_S)));
            }
            ClientRequest::Health => {
                self.end_with_http(key, http::closing_response(200, "ok", None))
            }
            ClientRequest::Refuse(Refusal { status, reason }) => {
                self.counters.http_errors += 1;
                self.end_with_http(key, http::closing_response(status, reason, None));
            }
            ClientRequest::Upgrade {
                endpoint,
                accept_key,
                subscribe,
            } => {
                self.send(key, Bytes::from(http::switching_protocols(&accept_key)));
                let conn = &mut self.conns[key];
                conn.stage = if endpoint == Endpoint::Echo {
                    Stage::Echo
                } else {
                    Stage::PubSub
                };
                conn.last_seen = self.now;
                conn.flags.set(Flags::ONLINE);
                self.counters.online += 1;
                for channel in &subscribe {
                    self.subscribe(key, channel, false);
                }
            }
        }
    }

    fn end_with_http(&mut self, key: usize, response: Vec<u8>) {
        self.send(key, Bytes::from(response));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.stage = Stage::Draining;
            conn.last_seen = self.now;
            conn.flags.set(Flags::SHUTDOWN_AFTER_FLUSH);
        }
        self.settle(key);
    }

    /// Starts the closing handshake from our side: close frame, then FIN, then wait
    /// for the client's close or EOF (bounded by the sweep).
    pub(super) fn close_with(&mut self, key: usize, code: u16, reason: &str) {
        if !matches!(self.stage(key), Some(Stage::PubSub | Stage::Echo)) {
            return;
        }
        self.unsubscribe_all(key);
        self.send(key, Bytes::from(ws::close_frame(code, reason)));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.stage = Stage::Closing;
            conn.last_seen = self.now;
            conn.flags.set(Flags::SHUTDOWN_AFTER_FLUSH);
        }
        self.settle(key);
    }

    /// The client closed first: answer with its code, then drop the connection once
    /// the answer is out (the server closes the TCP connection, RFC 6455 7.1.1).
    pub(super) fn answer_close(&mut self, key: usize, code: Option<u16>) {
        self.unsubscribe_all(key);
        let frame = match code {
            Some(code) => ws::close_frame(code, ""),
            None => ws::frame(ws::Kind::Close, b""),
        };
        self.send(key, Bytes::from(frame));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.stage = Stage::Closing;
            conn.flags.set(Flags::DROP_AFTER_FLUSH);
        }
        self.settle(key);
    }

    /// Timers, once a second: a scan of the slab with no per-connection timer state
    /// beyond `last_seen`.
    pub(super) fn sweep(&mut self) {
        let s = self.settings;
        let now = self.now;
        let mut due: Vec<(usize, Due)> = Vec::new();
        for (key, conn) in self.conns.iter() {
            let quiet = now.saturating_sub(conn.last_seen);
            let action = match conn.stage {
                Stage::Handshake if quiet >= s.handshake_timeout_s => Due::HandshakeTimeout,
                Stage::Closing | Stage::Draining if quiet >= CLOSE_TIMEOUT_S => Due::Drop,
                Stage::PubSub | Stage::Echo
                    if s.idle_timeout_s > 0 && quiet >= s.idle_timeout_s =>
                {
                    Due::Idle
                }
                Stage::PubSub | Stage::Echo
                    if s.ping_interval_s > 0
                        && quiet >= s.ping_interval_s
                        && !conn.flags.has(Flags::PING_SENT) =>
                {
                    Due::Ping
                }
                _ => continue,
            };
            due.push((key, action));
        }
        for (key, action) in due {
            match action {
                Due::HandshakeTimeout => {
                    self.counters.handshake_timeouts += 1;
                    self.end_with_http(key, http::closing_response(408, "handshake timeout", None));
                }
                Due::Drop => self.doom(key),
                Due::Idle => {
                    self.counters.idle_timeouts += 1;
                    self.close_with(key, 1001, "idle timeout");
                }
                Due::Ping => {
                    self.conns[key].flags.set(Flags::PING_SENT);
                    self.send(key, Bytes::from_static(&[0x89, 0x00]));
                }
            }
        }
    }

    pub(super) fn begin_shutdown(&mut self) {
        let timeout = Duration::from_secs(u64::from(self.settings.shutdown_timeout_s));
        self.shutdown_deadline = Some(Instant::now() + timeout);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match self.conns[key].stage {
                Stage::PubSub | Stage::Echo => self.close_with(key, 1001, "server shutdown"),
                Stage::Handshake | Stage::Draining => self.doom(key),
                Stage::Closing => {}
            }
        }
    }

    /// Removes the connections doomed this turn. Closing the socket also removes it
    /// from the poll (it is never duplicated).
    pub(super) fn bury_doomed(&mut self) {
        while let Some(key) = self.doomed.pop() {
            self.unsubscribe_all(key);
            let conn = self.conns.remove(key);
            if conn.flags.has(Flags::ONLINE) {
                self.counters.online -= 1;
            }
            self.release_admission(conn.flags.has(Flags::ADMITTED));
        }
    }
}

enum Due {
    HandshakeTimeout,
    Drop,
    Idle,
    Ping,
}
