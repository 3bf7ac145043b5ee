//! A connection's life in the worker: adoption, the handshake answer, closing,
//! timers and removal.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::connection::{Busy, Connection, Flags, Phase, Transport};
use super::stall::SYNCING;
use super::{Worker, CLOSE_TIMEOUT_S};
use crate::admission::Admission;
use crate::proto::http::{self, ClientRequest, Endpoint, Refusal};
use crate::proto::query::Wanted;
use crate::proto::ws;
use crate::pubsub::hub::{Position, TOO_MANY_CHANNELS};

/// Seconds a refused client is told to wait before retrying.
const RETRY_AFTER_S: u32 = 1;

impl Worker {
    pub(super) fn adopt(&mut self, mut stream: TcpStream, admission: Admission) {
        self.counters.accepted += 1;
        let (admitted, peer) = match admission {
            Admission::Admitted { peer } => (true, peer),
            _ => (false, None),
        };
        if self.shutdown_deadline.is_some() {
            self.release_admission(admitted, peer);
            return; // dropping the stream closes it
        }
        let key = self.conns.next_key();
        if self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
            .is_err()
        {
            self.release_admission(admitted, peer);
            return;
        }
        let mut conn = Connection::new(stream, self.now, admitted);
        if admission == Admission::AddressFull {
            conn.flags.set(Flags::ADDRESS_FULL);
        }
        self.conns.insert(conn);
        if peer.is_some() {
            self.side_mut(key).rare_mut().peer = peer;
        }
    }

    fn release_admission(&self, admitted: bool, peer: Option<IpAddr>) {
        if admitted {
            self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(peer) = peer {
            self.shared.per_address.release(peer);
        }
    }

    /// Answers a complete request head: 101 and the upgrade, or an HTTP answer that
    /// ends the connection.
    pub(super) fn answer_request(&mut self, key: usize, request: ClientRequest) {
        let admitted = self.conns[key].flags.has(Flags::ADMITTED);
        match request {
            _ if !admitted => {
                let body = if self.conns[key].flags.has(Flags::ADDRESS_FULL) {
                    self.counters.per_ip_rejected += 1;
                    "too many connections from this address, retry later"
                } else {
                    self.counters.rejected += 1;
                    "too many connections, retry later"
                };
                self.end_with_http(key, http::closing_response(503, body, Some(RETRY_AFTER_S)));
            }
            ClientRequest::Health => {
                self.end_with_http(key, http::closing_response(200, "ok", None))
            }
            ClientRequest::Refuse(Refusal { status, reason }) => {
                self.refuse_http(key, status, reason)
            }
            ClientRequest::Upgrade {
                endpoint,
                accept_key,
                subscribe,
                token,
                deflate,
            } => {
                let deflate = deflate.filter(|_| self.settings.compression);
                let answer = http::switching_protocols(&accept_key, deflate.as_ref());
                self.send(key, Bytes::from(answer));
                let conn = &mut self.conns[key];
                if let Some(agreed) = deflate {
                    conn.flags.set(Flags::DEFLATE);
                    if agreed.takes_compressed() {
                        conn.flags.set(Flags::DEFLATE_SENDS);
                    }
                    self.counters.deflate_negotiated += 1;
                }
                conn.transport = if endpoint == Endpoint::Echo {
                    Transport::Echo
                } else {
                    Transport::WebSocket
                };
                conn.phase = Phase::Open;
                conn.last_seen = self.now;
                conn.flags.set(Flags::ONLINE);
                self.counters.online += 1;
                if endpoint == Endpoint::PubSub {
                    if let Err(reason) = self.open_session(key, token.as_deref()) {
                        return self.close_with(key, 3000, reason);
                    }
                }
                for (index, want) in subscribe.iter().enumerate() {
                    if self.is_stalled(key) {
                        // The rest waits, in order, behind the channel being synced.
                        for later in &subscribe[index..] {
                            self.queue_url_join(key, later.clone());
                        }
                        break;
                    }
                    if !self.join_from_url(key, want) {
                        return;
                    }
                }
            }
            ClientRequest::Sse {
                channels,
                token,
                gzip,
            } => self.start_sse(key, &channels, token, gzip),
            ClientRequest::Poll {
                channels,
                keep_alive,
                token,
                gzip,
            } => self.start_poll(key, &channels, keep_alive, token, gzip),
            ClientRequest::Asset { asset, keep_alive } => {
                let cors = http::cors_header(self.settings.allow_origin);
                let extra = format!("Cache-Control: no-cache\r\n{cors}");
                let answer =
                    http::ok_response(asset.content_type(), asset.body(), keep_alive, &extra);
                self.answer_http(key, Bytes::from(answer), keep_alive);
            }
            ClientRequest::DemoPublish { channel, data } => {
                let Ok((published, seq)) = self.hub.publish(&channel, &data) else {
                    return self.refuse_http(key, 503, TOO_MANY_CHANNELS);
                };
                let body = format!(
                    "{{\"channel\":\"{channel}\",\"seq\":{seq},\"epoch\":\"{}\"}}",
                    published.epoch
                );
                let answer = http::ok_response("application/json", body.as_bytes(), false, "");
                self.end_with_http(key, answer);
            }
        }
    }

    pub(super) fn refuse_http(&mut self, key: usize, status: u16, reason: &str) {
        // A full server is no fault of the request (SSE, poll: every join ends here).
        if reason == TOO_MANY_CHANNELS {
            let answer = http::closing_response(503, reason, Some(RETRY_AFTER_S));
            return self.end_with_http(key, answer);
        }
        self.counters.http_errors += 1;
        self.end_with_http(key, http::closing_response(status, reason, None));
    }

    /// Sends a complete HTTP answer; with keep-alive the connection then reads its
    /// next request, else it closes.
    pub(super) fn answer_http(&mut self, key: usize, answer: Bytes, keep_alive: bool) {
        if !keep_alive {
            return self.end_with_http(key, answer);
        }
        self.send(key, answer);
        if let Some(conn) = self.conns.get_mut(key) {
            conn.transport = Transport::Http;
            conn.phase = Phase::Request;
            conn.last_seen = self.now;
            conn.flags.set(Flags::SERVED);
        }
    }

    pub(super) fn end_with_http(&mut self, key: usize, response: impl Into<Bytes>) {
        self.send_final(key, response.into());
        if let Some(conn) = self.conns.get_mut(key) {
            conn.phase = Phase::Draining;
            conn.last_seen = self.now;
            conn.flags.set(Flags::SHUTDOWN_AFTER_FLUSH);
        }
        self.settle(key);
    }

    /// Starts the closing handshake from our side: close frame, then FIN, then wait
    /// for the client's close or EOF (bounded by the sweep).
    /// Joins a channel named in the upgrade URL; false once the connection is closed
    /// for it. Silent unless resuming: load tools take any frame as a reply. A
    /// channel being synced leaves the connection stalled, with the join queued.
    pub(super) fn join_from_url(&mut self, key: usize, want: &Wanted) -> bool {
        if let Err(refused) = self.may_join(key, &want.name) {
            self.close_with(key, refused.close_code(), refused.close_reason());
            return false;
        }
        let position = Position {
            since: want.since,
            epoch: want.epoch.as_deref(),
        };
        match self.join(key, &want.name, position) {
            Ok(joined) if want.since.is_some() => self.confirm_ws(key, &joined),
            Ok(_) => {}
            Err(SYNCING) => self.queue_url_join(key, want.clone()),
            // Try again later: the server, not the client, is full.
            Err(TOO_MANY_CHANNELS) => {
                self.close_with(key, 1013, TOO_MANY_CHANNELS);
                return false;
            }
            Err(reason) => {
                self.close_with(key, 1008, reason);
                return false;
            }
        }
        true
    }

    pub(super) fn close_with(&mut self, key: usize, code: u16, reason: &str) {
        let open_ws = self.conns.get(key).is_some_and(|c| {
            c.phase == Phase::Open && matches!(c.transport, Transport::WebSocket | Transport::Echo)
        });
        if !open_ws {
            return;
        }
        self.unsubscribe_all(key);
        self.send_final(key, Bytes::from(ws::close_frame(code, reason)));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.phase = Phase::Closing;
            conn.last_seen = self.now;
            conn.flags.set(Flags::SHUTDOWN_AFTER_FLUSH);
        }
        self.settle(key);
    }

    /// Past `--max-queued-bytes`: the queued frames go now (the memory with them),
    /// a WebSocket gets close 1008 behind a partly written frame, bounded by the
    /// close wait; any other transport just ends.
    pub(super) fn close_slow_consumer(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.counters.slow_consumer_closes += 1;
        let mut busy = Busy {
            conn,
            extras: &mut self.extras,
            key,
        };
        busy.shed_outbox();
        let conn = busy.conn;
        let websocket = matches!(conn.transport, Transport::WebSocket | Transport::Echo);
        if websocket && conn.phase == Phase::Open {
            self.close_with(key, 1008, "slow consumer");
        } else {
            self.doom(key);
        }
    }

    /// The client closed first: answer with its code, then drop the connection once
    /// the answer is out (the server closes the TCP connection, RFC 6455 7.1.1).
    pub(super) fn answer_close(&mut self, key: usize, code: Option<u16>) {
        self.unsubscribe_all(key);
        let frame = match code {
            Some(code) => ws::close_frame(code, ""),
            None => ws::frame(ws::Kind::Close, b""),
        };
        self.send_final(key, Bytes::from(frame));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.phase = Phase::Closing;
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
        let now_unix = self
            .settings
            .tokens
            .map_or(0, |_| super::tokens::now_unix());
        for (key, conn) in self.conns.iter() {
            // A command rate that filled up again is given back.
            if let Some(side) = conn
                .side
                .checked_sub(1)
                .map(|i| &mut self.sides[i as usize])
            {
                let rate = side.rare.as_ref().and_then(|r| r.rate);
                if rate.is_some_and(|r| r.is_idle(now, s.max_commands_per_second)) {
                    side.clear_rate();
                    due.push((key, Due::TrimSide));
                }
            }
            if let Some(token) = self.token_due(conn, now_unix) {
                due.push((key, Due::Token(token)));
                continue;
            }
            let quiet = now.saturating_sub(conn.last_seen);
            let websocket = matches!(conn.transport, Transport::WebSocket | Transport::Echo);
            let action = match conn.phase {
                // An idle keep-alive connection goes quietly; a slow request gets 408.
                Phase::Request if quiet >= s.handshake_timeout_s => {
                    let idle = conn.flags.has(Flags::SERVED)
                        && conn
                            .extra(&self.extras, key)
                            .is_none_or(|e| e.pending_input.is_empty());
                    if idle {
                        Due::Drop
                    } else {
                        Due::HandshakeTimeout
                    }
                }
                Phase::Closing | Phase::Draining if quiet >= CLOSE_TIMEOUT_S => Due::Drop,
                // The clock counts whole seconds: `>` answers no earlier than asked.
                Phase::Held if quiet > s.poll_timeout_s => Due::PollTimeout,
                Phase::Open if !websocket => {
                    if s.ping_interval_s > 0 && quiet >= s.ping_interval_s {
                        Due::Heartbeat
                    } else {
                        continue;
                    }
                }
                Phase::Open if s.idle_timeout_s > 0 && quiet >= s.idle_timeout_s => Due::Idle,
                Phase::Open
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
                    self.send(key, Bytes::from(ws::frame(ws::Kind::Ping, b"")));
                }
                Due::Heartbeat => {
                    self.conns[key].last_seen = now;
                    self.send(key, self.sse_heartbeat(key));
                }
                Due::PollTimeout => self.poll_timed_out(key),
                Due::TrimSide => self.trim_side(key),
                Due::Token(token) => self.on_token_due(key, token),
            }
        }
        self.topics.shrink();
    }

    /// `POST /api/drop-connections`: every client goes, as in a restart, but the
    /// history stays, so each can resume exactly.
    pub(super) fn drop_connections(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &self.conns[key];
            match (conn.phase, conn.transport) {
                (Phase::Open, Transport::WebSocket | Transport::Echo) => {
                    self.close_with(key, 1012, "service restart")
                }
                (Phase::Open | Phase::Held, _) => self.doom(key),
                _ => {}
            }
        }
    }

    pub(super) fn begin_shutdown(&mut self) {
        let timeout = Duration::from_secs(u64::from(self.settings.shutdown_timeout_s));
        self.shutdown_deadline = Some(Instant::now() + timeout);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &self.conns[key];
            match (conn.phase, conn.transport) {
                (Phase::Closing, _) => {}
                (Phase::Open, Transport::WebSocket | Transport::Echo) => {
                    self.close_with(key, 1001, "server shutdown")
                }
                _ => self.doom(key),
            }
        }
    }

    /// Removes the connections doomed this turn. Closing the socket also removes it
    /// from the poll (it is never duplicated).
    pub(super) fn bury_doomed(&mut self) {
        while let Some(key) = self.doomed.pop() {
            self.unsubscribe_all(key);
            self.forget_stalls(key);
            let mut conn = self.conns.remove(key);
            conn.forget_extra(&mut self.extras, key);
            let peer = self.take_side(conn.side).and_then(|side| side.peer());
            if conn.flags.has(Flags::ONLINE) {
                if conn.transport == Transport::Sse {
                    self.counters.sse_online -= 1;
                } else {
                    self.counters.online -= 1;
                }
            }
            if conn.phase == Phase::Held {
                self.counters.polls_held -= 1;
            }
            self.release_admission(conn.flags.has(Flags::ADMITTED), peer);
        }
        super::recycle(&mut self.doomed);
    }
}

enum Due {
    HandshakeTimeout,
    Drop,
    Idle,
    Ping,
    Heartbeat,
    PollTimeout,
    TrimSide,
    Token(super::tokens::TokenDue),
}
