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

    /// Adds a subscriber; `first_seq` is called only when the channel is new here
    /// (to attach it at the hub). Returns the connection's position in the list.
    pub fn add(
        &mut self,
        channel: Arc<Channel>,
        key: u32,
        first_seq: impl FnOnce(&Channel) -> u64,
    ) -> u32 {
        let local = self
            .channels
            .entry(channel.id)
            .or_insert_with(|| LocalChannel {
                last_seq: first_seq(&channel),
                channel,
                subscribers: Vec::new(),
            });
        local.subscribers.push(key);
        (local.subscribers.len() - 1) as u32
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
        let emptied = if local.subscribers.is_empty() {
            self.channels.remove(&id).map(|gone| gone.channel)
        } else {
            None
        };
        Removed { moved, emptied }
    }
}
