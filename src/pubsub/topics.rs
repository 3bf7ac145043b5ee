//! One worker's channel index: for each channel with local subscribers, the slab
//! keys of those connections. Each connection remembers its position in each list,
//! so unsubscribing is O(1) (swap-remove plus one back-pointer fix). A per-user
//! channel has one subscriber per worker: it is held inline, so such a channel
//! costs its entry and no allocation of its own (a second one, a 16 B pair).
//!
//! The 12-byte entries are kept once, densely, in a slab of fixed pages; the hash
//! table holds only their 4-byte slab keys, found by the channel id inside each
//! entry. A table keeps 1.1–2.3 buckets per entry, so entries in its buckets cost
//! 17 bytes a bucket (19–40 per channel), against 5 a bucket plus the entry here
//! (22–28). A slab that doubled would hold 1–2 entries' room per entry as well;
//! pages grow by 1,024 entries and are never copied.

use hashbrown::HashTable;

use super::channel::HeldRef;
use super::hub::{ChannelId, ChannelRef};
use super::subscribers::{Lists, Subscribers, Taken};
use crate::paged::PagedSlab;

#[derive(Debug)]
pub struct LocalChannel {
    /// Its id, holding a reference (4 bytes, not a pointer's 8).
    pub channel: HeldRef,
    /// Slab keys of subscribed connections.
    subscribers: Subscribers,
    /// The low 32 bits of the last sequence number this worker has handled; a
    /// publication at or below it is already accounted for (it predates the local
    /// subscription). Read back by `last_seq`.
    last_seq_low: u32,
}

impl LocalChannel {
    /// The last sequence number this worker has handled, given a seq `near` it
    /// (the channel's own, or a publication's). It lags the channel's by the
    /// publications in flight to this worker, which the inbox bounds far below
    /// 2^31 (`inbox::behind_bytes`), so 32 bits of it tell it apart.
    pub fn last_seq(&self, near: u64) -> u64 {
        widen(self.last_seq_low, near)
    }

    /// The same, read against the channel's own last seq (which locks it briefly):
    /// for a join, a timed-out poll or an SSE id, not for every publication.
    pub fn position(&self) -> u64 {
        let latest = self.channel.state().last_seq();
        self.last_seq(latest)
    }
}

/// The u64 nearest `near` whose low 32 bits are `low`.
fn widen(low: u32, near: u64) -> u64 {
    let ahead = low.wrapping_sub(near as u32) as i32;
    near.wrapping_add_signed(i64::from(ahead))
}

#[derive(Debug, Default)]
pub struct Topics {
    /// The key in `entries` of each held channel.
    index: HashTable<u32>,
    entries: PagedSlab<LocalChannel>,
    /// The subscriber lists of channels with more than two here.
    lists: Lists,
}

/// Ids are dense and handed out by the hub, not chosen by clients: a multiply
/// spreads them (low bits for the bucket, high bits for hashbrown's tag).
fn hash(id: ChannelId) -> u64 {
    u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
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
    /// The key in `entries` of channel `id`.
    fn find(&self, id: ChannelId) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(hash(id), |&at| entries[at as usize].channel.id() == id)
            .map(|&at| at as usize)
    }

    pub fn get(&self, id: ChannelId) -> Option<&LocalChannel> {
        self.find(id).map(|at| &self.entries[at])
    }

    /// The local entry of `channel`, if this worker holds that very channel.
    pub fn of(&self, channel: &ChannelRef) -> Option<&LocalChannel> {
        self.get(channel.id)
            .filter(|local| local.channel.is(channel))
    }

    /// Starts holding `channel`, live from `last_seq` (replacing an entry of the
    /// same id, as a map's insert would).
    pub fn insert(&mut self, channel: ChannelRef, last_seq: u64) {
        let local = LocalChannel {
            channel: HeldRef::new(channel),
            subscribers: Subscribers::default(),
            last_seq_low: last_seq as u32,
        };
        let id = local.channel.id();
        if let Some(at) = self.find(id) {
            std::mem::replace(&mut self.entries[at], local)
                .subscribers
                .release(&mut self.lists);
            return;
        }
        let at = self.entries.insert(local);
        let at = u32::try_from(at).expect("fewer than 2^32 channels held");
        let entries = &self.entries;
        self.index
            .insert_unique(hash(id), at, |&at| hash(entries[at as usize].channel.id()));
    }

    /// Adds a subscriber to a held channel; returns its position in the list.
    pub fn add_subscriber(&mut self, id: ChannelId, key: u32) -> u32 {
        let Some(at) = self.find(id) else {
            return 0;
        };
        self.entries[at].subscribers.push(&mut self.lists, key)
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
        let at = self.find(channel.id)?;
        let local = &mut self.entries[at];
        if !local.channel.is(channel) {
            return None;
        }
        let before = local.last_seq(newest);
        if newest <= before {
            return None;
        }
        local.last_seq_low = newest as u32;
        Some((before, local.subscribers.take(&mut self.lists)))
    }

    /// Puts back what `take_fresh` took (no lookup for inline subscribers, which
    /// stayed where they were).
    pub fn put_back_subscribers(&mut self, id: ChannelId, taken: Taken) {
        if !matches!(taken, Taken::List(..)) {
            return;
        }
        if let Some(at) = self.find(id) {
            self.entries[at]
                .subscribers
                .put_back(&mut self.lists, taken);
        }
    }

    #[cfg(test)]
    fn lists_held(&self) -> usize {
        self.lists.len()
    }

    /// Gives back the memory of a worker that once held many more channels: the
    /// entries are moved down to fill the holes (their keys in the index follow),
    /// so the slab can shrink.
    pub fn shrink(&mut self) {
        if self.index.capacity() > 4 * self.index.len() + 64 {
            let entries = &self.entries;
            self.index
                .shrink_to_fit(|&at| hash(entries[at as usize].channel.id()));
        }
        if self.entries.capacity() > 4 * self.entries.len() + 1024 {
            let index = &mut self.index;
            self.entries.compact(|local, from, to| {
                let Some(key) = index.find_mut(hash(local.channel.id()), |&at| at as usize == from)
                else {
                    return false;
                };
                *key = to as u32;
                true
            });
        }
        self.lists.shrink();
    }

    pub fn remove(&mut self, id: ChannelId, position: u32) -> Removed {
        let Some(at) = self.find(id) else {
            return Removed {
                moved: None,
                emptied: None,
            };
        };
        let position = position as usize;
        let local = &mut self.entries[at];
        local.subscribers.swap_remove(&mut self.lists, position);
        let moved = local
            .subscribers
            .as_slice(&self.lists)
            .get(position)
            .map(|&key| (key, position as u32));
        let emptied = if local.subscribers.is_empty() {
            if let Ok(key) = self.index.find_entry(hash(id), |&k| k as usize == at) {
                key.remove();
            }
            Some(self.entries.remove(at).channel.into_ref())
        } else {
            None
        };
        Removed { moved, emptied }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's topics holding `n` channels, channel i with one subscriber (slab
    /// key i) and last seq i.
    fn holding(n: usize) -> (Topics, Vec<ChannelRef>) {
        use crate::pubsub::hub::{HistoryLimits, Hub, Position};
        let limits = HistoryLimits {
            size: 0,
            ttl_s: 0,
            keep_idle_s: 0,
        };
        let hub = Hub::new(Vec::new(), limits);
        let mut topics = Topics::default();
        let channels: Vec<_> = (0..n)
            .map(|i| {
                let name = format!("t{i}");
                hub.attach(&name, 0, Position::default()).unwrap().channel
            })
            .collect();
        for (i, channel) in channels.iter().enumerate() {
            topics.insert(ChannelRef::clone(channel), i as u64);
            assert_eq!(topics.add_subscriber(channel.id, i as u32), 0);
        }
        (topics, channels)
    }

    #[test]
    fn the_table_finds_each_channel_by_the_id_inside_it() {
        let (mut topics, channels) = holding(3000);
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
            let held = topics.of(channel).map(|l| l.last_seq(0));
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
        assert_eq!(local.last_seq(0), 99);
        assert!(topics.subscribers(local).is_empty());
        assert_eq!(topics.lists_held(), 0);
    }

    #[test]
    fn random_joins_leaves_and_publications_agree_with_a_map() {
        // 300 channels held from just below 2^32, so positions cross the boundary;
        // publications a little behind or ahead; shrinks between. Checked against a
        // map of (subscribers, last seq) after every step.
        use std::collections::HashMap;
        let (mut topics, channels) = holding(300);
        for channel in &channels {
            topics.remove(channel.id, 0);
        }
        let mut model: HashMap<usize, (Vec<u32>, u64)> = HashMap::new();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..10_000 {
            let roll = next();
            let c = (roll % 300) as usize;
            let channel = &channels[c];
            match (roll >> 12) % 10 {
                0..=3 => {
                    let (keys, _) = model.entry(c).or_insert_with(|| {
                        let start = (1u64 << 32) - 40 + (roll >> 40) % 30;
                        topics.insert(ChannelRef::clone(channel), start);
                        (Vec::new(), start)
                    });
                    let key = (roll >> 20) as u32 % 5000;
                    assert_eq!(
                        topics.add_subscriber(channel.id, key) as usize,
                        keys.len(),
                        "step {step}"
                    );
                    keys.push(key);
                }
                4..=6 => {
                    let Some((keys, _)) = model.get_mut(&c) else {
                        continue;
                    };
                    let position = (roll >> 20) as usize % keys.len();
                    let removed = topics.remove(channel.id, position as u32);
                    keys.swap_remove(position);
                    let moved = keys.get(position).map(|&k| (k, position as u32));
                    assert_eq!(removed.moved, moved, "step {step}");
                    assert_eq!(removed.emptied.is_some(), keys.is_empty(), "step {step}");
                    if keys.is_empty() {
                        model.remove(&c);
                    }
                }
                7..=8 => {
                    let Some((keys, last)) = model.get_mut(&c) else {
                        assert!(topics.take_fresh(channel, 1 << 32).is_none());
                        continue;
                    };
                    let newest = (*last + (roll >> 20) % 9).saturating_sub(3);
                    match topics.take_fresh(channel, newest) {
                        Some((before, taken)) => {
                            assert!(newest > *last, "step {step}");
                            assert_eq!(before, *last, "step {step}");
                            assert_eq!(taken.as_slice(), &keys[..], "step {step}");
                            topics.put_back_subscribers(channel.id, taken);
                            *last = newest;
                        }
                        None => assert!(newest <= *last, "step {step}"),
                    }
                }
                _ => topics.shrink(),
            }
        }
        for (c, channel) in channels.iter().enumerate() {
            let local = topics.of(channel);
            match model.get(&c) {
                Some((keys, last)) => {
                    let local = local.expect("held");
                    assert_eq!(topics.subscribers(local), &keys[..], "{c}");
                    assert_eq!(local.last_seq(*last + 1000), *last, "{c}");
                }
                None => assert!(local.is_none(), "{c}"),
            }
        }
    }

    #[test]
    fn a_per_user_channel_costs_a_12_byte_entry() {
        // Its id holding a reference, one inline subscriber (or a list's index) and
        // 32 bits of its last seq; the slab's vacancy fits beside the id, whose
        // niche tells it apart, so no tag is added.
        assert_eq!(std::mem::size_of::<LocalChannel>(), 12);
        assert_eq!(std::mem::size_of::<crate::paged::Entry<LocalChannel>>(), 12);
    }

    #[test]
    fn the_last_seq_reads_back_across_a_32_bit_boundary() {
        assert_eq!(widen(5, 7), 5);
        assert_eq!(widen(9, 7), 9);
        assert_eq!(widen(u32::MAX - 1, 1 << 32), (1 << 32) - 2, "just behind");
        assert_eq!(widen(3, (1 << 32) - 2), (1 << 32) + 3, "just ahead");
        let far = (7u64 << 32) + 12;
        assert_eq!(widen((far - 100) as u32, far), far - 100);
        assert_eq!(widen((far + (1 << 30)) as u32, far), far + (1 << 30));

        // Held from seq 2^32 - 2: a publication of 2^32 + 3 is fresh, and the
        // position moves past the boundary; an older one then is not.
        let (mut topics, channels) = holding(1);
        let start = (1u64 << 32) - 2;
        topics.insert(ChannelRef::clone(&channels[0]), start);
        topics.add_subscriber(channels[0].id, 0);
        let (before, _) = topics.take_fresh(&channels[0], start + 5).expect("fresh");
        assert_eq!(before, start);
        assert!(
            topics.take_fresh(&channels[0], start + 3).is_none(),
            "stale"
        );
        assert_eq!(
            topics.get(channels[0].id).unwrap().last_seq(start),
            start + 5
        );
    }

    #[test]
    fn shrinking_moves_entries_down_and_every_channel_is_still_found() {
        let (mut topics, channels) = holding(5000);
        // Keep one in ten, most of them high in the slab, so compaction moves them.
        for (i, channel) in channels.iter().enumerate() {
            if i % 10 != 7 {
                assert!(topics.remove(channel.id, 0).emptied.is_some(), "{i}");
            }
        }
        let before = topics.entries.capacity();
        topics.shrink();
        assert!(topics.entries.capacity() < before / 4, "the slab shrank");
        for (i, channel) in channels.iter().enumerate() {
            let held = topics.of(channel).map(|l| l.last_seq(0));
            assert_eq!(held, (i % 10 == 7).then_some(i as u64), "{i}");
        }
        // And they still take new subscribers and leave.
        for (i, channel) in channels.iter().enumerate().filter(|(i, _)| i % 10 == 7) {
            assert_eq!(topics.add_subscriber(channel.id, 9), 1, "{i}");
            assert!(topics.remove(channel.id, 0).moved.is_some(), "{i}");
            assert!(topics.remove(channel.id, 0).emptied.is_some(), "{i}");
        }
        assert!(topics.get(channels[7].id).is_none());
    }
}
