//! The accept thread: owns the client listener, admits or refuses each new socket
//! and hands it to a worker, round robin.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::admission::{self, Admission};
use crate::stats::Shared;
use crate::worker::inbox::{Inbox, Mail};

const LISTENER: Token = Token(0);
pub const STOP: Token = Token(1);

/// A non-blocking listener with SO_REUSEADDR, TCP_NODELAY and the given backlog.
/// Linux copies TCP_NODELAY to every accepted socket, which saves a system call per
/// connection: pushes must not wait behind Nagle's algorithm.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

#[derive(Debug)]
pub struct Acceptor {
    poll: Poll,
    listener: TcpListener,
    inboxes: Vec<Arc<Inbox>>,
    shared: Arc<Shared>,
    max_connections: usize,
    /// 0 = no limit per source address.
    max_per_address: u32,
    next_worker: usize,
    /// A descriptor held in reserve: when the process runs out, it is released to
    /// accept and close the waiting connection instead of spinning on EMFILE.
    spare_fd: Option<File>,
}

impl Acceptor {
    /// Returns the acceptor and the waker that stops it.
    pub fn new(
        listener: std::net::TcpListener,
        inboxes: Vec<Arc<Inbox>>,
        shared: Arc<Shared>,
        max_connections: usize,
        max_per_address: u32,
    ) -> io::Result<(Acceptor, Waker)> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let stop = Waker::new(poll.registry(), STOP)?;
        let spare_fd = File::open("/dev/null").ok();
        Ok((
            Acceptor {
                poll,
                listener,
                inboxes,
                shared,
                max_connections,
                max_per_address,
                next_worker: 0,
                spare_fd,
            },
            stop,
        ))
    }

    /// Accepts until the stop waker fires; the listener closes when this returns.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        loop {
            crate::reactor::wait(&mut self.poll, &mut events, None)?;
            for event in events.iter() {
                match event.token() {
                    STOP => return Ok(()),
                    _ => self.accept_all(),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let admission = self.admit(peer);
                    self.inboxes[self.next_worker].push(Mail::Connection { stream, admission });
                    self.next_worker = (self.next_worker + 1) % self.inboxes.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    if !self.shed_one() {
                        return;
                    }
                }
                // The peer gave up before we accepted, or a signal: try the next one.
                Err(_) => continue,
            }
        }
    }

    /// Counts the socket against `--max-connections`, then against its address's
    /// share when `--max-connections-per-ip` is set.
    fn admit(&self, peer: SocketAddr) -> Admission {
        let open = &self.shared.open_connections;
        if open.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            open.fetch_sub(1, Ordering::Relaxed);
            return Admission::Full;
        }
        if self.max_per_address == 0 {
            return Admission::Admitted { peer: None };
        }
        let address = admission::counted_as(peer.ip());
        if !self
            .shared
            .per_address
            .try_add(address, self.max_per_address)
        {
            open.fetch_sub(1, Ordering::Relaxed);
            return Admission::AddressFull;
        }
        Admission::Admitted {
            peer: Some(address),
        }
    }

    /// Out of descriptors: free the spare, accept one connection and close it at
    /// once, so the backlog drains instead of waking us forever.
    fn shed_one(&mut self) -> bool {
        if self.spare_fd.take().is_none() {
            return false;
        }
        let shed = self.listener.accept().is_ok();
        if shed {
            self.shared.emfile_drops.fetch_add(1, Ordering::Relaxed);
        }
        self.spare_fd = File::open("/dev/null").ok();
        shed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_tcp_nodelay_from_the_listener() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        listener.set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
