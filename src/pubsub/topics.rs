//! One worker's channel index: for each channel with local subscribers, the slab
//! keys of those connections. Each connection remembers its position in each list,
//! so unsubscribing is O(1) (swap-remove plus one back-pointer fix). A per-user
//! channel has one subscriber per worker: up to two are held inline, so such a
//! channel costs its table entry and no allocation of its own. The table holds the
//! entries themselves, found by the id inside their channel: a map would store the
//! id again beside each (32 bytes a bucket instead of 24).

use hashbrown::HashTable;

use super::hub::{ChannelId, ChannelRef};
use super::subscribers::{Lists, Subscribers, Taken};

#[derive(Debug)]
pub struct LocalChannel {
    pub channel: ChannelRef,
    /// Slab keys of subscribed connections (read with `Topics::subscribers`).
    subscribers: Subscribers,
    /// The last sequence number this worker has handled; a publication at or below
    /// it is already accounted for (it predates the local subscription).
    pub last_seq: u64,
}

#[derive(Debug, Default)]
pub struct Topics {
    channels: HashTable<LocalChannel>,
    /// The subscriber lists of channels with more than two here.
    lists: Lists,
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
    pub emptied: Option<ChannelRef>,
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
    pub fn of(&self, channel: &ChannelRef) -> Option<&LocalChannel> {
        self.get(channel.id)
            .filter(|local| ChannelRef::ptr_eq(&local.channel, channel))
    }

    /// Starts holding `channel`, live from `last_seq` (replacing an entry of the
    /// same id, as a map's insert would).
    pub fn insert(&mut self, channel: ChannelRef, last_seq: u64) {
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
            hashbrown::hash_table::Entry::Occupied(mut held) => {
                std::mem::replace(held.get_mut(), local)
                    .subscribers
                    .release(&mut self.lists);
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(local);
            }
        }
    }

    /// Adds a subscriber to a held channel; returns its position in the list.
    pub fn add_subscriber(&mut self, id: ChannelId, key: u32) -> u32 {
        let Some(local) = self.channels.find_mut(hash(id), |l| l.channel.id == id) else {
            return 0;
        };
        local.subscribers.push(&mut self.lists, key)
    }

    /// The slab keys of the channel's subscribers here.
    #[cfg(test)]
    pub fn subscribers<'a>(&'a self, local: &'a LocalChannel) -> &'a [u32] {
        local.subscribers.as_slice(&self.lists)
    }

    /// Starts a fan-out of `channel`'s publications up to seq `newest`, in one
    /// lookup: if this worker holds that very channel and `newest` is past its
    /// `last_seq`, records `newest` and takes the subscribers out while their
    /// connections are written. Returns the `last_seq` before, which tells the
    /// fresh publications from those that predate the local subscription.
    pub fn take_fresh(&mut self, channel: &ChannelRef, newest: u64) -> Option<(u64, Taken)> {
        let local = self
            .channels
            .find_mut(hash(channel.id), |l| l.channel.id == channel.id)
            .filter(|local| ChannelRef::ptr_eq(&local.channel, channel))?;
        let before = local.last_seq;
        if newest <= before {
            return None;
        }
        local.last_seq = newest;
        Some((before, local.subscribers.take(&mut self.lists)))
    }

    /// Puts back what `take_fresh` took (no lookup for inline subscribers, which
    /// stayed where they were).
    pub fn put_back_subscribers(&mut self, id: ChannelId, taken: Taken) {
        if !matches!(taken, Taken::List(..)) {
            return;
        }
        if let Some(local) = self.channels.find(hash(id), |l| l.channel.id == id) {
            local.subscribers.put_back(&mut self.lists, taken);
        }
    }

    #[cfg(test)]
    fn lists_held(&self) -> usize {
        self.lists.len()
    }

    /// Gives back the memory of a map that once held many more channels.
    pub fn shrink(&mut self) {
        if self.channels.capacity() > 4 * self.channels.len() + 64 {
            self.channels.shrink_to_fit(hash_of);
        }
        self.lists.shrink();
    }

    pub fn remove(&mut self, id: ChannelId, position: u32) -> Removed {
        let Some(local) = self.channels.find_mut(hash(id), |l| l.channel.id == id) else {
            return Removed {
                moved: None,
                emptied: None,
            };
        };
        let position = position as usize;
        local.subscribers.swap_remove(&mut self.lists, position);
        let moved = local
            .subscribers
            .as_slice(&self.lists)
            .get(position)
            .map(|&key| (key, position as u32));
        let emptied = if local.subscribers.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            topics.insert(ChannelRef::clone(channel), i as u64);
            assert_eq!(topics.add_subscriber(channel.id, i as u32), 0);
        }
        for (i, channel) in channels.iter().enumerate().step_by(2) {
            let removed = topics.remove(channel.id, 0);
            assert!(
                removed
                    .emptied
                    .is_some_and(|c| ChannelRef::ptr_eq(&c, channel)),
                "{i}"
            );
        }
        topics.shrink();
        for (i, channel) in channels.iter().enumerate() {
            let held = topics.of(channel).map(|l| l.last_seq);
            assert_eq!(held, (i % 2 == 1).then_some(i as u64), "{i}");
        }
        // Re-inserting an id replaces its entry, as a map would, and gives back
        // the list of the one it replaced.
        for key in 100..104 {
            topics.add_subscriber(channels[1].id, key);
        }
        assert_eq!(topics.lists_held(), 1);
        topics.insert(ChannelRef::clone(&channels[1]), 99);
        let local = topics.get(channels[1].id).unwrap();
        assert_eq!(local.last_seq, 99);
        assert!(topics.subscribers(local).is_empty());
        assert_eq!(topics.lists_held(), 0);
    }

    #[test]
    fn a_per_user_channel_costs_a_24_byte_entry() {
        // Its Arc, two inline subscribers (or a list's index) and its last seq.
        assert_eq!(std::mem::size_of::<LocalChannel>(), 24);
    }
}
