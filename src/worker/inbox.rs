//! A worker's inbox: new connections from the accept thread, publications from the
//! hub, and the shutdown order. A waker interrupts the worker's poll.
//!
//! A publishing thread (the API, RESP) may hold its wakes for one turn of its loop
//! ([`hold_wakes`]): the mail is queued at once, but each worker it went to is woken
//! once when the turn ends, so a turn's publications reach a worker as one batch
//! instead of waking it again whenever it has just emptied its queue.
//!
//! The publications waiting for the worker (queued here, or taken but not yet sent:
//! a turn sends at most 64 KiB of any one channel) are weighed, payload bytes plus a
//! fixed overhead. Past `behind_bytes` the worker is behind, and the API and RESP
//! threads hold their next publish until it has sent enough: what waits stays
//! bounded instead of growing with the publishers' lead, and subscribers that keep
//! up are not shed for the server's own backlog.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The weight of the publications pushed and not yet sent (`sent`).
    queued_bytes: AtomicUsize,
    behind_bytes: usize,
}

/// What a waiting publication weighs beyond its payload: the mail, the reference
/// to the channel, and the frame header and envelope it will be sent in.
const MAIL_OVERHEAD: usize = 64;

/// What `publication` counts for while it waits.
pub fn weight(publication: &Publication) -> usize {
    publication.payload.len() + MAIL_OVERHEAD
}

/// The weight past which a worker is behind: the connection cap
/// (`max_queued_bytes`), at most 16 MiB. A turn writes at most 64 KiB of a channel
/// to a subscriber whatever waits, so this bounds memory, not what a connection is
/// owed; a smaller bound cost throughput where a backlog lets a turn send a channel
/// several messages in one write (docs/benchmarks.md, "Publishers wait").
pub fn behind_bytes(max_queued_bytes: usize) -> usize {
    max_queued_bytes.clamp(64 << 10, 16 << 20)
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
    pub fn new(waker: Waker, behind_bytes: usize) -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            waker: Arc::new(waker),
            queued_bytes: AtomicUsize::new(0),
            behind_bytes,
        }
    }

    /// Queues the mail and wakes the worker, unless mail was already waiting (the
    /// worker drains everything at once, so one wake per batch is enough).
    pub fn push(&self, mail: Mail) {
        let weight = match &mail {
            Mail::Publication(publication) => weight(publication),
            _ => 0,
        };
        let was_empty = {
            self.queued_bytes.fetch_add(weight, Ordering::Relaxed);
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

    /// The worker sent (or dropped) publications of this much weight.
    pub fn sent(&self, weight: usize) {
        // Saturating: an error here must not leave publishers held for good.
        let _ = self
            .queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(weight))
            });
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

    fn behind(&self) -> bool {
        self.queued_bytes.load(Ordering::Relaxed) >= self.behind_bytes
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
        let inbox = Inbox::new(waker, 1 << 20);
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

    #[test]
    fn a_worker_is_behind_past_its_weight_of_publications_until_it_sends_them() {
        use crate::pubsub::channel::ChannelRef;
        let poll = Poll::new().expect("poll");
        let waker = Waker::new(poll.registry(), Token(7)).expect("waker");
        let inbox = Inbox::new(waker, 4 * (1000 + MAIL_OVERHEAD));
        let channel = ChannelRef::create("a", Default::default(), false).unwrap();
        let publication = |seq| {
            Mail::Publication(Publication {
                channel: ChannelRef::clone(&channel),
                seq,
                payload: bytes::Bytes::from(vec![b'x'; 1000]),
            })
        };
        for seq in 1..=3 {
            inbox.push(publication(seq));
            inbox.push(Mail::DropConnections); // weighs nothing
        }
        assert!(!inbox.behind(), "three of four");
        inbox.push(publication(4));
        assert!(inbox.behind());
        let mut mail = Vec::new();
        inbox.drain_into(&mut mail);
        assert_eq!(mail.len(), 7);
        assert!(inbox.behind(), "taken, not yet sent");
        inbox.sent(1000 + MAIL_OVERHEAD);
        assert!(!inbox.behind(), "one sent");
        inbox.push(publication(5));
        assert!(inbox.behind(), "and one more waits");
        inbox.sent(10 << 20);
        assert!(!inbox.behind(), "never below nothing");
        inbox.push(publication(6));
        assert!(!inbox.behind());
    }

    #[test]
    fn the_bound_is_the_connection_cap_within_limits() {
        assert_eq!(behind_bytes(4 << 20), 4 << 20);
        assert_eq!(behind_bytes(1000), 64 << 10);
        assert_eq!(behind_bytes(1 << 30), 16 << 20);
    }
}
