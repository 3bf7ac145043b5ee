//! Where channels live: channel `id` in slot `id` of one table for the process, in
//! pages that never move, rather than in a heap block each. Ids are dense and the
//! lowest free one is handed out first (`channel_ids`), so the slots in use stay
//! packed at the front. A channel is then found from its id alone, and the hub's
//! index of names holds 4-byte ids rather than 8-byte pointers
//! (docs/architecture.md, "Memory").
//!
//! A slot is written once its id is taken and dropped in place by the last
//! `ChannelRef`; only then is the id given back, so the next channel with that id
//! never overlaps the old one. A page keeps its address once made, but when none
//! of its ids is taken its memory goes back to the kernel (`forget`), so after a
//! burst of channels RSS falls back with them.

// Slots are written, read and dropped through raw pointers: each use says why it holds.
#![allow(unsafe_code)]

use std::alloc::{alloc, alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering};

use super::channel::{Channel, ChannelId};
use super::channel_ids;

/// Channels per page: 4,096 of 48 B, 192 KiB of address space each, touched only
/// as its slots are used.
const PAGE_BITS: u32 = 12;
const PAGE_SLOTS: usize = 1 << PAGE_BITS;
/// Pages are found through two levels of 1,024 pointers, the first static and
/// each second one made with its first page: 8 KiB per 4 million ids, where one
/// flat directory for all 2^32 would be 8 MiB of zeroed memory that a kernel
/// with transparent huge pages always on may back with 2 MiB at its first use.
const LEVEL_BITS: u32 = 10;
const LEVEL: usize = 1 << LEVEL_BITS;

type Directory = [AtomicPtr<Channel>; LEVEL];

static TOP: [AtomicPtr<Directory>; LEVEL] = [const { AtomicPtr::new(ptr::null_mut()) }; LEVEL];

fn top_index(id: ChannelId) -> usize {
    (id >> (PAGE_BITS + LEVEL_BITS)) as usize
}

fn directory_index(id: ChannelId) -> usize {
    (id >> PAGE_BITS) as usize & (LEVEL - 1)
}

fn slot_index(id: ChannelId) -> usize {
    id as usize & (PAGE_SLOTS - 1)
}

/// The pointer in `entry`, made with `layout` if it is still null: zeroed for a
/// directory, not for a page, whose slots are written before use (and which
/// zeroing would make resident at once). Two threads may race to make it: one
/// wins, the other frees its own.
fn made_once<T>(entry: &AtomicPtr<T>, layout: Layout, zeroed: bool) -> *mut T {
    let found = entry.load(Ordering::Acquire);
    if !found.is_null() {
        return found;
    }
    // SAFETY: neither layout is zero-sized.
    let made = unsafe {
        if zeroed {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    }
    .cast::<T>();
    if made.is_null() {
        handle_alloc_error(layout);
    }
    match entry.compare_exchange(ptr::null_mut(), made, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => made,
        Err(winner) => {
            // SAFETY: `made` came from this layout and was never shared.
            unsafe { dealloc(made.cast(), layout) };
            winner
        }
    }
}

/// The slot of `id`, its page made if it is the first used.
fn slot_of(id: ChannelId) -> *mut Channel {
    let directory = made_once(&TOP[top_index(id)], Layout::new::<Directory>(), true);
    // SAFETY: a directory, once made, is never freed; zeroed memory is a valid
    // array of null `AtomicPtr`s.
    let entry = unsafe { &(*directory)[directory_index(id)] };
    let page = made_once(entry, page_layout(), false);
    // SAFETY: the index is inside the page.
    unsafe { page.add(slot_index(id)) }
}

/// Moves `channel` into its slot. A placeholder (no id of its own) goes to the heap.
pub fn place(channel: Channel) -> NonNull<Channel> {
    if channel.id == channel_ids::PLACEHOLDER {
        return NonNull::from(Box::leak(Box::new(channel)));
    }
    let slot = slot_of(channel.id);
    // SAFETY: the id is taken, so no other live channel is in this slot.
    unsafe {
        ptr::write(slot, channel);
        NonNull::new_unchecked(slot)
    }
}

/// The channel with this id.
///
/// # Safety
/// A channel with this id must be alive, and stay so while the reference is used:
/// the caller holds a reference count on it (the hub's index of names does).
pub unsafe fn get<'a>(id: ChannelId) -> &'a Channel {
    let directory = TOP[top_index(id)].load(Ordering::Acquire);
    // SAFETY: a live channel's directory and page exist, made before its id was
    // handed to anyone; the caller keeps the channel alive.
    unsafe {
        let page = (*directory)[directory_index(id)].load(Ordering::Acquire);
        &*page.add(slot_index(id))
    }
}

/// Drops the channel, then gives its id back.
///
/// # Safety
/// `channel` came from `place`, and nothing uses it after this (its last
/// `ChannelRef` is going).
pub unsafe fn release(channel: NonNull<Channel>) {
    // SAFETY: the caller's contract.
    let id = unsafe { channel.as_ref() }.id;
    if id == channel_ids::PLACEHOLDER {
        // SAFETY: a placeholder was boxed in `place`.
        drop(unsafe { Box::from_raw(channel.as_ptr()) });
        return;
    }
    // SAFETY: the slot holds a live channel that nothing else will touch.
    unsafe { ptr::drop_in_place(channel.as_ptr()) };
    channel_ids::give_back(id, PAGE_BITS, |first| {
        // SAFETY: every slot of the page is free, and stays so until this returns.
        unsafe { forget(slot_of(first)) }
    });
}

/// Hands a page's memory back to the kernel (its address stays, and reads as
/// zeroes once touched again), so that after a burst of channels RSS falls back
/// with the channels alive, as freed heap blocks do once jemalloc purges them.
///
/// # Safety
/// `page` is a page of the table with no live channel in it.
unsafe fn forget(page: *mut Channel) {
    // SAFETY: the page is `page_layout()`'s size, page-aligned, and ours; the
    // advice only drops its contents, which no live channel uses.
    let _ = unsafe { libc::madvise(page.cast(), page_layout().size(), libc::MADV_DONTNEED) };
}

/// 192 KiB, aligned so that `forget` can drop the whole of it.
fn page_layout() -> Layout {
    Layout::array::<Channel>(PAGE_SLOTS)
        .and_then(|layout| layout.align_to(4096))
        .expect("a page fits in memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::channel::ChannelRef;

    #[test]
    fn a_channel_sits_in_the_slot_of_its_id() {
        let channel = ChannelRef::create("slot", Default::default(), false).unwrap();
        // SAFETY: `channel` keeps it alive.
        let found = unsafe { get(channel.id) };
        assert!(ptr::eq(found, &*channel));
        assert_eq!(&*found.name, "slot");
    }

    #[test]
    fn a_freed_id_is_reused_only_once_its_channel_is_gone() {
        // Channels made and dropped on four threads at once: each one's name must
        // be its own in its slot as long as it lives.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for round in 0..2_000 {
                        let name = format!("t{t}-{round}");
                        let channel = ChannelRef::create(&name, Default::default(), false)
                            .expect("ids to spare");
                        // SAFETY: `channel` keeps it alive.
                        let seen = unsafe { get(channel.id) };
                        assert_eq!(&*seen.name, name.as_str());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[test]
    fn every_id_has_a_slot_of_its_own() {
        let at = |id| (top_index(id), directory_index(id), slot_index(id));
        assert_eq!(at(0), (0, 0, 0));
        assert_eq!(at(4_095), (0, 0, 4_095));
        assert_eq!(at(4_096), (0, 1, 0));
        assert_eq!(at((1 << 22) + 5), (1, 0, 5));
        // The highest id handed out (PLACEHOLDER is never) in the last slot but one.
        assert_eq!(at(channel_ids::PLACEHOLDER - 1), (1_023, 1_023, 4_094));
    }

    #[test]
    fn a_forgotten_page_reads_as_zeroes_and_takes_channels_again() {
        // A page of its own, outside the table, so no other test's channel is in it.
        let layout = page_layout();
        // SAFETY: as `made_once` makes pages.
        let page = unsafe { alloc_zeroed(layout) }.cast::<Channel>();
        assert!(!page.is_null());
        let bytes = page.cast::<u8>();
        // SAFETY: inside the page, which this test owns.
        unsafe {
            bytes.add(100_000).write(7);
            forget(page);
            assert_eq!(bytes.add(100_000).read(), 0, "dropped");
            bytes.add(100_000).write(9);
            assert_eq!(bytes.add(100_000).read(), 9, "usable again");
            dealloc(bytes, layout);
        }
    }

    #[test]
    fn ids_across_a_page_boundary_get_their_pages() {
        let many: Vec<_> = (0..PAGE_SLOTS + 10)
            .map(|i| ChannelRef::create(&format!("p{i}"), Default::default(), false).unwrap())
            .collect();
        let top = many.iter().map(|c| c.id).max().unwrap();
        assert!(top as usize >= PAGE_SLOTS, "a second page was used");
        for (i, channel) in many.iter().enumerate() {
            // SAFETY: `many` keeps them alive.
            assert_eq!(&*unsafe { get(channel.id) }.name, format!("p{i}"));
        }
    }
}
