//! A worker's inbox: new connections from the accept thread, publications from the
//! hub, and the shutdown order. A waker interrupts the worker's poll.
//!
//! A publishing thread (the API, RESP) may hold its wakes for one turn of its loop
//! ([`hold_wakes`]): the mail is queued at once, but each worker it went to is woken
//! once when the turn ends, so a turn's publications reach a worker as one batch
//! instead of waking it again whenever it has just emptied its queue.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};

use mio::net::TcpStream;
use mio::Waker;

use crate::admission::Admission;
use crate::pubsub::hub::ChannelRef;
use crate::pubsub::publication::{Outlet, Publication};

#[derive(Debug)]
pub enum Mail {
    /// An accepted socket and whether it was admitted (else it is answered 503).
    Connection {
        stream: TcpStream,
        admission: Admission,
    },
    Publication(Publication),
    /// The broker synced a channel this worker waited on: retry the joins.
    Ready(ChannelRef),
    /// The broker's answer to a connection's `publish` command.
    Published {
        key: usize,
        answer: String,
    },
    /// Close every client connection (history stays): `POST /api/drop-connections`.
    DropConnections,
    Shutdown,
}

#[derive(Debug)]
pub struct Inbox {
    queue: Mutex<Vec<Mail>>,
    waker: Arc<Waker>,
}

thread_local! {
    /// Whether this thread holds its wakes, and the workers it owes one.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
    static OWED: RefCell<Vec<Arc<Waker>>> = const { RefCell::new(Vec::new()) };
}

/// Holds this thread's wakes until the guard drops, which wakes each worker that
/// got mail meanwhile, once. The thread must not block while holding them.
pub fn hold_wakes() -> HeldWakes {
    HOLDING.with(|h| h.set(true));
    HeldWakes(())
}

#[derive(Debug)]
#[must_use = "the wakes are sent when the guard drops"]
pub struct HeldWakes(());

impl Drop for HeldWakes {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
        OWED.with(|owed| {
            for waker in owed.borrow_mut().drain(..) {
                let _ = waker.wake();
            }
        });
    }
}

/// Wakes now, or owes the wake while this thread holds them (once per worker).
fn wake(waker: &Arc<Waker>) {
    if !HOLDING.with(Cell::get) {
        // A failed wake means the worker's poll is gone, i.e. it is shutting down.
        let _ = waker.wake();
        return;
    }
    OWED.with(|owed| {
        let mut owed = owed.borrow_mut();
        if !owed.iter().any(|w| Arc::ptr_eq(w, waker)) {
            owed.push(Arc::clone(waker));
        }
    });
}

impl Inbox {
    pub fn new(waker: Waker) -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            waker: Arc::new(waker),
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
            wake(&self.waker);
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

    fn ready(&self, channel: ChannelRef) {
        self.push(Mail::Ready(channel));
    }

    fn published(&self, key: usize, answer: String) {
        self.push(Mail::Published { key, answer });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    fn woken(poll: &mut Poll, events: &mut Events) -> usize {
        poll.poll(events, Some(Duration::ZERO)).expect("poll");
        events.iter().count()
    }

    #[test]
    fn held_wakes_wake_each_worker_once_when_the_turn_ends() {
        let mut poll = Poll::new().expect("poll");
        let waker = Waker::new(poll.registry(), Token(7)).expect("waker");
        let inbox = Inbox::new(waker);
        let mut events = Events::with_capacity(8);
        let mut mail = Vec::new();
        {
            let _held = hold_wakes();
            inbox.push(Mail::DropConnections);
            inbox.drain_into(&mut mail); // the worker emptied it: the next push owes a wake
            assert_eq!(mail.len(), 1);
            mail.clear();
            inbox.push(Mail::DropConnections);
            assert_eq!(woken(&mut poll, &mut events), 0, "no wake while held");
        }
        assert_eq!(
            woken(&mut poll, &mut events),
            1,
            "one wake when the turn ends"
        );
        // Not held: a push to an empty inbox wakes at once.
        inbox.drain_into(&mut mail);
        assert_eq!(mail.len(), 1);
        mail.clear();
        inbox.push(Mail::DropConnections);
        assert_eq!(woken(&mut poll, &mut events), 1);
    }
}
