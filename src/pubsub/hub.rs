//! The hub: channel names, their sequence numbers, and the fan-out of each publish
//! to the workers that hold subscribers of its channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::proto::{command, ws};
use crate::worker::inbox::{Inbox, Mail};

/// Dense id of a channel, so that per-connection and per-worker state stays small.
pub type ChannelId = u32;

#[derive(Debug)]
pub struct Channel {
    pub id: ChannelId,
    pub name: Box<str>,
    state: Mutex<ChannelState>,
}

#[derive(Debug, Default)]
struct ChannelState {
    last_seq: u64,
    /// Bit i set: worker i holds subscribers. Publishes go only to those workers.
    workers: u64,
}

/// One published message, already a complete WebSocket frame. Cloning it for each
/// worker clones a reference count, not the bytes.
#[derive(Debug, Clone)]
pub struct Publication {
    pub channel: ChannelId,
    pub seq: u64,
    pub frame: Bytes,
}

#[derive(Debug)]
pub struct Hub {
    channels: RwLock<HashMap<Box<str>, Arc<Channel>>>,
    inboxes: Vec<Arc<Inbox>>,
    published_total: AtomicU64,
}

impl Hub {
    pub fn new(inboxes: Vec<Arc<Inbox>>) -> Hub {
        Hub {
            channels: RwLock::default(),
            inboxes,
            published_total: AtomicU64::new(0),
        }
    }

    /// The channel of that (already validated) name, created on first use.
    pub fn channel(&self, name: &str) -> Arc<Channel> {
        if let Some(found) = self.channels.read().expect("hub lock").get(name) {
            return Arc::clone(found);
        }
        let mut channels = self.channels.write().expect("hub lock");
        let next_id = channels.len() as ChannelId;
        let channel = channels.entry(name.into()).or_insert_with(|| {
            Arc::new(Channel {
                id: next_id,
                name: name.into(),
                state: Mutex::default(),
            })
        });
        Arc::clone(channel)
    }

    /// Numbers the message, encodes it once and hands it to every worker with
    /// subscribers. The channel lock is held across the hand-off so that every
    /// inbox receives a channel's messages in sequence order.
    pub fn publish(&self, name: &str, data: &str) -> u64 {
        let channel = self.channel(name);
        let mut state = channel.state.lock().expect("channel lock");
        state.last_seq += 1;
        let seq = state.last_seq;
        self.published_total.fetch_add(1, Ordering::Relaxed);
        if state.workers != 0 {
            let frame = Bytes::from(ws::frame(ws::Kind::Text, &command::push(name, seq, data)));
            let publication = Publication {
                channel: channel.id,
                seq,
                frame,
            };
            for (worker, inbox) in self.inboxes.iter().enumerate() {
                if state.workers & (1 << worker) != 0 {
                    inbox.push(Mail::Publication(publication.clone()));
                }
            }
        }
        seq
    }

    /// A worker gains its first subscriber of `channel`. Returns the last sequence
    /// number: every later publish reaches the worker.
    pub fn attach(&self, channel: &Channel, worker: usize) -> u64 {
        let mut state = channel.state.lock().expect("channel lock");
        state.workers |= 1 << worker;
        state.last_seq
    }

    /// A worker lost its last subscriber of `channel`.
    pub fn detach(&self, channel: &Channel, worker: usize) {
        channel.state.lock().expect("channel lock").workers &= !(1 << worker);
    }

    pub fn channel_count(&self) -> usize {
        self.channels.read().expect("hub lock").len()
    }

    pub fn published_total(&self) -> u64 {
        self.published_total.load(Ordering::Relaxed)
    }
}
