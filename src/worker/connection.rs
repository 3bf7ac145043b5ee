//! One client connection as its worker holds it in the slab. An idle, subscribed
//! connection is this struct and nothing else: buffers live in `Extra`, allocated
//! only while a partial frame is pending or the socket is backpressured, and kept
//! in the worker's `Extras` beside the slab rather than behind a pointer in the
//! slot, which is then 24 bytes instead of 32.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::Shutdown;

use bytes::{Buf, Bytes};
use hashbrown::HashTable;
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
    /// Has an `Extra` in the worker's `Extras`: an idle connection's writes never
    /// look there.
    pub const EXTRA: u16 = 0x2000;

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
}

/// The `Extra` of each busy connection, by slab key.
#[derive(Debug, Default)]
pub struct Extras {
    held: HashTable<(u32, Box<Extra>)>,
}

/// Slab keys are dense: a multiply spreads them (as `Topics` does channel ids).
fn hash(key: u32) -> u64 {
    u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Extras {
    fn get(&self, key: usize) -> Option<&Extra> {
        let key = key as u32;
        self.held.find(hash(key), |e| e.0 == key).map(|e| &*e.1)
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Extra> {
        let key = key as u32;
        self.held
            .find_mut(hash(key), |e| e.0 == key)
            .map(|e| &mut *e.1)
    }

    fn get_or_default(&mut self, key: usize) -> &mut Extra {
        let key = key as u32;
        let entry = self
            .held
            .entry(hash(key), |e| e.0 == key, |e| hash(e.0))
            .or_insert_with(|| (key, Box::default()));
        &mut entry.into_mut().1
    }

    fn remove(&mut self, key: usize) {
        let key = key as u32;
        if let Ok(held) = self.held.find_entry(hash(key), |e| e.0 == key) {
            held.remove();
        }
        // A burst of backpressure leaves a large table behind: give it back.
        if self.held.capacity() > 4 * self.held.len() + 64 {
            self.held.shrink_to_fit(|e| hash(e.0));
        }
    }

    /// Connections that hold an `Extra` now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A connection with the worker's `Extras`, for what touches its buffers; `key` is
/// its slab key, which is also its token.
#[derive(Debug)]
pub struct Busy<'a> {
    pub conn: &'a mut Connection,
    pub extras: &'a mut Extras,
    pub key: usize,
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
        }
    }

    /// A live subscriber of its channels: pushes go to it.
    pub fn takes_pushes(&self) -> bool {
        !self.flags.has(Flags::DOOMED) && matches!(self.phase, Phase::Open | Phase::Held)
    }

    /// Its `Extra`, if it has one.
    pub fn extra<'e>(&self, extras: &'e Extras, key: usize) -> Option<&'e Extra> {
        if self.flags.has(Flags::EXTRA) {
            extras.get(key)
        } else {
            None
        }
    }

    pub fn outbox_is_empty(&self, extras: &Extras, key: usize) -> bool {
        self.extra(extras, key)
            .is_none_or(|e| e.outbox.is_empty() && e.pong.is_none())
    }

    /// True when the outbox holds more than `cap` bytes in more than one frame. A
    /// single write may exceed the cap alone: a resume's catch-up or an echoed
    /// message is bounded by the history and message-size limits; a queue behind
    /// it is what grows without bound.
    pub fn owes_more_than(&self, extras: &Extras, key: usize, cap: usize) -> bool {
        self.extra(extras, key)
            .is_some_and(|e| e.queued > cap && e.outbox.len() > 1)
    }

    /// Gives its `Extra` back: the connection is being removed, and the next one
    /// at its key must not find it.
    pub fn forget_extra(&mut self, extras: &mut Extras, key: usize) {
        if self.flags.has(Flags::EXTRA) {
            self.flags.clear(Flags::EXTRA);
            extras.remove(key);
        }
    }

    /// Applies what was promised for when the outbox drains: half-close, or drop.
    pub fn settle(&mut self, extras: &Extras, key: usize) -> Settled {
        if !self.outbox_is_empty(extras, key) {
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
}

impl Busy<'_> {
    /// Its `Extra`, made on first use.
    pub fn extra_mut(&mut self) -> &mut Extra {
        self.conn.flags.set(Flags::EXTRA);
        self.extras.get_or_default(self.key)
    }

    /// Its `Extra`, if it has one.
    pub fn extra_if(&mut self) -> Option<&mut Extra> {
        if self.conn.flags.has(Flags::EXTRA) {
            self.extras.get_mut(self.key)
        } else {
            None
        }
    }

    pub fn outbox_is_empty(&self) -> bool {
        self.conn.outbox_is_empty(self.extras, self.key)
    }

    pub fn owes_more_than(&self, cap: usize) -> bool {
        self.conn.owes_more_than(self.extras, self.key, cap)
    }

    /// Frees the outbox at once, keeping only a partly written front frame (the
    /// peer must see it whole before anything else), and any pending pong.
    pub fn shed_outbox(&mut self) {
        let Some(extra) = self.extra_if() else {
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
    pub fn send_pong(&mut self, frame: Bytes, registry: &Registry) -> io::Result<()> {
        if self.outbox_is_empty() {
            return self.send(frame, registry);
        }
        self.extra_mut().pong = Some(frame);
        Ok(())
    }

    /// Writes `data` now if nothing is queued, and queues what the socket does not
    /// take. An error means the connection is dead.
    pub fn send(&mut self, data: Bytes, registry: &Registry) -> io::Result<()> {
        if !self.outbox_is_empty() {
            let extra = self.extra_mut();
            extra.queued += data.len();
            extra.outbox.push_back(data);
            return Ok(());
        }
        let written = match self.conn.stream.write(&data) {
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
            self.want_write(registry)?;
        }
        Ok(())
    }

    fn want_write(&mut self, registry: &Registry) -> io::Result<()> {
        let conn = &mut *self.conn;
        if !conn.flags.has(Flags::WANT_WRITE) {
            registry.reregister(
                &mut conn.stream,
                Token(self.key),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conn.flags.set(Flags::WANT_WRITE);
        }
        Ok(())
    }

    /// Writes queued frames, many per system call, until the outbox is empty or the
    /// socket is full.
    pub fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        let conn = &mut *self.conn;
        if !conn.flags.has(Flags::EXTRA) {
            return Ok(());
        }
        let Some(extra) = self.extras.get_mut(self.key) else {
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
            let mut written = match conn.stream.write_vectored(&slices) {
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
        if conn.flags.has(Flags::WANT_WRITE) {
            registry.reregister(&mut conn.stream, Token(self.key), Interest::READABLE)?;
            conn.flags.clear(Flags::WANT_WRITE);
        }
        self.trim();
        Ok(())
    }

    /// Frees `Extra` once it holds nothing, so an idle connection owns no buffer.
    pub fn trim(&mut self) {
        let Some(extra) = self.extra_if() else {
            return;
        };
        if extra.pending_input.is_empty()
            && extra.fragments.is_none()
            && extra.outbox.is_empty()
            && extra.pong.is_none()
        {
            self.conn.forget_extra(self.extras, self.key);
        } else if extra.outbox.is_empty() && extra.outbox.capacity() > 16 {
            extra.outbox = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    /// A connection whose peer never reads, with the socket already full.
    fn stuck() -> (Connection, Extras, Poll, std::net::TcpStream) {
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
        let mut extras = Extras::default();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        for _ in 0..4096 {
            busy(&mut conn, &mut extras)
                .send(chunk.clone(), poll.registry())
                .unwrap();
            if !conn.outbox_is_empty(&extras, 0) {
                return (conn, extras, poll, peer);
            }
        }
        panic!("the socket never filled");
    }

    fn busy<'a>(conn: &'a mut Connection, extras: &'a mut Extras) -> Busy<'a> {
        Busy {
            conn,
            extras,
            key: 0,
        }
    }

    #[test]
    fn queued_bytes_count_every_share_and_shedding_keeps_the_started_frame() {
        let (mut conn, mut extras, poll, _peer) = stuck();
        let started = conn.extra(&extras, 0).unwrap().queued;
        assert!(conn.extra(&extras, 0).unwrap().front_started || started == 64 * 1024);
        let shared = Bytes::from(vec![b'y'; 100_000]);
        let mut busy = busy(&mut conn, &mut extras);
        busy.send(shared.clone(), poll.registry()).unwrap();
        assert!(!busy.owes_more_than(started + 100_000));
        busy.send(shared, poll.registry()).unwrap();
        assert!(
            busy.owes_more_than(started + 100_000),
            "a shared frame counts in full"
        );
        busy.shed_outbox();
        let extra = conn.extra(&extras, 0).expect("the started frame stays");
        assert_eq!(extra.outbox.len(), usize::from(extra.front_started));
        assert_eq!(
            extra.queued,
            extra.outbox.iter().map(Bytes::len).sum::<usize>()
        );
    }

    #[test]
    fn a_newer_pong_replaces_an_unsent_one() {
        let (mut conn, mut extras, poll, _peer) = stuck();
        let before = conn.extra(&extras, 0).unwrap().outbox.len();
        for n in 0..1000u32 {
            let pong = Bytes::from(n.to_be_bytes().to_vec());
            busy(&mut conn, &mut extras)
                .send_pong(pong, poll.registry())
                .unwrap();
        }
        let extra = conn.extra(&extras, 0).unwrap();
        assert_eq!(extra.outbox.len(), before, "pongs do not queue");
        assert_eq!(extra.pong.as_deref(), Some(&999u32.to_be_bytes()[..]));
    }

    /// The memory budget is about 100 bytes per idle connection all told; the slab
    /// slot is most of it, so its size is pinned here. Its `Extra` is not in it.
    #[test]
    fn a_connection_slot_stays_small() {
        // mio adds a selector id to each socket in debug builds only, which also
        // turns the descriptor's 4 bytes into 8 with padding the slot cannot reuse.
        let mio_debug = if cfg!(debug_assertions) { 16 } else { 0 };
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 24 + mio_debug, "{size} bytes");
        // The slab's vacancy lives in the slot's niche: no tag beside it.
        let entry = std::mem::size_of::<crate::paged::Entry<Connection>>();
        assert_eq!(entry, size, "a slab entry is the connection, {entry} bytes");
    }

    #[test]
    fn a_drained_connection_gives_its_extra_back_and_the_next_at_its_key_has_none() {
        let (mut conn, mut extras, poll, mut peer) = stuck();
        assert_eq!(extras.len(), 1);
        // Read everything the peer was sent, then let the connection flush.
        peer.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut sink = vec![0u8; 1 << 20];
        for _ in 0..10_000 {
            use std::io::Read;
            match peer.read(&mut sink) {
                Ok(0) | Err(_) => {}
                Ok(_) => {}
            }
            busy(&mut conn, &mut extras).flush(poll.registry()).unwrap();
            if conn.outbox_is_empty(&extras, 0) {
                break;
            }
        }
        assert!(conn.outbox_is_empty(&extras, 0), "the peer read it all");
        assert!(extras.is_empty(), "a drained connection holds no Extra");
        assert!(!conn.flags.has(Flags::EXTRA));
        // A busy connection's Extra goes with it when it is removed.
        busy(&mut conn, &mut extras).extra_mut().pending_input = vec![1];
        assert_eq!(extras.len(), 1);
        conn.forget_extra(&mut extras, 0);
        assert!(extras.is_empty());
        assert!(conn.extra(&extras, 0).is_none());
    }
}
