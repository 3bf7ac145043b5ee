//! What the HTTP API and the RESP listener share: a backend's keep-alive
//! connection with its own bounded buffers, and the loop that answers, writes and
//! reads it until its socket has nothing more to give. Each protocol brings its
//! answering (parse what is complete, queue the answers) and its own sweep.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

/// One read. Backends are few, so each connection may own buffers.
pub const READ_CHUNK: usize = 16 * 1024;
/// Answers queued for a client that does not read them: past this the connection
/// is neither read nor parsed until the socket takes them (its writable event).
pub const OUTPUT_HIGH: usize = 256 * 1024;
/// Reads one connection gets per turn before the others are served; it is resumed
/// after them, as its socket may hold bytes no new edge will announce.
pub const READS_PER_TURN: usize = 64;
/// How often a connection held by a worker that is behind tries again.
pub const HELD_RETRY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// The last answer is queued; shut down writing once it is out.
    Closing,
    /// Writing is shut down; what the client still sends is read and dropped, so the
    /// answer is not lost to a reset (the 413 of an unread body).
    Draining,
    /// The API's `GET /api/stats/stream`: held until the client goes, written once a
    /// second; what the client sends is read and dropped.
    Streaming,
}

/// A connection and what its protocol keeps beside it (`state`).
#[derive(Debug)]
pub struct Link<S> {
    pub stream: TcpStream,
    pub input: Vec<u8>,
    /// The parser needs `input` to hold this many bytes before it can say more.
    pub wants: usize,
    pub output: Vec<u8>,
    pub phase: Phase,
    /// The client shut down its side: answer what is complete, then close.
    pub peer_closed: bool,
    /// When the server began waiting for the request in `input` (its first byte, or
    /// the end of the answers before it), or when draining began.
    pub request_began: Instant,
    /// The last byte read or written.
    pub last_active: Instant,
    /// Its next request is a publish that waits for a worker that is behind; set
    /// and cleared by the protocol's answering.
    pub held: bool,
    pub state: S,
}

/// What [`Link::serve`] leaves the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Wait for the next event.
    Keep,
    /// The turn's reads are used up with bytes maybe left: serve it again after the
    /// others.
    Resume,
    /// A publish waits for a worker that is behind: serve it again in
    /// [`HELD_RETRY`], with nothing more read meanwhile.
    Held,
    Drop,
}

/// The connections a loop serves again without a new event: those whose turn was
/// spent, at once, and those held, after [`HELD_RETRY`].
#[derive(Debug, Default)]
pub struct Again {
    resume: Vec<usize>,
    held: Vec<usize>,
}

impl Again {
    pub fn note(&mut self, key: usize, served: Served) {
        match served {
            Served::Resume => self.resume.push(key),
            // Once: an event may serve a held connection before its retry does.
            Served::Held if !self.held.contains(&key) => self.held.push(key),
            Served::Held | Served::Keep | Served::Drop => {}
        }
    }

    /// How long the loop may wait for events, at most `until_sweep`.
    pub fn timeout(&self, until_sweep: Duration) -> Duration {
        if !self.resume.is_empty() {
            Duration::ZERO
        } else if !self.held.is_empty() {
            until_sweep.min(HELD_RETRY)
        } else {
            until_sweep
        }
    }

    /// The connections to serve again now (held ones each time: they check again).
    /// The held ones in turn: the first served may publish until the workers are
    /// behind again, so the first place goes round, or one publisher would starve
    /// the others.
    pub fn take(&mut self) -> Vec<usize> {
        let mut keys = std::mem::take(&mut self.resume);
        if !self.held.is_empty() {
            self.held.rotate_left(1);
        }
        keys.append(&mut self.held);
        keys
    }
}

impl<S> Link<S> {
    pub fn new(stream: TcpStream, state: S, now: Instant) -> Link<S> {
        Link {
            stream,
            input: Vec::new(),
            wants: 1,
            output: Vec::new(),
            phase: Phase::Open,
            peer_closed: false,
            request_began: now,
            last_active: now,
            held: false,
            state,
        }
    }

    /// Answers what is complete (`answer`), writes, reads, until the socket has
    /// nothing more to give, the client stops taking answers, or the turn's reads
    /// are used up. It never stops reading with bytes unread and nothing to resume
    /// it: a writable edge follows a partial write, and `Resume` a spent turn.
    /// `short_reads_drain`: a read shorter than the chunk emptied the socket and a
    /// new edge announces more, so the read that would say `WouldBlock` is skipped;
    /// not when the event also said the peer closed (its EOF must be read).
    pub fn serve(
        &mut self,
        now: Instant,
        short_reads_drain: bool,
        mut answer: impl FnMut(&mut Link<S>),
    ) -> Served {
        let mut chunk = [0u8; READ_CHUNK];
        let mut drained = false;
        for _ in 0..READS_PER_TURN {
            answer(self);
            if !self.flush(now) {
                return Served::Drop;
            }
            if self.held {
                return Served::Held; // what is unread waits too: the client is paced
            }
            if self.output.len() >= OUTPUT_HIGH {
                return Served::Keep; // the socket is full: its writable edge brings us back
            }
            if self.phase == Phase::Closing && self.output.is_empty() {
                self.start_draining(now);
            }
            if self.phase == Phase::Open && self.input.len() >= self.wants {
                continue; // answers stopped at the bound, which the flush has freed
            }
            if self.peer_closed {
                // Nothing more will come: close once the answers are out.
                return if self.output.is_empty() {
                    Served::Drop
                } else {
                    Served::Keep
                };
            }
            if drained {
                return Served::Keep;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => self.peer_closed = true,
                Ok(n) => {
                    drained = short_reads_drain && n < READ_CHUNK;
                    self.last_active = now;
                    if self.phase == Phase::Open {
                        if self.input.is_empty() {
                            self.request_began = now;
                        }
                        self.input.extend_from_slice(&chunk[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Served::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Served::Drop,
            }
        }
        Served::Resume
    }

    /// Writes what the socket takes; the rest waits for the next writable event.
    /// Returns false when the connection is dead.
    pub fn flush(&mut self, now: Instant) -> bool {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(n) => {
                    self.output.drain(..n);
                    self.last_active = now;
                    if self.output.is_empty() {
                        // The server waits on the client again from now on.
                        self.request_began = now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        // A burst of answers must not keep its buffer for the life of the connection.
        if self.output.capacity() > OUTPUT_HIGH {
            self.output = Vec::new();
        }
        true
    }

    /// Shuts down writing once the closing answer is out; what the client still
    /// sends is read and dropped, for at most the request timeout from now.
    pub fn start_draining(&mut self, now: Instant) {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.phase = Phase::Draining;
        self.request_began = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Answers each complete line with "pong", counting them in the state.
    fn pong(link: &mut Link<u32>) {
        while let Some(end) = link.input.iter().position(|&b| b == b'\n') {
            link.input.drain(..=end);
            link.output.extend_from_slice(b"pong\n");
            link.state += 1;
        }
    }

    /// A loopback client and the server's end of it, non-blocking as the API's are.
    fn socket_pair() -> (std::net::TcpStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        (client, TcpStream::from_std(server))
    }

    #[test]
    fn pipelined_requests_then_the_peers_close_are_answered_then_dropped() {
        let (mut client, server) = socket_pair();
        client.write_all(b"ping\nping\n").expect("write");
        client.shutdown(Shutdown::Write).expect("shutdown");
        let now = Instant::now();
        let mut link = Link::new(server, 0u32, now);
        // Bounded: the bytes and the FIN are on loopback, but may not be there yet.
        let mut served = Served::Keep;
        for _ in 0..2000 {
            served = link.serve(now, false, pong);
            if served == Served::Drop {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(served, Served::Drop, "dropped once the answers are out");
        assert!(link.peer_closed);
        assert_eq!(link.state, 2);
        drop(link);
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answers = String::new();
        client.read_to_string(&mut answers).expect("read");
        assert_eq!(answers, "pong\npong\n");
    }

    #[test]
    fn a_held_connection_is_served_again_once_per_retry_after_a_short_wait() {
        let mut again = Again::default();
        let sweep = Duration::from_millis(900);
        assert_eq!(again.timeout(sweep), sweep, "nothing to serve again");
        again.note(3, Served::Held);
        again.note(3, Served::Held); // an event served it before its retry did
        again.note(4, Served::Keep);
        assert_eq!(again.timeout(sweep), HELD_RETRY);
        again.note(5, Served::Resume);
        assert_eq!(
            again.timeout(sweep),
            Duration::ZERO,
            "a spent turn goes on at once"
        );
        assert_eq!(again.take(), vec![5, 3]);
        assert_eq!(again.timeout(sweep), sweep);
        for key in [1, 2, 3] {
            again.note(key, Served::Held);
        }
        let first = again.take();
        for &key in &first {
            again.note(key, Served::Held); // held again, noted in the order served
        }
        let second = again.take();
        assert_eq!((first[0], second[0]), (2, 3), "the first place goes round");
        assert_eq!(second, vec![3, 1, 2]);
    }

    #[test]
    fn a_held_request_stays_unread_until_the_answering_lets_it_through() {
        let (mut client, server) = socket_pair();
        let now = Instant::now();
        let mut link = Link::new(server, 0u32, now);
        // Bounded: the bytes are on loopback, but may not be there yet.
        client.write_all(b"ping\n").expect("write");
        for _ in 0..2000 {
            link.serve(now, false, pong);
            if link.state == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(link.state, 1);
        client.write_all(b"ping\nping\n").expect("write");
        std::thread::sleep(Duration::from_millis(20));
        let hold = |link: &mut Link<u32>| link.held = true;
        assert_eq!(link.serve(now, false, hold), Served::Held);
        assert!(link.input.is_empty(), "nothing read while held");
        link.held = false;
        assert_eq!(link.serve(now, false, pong), Served::Keep);
        assert_eq!(link.state, 3, "both answered once let through");
    }
}
