//! The event loop the HTTP API and the RESP listener share: accepting up to a cap,
//! serving each keep-alive connection until its socket has nothing more to give
//! ([`Link::serve`]), serving again those whose turn was spent or whose publish is
//! held, and the once-a-second sweep of timeouts. What differs between the two
//! protocols is their [`Protocol`].

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::keepalive::{Again, Link, Phase, Served};
use crate::stats::Shared;
use crate::worker::inbox;

const LISTENER: Token = Token(usize::MAX);
const TICK: Duration = Duration::from_secs(1);

/// Connections held at once, for the API as for RESP: backends keep a few
/// keep-alive connections each, and without a bound, connections that send nothing
/// would hold descriptors the client listener needs until the idle timeout ends
/// them (RESP, which keeps idle connections as Redis does, has none).
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a listener waits on its clients.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From a request's first byte to its last (then [`Protocol::timed_out`]); also
    /// bounds an answer the client does not read and the drain after a closing one.
    pub request: Duration,
    /// A connection with nothing in flight is closed after this.
    pub idle: Option<Duration>,
}

/// What one protocol brings to the loop.
pub trait Protocol {
    /// What each connection keeps beside the shared keep-alive state.
    type State;
    /// Answers a connection past [`MAX_CONNECTIONS`] (best effort) and counts it.
    fn refuse(&mut self, stream: TcpStream);
    fn accepted(&mut self) -> Self::State;
    /// Parses and answers what is complete in the connection's input.
    fn answer(&mut self, conn: &mut Link<Self::State>, connected: usize, now: Instant);
    fn removed(&mut self, conn: &Link<Self::State>);
    /// A request still not complete past the request timeout: queue the closing
    /// answer and count it.
    fn timed_out(&mut self, conn: &mut Link<Self::State>);
    /// Once a second, after the sweep: the connections to drop.
    fn tick(&mut self, _conns: &mut Slab<Link<Self::State>>, _now: Instant) -> Vec<usize> {
        Vec::new()
    }
}

#[derive(Debug)]
pub struct Listener<P: Protocol> {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Link<P::State>>,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    /// Connections that used up their reads for a turn with bytes maybe left, or
    /// whose publish waits for a worker that is behind.
    again: Again,
    protocol: P,
}

impl<P: Protocol> Listener<P> {
    pub fn new(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        timeouts: Timeouts,
        protocol: P,
    ) -> io::Result<Listener<P>> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Listener {
            poll,
            listener,
            conns: Slab::new(),
            shared,
            timeouts,
            again: Again::default(),
            protocol,
        })
    }

    /// Serves until the process exits.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + TICK;
        loop {
            let timeout = self
                .again
                .timeout(next_sweep.saturating_duration_since(Instant::now()));
            crate::reactor::wait(&mut self.poll, &mut events, Some(timeout))?;
            let now = Instant::now();
            // This turn's publications reach each worker with one wake. Not with
            // --broker: publishing then waits on Redis, and wakes must not wait.
            let held = self.shared.broker.get().is_none().then(inbox::hold_wakes);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    Token(key) => self.serve_or_drop(key, now, !event.is_read_closed()),
                }
            }
            for key in self.again.take() {
                self.serve_or_drop(key, now, false);
            }
            drop(held);
            if now >= next_sweep {
                self.sweep(now);
                for key in self.protocol.tick(&mut self.conns, now) {
                    self.remove(key);
                }
                next_sweep = now + TICK;
            }
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) if self.conns.len() >= MAX_CONNECTIONS => {
                    self.protocol.refuse(stream)
                }
                Ok((mut stream, _)) => {
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_ok()
                    {
                        entry.insert(Link::new(stream, self.protocol.accepted(), now));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    return
                }
                Err(_) => continue,
            }
        }
    }

    /// `short_reads_drain`: see [`Link::serve`].
    fn serve_or_drop(&mut self, key: usize, now: Instant, short_reads_drain: bool) {
        let connected = self.conns.len();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let protocol = &mut self.protocol;
        let served = conn.serve(now, short_reads_drain, |conn| {
            protocol.answer(conn, connected, now)
        });
        self.again.note(key, served);
        if served == Served::Drop {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: usize) {
        let conn = self.conns.remove(key);
        self.protocol.removed(&conn);
    }

    /// Once a second: a request that is taking too long is refused, and the end of
    /// idle connections, of unread answers and of drains.
    fn sweep(&mut self, now: Instant) {
        let timeouts = self.timeouts;
        let mut expired = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let quiet = now.saturating_duration_since(conn.last_active);
            let pending = now.saturating_duration_since(conn.request_began);
            let unread = !conn.output.is_empty() && quiet > timeouts.request;
            let drained = conn.phase == Phase::Draining && pending > timeouts.request;
            if unread || drained {
                expired.push(key);
            } else if conn.phase == Phase::Open
                && !conn.input.is_empty()
                && conn.output.is_empty()
                && pending > timeouts.request
            {
                self.protocol.timed_out(conn);
                conn.input.clear();
                conn.phase = Phase::Closing;
                if !conn.flush(now) {
                    expired.push(key);
                } else if conn.output.is_empty() {
                    conn.start_draining(now);
                }
            } else if conn.phase != Phase::Streaming
                && conn.input.is_empty()
                && conn.output.is_empty()
                && timeouts.idle.is_some_and(|idle| quiet > idle)
            {
                expired.push(key);
            }
        }
        for key in expired {
            self.remove(key);
        }
    }
}
