//! Joins that wait for the broker: with `--broker`, a channel this node does not
//! hold yet is synced from Redis first (its epoch, last seq and history), and the
//! worker must not wait for that. The connection is stalled instead: a WebSocket's
//! commands queue behind the subscribe, and an SSE or poll request stays unread in
//! its input. When the hub says the channel is ready, they are run again.

use std::collections::{HashMap, VecDeque};

use super::connection::{Flags, Phase, Transport};
use super::Worker;
use crate::proto::query::Wanted;
use crate::pubsub::hub::Channel;

/// The reason `join` gives when the connection now waits for the broker.
pub(super) const SYNCING: &str = "channel syncing";
/// Commands a stalled WebSocket may queue; past it, close 1013.
const MAX_QUEUED_COMMANDS: usize = 64;

/// What a stalled WebSocket does next, in order.
#[derive(Debug)]
enum Queued {
    /// A command frame's payload.
    Command(Box<[u8]>),
    /// A channel its upgrade URL named (`?subscribe=`).
    UrlJoin(Wanted),
}

/// What the stalled connections of one worker wait on.
#[derive(Debug, Default)]
pub(super) struct Stalls {
    /// Channel name -> the connections waiting on it.
    waiting: HashMap<Box<str>, Vec<usize>>,
    /// A stalled WebSocket's commands, the stalling one first.
    commands: HashMap<usize, VecDeque<Queued>>,
    /// Connections with a `publish` the broker has not answered yet.
    publishes: HashMap<usize, u32>,
}

impl Worker {
    pub(super) fn is_stalled(&self, key: usize) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| c.flags.has(Flags::STALLED))
    }

    /// `key` waits for `channel` to be synced.
    pub(super) fn stall_on(&mut self, key: usize, channel: &str) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.flags.set(Flags::STALLED);
            self.stalls
                .waiting
                .entry(channel.into())
                .or_default()
                .push(key);
        }
    }

    /// Queues a command of a stalled WebSocket, in arrival order.
    pub(super) fn queue_command(&mut self, key: usize, payload: &[u8]) {
        self.queue(key, Queued::Command(payload.into()));
    }

    /// Queues a join its upgrade URL asked for.
    pub(super) fn queue_url_join(&mut self, key: usize, want: Wanted) {
        self.queue(key, Queued::UrlJoin(want));
    }

    fn queue(&mut self, key: usize, next: Queued) {
        let queue = self.stalls.commands.entry(key).or_default();
        if queue.len() >= MAX_QUEUED_COMMANDS {
            self.close_with(key, 1013, "too many commands while a channel syncs");
            return;
        }
        queue.push_back(next);
    }

    /// The hub synced `channel`: every connection that waited on it runs again.
    pub(super) fn on_ready(&mut self, channel: &Channel) {
        let keys = self
            .stalls
            .waiting
            .remove(&*channel.name)
            .unwrap_or_default();
        for key in keys {
            if !self.is_live(key) || !self.is_stalled(key) {
                continue;
            }
            self.conns[key].flags.clear(Flags::STALLED);
            let conn = &self.conns[key];
            if conn.transport == Transport::WebSocket && conn.phase == Phase::Open {
                let commands = self.stalls.commands.remove(&key).unwrap_or_default();
                for next in commands {
                    if self.is_stalled(key) {
                        self.stalls.commands.entry(key).or_default().push_back(next);
                    } else if self.is_live(key) {
                        match next {
                            Queued::Command(payload) => self.on_command(key, &payload),
                            Queued::UrlJoin(want) => {
                                self.join_from_url(key, &want);
                            }
                        }
                    }
                }
            } else {
                self.reconsume(key);
            }
        }
        // Set for this worker by the sync; given back if nobody joined after all.
        if let Some(real) = self.hub.find(&channel.name) {
            if self.topics.of(&real).is_none() {
                self.hub.detach(&real, self.id);
            }
        }
    }

    /// Counts a `publish` handed to the broker for `key`.
    pub(super) fn await_publish(&mut self, key: usize) {
        *self.stalls.publishes.entry(key).or_default() += 1;
    }

    /// The broker's answer to a `publish`: sent if its connection is still here.
    pub(super) fn on_published(&mut self, key: usize, answer: String) {
        let Some(count) = self.stalls.publishes.get_mut(&key) else {
            return; // closed meanwhile
        };
        *count -= 1;
        if *count == 0 {
            self.stalls.publishes.remove(&key);
        }
        if self.is_live(key) {
            self.reply(key, answer);
        }
    }

    /// A connection is gone: nothing it waited for concerns a later one.
    pub(super) fn forget_stalls(&mut self, key: usize) {
        self.stalls.commands.remove(&key);
        self.stalls.publishes.remove(&key);
    }
}
