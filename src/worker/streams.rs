//! The HTTP transports: an SSE stream and a long-poll start here. Both join their
//! channels as a WebSocket subscriber does; fan-out then writes their encoding.
//!
//! With `--compression on` and a request whose `Accept-Encoding` takes gzip, an SSE
//! stream is gzip'd from its first byte (every write a segment of its own) and a
//! poll answer is a gzip member when its body is at least `--compression-min-size`
//! and shrinks. Answers with bytes of their own (catch-up, several channels,
//! timeouts) are compressed here with the worker's compressor, which keeps nothing
//! between uses: they cost CPU per answer, but these answers are per connection
//! already, and a catch-up is where the bytes are.

use bytes::Bytes;

use super::commands::Joined;
use super::connection::{Flags, Phase, Transport};
use super::stall::SYNCING;
use super::subscriptions;
use super::Worker;
use crate::config::Config;
use crate::proto::deflate::Deflater;
use crate::proto::gzip::{self, Coding};
use crate::proto::query::Wanted;
use crate::proto::{command, poll, sse};
use crate::pubsub::hub::Position;

/// A poll's answer carrying `body`: a gzip member when the request takes gzip
/// (`gzip`, only ever set with compression on) and the body is worth it, else plain;
/// with how many times it compressed (0 or 1), for the counter.
pub(super) fn poll_answer(
    deflater: &mut Deflater,
    settings: &Config,
    gzip: bool,
    body: &[u8],
    keep_alive: bool,
) -> (Bytes, u64) {
    let origin = settings.allow_origin;
    if gzip && body.len() >= settings.compression_min_size {
        let mut member = Vec::with_capacity(body.len() / 2 + 32);
        gzip::member(deflater, body, &mut member);
        // Incompressible: the plain answer is smaller, and just as valid.
        if member.len() < body.len() {
            let answer = poll::response(&member, origin, keep_alive, Coding::Gzip);
            return (Bytes::from(answer), 1);
        }
    }
    let plain = Coding::plain(settings.compression);
    let answer = poll::response(body, origin, keep_alive, plain);
    (
        Bytes::from(answer),
        u64::from(gzip && body.len() >= settings.compression_min_size),
    )
}

impl Worker {
    /// Checks an SSE or poll request's token and channels; a refusal is answered
    /// 401 (no or bad token) or 403 (a channel the token does not grant).
    fn admit_request(&mut self, key: usize, wanted: &[Wanted], token: Option<&str>) -> bool {
        if let Err(reason) = self.adopt_token(key, token) {
            self.refuse_http(key, 401, reason);
            return false;
        }
        for want in wanted {
            if let Err(refused) = self.may_join(key, &want.name) {
                self.refuse_http(key, refused.status(), &refused.reason);
                return false;
            }
        }
        true
    }

    /// Joins every channel in `wanted`, in order; on a refusal, leaves them all.
    fn join_all(&mut self, key: usize, wanted: &[Wanted]) -> Result<Vec<Joined>, &'static str> {
        let mut joined = Vec::with_capacity(wanted.len());
        for want in wanted {
            let position = Position {
                since: want.since,
                epoch: want.epoch.as_deref(),
            };
            match self.join(key, &want.name, position) {
                Ok(one) => joined.push(one),
                Err(reason) => {
                    self.unsubscribe_all(key);
                    return Err(reason);
                }
            }
        }
        Ok(joined)
    }

    /// `GET /sse`: the head, a `subscribed` event per channel, the catch-up, then
    /// live events from fan-out.
    pub(super) fn start_sse(
        &mut self,
        key: usize,
        wanted: &[Wanted],
        token: Option<String>,
        gzip: bool,
    ) {
        if !self.admit_request(key, wanted, token.as_deref()) {
            return;
        }
        let joined = match self.join_all(key, wanted) {
            Ok(joined) => joined,
            Err(SYNCING) => return, // read again once the channel is synced
            Err(reason) => return self.refuse_http(key, 400, reason),
        };
        let gzip = gzip && self.settings.compression;
        let coding = if gzip {
            Coding::Gzip
        } else {
            Coding::plain(self.settings.compression)
        };
        let mut out = sse::stream_head(self.settings.allow_origin, coding);
        let head_len = out.len();
        out.extend_from_slice(sse::RETRY);
        for one in &joined {
            let reply = command::subscribed(
                &one.channel.name,
                one.last_seq,
                &one.channel.epoch,
                one.catch_up.recovered,
            );
            sse::event(&mut out, Some("subscribed"), None, reply.as_bytes());
            self.count_resume(one);
        }
        // Each event's id names every channel's position: caught-up channels at
        // their end, the others just before their first undelivered message.
        let mut positions: Vec<u64> = joined
            .iter()
            .map(|j| {
                j.catch_up
                    .messages
                    .first()
                    .map_or(j.last_seq, |(seq, _)| seq - 1)
            })
            .collect();
        for (index, one) in joined.iter().enumerate() {
            for (seq, payload) in &one.catch_up.messages {
                positions[index] = *seq;
                sse::event(
                    &mut out,
                    None,
                    Some(&sse::id(positions.iter().copied())),
                    payload,
                );
            }
            positions[index] = one.last_seq;
            self.counters.delivered += one.catch_up.messages.len() as u64;
        }
        if gzip {
            // The gzip header once, then the stream's first segment.
            let body = out.split_off(head_len);
            out.extend_from_slice(&gzip::HEADER);
            self.counters.gzip_compressed += gzip::segment(
                &mut self.deflater,
                &body,
                self.settings.compression_min_size,
                &mut out,
            );
        }
        self.send(key, Bytes::from(out));
        if let Some(conn) = self.conns.get_mut(key) {
            if gzip {
                conn.flags.set(Flags::GZIP);
            } else {
                conn.flags.clear(Flags::GZIP);
            }
            conn.transport = Transport::Sse;
            conn.phase = Phase::Open;
            conn.last_seen = self.now;
            conn.flags.set(Flags::ONLINE);
            self.counters.sse_online += 1;
        }
    }

    /// `GET /poll`: answers at once when there is something to say (messages after
    /// `since`, or a resume that could not be exact), else holds.
    pub(super) fn start_poll(
        &mut self,
        key: usize,
        wanted: &[Wanted],
        keep_alive: bool,
        token: Option<String>,
        gzip: bool,
    ) {
        if !self.admit_request(key, wanted, token.as_deref()) {
            return;
        }
        let joined = match self.join_all(key, wanted) {
            Ok(joined) => joined,
            Err(SYNCING) => return, // read again once the channel is synced
            Err(reason) => return self.refuse_http(key, 400, reason),
        };
        for one in &joined {
            self.count_resume(one);
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.transport = Transport::Poll;
        if keep_alive {
            conn.flags.set(Flags::KEEP_ALIVE);
        } else {
            conn.flags.clear(Flags::KEEP_ALIVE);
        }
        if gzip && self.settings.compression {
            conn.flags.set(Flags::GZIP);
        } else {
            conn.flags.clear(Flags::GZIP);
        }
        let answer_now = joined
            .iter()
            .any(|j| !j.catch_up.recovered || !j.catch_up.messages.is_empty());
        if !answer_now {
            conn.phase = Phase::Held;
            conn.last_seen = self.now;
            self.counters.polls_held += 1;
            return;
        }
        let standings: Vec<poll::Standing<'_>> = joined
            .iter()
            .map(|j| poll::Standing {
                name: &j.channel.name,
                last_seq: j.last_seq,
                epoch: &j.channel.epoch,
                recovered: j.catch_up.recovered,
            })
            .collect();
        let messages = joined
            .iter()
            .flat_map(|j| j.catch_up.messages.iter().map(|(_, p)| &p[..]));
        let body = poll::body(messages, &standings);
        self.counters.delivered += joined
            .iter()
            .map(|j| j.catch_up.messages.len() as u64)
            .sum::<u64>();
        let gzip = self.conns[key].flags.has(Flags::GZIP);
        let (answer, compressed) =
            poll_answer(&mut self.deflater, &self.settings, gzip, &body, keep_alive);
        self.counters.gzip_compressed += compressed;
        self.finish_poll(key, answer);
    }

    /// Sends a poll's answer and leaves its channels; the connection then reads its
    /// next request (keep-alive) or closes.
    pub(super) fn finish_poll(&mut self, key: usize, answer: Bytes) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Held {
            self.counters.polls_held -= 1;
        }
        let keep_alive = conn.flags.has(Flags::KEEP_ALIVE);
        conn.phase = Phase::Request;
        self.counters.polls_answered += 1;
        self.unsubscribe_all(key);
        self.answer_http(key, answer, keep_alive);
    }

    /// The answer to a held poll whose `--poll-timeout` passed: no messages, and
    /// where each channel stands on this worker.
    pub(super) fn poll_timed_out(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let standings: Vec<poll::Standing<'_>> = subscriptions::of(conn, &self.sides)
            .iter()
            .filter_map(|s| self.topics.get(s.channel))
            .map(|local| poll::Standing {
                name: &local.channel.name,
                last_seq: local.position(),
                epoch: &local.channel.epoch,
                recovered: true,
            })
            .collect();
        let body = poll::body([], &standings);
        let keep_alive = conn.flags.has(Flags::KEEP_ALIVE);
        let gzip = conn.flags.has(Flags::GZIP);
        let (answer, compressed) =
            poll_answer(&mut self.deflater, &self.settings, gzip, &body, keep_alive);
        self.counters.gzip_compressed += compressed;
        self.counters.poll_timeouts += 1;
        self.finish_poll(key, answer);
    }

    /// `plain` SSE text as this stream carries it: a segment of its own when the
    /// stream is gzip'd.
    pub(super) fn sse_bytes(&mut self, key: usize, plain: &[u8]) -> Bytes {
        if !self
            .conns
            .get(key)
            .is_some_and(|c| c.flags.has(Flags::GZIP))
        {
            return Bytes::copy_from_slice(plain);
        }
        let mut out = Vec::with_capacity(plain.len() / 2 + 16);
        let min_size = self.settings.compression_min_size;
        self.counters.gzip_compressed +=
            gzip::segment(&mut self.deflater, plain, min_size, &mut out);
        Bytes::from(out)
    }

    /// The heartbeat comment: a constant either way.
    pub(super) fn sse_heartbeat(&self, key: usize) -> Bytes {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.flags.has(Flags::GZIP))
        {
            Bytes::from_static(gzip::HEARTBEAT)
        } else {
            Bytes::from_static(sse::HEARTBEAT)
        }
    }
}
