//! A channel as the hub, the workers and the publications in flight share it: 48
//! bytes with its reference count, name and epoch, so that a user's own channel is
//! one block of jemalloc's 48 B class. A `Mutex` would spend 8 bytes on its lock
//! word and poison flag, and `Arc` 16 on its counts; here a one-byte lock, a 4-byte
//! count and the small fields share the first 16 bytes.

// The one-byte lock and the state it guards need unsafe: each use says why it holds.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use ecow::EcoString;
use parking_lot::lock_api::RawMutex as _;
use parking_lot::RawMutex;

use super::channel_ids;
use super::epoch::Epoch;
use super::sequence::Sequence;

pub use super::channel_ref::{ChannelRef, HeldRef};

/// Dense id of a channel, so that per-connection and per-worker state stays small;
/// unique among the channels alive (`channel_ids`).
pub type ChannelId = u32;

/// Laid out by hand (`repr(C)`): the fields before `name` fill its first 16 bytes.
#[repr(C)]
pub struct Channel {
    /// `ChannelRef`'s count: one, not `std`'s two, since nothing holds a weak
    /// reference.
    pub(super) refs: AtomicU32,
    pub id: ChannelId,
    /// Guards `holders`, `sequence` and the lock-held bits of `flags`.
    lock: RawMutex,
    /// `KEEPS_PRESENCE`, set once, read any time; `WATCHED` and `REMOVED`, written
    /// under the lock. Atomic so that the two kinds can share the byte.
    flags: AtomicU8,
    holders: UnsafeCell<PackedHolders>,
    /// Inline up to 15 bytes (a `user:ID` name): no block of its own.
    pub name: EcoString,
    pub epoch: Epoch,
    sequence: UnsafeCell<Sequence>,
}

/// Its name matches `--presence-channels`: joins and leaves are counted.
const KEEPS_PRESENCE: u8 = 1;
/// Listed in the hub's `watched` list: it has history to expire, or is idle.
const WATCHED: u8 = 2;
/// Gone from the name map: whoever holds a `ChannelRef` must look it up again.
const REMOVED: u8 = 4;

// SAFETY: `holders` and `sequence` are only reached through `Locked`, which holds
// `lock` for as long as it lives; `refs` and `flags` are atomic; every other field
// is immutable.
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

/// What the hub marks on a channel under its lock.
#[derive(Debug, Default, Clone, Copy)]
pub struct Marks {
    /// Listed in the hub's `watched` list: it has history to expire, or is idle.
    pub watched: bool,
    /// Gone from the name map: whoever holds a `ChannelRef` must look it up again.
    pub removed: bool,
}

impl Channel {
    /// A channel with an id no live one has (see `channel_ids`), or `None` when
    /// 2^32 - 1 are alive. Only `ChannelRef::create` makes one: it puts it in the
    /// slot of its id, from which the last reference gives the id back.
    pub(super) fn new(name: &str, epoch: Epoch, keeps_presence: bool) -> Option<Channel> {
        Some(Channel::with_id(
            channel_ids::take()?,
            name,
            epoch,
            keeps_presence,
        ))
    }

    /// Stands for a channel that could not be made: never indexed by a worker, so
    /// it takes no id of its own.
    pub(super) fn placeholder(name: &str) -> Channel {
        Channel::with_id(channel_ids::PLACEHOLDER, name, Epoch::default(), false)
    }

    fn with_id(id: ChannelId, name: &str, epoch: Epoch, keeps_presence: bool) -> Channel {
        Channel {
            refs: AtomicU32::new(0),
            id,
            lock: RawMutex::INIT,
            flags: AtomicU8::new(if keeps_presence { KEEPS_PRESENCE } else { 0 }),
            holders: UnsafeCell::default(),
            name: name.into(),
            epoch,
            sequence: UnsafeCell::default(),
        }
    }

    /// Its name matches `--presence-channels`: joins and leaves are counted.
    pub fn keeps_presence(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & KEEPS_PRESENCE != 0
    }

    /// Locks the channel's state (no poisoning: a panic under it stops the whole
    /// server, `main.rs`'s `stop_on_panic`).
    pub fn state(&self) -> Locked<'_> {
        self.lock.lock();
        Locked { channel: self }
    }
}

/// The channel's state, locked while this lives.
pub struct Locked<'a> {
    channel: &'a Channel,
}

impl fmt::Debug for Locked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locked")
            .field("sequence", &**self)
            .field("holders", &self.holders())
            .field("marks", &self.marks())
            .finish()
    }
}

impl Locked<'_> {
    pub fn marks(&self) -> Marks {
        let flags = self.channel.flags.load(Ordering::Relaxed);
        Marks {
            watched: flags & WATCHED != 0,
            removed: flags & REMOVED != 0,
        }
    }

    /// Only under the lock, so a load and a store do not lose another's bit
    /// (`KEEPS_PRESENCE` is never written after the channel is made).
    pub fn set_watched(&mut self, watched: bool) {
        self.set_flag(WATCHED, watched);
    }

    pub fn set_removed(&mut self) {
        self.set_flag(REMOVED, true);
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        let flags = self.channel.flags.load(Ordering::Relaxed);
        let flags = if on { flags | flag } else { flags & !flag };
        self.channel.flags.store(flags, Ordering::Relaxed);
    }

    pub fn holders(&self) -> Holders {
        // SAFETY: the lock is held (see `Channel`).
        unsafe { *self.channel.holders.get() }.unpack()
    }

    /// The holders, written back when the guard goes.
    pub fn holders_mut(&mut self) -> HoldersMut<'_> {
        HoldersMut {
            holders: self.holders(),
            cell: &self.channel.holders,
        }
    }
}

/// Holders being changed under the lock; stored again on drop. It borrows the
/// `Locked` mutably, so nothing else reads them meanwhile.
#[derive(Debug)]
pub struct HoldersMut<'a> {
    holders: Holders,
    cell: &'a UnsafeCell<PackedHolders>,
}

impl Deref for HoldersMut<'_> {
    type Target = Holders;
    fn deref(&self) -> &Holders {
        &self.holders
    }
}

impl DerefMut for HoldersMut<'_> {
    fn deref_mut(&mut self) -> &mut Holders {
        &mut self.holders
    }
}

impl Drop for HoldersMut<'_> {
    fn drop(&mut self) {
        // SAFETY: the lock is held by the `Locked` this borrows mutably, so this is
        // the only access.
        unsafe { *self.cell.get() = PackedHolders::pack(self.holders) }
    }
}

impl Deref for Locked<'_> {
    type Target = Sequence;
    fn deref(&self) -> &Sequence {
        // SAFETY: the lock is held (see `Channel`).
        unsafe { &*self.channel.sequence.get() }
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Sequence {
        // SAFETY: the lock is held, and `&mut self` makes this the only reference.
        unsafe { &mut *self.channel.sequence.get() }
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
/// The two are never needed at once, so they share 48 bits; bit 47 says which.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Holders(u64);

const IDLE: u64 = 1 << 47;

/// Workers fit in the mask beside the idle bit, in the 6 bytes the channel has
/// beside its lock and flags.
pub const MAX_HOLDERS: usize = 47;

/// `Holders` in 6 bytes, 2-aligned, to fill the channel's first 16 bytes.
#[derive(Debug, Default, Clone, Copy)]
struct PackedHolders([u16; 3]);

impl PackedHolders {
    fn pack(holders: Holders) -> PackedHolders {
        let word = holders.0;
        PackedHolders([word as u16, (word >> 16) as u16, (word >> 32) as u16])
    }

    fn unpack(self) -> Holders {
        let [low, mid, high] = self.0.map(u64::from);
        Holders(low | mid << 16 | high << 32)
    }
}

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
            mask >> MAX_HOLDERS == 0,
            "workers past 46 do not fit beside the idle bit"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_fits_jemallocs_48_byte_class() {
        // The seq and an empty history in one word, the epoch and a short name
        // inline, presence kept by the hub, and the count, id, lock, flags and
        // holders in 16 bytes: a user's own channel is one 48 B block, name included.
        assert_eq!(std::mem::size_of::<Channel>(), 48);
        assert_eq!(std::mem::offset_of!(Channel, name), 16);
        assert!("user:1234567890".len() <= EcoString::INLINE_LIMIT);
    }

    #[test]
    fn holders_survive_their_six_bytes() {
        let channel = ChannelRef::create("h", Epoch::default(), false).unwrap();
        let mut state = channel.state();
        state.holders_mut().add(1 | 1 << 46);
        assert!(state.holders().has(0) && state.holders().has(46));
        state.holders_mut().remove(0);
        assert!(!state.holders().has(0) && state.holders().has(46));
        state.holders_mut().remove(46);
        assert_eq!(state.holders_mut().idle_since(u32::MAX), u32::MAX);
        assert_eq!(
            state.holders_mut().idle_since(3),
            u32::MAX,
            "the clock is kept"
        );
        assert!(!state.holders().any());
    }

    #[test]
    fn flags_under_the_lock_leave_presence_alone() {
        let channel = ChannelRef::create("p", Epoch::default(), true).unwrap();
        let mut state = channel.state();
        state.set_watched(true);
        state.set_removed();
        state.set_watched(false);
        let marks = state.marks();
        assert!(!marks.watched && marks.removed);
        drop(state);
        assert!(channel.keeps_presence());
    }

    #[test]
    fn holders_name_workers_or_the_idle_clock_never_both() {
        let mut holders = Holders::default();
        assert!(!holders.any());
        assert_eq!(holders.idle_since(7), 7);
        assert_eq!(holders.idle_since(9), 7, "the clock starts once");
        holders.add(1 << 46);
        assert!(holders.any() && holders.has(46) && !holders.has(0));
        holders.add(1);
        holders.remove(46);
        assert!(holders.has(0) && !holders.has(46));
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
        let channel = ChannelRef::create("a", Epoch::default(), false).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let channel = ChannelRef::clone(&channel);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let mut state = channel.state();
                        let seen = state.last_seq();
                        state.set_last_seq(seen + 1);
                        state.set_watched(seen.is_multiple_of(2));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let state = channel.state();
        assert_eq!(state.last_seq(), 40_000, "no increment lost");
        assert!(!state.marks().watched);
        drop(state);
        assert!(
            !channel.state().marks().removed,
            "unlocked again after a drop"
        );
    }
}
