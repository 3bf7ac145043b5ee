//! One client connection as its worker holds it in the slab. An idle, subscribed
//! connection is this struct and nothing else: buffers live in `Extra`, allocated
//! only while a partial frame is pending or the socket is backpressured.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::Shutdown;

use bytes::{Buf, Bytes};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::subscriptions::Subscriptions;
use crate::proto::ws::Fragments;

/// Which protocol the connection speaks. Kept apart from [`Phase`], so that each
/// transport shares the phases (a held poll and an idle stream are both "live").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP: no transport chosen yet, or between keep-alive long-polls.
    Http,
    /// Upgraded on `/ws`: commands in, pushes out.
    WebSocket,
    /// Upgraded on `/echo`: every message comes back.
    Echo,
    /// `GET /sse`: an event stream out, nothing in.
    Sse,
    /// `GET /poll`: one answer, then back to `Http` (keep-alive) or closed.
    Poll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading an HTTP request head.
    Request,
    /// Live: WebSocket frames both ways, or an SSE stream.
    Open,
    /// A long-poll waiting for a message or its timeout.
    Held,
    /// We sent a close frame: waiting for the client's close or EOF.
    Closing,
    /// We sent a final HTTP answer: discarding input until EOF.
    Draining,
}

/// Per-connection booleans, packed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags(u16);

impl Flags {
    /// Counted against `--max-connections`.
    pub const ADMITTED: u16 = 1;
    /// Counted as online (an upgraded WebSocket or an open SSE stream).
    pub const ONLINE: u16 = 2;
    pub const PING_SENT: u16 = 4;
    /// Registered for writable events (the outbox is not empty).
    pub const WANT_WRITE: u16 = 8;
    /// Half-close once the outbox is flushed.
    pub const SHUTDOWN_AFTER_FLUSH: u16 = 16;
    /// Drop the connection once the outbox is flushed.
    pub const DROP_AFTER_FLUSH: u16 = 32;
    /// Already queued for removal.
    pub const DOOMED: u16 = 64;
    /// The current request asked for keep-alive (a held poll answers with it).
    pub const KEEP_ALIVE: u16 = 128;
    /// At least one request was answered: an idle keep-alive connection is closed
    /// quietly rather than answered 408.
    pub const SERVED: u16 = 256;
    /// Refused past `--max-connections-per-ip` (not counted anywhere).
    pub const ADDRESS_FULL: u16 = 512;
    /// Waiting for the broker to sync a channel it joins (`stall.rs`).
    pub const STALLED: u16 = 0x8000;
    /// Agreed to permessage-deflate: its RSV1 messages are inflated.
    pub const DEFLATE: u16 = 1024;
    /// Takes the worker's shared compressed frames (its window allows 32 KiB).
    pub const DEFLATE_SENDS: u16 = 2048;
    /// Its SSE stream is gzip'd, or its current poll is answered in gzip.
    pub const GZIP: u16 = 4096;

    pub fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }
    pub fn set(&mut self, flag: u16) {
        self.0 |= flag;
    }
    pub fn clear(&mut self, flag: u16) {
        self.0 &= !flag;
    }
}

/// State that only exists while a connection is busy.
#[derive(Debug, Default)]
pub struct Extra {
    /// Bytes of an incomplete request head or frame.
    pub pending_input: Vec<u8>,
    pub fragments: Option<Fragments>,
    /// Frames the socket did not take yet, in order; the first may be partly sent.
    pub outbox: VecDeque<Bytes>,
    /// Bytes in `outbox`: what the connection is owed. A frame shared with other
    /// subscribers counts in full, since this connection holds it alive.
    pub queued: usize,
    /// The front of `outbox` is partly written: nothing may go before it.
    pub front_started: bool,
    /// The answer to the latest ping, waiting for the socket. A newer ping replaces
    /// it (as tungstenite does), so a client that pings and never reads owns one.
    pub pong: Option<Bytes>,
}

#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    /// Worker clock (seconds) of the last sign of life or phase change; for an SSE
    /// stream, of the last heartbeat.
    pub last_seen: u32,
    pub transport: Transport,
    pub phase: Phase,
    pub flags: Flags,
    /// Index plus one of this connection's entry in the worker's side slab; 0 = none.
    pub side: u32,
    pub subscriptions: Subscriptions,
    pub extra: Option<Box<Extra>>,
}

/// What the connection needs after its outbox drained.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    Keep,
    Drop,
}

impl Connection {
    pub fn new(stream: TcpStream, now: u32, admitted: bool) -> Connection {
        let mut flags = Flags::default();
        if admitted {
            flags.set(Flags::ADMITTED);
        }
        Connection {
            stream,
            last_seen: now,
            transport: Transport::Http,
            phase: Phase::Request,
            flags,
            side: 0,
            subscriptions: Subscriptions::default(),
            extra: None,
        }
    }

    /// A live subscriber of its channels: pushes go to it.
    pub fn takes_pushes(&self) -> bool {
        !self.flags.has(Flags::DOOMED) && matches!(self.phase, Phase::Open | Phase::Held)
    }

    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub fn outbox_is_empty(&self) -> bool {
        self.extra
            .as_ref()
            .is_none_or(|e| e.outbox.is_empty() && e.pong.is_none())
    }

    /// True when the outbox holds more than `cap` bytes in more than one frame. A
    /// single write may exceed the cap alone: a resume's catch-up or an echoed
    /// message is bounded by the history and message-size limits; a queue behind
    /// it is what grows without bound.
    pub fn owes_more_than(&self, cap: usize) -> bool {
        self.extra
            .as_ref()
            .is_some_and(|e| e.queued > cap && e.outbox.len() > 1)
    }

    /// Frees the outbox at once, keeping only a partly written front frame (the
    /// peer must see it whole before anything else), and any pending pong.
    pub fn shed_outbox(&mut self) {
        let Some(extra) = self.extra.as_mut() else {
            return;
        };
        let front = extra.outbox.pop_front().filter(|_| extra.front_started);
        extra.outbox = VecDeque::new();
        extra.pong = None;
        extra.queued = front.as_ref().map_or(0, Bytes::len);
        extra.outbox.extend(front);
        extra.front_started = !extra.outbox.is_empty();
        self.trim();
    }

    /// Answers a ping: at once when nothing is queued, else kept (replacing an
    /// earlier unsent pong) and written before the queued frames.
    pub fn send_pong(&mut self, frame: Bytes, registry: &Registry, token: Token) -> io::Result<()> {
        if self.outbox_is_empty() {
            return self.send(frame, registry, token);
        }
        self.extra_mut().pong = Some(frame);
        Ok(())
    }

    /// Writes `data` now if nothing is queued, and queues what the socket does not
    /// take. An error means the connection is dead.
    pub fn send(&mut self, data: Bytes, registry: &Registry, token: Token) -> io::Result<()> {
        if !self.outbox_is_empty() {
            let extra = self.extra_mut();
            extra.queued += data.len();
            extra.outbox.push_back(data);
            return Ok(());
        }
        let written = match self.stream.write(&data) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        if written < data.len() {
            let extra = self.extra_mut();
            extra.queued += data.len() - written;
            extra.front_started = written > 0;
            extra.outbox.push_back(data.slice(written..));
            self.want_write(registry, token)?;
        }
        Ok(())
    }

    fn want_write(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        if !self.flags.has(Flags::WANT_WRITE) {
            registry.reregister(
                &mut self.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            self.flags.set(Flags::WANT_WRITE);
        }
        Ok(())
    }

    /// Writes queued frames, many per system call, until the outbox is empty or the
    /// socket is full.
    pub fn flush(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let Some(extra) = self.extra.as_mut() else {
            return Ok(());
        };
        loop {
            // A pending pong goes first, at a frame boundary.
            if !extra.front_started {
                if let Some(pong) = extra.pong.take() {
                    extra.queued += pong.len();
                    extra.outbox.push_front(pong);
                }
            }
            if extra.outbox.is_empty() {
                break;
            }
            let slices: Vec<IoSlice<'_>> = extra
                .outbox
                .iter()
                .take(64)
                .map(|b| IoSlice::new(b))
                .collect();
            let mut written = match self.stream.write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            extra.queued -= written;
            while written > 0 {
                let front = extra
                    .outbox
                    .front_mut()
                    .expect("written bytes came from the outbox");
                if written >= front.len() {
                    written -= front.len();
                    extra.outbox.pop_front();
                    extra.front_started = false;
                } else {
                    front.advance(written);
                    extra.front_started = true;
                    written = 0;
                }
            }
        }
        if self.flags.has(Flags::WANT_WRITE) {
            registry.reregister(&mut self.stream, token, Interest::READABLE)?;
            self.flags.clear(Flags::WANT_WRITE);
        }
        self.trim();
        Ok(())
    }

    /// Applies what was promised for when the outbox drains: half-close, or drop.
    pub fn settle(&mut self) -> Settled {
        if !self.outbox_is_empty() {
            return Settled::Keep;
        }
        if self.flags.has(Flags::DROP_AFTER_FLUSH) {
            return Settled::Drop;
        }
        if self.flags.has(Flags::SHUTDOWN_AFTER_FLUSH) {
            self.flags.clear(Flags::SHUTDOWN_AFTER_FLUSH);
            // Our FIN goes after the last frame; a peer that already left makes this fail.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Settled::Keep
    }

    /// Frees `Extra` once it holds nothing, so an idle connection owns no buffer.
    pub fn trim(&mut self) {
        if let Some(extra) = &mut self.extra {
            if extra.pending_input.is_empty()
                && extra.fragments.is_none()
                && extra.outbox.is_empty()
                && extra.pong.is_none()
            {
                self.extra = None;
            } else if extra.outbox.is_empty() && extra.outbox.capacity() > 16 {
                extra.outbox = VecDeque::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    /// A connection whose peer never reads, with the socket already full.
    fn stuck() -> (Connection, Poll, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let poll = Poll::new().unwrap();
        let mut stream = TcpStream::from_std(accepted);
        poll.registry()
            .register(&mut stream, Token(0), Interest::READABLE)
            .unwrap();
        let mut conn = Connection::new(stream, 0, true);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        for _ in 0..4096 {
            conn.send(chunk.clone(), poll.registry(), Token(0)).unwrap();
            if !conn.outbox_is_empty() {
                return (conn, poll, peer);
            }
        }
        panic!("the socket never filled");
    }

    #[test]
    fn queued_bytes_count_every_share_and_shedding_keeps_the_started_frame() {
        let (mut conn, poll, _peer) = stuck();
        let started = conn.extra.as_ref().unwrap().queued;
        assert!(conn.extra.as_ref().unwrap().front_started || started == 64 * 1024);
        let shared = Bytes::from(vec![b'y'; 100_000]);
        conn.send(shared.clone(), poll.registry(), Token(0))
            .unwrap();
        assert!(!conn.owes_more_than(started + 100_000));
        conn.send(shared, poll.registry(), Token(0)).unwrap();
        assert!(
            conn.owes_more_than(started + 100_000),
            "a shared frame counts in full"
        );
        conn.shed_outbox();
        let extra = conn.extra.as_ref().expect("the started frame stays");
        assert_eq!(extra.outbox.len(), usize::from(extra.front_started));
        assert_eq!(
            extra.queued,
            extra.outbox.iter().map(Bytes::len).sum::<usize>()
        );
    }

    #[test]
    fn a_newer_pong_replaces_an_unsent_one() {
        let (mut conn, poll, _peer) = stuck();
        let before = conn.extra.as_ref().unwrap().outbox.len();
        for n in 0..1000u32 {
            let pong = Bytes::from(n.to_be_bytes().to_vec());
            conn.send_pong(pong, poll.registry(), Token(0)).unwrap();
        }
        let extra = conn.extra.as_ref().unwrap();
        assert_eq!(extra.outbox.len(), before, "pongs do not queue");
        assert_eq!(extra.pong.as_deref(), Some(&999u32.to_be_bytes()[..]));
    }

    /// The memory budget is about 100 bytes per idle connection all told; the slab
    /// slot is most of it, so its size is pinned here.
    #[test]
    fn a_connection_slot_stays_small() {
        // mio adds a selector id to each socket in debug builds only, which also
        // turns the descriptor's 4 bytes into 8 with padding the slot cannot reuse.
        let mio_debug = if cfg!(debug_assertions) { 16 } else { 0 };
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 32 + mio_debug, "{size} bytes");
        // The slab's vacancy lives in the slot's niche: no tag beside it.
        let entry = std::mem::size_of::<super::super::paged::Entry<Connection>>();
        assert_eq!(entry, size, "a slab entry is the connection, {entry} bytes");
    }
}
