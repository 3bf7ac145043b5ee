//! The hub's index of channels by name: a table of `HeldRef`s, 4-byte ids each
//! holding one reference to its channel, found in its slot to compare names. A set of
//! `ChannelRef`s spent 9 bytes a bucket with its control byte, this table 5: at
//! 10,000 channels (16,384 buckets) 6.5 B less per channel (docs/benchmarks.md,
//! "channels in a table").
//!
//! Names come from clients, so they are hashed with `std`'s keyed SipHash, as a
//! `HashMap` would: a flood of colliding names cannot be made without the key.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::channel::{ChannelRef, HeldRef};

#[derive(Debug, Default)]
pub struct Names {
    channels: HashTable<HeldRef>,
    hasher: RandomState,
}

impl Names {
    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    pub fn get(&self, name: &str) -> Option<ChannelRef> {
        self.channels
            .find(self.hash(name), |held| &*held.name == name)
            .map(HeldRef::to_ref)
    }

    /// Adds `channel`, whose name is not in the index yet, with a reference of its own.
    pub fn insert(&mut self, channel: ChannelRef) {
        let hash = self.hash(&channel.name);
        let hasher = &self.hasher;
        self.channels
            .insert_unique(hash, HeldRef::new(channel), |held| {
                hasher.hash_one(&*held.name)
            });
    }

    /// Takes `name` out of the index, with the reference it held.
    pub fn remove(&mut self, name: &str) -> Option<ChannelRef> {
        let hash = self.hash(name);
        let entry = self
            .channels
            .find_entry(hash, |held| &*held.name == name)
            .ok()?;
        Some(entry.remove().0.into_ref())
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn capacity(&self) -> usize {
        self.channels.capacity()
    }

    pub fn shrink_to_fit(&mut self) {
        let hasher = &self.hasher;
        self.channels
            .shrink_to_fit(|held| hasher.hash_one(&*held.name));
    }

    /// A reference to every channel in the index.
    pub fn all(&self) -> Vec<ChannelRef> {
        self.channels.iter().map(HeldRef::to_ref).collect()
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
