//! A shared reference to a channel, counted in the channel itself: 4 bytes of the
//! channel's first 16 instead of the 8 (`triomphe`) or 16 (`std`) an `Arc` puts in
//! front of it, which is what lets a channel fit jemalloc's 48 B class. No weak
//! references. The orderings are `std::sync::Arc`'s, for the same reasons.

// A hand-made `Arc`: the count lives inside the value it counts.
#![allow(unsafe_code)]

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

use super::channel::Channel;

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
    pub fn new(channel: Channel) -> ChannelRef {
        channel.refs.store(1, Ordering::Relaxed);
        ChannelRef {
            channel: NonNull::from(Box::leak(Box::new(channel))),
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
        // channel came from `Box::leak` in `new`.
        drop(unsafe { Box::from_raw(self.channel.as_ptr()) });
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn the_last_reference_frees_the_channel() {
        let channel = Channel::new("ref", Default::default(), false).unwrap();
        let id = channel.id;
        let first = ChannelRef::new(channel);
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
}
