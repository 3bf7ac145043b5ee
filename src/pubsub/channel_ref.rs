//! A shared reference to a channel, counted in the channel itself: 4 bytes of the
//! channel's first 16 instead of the 8 (`triomphe`) or 16 (`std`) an `Arc` puts in
//! front of it, which is what lets a channel fit jemalloc's 48 B class. No weak
//! references. The orderings are `std::sync::Arc`'s, for the same reasons. The
//! channel itself sits in its slot of `channel_table`.

// A hand-made `Arc`: the count lives inside the value it counts.
#![allow(unsafe_code)]

use std::fmt;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, Ordering};

use super::channel::{Channel, ChannelId};
use super::channel_table;
use super::epoch::Epoch;

/// Past this, a clone aborts, as `Arc`'s does past `isize::MAX`: 2^31 references
/// take 16 GiB of pointers, so only a leak gets here, and wrapping would free a
/// channel still in use.
const MAX_REFS: u32 = i32::MAX as u32;

pub struct ChannelRef {
    channel: NonNull<Channel>,
}

// SAFETY: as `Arc<Channel>`: the channel is Send and Sync, and the count atomic.
unsafe impl Send for ChannelRef {}
// SAFETY: as above.
unsafe impl Sync for ChannelRef {}

impl ChannelRef {
    /// A new channel, with an id no live one has (see `channel_ids`), or `None`
    /// when 2^32 - 1 are alive.
    pub fn create(name: &str, epoch: Epoch, keeps_presence: bool) -> Option<ChannelRef> {
        Some(ChannelRef::place(Channel::new(
            name,
            epoch,
            keeps_presence,
        )?))
    }

    /// Stands for a channel that could not be made (see `Channel::placeholder`).
    pub fn placeholder(name: &str) -> ChannelRef {
        ChannelRef::place(Channel::placeholder(name))
    }

    fn place(channel: Channel) -> ChannelRef {
        channel.refs.store(1, Ordering::Relaxed);
        ChannelRef {
            channel: channel_table::place(channel),
        }
    }

    /// Keeps this reference's count but lets go of the pointer: the id now holds
    /// it, until `from_id` takes it back.
    fn into_id(self) -> ChannelId {
        let id = self.id;
        std::mem::forget(self);
        id
    }

    /// The reference an `into_id` left behind.
    ///
    /// # Safety
    /// `id` came from `into_id`, and this takes its count over once.
    unsafe fn from_id(id: ChannelId) -> ChannelRef {
        // SAFETY: the count `into_id` kept keeps the channel alive in its slot.
        let channel = unsafe { channel_table::get(id) };
        ChannelRef {
            channel: NonNull::from(channel),
        }
    }

    pub fn ptr_eq(a: &ChannelRef, b: &ChannelRef) -> bool {
        a.channel == b.channel
    }
}

impl Clone for ChannelRef {
    fn clone(&self) -> ChannelRef {
        // Relaxed: a new reference is made from one held, which keeps the channel
        // alive meanwhile (as in `Arc::clone`).
        let before = self.refs.fetch_add(1, Ordering::Relaxed);
        if before > MAX_REFS {
            std::process::abort();
        }
        ChannelRef {
            channel: self.channel,
        }
    }
}

impl Drop for ChannelRef {
    fn drop(&mut self) {
        // Release, then Acquire before freeing: every other holder's use of the
        // channel happens before the last one frees it (as in `Arc::drop`).
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the count reached 0, so this was the last reference, and the
        // channel came from `channel_table::place` in `place`.
        unsafe { channel_table::release(self.channel) };
    }
}

impl Deref for ChannelRef {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        // SAFETY: the count is at least 1 while this reference lives.
        unsafe { self.channel.as_ref() }
    }
}

impl fmt::Debug for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A `ChannelRef` kept as its channel's id: 4 bytes where the pointer takes 8, for
/// the entry a worker keeps per channel it holds. It holds a count, as a
/// `ChannelRef` does, and finds the channel in its slot of `channel_table`. The id
/// is stored inverted, so that the placeholder's (never held) is the niche a
/// slab's vacant entry uses.
pub struct HeldRef(NonZeroU32);

impl HeldRef {
    /// Panics for a placeholder, which has no slot (and which no worker holds).
    pub fn new(channel: ChannelRef) -> HeldRef {
        let inverted = NonZeroU32::new(!channel.id).expect("a placeholder is never held");
        channel.into_id();
        HeldRef(inverted)
    }

    pub fn id(&self) -> ChannelId {
        !self.0.get()
    }

    /// True when this is that very channel: the same id is enough, since both
    /// are alive and no two live channels share one (a placeholder's is never held).
    pub fn is(&self, channel: &ChannelRef) -> bool {
        let same = self.id() == channel.id;
        debug_assert!(!same || ptr::eq(&**self, &**channel));
        same
    }

    /// A `ChannelRef` of its own to the channel held.
    pub fn to_ref(&self) -> ChannelRef {
        // SAFETY: this holds a count for the id; the copy is never dropped, so the
        // count stays, and the clone adds one.
        let held = std::mem::ManuallyDrop::new(unsafe { ChannelRef::from_id(self.id()) });
        ChannelRef::clone(&held)
    }

    /// The count this holds, as a `ChannelRef`.
    pub fn into_ref(self) -> ChannelRef {
        let id = self.id();
        std::mem::forget(self);
        // SAFETY: the count this held moves to the `ChannelRef`, once.
        unsafe { ChannelRef::from_id(id) }
    }
}

impl Deref for HeldRef {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        // SAFETY: the count this holds keeps the channel alive in its slot.
        unsafe { channel_table::get(self.id()) }
    }
}

impl Drop for HeldRef {
    fn drop(&mut self) {
        // SAFETY: the count this held is given up here, once.
        drop(unsafe { ChannelRef::from_id(self.id()) });
    }
}

impl fmt::Debug for HeldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn the_last_reference_frees_the_channel() {
        let first = ChannelRef::create("ref", Default::default(), false).unwrap();
        let id = first.id;
        // A kept message, whose payload is shared with `watch` until the channel goes.
        let watch = Bytes::from(vec![1u8; 64]);
        first.state().keep(1, 0, watch.clone(), 4);
        assert!(!watch.is_unique());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mine = ChannelRef::clone(&first);
                std::thread::spawn(move || {
                    let copies: Vec<_> = (0..1000).map(|_| ChannelRef::clone(&mine)).collect();
                    copies.len()
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), 1000);
        }
        assert_eq!(first.refs.load(Ordering::Relaxed), 1, "every clone dropped");
        let second = ChannelRef::clone(&first);
        assert!(ChannelRef::ptr_eq(&first, &second));
        drop(first);
        assert_eq!(second.id, id, "still alive through the second");
        assert!(!watch.is_unique());
        drop(second);
        assert!(watch.is_unique(), "dropped with the last reference");
    }

    #[test]
    fn a_held_reference_counts_as_a_channel_ref_does() {
        let first = ChannelRef::create("held", Default::default(), false).unwrap();
        let watch = Bytes::from(vec![3u8; 64]);
        first.state().keep(1, 0, watch.clone(), 4);
        let held = HeldRef::new(ChannelRef::clone(&first));
        assert_eq!(
            std::mem::size_of::<Option<HeldRef>>(),
            4,
            "the niche is free"
        );
        assert!(held.is(&first) && held.id() == first.id && &*held.name == "held");
        let other = ChannelRef::create("held-other", Default::default(), false).unwrap();
        assert!(!held.is(&other));
        let copy = held.to_ref();
        drop(first);
        assert_eq!(
            copy.refs.load(Ordering::Relaxed),
            2,
            "the held one and the copy"
        );
        drop(copy);
        let back = held.into_ref();
        assert_eq!(back.refs.load(Ordering::Relaxed), 1);
        assert!(!watch.is_unique());
        drop(HeldRef::new(back));
        assert!(watch.is_unique(), "the held reference was the last");
    }
}
