//! A worker's inbox: new connections from the accept thread, publications from the
//! hub, and the shutdown order. A waker interrupts the worker's poll.

use std::sync::Mutex;

use mio::net::TcpStream;
use mio::Waker;

use crate::admission::Admission;
use crate::pubsub::publication::{Outlet, Publication};

#[derive(Debug)]
pub enum Mail {
    /// An accepted socket and whether it was admitted (else it is answered 503).
    Connection {
        stream: TcpStream,
        admission: Admission,
    },
    Publication(Publication),
    /// Close every client connection (history stays): `POST /api/drop-connections`.
    DropConnections,
    Shutdown,
}

#[derive(Debug)]
pub struct Inbox {
    queue: Mutex<Vec<Mail>>,
    waker: Waker,
}

impl Inbox {
    pub fn new(waker: Waker) -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            waker,
        }
    }

    /// Queues the mail and wakes the worker, unless mail was already waiting (the
    /// worker drains everything at once, so one wake per batch is enough).
    pub fn push(&self, mail: Mail) {
        let was_empty = {
            let mut queue = self.queue.lock().expect("inbox lock");
            queue.push(mail);
            queue.len() == 1
        };
        if was_empty {
            // A failed wake means the worker's poll is gone, i.e. it is shutting down.
            let _ = self.waker.wake();
        }
    }

    /// Moves every waiting mail into `into` (which should be empty), keeping both
    /// allocations for reuse.
    pub fn drain_into(&self, into: &mut Vec<Mail>) {
        std::mem::swap(&mut *self.queue.lock().expect("inbox lock"), into);
    }
}

impl Outlet for Inbox {
    fn deliver(&self, publication: Publication) {
        self.push(Mail::Publication(publication));
    }
}
