//! The hub's index of channels by name: a table of 4-byte ids, each holding one
//! reference to its channel, found in `channel_table` to compare names. A set of
//! `ChannelRef`s spent 8 bytes a bucket, 13 B more per channel at 10,000 than
//! this table's 5 with its control byte (docs/benchmarks.md, "channels in a table").
//!
//! Names come from clients, so they are hashed with `std`'s keyed SipHash, as a
//! `HashMap` would: a flood of colliding names cannot be made without the key.

// Entries are references kept as ids: each use says why it holds.
#![allow(unsafe_code)]

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::channel::{Channel, ChannelId, ChannelRef};
use super::channel_table;

#[derive(Default)]
pub struct Names {
    ids: HashTable<ChannelId>,
    hasher: RandomState,
}

/// The channel with this id, as long as the index holds its reference.
fn channel_at(id: &ChannelId) -> &Channel {
    // SAFETY: every id in the index holds a reference (`insert`), given up only
    // when the id leaves it (`remove`, `drop`).
    unsafe { channel_table::get(*id) }
}

/// A reference of the caller's own to the channel the index holds as `id`.
fn cloned(id: &ChannelId) -> ChannelRef {
    // SAFETY: the index holds a reference for this id; the copy made from it is
    // never dropped, so the index's count stays, and the clone adds one.
    let held = std::mem::ManuallyDrop::new(unsafe { ChannelRef::from_id(*id) });
    ChannelRef::clone(&held)
}

impl Names {
    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    pub fn get(&self, name: &str) -> Option<ChannelRef> {
        let id = self
            .ids
            .find(self.hash(name), |id| &*channel_at(id).name == name)?;
        Some(cloned(id))
    }

    /// Adds `channel`, whose name is not in the index yet, with a reference of its own.
    pub fn insert(&mut self, channel: ChannelRef) {
        let hash = self.hash(&channel.name);
        let hasher = &self.hasher;
        self.ids.insert_unique(hash, channel.into_id(), |id| {
            hasher.hash_one(&*channel_at(id).name)
        });
    }

    /// Takes `name` out of the index, with the reference it held.
    pub fn remove(&mut self, name: &str) -> Option<ChannelRef> {
        let hash = self.hash(name);
        let entry = self
            .ids
            .find_entry(hash, |id| &*channel_at(id).name == name)
            .ok()?;
        let (id, _) = entry.remove();
        // SAFETY: the id has left the index, and with it its reference, once.
        Some(unsafe { ChannelRef::from_id(id) })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn capacity(&self) -> usize {
        self.ids.capacity()
    }

    pub fn shrink_to_fit(&mut self) {
        let hasher = &self.hasher;
        self.ids
            .shrink_to_fit(|id| hasher.hash_one(&*channel_at(id).name));
    }

    /// A reference to every channel in the index.
    pub fn all(&self) -> Vec<ChannelRef> {
        self.ids.iter().map(cloned).collect()
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for id in self.ids.drain() {
            // SAFETY: the id leaves the index with its reference, once.
            drop(unsafe { ChannelRef::from_id(id) });
        }
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn made(name: &str) -> ChannelRef {
        ChannelRef::create(name, Default::default(), false).unwrap()
    }

    #[test]
    fn finds_removes_and_holds_a_reference_of_its_own() {
        let mut names = Names::default();
        let a = made("names-a");
        let watch = Bytes::from(vec![1u8; 16]);
        a.state().keep(1, 0, watch.clone(), 4);
        names.insert(ChannelRef::clone(&a));
        names.insert(made("names-b"));
        assert_eq!(names.len(), 2);
        let found = names.get("names-a").expect("indexed");
        assert!(ChannelRef::ptr_eq(&found, &a));
        assert!(names.get("names-c").is_none());
        drop((a, found));
        assert!(!watch.is_unique(), "the index keeps it alive");
        let removed = names.remove("names-a").expect("indexed");
        assert!(names.get("names-a").is_none() && names.remove("names-a").is_none());
        drop(removed);
        assert!(watch.is_unique(), "gone with the index's reference");
    }

    #[test]
    fn dropping_the_index_lets_go_of_every_channel() {
        let watch = Bytes::from(vec![2u8; 16]);
        let mut names = Names::default();
        for i in 0..100 {
            let channel = made(&format!("names-drop-{i}"));
            channel.state().keep(1, 0, watch.clone(), 4);
            names.insert(channel);
        }
        assert_eq!(names.all().len(), 100);
        for _ in 0..90 {
            let name = format!("names-drop-{}", names.len() - 1);
            assert!(names.remove(&name).is_some());
        }
        names.shrink_to_fit();
        assert!(names.get("names-drop-9").is_some() && names.get("names-drop-10").is_none());
        drop(names);
        assert!(watch.is_unique());
    }
}
