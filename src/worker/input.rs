//! Reading: every connection reads into the worker's one scratch buffer; only the
//! tail of an incomplete request or frame is kept, in the connection's `Extra`.

use std::io::{self, Read};

use bytes::Bytes;

use super::connection::{Busy, Flags, Phase, Transport};
use super::Worker;
use crate::proto::http::{self, Parsed, Routes, MAX_HEAD};
use crate::proto::ws::{self, Decoded, Event};

/// A kept tail whose buffer is this many times larger than its content is copied
/// into a right-sized one, so a burst does not leave a large buffer behind.
const SHRINK_RATIO: usize = 4;
/// Full reads one connection may do per turn before the others get their turn; a
/// client that keeps its socket full is resumed on the next turn.
const READS_PER_TURN: usize = 16;

impl Worker {
    /// Reads until the socket is drained (edge-triggered readiness), or until this
    /// connection has had its share of the turn.
    pub(super) fn on_readable(&mut self, key: usize) {
        for _ in 0..READS_PER_TURN {
            if !self.is_live(key) {
                return;
            }
            let conn = &mut self.conns[key];
            let read = match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.doom(key);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.doom(key);
                    return;
                }
            };
            if conn.phase == Phase::Open
                && matches!(conn.transport, Transport::WebSocket | Transport::Echo)
            {
                conn.last_seen = self.now;
                conn.flags.clear(Flags::PING_SENT);
            }
            self.ingest(key, read);
            // A short read drained the socket; new data will raise a new edge.
            if read < self.scratch.len() {
                return;
            }
        }
        // No new edge will come for data already waiting: resume next turn.
        self.unfinished_reads.push(key);
    }

    /// Continues the reads cut short last turn.
    pub(super) fn resume_reads(&mut self) {
        let keys = std::mem::take(&mut self.resumed_reads);
        self.resumed_reads = std::mem::replace(&mut self.unfinished_reads, keys);
        while let Some(key) = self.resumed_reads.pop() {
            self.on_readable(key);
        }
    }

    /// Processes input kept while a poll was held (a pipelined next request).
    pub(super) fn reconsume(&mut self, key: usize) {
        let waiting = self.conns.get(key).is_some_and(|c| {
            c.extra(&self.extras, key)
                .is_some_and(|e| !e.pending_input.is_empty())
        });
        if waiting {
            self.ingest(key, 0);
        }
    }

    /// Processes `read` new bytes from the scratch buffer, after any kept tail.
    fn ingest(&mut self, key: usize, read: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut tail = self
            .busy(key)
            .and_then(|mut busy| {
                busy.extra_if()
                    .map(|e| std::mem::take(&mut e.pending_input))
            })
            .unwrap_or_default();
        let rest: Vec<u8> = if tail.is_empty() {
            let used = self.consume(key, &mut scratch[..read]);
            scratch[used..read].to_vec()
        } else {
            tail.extend_from_slice(&scratch[..read]);
            let used = self.consume(key, &mut tail);
            tail.drain(..used);
            if tail.capacity() > SHRINK_RATIO * tail.len().max(1024) {
                tail.shrink_to_fit();
            }
            tail
        };
        self.scratch = scratch;
        if let Some(mut busy) = self.busy(key) {
            if rest.is_empty() {
                if let Some(extra) = busy.extra_if() {
                    extra.pending_input = Vec::new();
                }
                busy.trim();
            } else {
                busy.extra_mut().pending_input = rest;
            }
        }
    }

    /// Consumes what it can from `buf` according to the connection's stage and
    /// returns how many bytes it used; the rest is an incomplete head or frame.
    fn consume(&mut self, key: usize, buf: &mut [u8]) -> usize {
        let mut used = 0;
        while used < buf.len() && self.is_live(key) {
            let conn = &self.conns[key];
            let progress = match (conn.phase, conn.transport) {
                // A request waiting for the broker stays unread until it is ready.
                (Phase::Request, _) if conn.flags.has(Flags::STALLED) => None,
                (Phase::Request, _) => self.consume_request(key, &buf[used..]),
                (Phase::Open | Phase::Closing, Transport::WebSocket | Transport::Echo) => {
                    self.consume_frame(key, &mut buf[used..])
                }
                // A request pipelined behind a held poll waits for its answer, within
                // the bound of one request head.
                (Phase::Held, _) if buf.len() - used <= MAX_HEAD => None,
                (Phase::Held, _) => {
                    self.counters.http_errors += 1;
                    self.doom(key);
                    Some(buf.len() - used)
                }
                // An SSE client has nothing to say; after a final answer, nothing counts.
                _ => Some(buf.len() - used),
            };
            match progress {
                Some(n) => used += n,
                None => break,
            }
        }
        if !self.is_live(key) {
            return buf.len();
        }
        used
    }

    fn consume_request(&mut self, key: usize, buf: &[u8]) -> Option<usize> {
        let routes = Routes {
            echo: self.settings.echo,
            demo: self.settings.demo,
            transports: self.settings.transports,
            max_subscriptions: self.settings.max_subscriptions,
        };
        match http::parse_client_request(buf, routes) {
            Parsed::Partial => None,
            Parsed::Done { head_len, request } => {
                self.answer_request(key, request);
                // Stalled: the request is read again once its channel is synced.
                (!self.is_stalled(key)).then_some(head_len)
            }
        }
    }

    fn consume_frame(&mut self, key: usize, buf: &mut [u8]) -> Option<usize> {
        let max = self.settings.max_message_size;
        let mut fragments = self
            .busy(key)
            .and_then(|mut busy| busy.extra_if().and_then(|e| e.fragments.take()));
        let conn = &self.conns[key];
        let closing = conn.phase == Phase::Closing;
        let inflater = conn.flags.has(Flags::DEFLATE).then_some(&mut self.inflater);
        let decoded = ws::decode_with(buf, &mut fragments, max, inflater);
        if let Some(open) = fragments {
            if let Some(mut busy) = self.busy(key) {
                busy.extra_mut().fragments = Some(open);
            }
        }
        match decoded {
            Ok(Decoded::Incomplete) => None,
            Ok(Decoded::Frame { consumed, event }) => {
                match event {
                    // After our close, only the client's close (or EOF) matters.
                    Some(Event::Close(_)) if closing => self.doom(key),
                    _ if closing => {}
                    Some(event) => self.on_event(key, event),
                    None => {}
                }
                Some(consumed)
            }
            Err(violation) => {
                if closing {
                    self.doom(key);
                } else {
                    self.counters.protocol_errors += 1;
                    if matches!(violation, ws::INFLATES_TOO_BIG | ws::CORRUPT_DEFLATE) {
                        self.counters.inflate_refused += 1;
                    }
                    self.close_with(key, violation.code, violation.reason);
                }
                Some(buf.len())
            }
        }
    }

    fn on_event(&mut self, key: usize, event: Event<'_>) {
        match event {
            Event::Ping(payload) => {
                let pong = Bytes::from(ws::frame(ws::Kind::Pong, payload));
                let mut busy = Busy {
                    conn: &mut self.conns[key],
                    extras: &mut self.extras,
                    key,
                };
                if busy.send_pong(pong, self.poll.registry()).is_err() {
                    self.doom(key);
                }
            }
            Event::Pong => {}
            Event::Close(code) => self.answer_close(key, code),
            Event::Message { text, payload } => {
                if self.conns[key].transport == Transport::Echo {
                    let kind = if text {
                        ws::Kind::Text
                    } else {
                        ws::Kind::Binary
                    };
                    let frame = self.echo_frame(key, kind, &payload);
                    self.send(key, Bytes::from(frame));
                } else if self.allow_command(key) {
                    self.on_command(key, &payload);
                } else {
                    self.counters.commands_rate_closes += 1;
                    self.close_with(key, 1008, "too many commands");
                }
            }
        }
    }
}

impl Worker {
    /// An echoed message, compressed like a push when the connection agreed to it.
    fn echo_frame(&mut self, key: usize, kind: ws::Kind, payload: &[u8]) -> Vec<u8> {
        let compress = self.conns[key].flags.has(Flags::DEFLATE_SENDS)
            && payload.len() >= self.settings.compression_min_size;
        if !compress {
            return ws::frame(kind, payload);
        }
        self.counters.frames_deflated += 1;
        let mut packed = Vec::with_capacity(payload.len() / 2 + 64);
        self.deflater.compress(payload, &mut packed);
        if packed.len() >= payload.len() {
            return ws::frame(kind, payload);
        }
        let mut out = Vec::with_capacity(packed.len() + 14);
        ws::encode_compressed(kind, &packed, &mut out);
        out
    }
}
