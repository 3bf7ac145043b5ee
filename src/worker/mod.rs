//! A worker reactor: one thread, one `mio::Poll`, one slab of connections that no
//! other thread ever touches. Everything reaches it through its inbox.

mod commands;
pub mod connection;
mod fanout;
pub mod inbox;
mod input;
mod lifecycle;
mod rate;
mod side;
mod stall;
mod streams;
pub mod subscriptions;
mod tokens;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Events, Poll, Token};

use crate::config::Config;
use crate::paged::PagedSlab;
use crate::proto::deflate::{Deflater, Inflater};
use crate::pubsub::hub::Hub;
use crate::pubsub::publication::Publication;
use crate::pubsub::topics::Topics;
use crate::stats::{Shared, WorkerCounters, WorkerStats};
use connection::{Busy, Connection, Extras};
use inbox::{Inbox, Mail};

pub const WAKER: Token = Token(usize::MAX);
/// A per-turn list keeps its allocation for the next turn, unless a burst left it
/// larger than this: then it is given back, so one burst does not keep its peak.
const KEPT_CAPACITY: usize = 256;
/// One read buffer per worker, shared by all its connections.
const SCRATCH_BYTES: usize = 64 * 1024;
/// How long a closing connection may take to answer our close or FIN.
const CLOSE_TIMEOUT_S: u32 = 5;

#[derive(Debug)]
pub struct Worker {
    id: usize,
    poll: Poll,
    inbox: Arc<Inbox>,
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    settings: Config,
    /// Fixed pages, a vacant entry in the slot's own niche: 32 B per connection.
    conns: PagedSlab<Connection>,
    /// What only some connections need; see `side.rs`.
    sides: PagedSlab<side::Side>,
    /// The buffers of busy connections, by slab key (`connection::Extras`).
    extras: Extras,
    topics: Topics,
    /// Connections waiting for the broker (`stall.rs`).
    stalls: stall::Stalls,
    scratch: Vec<u8>,
    mail: Vec<Mail>,
    /// Publications to send: this turn's mail, after what earlier turns carried over.
    publications: Vec<Publication>,
    /// Connections to remove at the end of this turn.
    doomed: Vec<usize>,
    /// Held polls that fan-out answered this turn, with their answer.
    answered_polls: Vec<(usize, Bytes)>,
    /// Connections whose socket still holds data after their share of a turn.
    unfinished_reads: Vec<usize>,
    resumed_reads: Vec<usize>,
    counters: WorkerCounters,
    started: Instant,
    /// Seconds since `started`, read once per turn.
    now: u32,
    next_sweep: u32,
    shutdown_deadline: Option<Instant>,
    /// permessage-deflate's codec, one for every connection: no context is kept
    /// between messages, so none is kept per connection.
    deflater: Deflater,
    inflater: Inflater,
}

impl Worker {
    pub fn new(
        id: usize,
        poll: Poll,
        inbox: Arc<Inbox>,
        shared: Arc<Shared>,
        settings: Config,
    ) -> Worker {
        Worker {
            id,
            poll,
            inbox,
            hub: Arc::clone(&shared.hub),
            stats: Arc::clone(&shared.workers[id]),
            shared,
            settings,
            conns: PagedSlab::default(),
            sides: PagedSlab::default(),
            extras: Extras::default(),
            topics: Topics::default(),
            stalls: stall::Stalls::default(),
            scratch: vec![0; SCRATCH_BYTES],
            mail: Vec::new(),
            publications: Vec::new(),
            doomed: Vec::new(),
            answered_polls: Vec::new(),
            unfinished_reads: Vec::new(),
            resumed_reads: Vec::new(),
            counters: WorkerCounters::default(),
            started: Instant::now(),
            now: 0,
            next_sweep: 1,
            shutdown_deadline: None,
            deflater: Deflater::default(),
            inflater: Inflater::default(),
        }
    }

    /// The event loop. Returns when shutdown is complete.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if !self.unfinished_reads.is_empty() || !self.publications.is_empty() {
                Duration::ZERO
            } else if self.shutdown_deadline.is_some() {
                Duration::from_millis(50)
            } else {
                self.until_next_sweep()
            };
            crate::reactor::wait(&mut self.poll, &mut events, Some(timeout))?;
            self.now = self.started.elapsed().as_secs() as u32;
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                self.counters.events += 1;
                let key = event.token().0;
                if event.is_writable() {
                    self.on_writable(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(key);
                }
            }
            self.resume_reads();
            self.read_inbox();
            self.fan_out();
            self.resume_answered_polls();
            if self.now >= self.next_sweep {
                self.next_sweep = self.now + 1;
                self.sweep();
            }
            self.bury_doomed();
            self.counters.buffered = self.extras.len() as u64;
            self.stats.store(&self.counters);
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    return Ok(());
                }
            }
        }
    }

    fn until_next_sweep(&self) -> Duration {
        let next = Duration::from_secs(u64::from(self.next_sweep));
        next.saturating_sub(self.started.elapsed())
            .max(Duration::from_millis(1))
    }

    fn read_inbox(&mut self) {
        let mut mail = std::mem::take(&mut self.mail);
        self.inbox.drain_into(&mut mail);
        for item in mail.drain(..) {
            match item {
                Mail::Connection { stream, admission } => self.adopt(stream, admission),
                Mail::Publication(publication) => self.publications.push(publication),
                Mail::Ready(channel) => self.on_ready(&channel),
                Mail::Published { key, answer } => self.on_published(key, answer),
                Mail::DropConnections => self.drop_connections(),
                Mail::Shutdown => self.begin_shutdown(),
            }
        }
        recycle(&mut mail);
        self.mail = mail;
    }

    /// Sends `data` to connection `key`; a dead socket is queued for removal, and
    /// one owed more than `--max-queued-bytes` is closed.
    fn send(&mut self, key: usize, data: Bytes) {
        self.send_final(key, data);
        // Closing and draining connections get nothing more; doomed ones go anyway.
        let over = self.conns.get(key).is_some_and(|c| {
            let ending = matches!(
                c.phase,
                connection::Phase::Closing | connection::Phase::Draining
            );
            !ending
                && !c.flags.has(connection::Flags::DOOMED)
                && c.owes_more_than(&self.extras, key, self.settings.max_queued_bytes)
        });
        if over {
            self.close_slow_consumer(key);
        }
    }

    /// Sends the last bytes a connection gets (a close frame, a final answer): not
    /// checked against the cap, since nothing can queue behind them.
    fn send_final(&mut self, key: usize, data: Bytes) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut busy = Busy {
            conn,
            extras: &mut self.extras,
            key,
        };
        if busy.send(data, self.poll.registry()).is_err() {
            self.doom(key);
        }
    }

    /// Connection `key` with the worker's `Extras`, for what touches its buffers.
    fn busy(&mut self, key: usize) -> Option<Busy<'_>> {
        let conn = self.conns.get_mut(key)?;
        Some(Busy {
            conn,
            extras: &mut self.extras,
            key,
        })
    }

    fn on_writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut busy = Busy {
            conn,
            extras: &mut self.extras,
            key,
        };
        if busy.flush(self.poll.registry()).is_err() {
            self.doom(key);
            return;
        }
        self.settle(key);
    }

    /// Runs the actions promised for when the outbox drains.
    fn settle(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.settle(&self.extras, key) == connection::Settled::Drop {
                self.doom(key);
            }
        }
    }

    fn doom(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.flags.has(connection::Flags::DOOMED) {
                conn.flags.set(connection::Flags::DOOMED);
                self.doomed.push(key);
            }
        }
    }

    fn is_live(&self, key: usize) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| !c.flags.has(connection::Flags::DOOMED))
    }
}

/// Empties a per-turn list for reuse, freeing what a burst made it grow to.
fn recycle<T>(list: &mut Vec<T>) {
    list.clear();
    if list.capacity() > KEPT_CAPACITY {
        list.shrink_to(KEPT_CAPACITY / 16);
    }
}
