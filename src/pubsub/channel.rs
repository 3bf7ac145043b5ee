//! A channel as the hub, the workers and the publications in flight share it. It is
//! 56 bytes, so that with its reference count a user's own channel is one 64 B
//! block, name included. A `Mutex<ChannelState>` would spend 8 bytes on its lock
//! word and poison flag (the state is 8-aligned, and a mutex keeps it last); here a
//! one-byte lock sits beside the other small fields instead.

// The one-byte lock and the state it guards need unsafe: each use says why it holds.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};

use ecow::EcoString;
use parking_lot::lock_api::RawMutex as _;
use parking_lot::RawMutex;

use super::channel_ids;
use super::epoch::Epoch;
use super::history::History;

/// Dense id of a channel, so that per-connection and per-worker state stays small;
/// unique among the channels alive (`channel_ids`).
pub type ChannelId = u32;

/// A channel as the hub, the workers and the publications in flight share it. One
/// reference count, not `std`'s two: nothing holds a weak reference.
pub type ChannelRef = triomphe::Arc<Channel>;

pub struct Channel {
    pub id: ChannelId,
    /// Inline up to 15 bytes (a `user:ID` name): no block of its own.
    pub name: EcoString,
    pub epoch: Epoch,
    /// Its name matches `--presence-channels`: joins and leaves are counted.
    pub keeps_presence: bool,
    /// Guards `state` and `marks`, which are reached only through `Locked`.
    lock: RawMutex,
    marks: UnsafeCell<Marks>,
    state: UnsafeCell<ChannelState>,
}

// SAFETY: `state` and `marks` are only reached through `Locked`, which holds `lock`
// for as long as it lives; every other field is immutable.
unsafe impl Sync for Channel {}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// What changes under the channel's lock: 24 bytes.
#[derive(Debug, Default)]
pub struct ChannelState {
    pub last_seq: u64,
    pub holders: Holders,
    pub history: History,
}

/// Kept apart from `ChannelState`, whose 24 bytes they would pad to 32.
#[derive(Debug, Default, Clone, Copy)]
pub struct Marks {
    /// Listed in the hub's `watched` list: it has history to expire, or is idle.
    pub watched: bool,
    /// Gone from the name map: whoever holds a `ChannelRef` must look it up again.
    pub removed: bool,
}

impl Channel {
    /// A channel with an id no live one has (see `channel_ids`), or `None` when
    /// 2^32 - 1 are alive.
    pub fn new(name: &str, epoch: Epoch, keeps_presence: bool) -> Option<Channel> {
        Some(Channel::with_id(
            channel_ids::take()?,
            name,
            epoch,
            keeps_presence,
        ))
    }

    /// Stands for a channel that could not be made: never indexed by a worker, so
    /// it takes no id of its own.
    pub fn placeholder(name: &str) -> Channel {
        Channel::with_id(channel_ids::PLACEHOLDER, name, Epoch::default(), false)
    }

    fn with_id(id: ChannelId, name: &str, epoch: Epoch, keeps_presence: bool) -> Channel {
        Channel {
            id,
            name: name.into(),
            epoch,
            keeps_presence,
            lock: RawMutex::INIT,
            marks: UnsafeCell::default(),
            state: UnsafeCell::default(),
        }
    }

    /// Locks the channel's state (no poisoning: a panic under it stops the whole
    /// server, `main.rs`'s `stop_on_panic`).
    pub fn state(&self) -> Locked<'_> {
        self.lock.lock();
        Locked { channel: self }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.id != channel_ids::PLACEHOLDER {
            channel_ids::give_back(self.id);
        }
    }
}

/// The channel's state, locked while this lives.
pub struct Locked<'a> {
    channel: &'a Channel,
}

impl fmt::Debug for Locked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locked")
            .field("state", &**self)
            .field("marks", &self.marks())
            .finish()
    }
}

impl Locked<'_> {
    pub fn marks(&self) -> Marks {
        // SAFETY: the lock is held (see `Channel`).
        unsafe { *self.channel.marks.get() }
    }

    pub fn marks_mut(&mut self) -> &mut Marks {
        // SAFETY: the lock is held, and `&mut self` makes this the only reference.
        unsafe { &mut *self.channel.marks.get() }
    }
}

impl Deref for Locked<'_> {
    type Target = ChannelState;
    fn deref(&self) -> &ChannelState {
        // SAFETY: the lock is held (see `Channel`).
        unsafe { &*self.channel.state.get() }
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut ChannelState {
        // SAFETY: the lock is held, and `&mut self` makes this the only reference.
        unsafe { &mut *self.channel.state.get() }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard locked it in `Channel::state` and unlocks it once.
        unsafe { self.channel.lock.unlock() }
    }
}

/// Which workers hold the channel (bit i: worker i has subscribers or held polls,
/// and publishes go only there), or, when none does, since when it has had none.
/// The two are never needed at once, so they share one word; bit 63 says which.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Holders(u64);

const IDLE: u64 = 1 << 63;

/// Workers fit in the mask beside the idle bit.
pub const MAX_HOLDERS: usize = 63;

impl Holders {
    /// Some worker holds the channel.
    pub fn any(self) -> bool {
        self.0 != 0 && self.0 & IDLE == 0
    }

    pub fn has(self, worker: usize) -> bool {
        self.any() && self.0 & (1 << worker) != 0
    }

    /// Adds the workers of `mask` (bit i: worker i).
    pub fn add(&mut self, mask: u64) {
        debug_assert!(
            mask & IDLE == 0,
            "worker 63 does not fit beside the idle bit"
        );
        if mask != 0 {
            self.settled();
            self.0 |= mask;
        }
    }

    pub fn remove(&mut self, worker: usize) {
        if self.any() {
            self.0 &= !(1 << worker);
        }
    }

    /// Not idle (held, or keeping something): the idle clock starts again.
    pub fn settled(&mut self) {
        if self.0 & IDLE != 0 {
            self.0 = 0;
        }
    }

    /// With no holder: since when it has had none, `now` on first asking.
    pub fn idle_since(&mut self, now: u32) -> u32 {
        debug_assert!(!self.any(), "a held channel is not idle");
        if self.0 & IDLE == 0 {
            self.0 = IDLE | u64::from(now);
        }
        self.0 as u32
    }
}

/// A channel in the hub's set, found by its name: the name is stored once, in the
/// channel, instead of again as the key of a map.
#[derive(Debug)]
pub struct ByName(pub ChannelRef);

impl std::borrow::Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &ByName) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl std::hash::Hash for ByName {
    // As `str` hashes, so that a lookup by `&str` finds it (Borrow's contract).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self.0.name).hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_fits_jemallocs_64_byte_class() {
        // An empty history is boxed away, the epoch and a short name inline, presence
        // kept by the hub, a one-byte lock and one reference count: a user's own
        // channel is one 64 B block, name included.
        let size = std::mem::size_of::<Channel>();
        assert!(size + 8 <= 64, "{size} B plus the Arc's count");
        assert_eq!(std::mem::size_of::<ChannelState>(), 24);
        assert!("user:1234567890".len() <= EcoString::INLINE_LIMIT);
    }

    #[test]
    fn holders_name_workers_or_the_idle_clock_never_both() {
        let mut holders = Holders::default();
        assert!(!holders.any());
        assert_eq!(holders.idle_since(7), 7);
        assert_eq!(holders.idle_since(9), 7, "the clock starts once");
        holders.add(1 << 62);
        assert!(holders.any() && holders.has(62) && !holders.has(0));
        holders.add(1);
        holders.remove(62);
        assert!(holders.has(0) && !holders.has(62));
        holders.remove(0);
        assert!(!holders.any());
        assert_eq!(holders.idle_since(12), 12, "idle again from now");
        holders.settled();
        assert_eq!(holders.idle_since(20), 20, "settled restarts the clock");
        holders.remove(3);
        assert_eq!(holders.idle_since(30), 20, "removing no one keeps it idle");
        holders.add(0);
        assert_eq!(holders.idle_since(40), 20, "adding no one keeps it idle");
    }

    #[test]
    fn the_lock_excludes_and_releases() {
        let channel = ChannelRef::new(Channel::new("a", Epoch::default(), false).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let channel = ChannelRef::clone(&channel);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let mut state = channel.state();
                        let seen = state.last_seq;
                        state.last_seq = seen + 1;
                        state.marks_mut().watched = seen.is_multiple_of(2);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let state = channel.state();
        assert_eq!(state.last_seq, 40_000, "no increment lost");
        assert!(!state.marks().watched);
        drop(state);
        assert!(
            !channel.state().marks().removed,
            "unlocked again after a drop"
        );
    }
}
