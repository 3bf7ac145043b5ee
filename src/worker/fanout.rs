//! Fan-out: each turn, the publications drained from the inbox (after any an earlier
//! turn carried over, and at most 64 KiB of each channel) go to the local
//! subscribers of their channel. A channel's messages of one turn are encoded once per
//! transport (WebSocket frames, SSE events, a long-poll answer) and those bytes are
//! shared by every subscriber on that transport, so each costs one write however
//! many messages arrived. Only streams or polls of several channels get bytes of
//! their own, because their position names every channel.
//!
//! permessage-deflate is one more encoding: each message compressed once by the
//! worker's compressor (no context kept), shared by every subscriber that agreed to
//! it. Messages under --compression-min-size stay plain (RSV1 is per message).
//!
//! gzip is the same rule for SSE and long-polling: this turn's SSE events as one
//! gzip segment, and the long-poll answer as one gzip member, each built once on
//! first use and shared by every gzip-taking subscriber (`proto::gzip`).

use bytes::Bytes;

use super::connection::{Busy, Flags, Phase, Transport};
use super::inbox;
use super::streams::poll_answer;
use super::subscriptions::{self, Subscription};
use super::Worker;
use crate::config::Config;
use crate::proto::deflate::Deflater;
use crate::proto::gzip;
use crate::proto::{poll, sse, ws};
use crate::pubsub::hub::{Channel, ChannelRef};
use crate::pubsub::publication::Publication;
use crate::pubsub::topics::Topics;

/// The most of one channel's messages (payload bytes, at least one message) a turn
/// sends; the rest waits for the next turn, which comes at once. A flood on one
/// channel then keeps the worker from its other connections for one such write to
/// each subscriber, not for the whole backlog (seconds, with thousands of them).
const CHANNEL_BYTES_PER_TURN: usize = 64 * 1024;

impl Worker {
    pub(super) fn fan_out(&mut self) {
        if self.publications.is_empty() {
            return;
        }
        // Stable: a channel's publications stay in sequence order, the carried ones
        // (older) before this turn's.
        self.publications.sort_by_key(|p| p.channel.id);
        let mut publications = std::mem::take(&mut self.publications);
        let (mut carried, mut sent) = (Vec::new(), 0);
        for group in publications.chunk_by(|a, b| ChannelRef::ptr_eq(&a.channel, &b.channel)) {
            let (now, later) = group.split_at(turn_share(group));
            self.fan_out_channel(now);
            sent += now.iter().map(inbox::weight).sum::<usize>();
            carried.extend_from_slice(later);
        }
        self.inbox.sent(sent);
        super::recycle(&mut publications);
        publications.append(&mut carried);
        self.publications = publications;
    }

    fn fan_out_channel(&mut self, group: &[Publication]) {
        let channel = &group[0].channel;
        // A channel's publications arrive in sequence order.
        let newest = group[group.len() - 1].seq;
        // Taken out while the connections are written, put back below; nothing
        // joins or leaves during fan-out (answered polls leave afterwards).
        let Some((before, subscribers)) = self.topics.take_fresh(channel, newest) else {
            return;
        };
        // Publications at or below it predate this worker's subscription.
        let fresh: Vec<&Publication> = group.iter().filter(|p| p.seq > before).collect();
        let mut wire = Encodings {
            channel,
            fresh: &fresh,
            settings: &self.settings,
            websocket: None,
            deflated: None,
            min_size: self.settings.compression_min_size,
            sse: None,
            sse_gzip: None,
            poll_body: None,
            poll: [None, None, None, None],
        };
        let registry = self.poll.registry();
        let cap = self.settings.max_queued_bytes;
        let mut slow = Vec::new();
        let mut reached = 0u64;
        for &key in subscribers.as_slice() {
            let key = key as usize;
            let conn = &self.conns[key];
            if !conn.takes_pushes() {
                continue;
            }
            let subscribed = subscriptions::of(conn, &self.sides);
            let single = subscribed.len() == 1;
            let gzip = conn.flags.has(Flags::GZIP);
            let bytes = match (conn.transport, conn.phase) {
                (Transport::WebSocket, Phase::Open) if conn.flags.has(Flags::DEFLATE_SENDS) => {
                    let (bytes, compressed) = wire.deflated(&mut self.deflater);
                    self.counters.frames_deflated += compressed;
                    bytes
                }
                (Transport::WebSocket, Phase::Open) => wire.websocket(),
                (Transport::Sse, Phase::Open) if single && gzip => {
                    let (bytes, compressed) = wire.sse_gzip(&mut self.deflater);
                    self.counters.gzip_compressed += compressed;
                    bytes
                }
                (Transport::Sse, Phase::Open) if single => wire.sse(),
                (Transport::Sse, Phase::Open) => {
                    let plain = wire.sse_for(subscribed, &self.topics);
                    if gzip {
                        let mut out = Vec::with_capacity(plain.len() / 2 + 16);
                        self.counters.gzip_compressed +=
                            gzip::segment(&mut self.deflater, &plain, wire.min_size, &mut out);
                        Bytes::from(out)
                    } else {
                        Bytes::from(plain)
                    }
                }
                (Transport::Poll, Phase::Held) => {
                    let keep_alive = conn.flags.has(Flags::KEEP_ALIVE);
                    let (answer, compressed) = if single {
                        wire.poll(keep_alive, gzip, &mut self.deflater)
                    } else {
                        let body = wire.poll_body_for(subscribed, &self.topics);
                        poll_answer(&mut self.deflater, &self.settings, gzip, &body, keep_alive)
                    };
                    self.counters.gzip_compressed += compressed;
                    // Answered after fan-out, when it may leave its channels.
                    self.conns[key].phase = Phase::Request;
                    self.counters.polls_held -= 1;
                    self.answered_polls.push((key, answer));
                    reached += 1;
                    continue;
                }
                _ => continue,
            };
            reached += 1;
            let mut busy = Busy {
                conn: &mut self.conns[key],
                extras: &mut self.extras,
                key,
            };
            if busy.send(bytes, registry).is_err() {
                busy.conn.flags.set(Flags::DOOMED);
                self.doomed.push(key);
            } else if busy.owes_more_than(cap) {
                slow.push(key);
            }
        }
        self.counters.delivered += fresh.len() as u64 * reached;
        self.topics.put_back_subscribers(channel.id, subscribers);
        // Closed once the list is back: closing leaves the channel.
        for key in slow {
            self.close_slow_consumer(key);
        }
    }

    /// Sends the answers of the polls fan-out reached, then lets each read the
    /// request it may have pipelined.
    pub(super) fn resume_answered_polls(&mut self) {
        let answered = std::mem::take(&mut self.answered_polls);
        for &(key, ref answer) in &answered {
            if self.is_live(key) {
                self.finish_poll(key, answer.clone());
                self.reconsume(key);
            }
        }
        let mut answered = answered;
        super::recycle(&mut answered);
        self.answered_polls = answered;
    }
}

/// One channel's messages of this turn, encoded on first use per transport.
struct Encodings<'a> {
    channel: &'a ChannelRef,
    fresh: &'a [&'a Publication],
    settings: &'a Config,
    websocket: Option<Bytes>,
    /// The WebSocket frames with permessage-deflate: those at or over `min_size`
    /// compressed.
    deflated: Option<Bytes>,
    min_size: usize,
    sse: Option<Bytes>,
    /// `sse` as one gzip segment.
    sse_gzip: Option<Bytes>,
    /// The long-poll answer's body, shared by its plain and gzip answers.
    poll_body: Option<Bytes>,
    /// The answers: keep-alive (+1), gzip taken (+2).
    poll: [Option<Bytes>; 4],
}

impl Encodings<'_> {
    fn websocket(&mut self) -> Bytes {
        let fresh = self.fresh;
        self.websocket
            .get_or_insert_with(|| {
                let mut out = Vec::with_capacity(fresh.iter().map(|p| p.payload.len() + 10).sum());
                for p in fresh {
                    ws::encode(ws::Kind::Text, &p.payload, &mut out);
                }
                Bytes::from(out)
            })
            .clone()
    }

    /// The deflated frames, and how many messages were compressed to build them
    /// now (0 when they were already built this turn).
    fn deflated(&mut self, deflater: &mut Deflater) -> (Bytes, u64) {
        if let Some(bytes) = &self.deflated {
            return (bytes.clone(), 0);
        }
        let mut out = Vec::with_capacity(self.fresh.iter().map(|p| p.payload.len() / 2 + 16).sum());
        let mut packed = Vec::new();
        let mut compressed = 0;
        for p in self.fresh {
            if p.payload.len() < self.min_size {
                ws::encode(ws::Kind::Text, &p.payload, &mut out);
                continue;
            }
            packed.clear();
            deflater.compress(&p.payload, &mut packed);
            compressed += 1;
            // Incompressible: the plain frame is smaller, and just as valid.
            if packed.len() >= p.payload.len() {
                ws::encode(ws::Kind::Text, &p.payload, &mut out);
            } else {
                ws::encode_compressed(ws::Kind::Text, &packed, &mut out);
            }
        }
        let bytes = Bytes::from(out);
        self.deflated = Some(bytes.clone());
        (bytes, compressed)
    }

    fn sse(&mut self) -> Bytes {
        let fresh = self.fresh;
        self.sse
            .get_or_insert_with(|| {
                let mut out = Vec::with_capacity(fresh.iter().map(|p| p.payload.len() + 24).sum());
                for p in fresh {
                    sse::event(&mut out, None, Some(&sse::id([p.seq])), &p.payload);
                }
                Bytes::from(out)
            })
            .clone()
    }

    /// The gzip segment, and whether it was compressed now (0 when already built).
    fn sse_gzip(&mut self, deflater: &mut Deflater) -> (Bytes, u64) {
        if let Some(bytes) = &self.sse_gzip {
            return (bytes.clone(), 0);
        }
        let plain = self.sse();
        let mut out = Vec::with_capacity(plain.len() / 2 + 16);
        let compressed = gzip::segment(deflater, &plain, self.min_size, &mut out);
        let bytes = Bytes::from(out);
        self.sse_gzip = Some(bytes.clone());
        (bytes, compressed)
    }

    fn poll_body(&mut self) -> Bytes {
        let (channel, fresh) = (self.channel, self.fresh);
        self.poll_body
            .get_or_insert_with(|| {
                let standing = poll::Standing {
                    name: &channel.name,
                    last_seq: fresh[fresh.len() - 1].seq,
                    epoch: &channel.epoch,
                    recovered: true,
                };
                Bytes::from(poll::body(
                    fresh.iter().map(|p| &p.payload[..]),
                    &[standing],
                ))
            })
            .clone()
    }

    /// The shared answer; with `gzip`, compressed once per turn for every
    /// gzip-taking poll (or the plain one, when the body is small or does not shrink).
    fn poll(&mut self, keep_alive: bool, gzip: bool, deflater: &mut Deflater) -> (Bytes, u64) {
        let index = usize::from(keep_alive) + 2 * usize::from(gzip);
        if let Some(answer) = &self.poll[index] {
            return (answer.clone(), 0);
        }
        let body = self.poll_body();
        let (answer, compressed) = poll_answer(deflater, self.settings, gzip, &body, keep_alive);
        self.poll[index] = Some(answer.clone());
        (answer, compressed)
    }

    /// Where a subscriber of `subscribed` stands in each of its channels once `seq`
    /// of this one is sent.
    fn positions<'t>(
        &self,
        subscribed: &[Subscription],
        topics: &'t Topics,
        seq: u64,
    ) -> Vec<(u64, Option<&'t Channel>)> {
        subscribed
            .iter()
            .map(|s| {
                let local = topics.get(s.channel);
                let at = if s.channel == self.channel.id {
                    seq
                } else {
                    local.map_or(0, |l| l.position())
                };
                (at, local.map(|l| &*l.channel))
            })
            .collect()
    }

    fn sse_for(&self, subscribed: &[Subscription], topics: &Topics) -> Vec<u8> {
        let mut out = Vec::new();
        // The other channels' positions do not move during this fan-out: read once
        // (each locks its channel), and only this channel's follows each event.
        let mut positions: Vec<u64> = self
            .positions(subscribed, topics, 0)
            .iter()
            .map(|(at, _)| *at)
            .collect();
        for p in self.fresh {
            for (at, s) in positions.iter_mut().zip(subscribed) {
                if s.channel == self.channel.id {
                    *at = p.seq;
                }
            }
            let id = sse::id(positions.iter().copied());
            sse::event(&mut out, None, Some(&id), &p.payload);
        }
        out
    }

    fn poll_body_for(&self, subscribed: &[Subscription], topics: &Topics) -> Vec<u8> {
        let last = self.fresh[self.fresh.len() - 1].seq;
        let positions = self.positions(subscribed, topics, last);
        let standings: Vec<poll::Standing<'_>> = positions
            .iter()
            .filter_map(|(at, channel)| {
                channel.map(|c| poll::Standing {
                    name: &c.name,
                    last_seq: *at,
                    epoch: &c.epoch,
                    recovered: true,
                })
            })
            .collect();
        poll::body(self.fresh.iter().map(|p| &p.payload[..]), &standings)
    }
}
/// How many of a channel's publications (in seq order) this turn sends: those
/// within [`CHANNEL_BYTES_PER_TURN`], and always the first.
fn turn_share(group: &[Publication]) -> usize {
    let mut bytes = 0;
    group
        .iter()
        .position(|p| {
            bytes += p.payload.len();
            bytes > CHANNEL_BYTES_PER_TURN
        })
        .map_or(group.len(), |over| over.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(sizes: &[usize]) -> Vec<Publication> {
        let channel = ChannelRef::create("t", Default::default(), false).unwrap();
        sizes
            .iter()
            .zip(1..)
            .map(|(&size, seq)| Publication {
                channel: ChannelRef::clone(&channel),
                seq,
                payload: Bytes::from(vec![b'x'; size]),
            })
            .collect()
    }

    #[test]
    fn a_turn_sends_a_channel_at_most_its_share_and_always_one_message() {
        assert_eq!(turn_share(&group(&[100; 10])), 10, "all of a small group");
        let kib = 1024;
        assert_eq!(turn_share(&group(&[16 * kib; 10])), 4, "64 KiB of them");
        assert_eq!(
            turn_share(&group(&[200 * kib, 1, 1])),
            1,
            "one, however large"
        );
        assert_eq!(
            turn_share(&group(&[60 * kib, 4 * kib, 1])),
            2,
            "up to the share exactly"
        );
    }
}
