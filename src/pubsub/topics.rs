//! One worker's channel index: for each channel with local subscribers, the slab
//! keys of those connections. Each connection remembers its position in each list,
//! so unsubscribing is O(1) (swap-remove plus one back-pointer fix).

use std::collections::HashMap;
use std::sync::Arc;

use super::hub::{Channel, ChannelId};

#[derive(Debug)]
pub struct LocalChannel {
    pub channel: Arc<Channel>,
    /// Slab keys of subscribed connections.
    pub subscribers: Vec<u32>,
    /// The last sequence number this worker has handled; a publication at or below
    /// it is already accounted for (it predates the local subscription).
    pub last_seq: u64,
}

#[derive(Debug, Default)]
pub struct Topics {
    channels: HashMap<ChannelId, LocalChannel>,
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
        self.channels.get(&id)
    }

    pub fn get_mut(&mut self, id: ChannelId) -> Option<&mut LocalChannel> {
        self.channels.get_mut(&id)
    }

    /// The local entry of `channel`, if this worker holds that very channel.
    pub fn of(&self, channel: &Arc<Channel>) -> Option<&LocalChannel> {
        self.channels
            .get(&channel.id)
            .filter(|local| Arc::ptr_eq(&local.channel, channel))
    }

    /// Starts holding `channel`, live from `last_seq`.
    pub fn insert(&mut self, channel: Arc<Channel>, last_seq: u64) {
        self.channels.insert(
            channel.id,
            LocalChannel {
                channel,
                subscribers: Vec::new(),
                last_seq,
            },
        );
    }

    /// Adds a subscriber to a held channel; returns its position in the list.
    pub fn add_subscriber(&mut self, id: ChannelId, key: u32) -> u32 {
        let Some(local) = self.channels.get_mut(&id) else {
            return 0;
        };
        local.subscribers.push(key);
        (local.subscribers.len() - 1) as u32
    }

    /// Gives back the memory of a map that once held many more channels.
    pub fn shrink(&mut self) {
        if self.channels.capacity() > 4 * self.channels.len() + 64 {
            self.channels.shrink_to_fit();
        }
    }

    pub fn remove(&mut self, id: ChannelId, position: u32) -> Removed {
        let Some(local) = self.channels.get_mut(&id) else {
            return Removed {
                moved: None,
                emptied: None,
            };
        };
        let position = position as usize;
        local.subscribers.swap_remove(position);
        let moved = local
            .subscribers
            .get(position)
            .map(|&key| (key, position as u32));
        if local.subscribers.capacity() > 4 * local.subscribers.len() + 16 {
            local.subscribers.shrink_to_fit();
        }
        let emptied = if local.subscribers.is_empty() {
            self.channels.remove(&id).map(|gone| gone.channel)
        } else {
            None
        };
        Removed { moved, emptied }
    }
}
