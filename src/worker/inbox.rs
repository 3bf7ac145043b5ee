//! A worker's inbox: new connections from the accept thread, publications from the
//! hub, and the shutdown order. A waker interrupts the worker's poll, and only
//! when it is about to block in it: a busy worker finds the mail at the end of its
//! turn, so a publisher pays no wake-up (a write to an eventfd) per message.

use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The worker is blocked in its poll (or about to be): a push must wake it.
    sleeping: AtomicBool,
}

impl Inbox {
    pub fn new(waker: Waker) -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            waker,
            sleeping: AtomicBool::new(false),
        }
    }

    /// Queues the mail and wakes the worker if it sleeps (once: the first push
    /// clears the flag, and the worker drains everything at once).
    pub fn push(&self, mail: Mail) {
        self.queue.lock().expect("inbox lock").push(mail);
        // SeqCst pairs with `about_to_sleep`: either the worker's look at the queue
        // sees this mail, or this load sees its flag.
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            // A failed wake means the worker's poll is gone, i.e. it is shutting down.
            let _ = self.waker.wake();
        }
    }

    /// The worker is about to block in its poll: from now on a push wakes it.
    /// Returns false (and stays awake) when mail is already waiting.
    pub fn about_to_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.queue.lock().expect("inbox lock").is_empty() {
            return true;
        }
        self.sleeping.store(false, Ordering::SeqCst);
        false
    }

    /// The worker's poll returned: pushes need not wake it until it sleeps again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
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
