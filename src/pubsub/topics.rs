//! One worker's channel index: for each channel with local subscribers, the slab
//! keys of those connections. Each connection remembers its position in each list,
//! so unsubscribing is O(1) (swap-remove plus one back-pointer fix). A per-user
//! channel has one subscriber per worker: up to two are held inline, so such a
//! channel costs its table entry and no allocation of its own. The table holds the
//! entries themselves, found by the id inside their channel: a map would store the
//! id again beside each (40 bytes a bucket instead of 32).

use std::sync::Arc;

use hashbrown::HashTable;

use super::hub::{Channel, ChannelId};

#[derive(Debug)]
pub struct LocalChannel {
    pub channel: Arc<Channel>,
    /// Slab keys of subscribed connections.
    pub subscribers: Subscribers,
    /// The last sequence number this worker has handled; a publication at or below
    /// it is already accounted for (it predates the local subscription).
    pub last_seq: u64,
}

#[derive(Debug, Default)]
pub struct Topics {
    channels: HashTable<LocalChannel>,
}

/// Ids are dense and handed out by the hub, not chosen by clients: a multiply
/// spreads them (low bits for the bucket, high bits for hashbrown's tag).
fn hash(id: ChannelId) -> u64 {
    u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn hash_of(local: &LocalChannel) -> u64 {
    hash(local.channel.id)
}

/// What removing a subscriber changed, for the caller to fix up.
#[derive(Debug)]
pub struct Removed {
    /// The connection that moved into the freed position, and that position.
    pub moved: Option<(u32, u32)>,
    /// The channel has no local subscriber left (the hub must be told).
    pub emptied: Option<Arc<Channel>>,
}

impl Topics {
    pub fn get(&self, id: ChannelId) -> Option<&LocalChannel> {
        self.channels.find(hash(id), |local| local.channel.id == id)
    }

    pub fn get_mut(&mut self, id: ChannelId) -> Option<&mut LocalChannel> {
        self.channels
            .find_mut(hash(id), |local| local.channel.id == id)
    }

    /// The local entry of `channel`, if this worker holds that very channel.
    pub fn of(&self, channel: &Arc<Channel>) -> Option<&LocalChannel> {
        self.get(channel.id)
            .filter(|local| Arc::ptr_eq(&local.channel, channel))
    }

    /// Starts holding `channel`, live from `last_seq` (replacing an entry of the
    /// same id, as a map's insert would).
    pub fn insert(&mut self, channel: Arc<Channel>, last_seq: u64) {
        let local = LocalChannel {
            channel,
            subscribers: Subscribers::default(),
            last_seq,
        };
        let id = local.channel.id;
        match self
            .channels
            .entry(hash(id), |l| l.channel.id == id, hash_of)
        {
            hashbrown::hash_table::Entry::Occupied(mut held) => *held.get_mut() = local,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(local);
            }
        }
    }

    /// Adds a subscriber to a held channel; returns its position in the list.
    pub fn add_subscriber(&mut self, id: ChannelId, key: u32) -> u32 {
        let Some(local) = self.get_mut(id) else {
            return 0;
        };
        local.subscribers.push(key);
        (local.subscribers.as_slice().len() - 1) as u32
    }

    /// Gives back the memory of a map that once held many more channels.
    pub fn shrink(&mut self) {
        if self.channels.capacity() > 4 * self.channels.len() + 64 {
            self.channels.shrink_to_fit(hash_of);
        }
    }

    pub fn remove(&mut self, id: ChannelId, position: u32) -> Removed {
        let Some(local) = self.get_mut(id) else {
            return Removed {
                moved: None,
                emptied: None,
            };
        };
        let position = position as usize;
        local.subscribers.swap_remove(position);
        let moved = local
            .subscribers
            .as_slice()
            .get(position)
            .map(|&key| (key, position as u32));
        let emptied = if local.subscribers.as_slice().is_empty() {
            self.channels
                .find_entry(hash(id), |l| l.channel.id == id)
                .ok()
                .map(|held| held.remove().0.channel)
        } else {
            None
        };
        Removed { moved, emptied }
    }
}

/// A channel's local subscribers: two inline, more in a vector (16 bytes either way).
#[derive(Debug)]
pub enum Subscribers {
    Inline { len: u8, keys: [u32; INLINE] },
    Spilled(Box<Vec<u32>>),
}

const INLINE: usize = 2;

impl Default for Subscribers {
    fn default() -> Self {
        Subscribers::Inline {
            len: 0,
            keys: [0; INLINE],
        }
    }
}

impl Subscribers {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Subscribers::Inline { len, keys } => &keys[..*len as usize],
            Subscribers::Spilled(keys) => keys,
        }
    }

    pub fn push(&mut self, key: u32) {
        match self {
            Subscribers::Inline { len, keys } if (*len as usize) < INLINE => {
                keys[*len as usize] = key;
                *len += 1;
            }
            Subscribers::Inline { keys, .. } => {
                let mut spilled = Vec::with_capacity(2 * INLINE);
                spilled.extend_from_slice(keys);
                spilled.push(key);
                *self = Subscribers::Spilled(Box::new(spilled));
            }
            Subscribers::Spilled(keys) => keys.push(key),
        }
    }

    /// Moves the last key into `position` (panics past the end, as `Vec` does).
    pub fn swap_remove(&mut self, position: usize) {
        match self {
            Subscribers::Inline { len, keys } => {
                assert!(position < *len as usize, "no subscriber at {position}");
                *len -= 1;
                keys[position] = keys[*len as usize];
            }
            Subscribers::Spilled(spilled) => {
                spilled.swap_remove(position);
                if spilled.len() <= INLINE {
                    let mut inline = [0; INLINE];
                    inline[..spilled.len()].copy_from_slice(spilled);
                    *self = Subscribers::Inline {
                        len: spilled.len() as u8,
                        keys: inline,
                    };
                } else if spilled.capacity() > 4 * spilled.len() + 16 {
                    spilled.shrink_to_fit();
                }
            }
        }
    }
}

impl<'a> IntoIterator for &'a Subscribers {
    type Item = &'a u32;
    type IntoIter = std::slice::Iter<'a, u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_subscribers_stay_inline_and_more_spill_and_come_back() {
        assert_eq!(std::mem::size_of::<Subscribers>(), 16);
        // A channel held by a worker: its Arc, these 16 bytes and its last seq.
        assert_eq!(std::mem::size_of::<LocalChannel>(), 32);
        let mut subs = Subscribers::default();
        subs.push(7);
        subs.push(8);
        assert!(matches!(subs, Subscribers::Inline { len: 2, .. }));
        subs.push(9);
        assert!(matches!(subs, Subscribers::Spilled(_)));
        assert_eq!(subs.as_slice(), &[7, 8, 9]);
        subs.swap_remove(0);
        assert_eq!(subs.as_slice(), &[9, 8]);
        assert!(matches!(subs, Subscribers::Inline { len: 2, .. }));
        subs.swap_remove(1);
        assert_eq!(subs.as_slice(), &[9]);
        subs.swap_remove(0);
        assert!(subs.as_slice().is_empty());
        assert_eq!((&subs).into_iter().count(), 0);
    }

    #[test]
    fn the_table_finds_each_channel_by_the_id_inside_it() {
        use crate::pubsub::hub::{HistoryLimits, Hub, Position};
        let limits = HistoryLimits {
            size: 0,
            ttl_s: 0,
            keep_idle_s: 0,
        };
        let hub = Hub::new(Vec::new(), limits);
        let mut topics = Topics::default();
        let channels: Vec<_> = (0..3000)
            .map(|i| {
                let name = format!("t{i}");
                hub.attach(&name, 0, Position::default()).unwrap().channel
            })
            .collect();
        for (i, channel) in channels.iter().enumerate() {
            topics.insert(Arc::clone(channel), i as u64);
            assert_eq!(topics.add_subscriber(channel.id, i as u32), 0);
        }
        for (i, channel) in channels.iter().enumerate().step_by(2) {
            let removed = topics.remove(channel.id, 0);
            assert!(
                removed.emptied.is_some_and(|c| Arc::ptr_eq(&c, channel)),
                "{i}"
            );
        }
        topics.shrink();
        for (i, channel) in channels.iter().enumerate() {
            let held = topics.of(channel).map(|l| l.last_seq);
            assert_eq!(held, (i % 2 == 1).then_some(i as u64), "{i}");
        }
        // Re-inserting an id replaces its entry, as a map would.
        topics.insert(Arc::clone(&channels[1]), 99);
        assert_eq!(topics.get(channels[1].id).map(|l| l.last_seq), Some(99));
        assert!(topics
            .get(channels[1].id)
            .unwrap()
            .subscribers
            .as_slice()
            .is_empty());
    }

    #[test]
    fn a_large_list_gives_memory_back_as_it_empties() {
        let mut subs = Subscribers::default();
        for key in 0..1000 {
            subs.push(key);
        }
        for _ in 0..990 {
            subs.swap_remove(0);
        }
        let Subscribers::Spilled(spilled) = &subs else {
            panic!("ten subscribers stay spilled");
        };
        assert_eq!(spilled.len(), 10);
        assert!(spilled.capacity() <= 4 * 10 + 16);
    }
}
