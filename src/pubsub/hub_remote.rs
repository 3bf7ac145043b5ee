//! The hub's side of the broker (`--broker`): channels whose state is read from
//! Redis before workers attach, and messages numbered by Redis that arrive from
//! it. With the broker, every message a node delivers came through here, so a
//! channel's messages reach the node once each, in order, whoever published them.

use std::sync::Arc;

use bytes::Bytes;

use super::{AttachError, Channel, ChannelRef, Hub};
use crate::proto::command;
use crate::pubsub::presence;
use crate::pubsub::publication::Upstream;

/// Where a channel stands in Redis: what `Hub::synced` applies.
#[derive(Debug)]
pub struct Standing {
    pub epoch: String,
    pub last_seq: u64,
    /// The kept messages, oldest first: (seq, age in seconds, data).
    pub log: Vec<(u64, u32, String)>,
}

/// What became of a relayed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    Delivered,
    /// At or below the channel's last seq: seen already (a resync overlaps).
    Duplicate,
    /// This node does not hold the channel (any more).
    NotHeld,
    /// Delivered, but numbers between the last seq and this one never came.
    AfterGap,
}

impl Hub {
    /// Connects the broker; from now on new channels are synced from it.
    pub fn set_upstream(&self, upstream: Arc<dyn Upstream>) {
        let _ = self.upstream.set(upstream);
    }

    /// Records that `worker` waits for `name`, and asks the broker for it the first
    /// time. False when there is no reachable broker: the channel is then made here.
    pub(super) fn wait_for_sync(&self, name: &str, worker: usize) -> bool {
        let Some(upstream) = self.upstream.get().filter(|u| u.is_up()) else {
            return false;
        };
        if self.channel_count() >= self.max_channels {
            return false; // refused where channels are made
        }
        let mut syncing = self.syncing.lock().expect("sync lock");
        if self.find(name).is_some() {
            return false; // synced while we took the lock
        }
        let first = !syncing.contains_key(name);
        *syncing.entry(name.into()).or_default() |= 1 << worker;
        drop(syncing);
        if first {
            upstream.hold(name);
        }
        true
    }

    /// The broker read where `name` stands. A channel nobody held yet is made with
    /// Redis's epoch, last seq and history, and the waiting workers are told; one
    /// held already (a resync after an outage) gets what it missed.
    pub fn synced(&self, name: &str, standing: Standing) {
        let mut syncing = self.syncing.lock().expect("sync lock");
        let waiting = syncing.remove(name).unwrap_or(0);
        if let Some(channel) = self.find(name) {
            drop(syncing);
            for (seq, _, data) in &standing.log {
                self.relayed(name, *seq, data);
            }
            let mut state = channel.state();
            if standing.last_seq > state.last_seq() && *channel.epoch == *standing.epoch {
                // Published while this node could not hear, and gone from the log.
                state.set_last_seq(standing.last_seq);
            }
            drop(state);
            self.notify_ready(&channel, waiting);
            return;
        }
        if waiting == 0 {
            return; // released before the broker answered
        }
        let channel = match self.channel_with_epoch(name, Some(&standing.epoch)) {
            Ok(channel) => channel,
            Err(_) => {
                drop(syncing);
                // Too many channels: the waiting workers try again and are refused.
                self.refused_ready(name, waiting);
                return;
            }
        };
        let now = self.now_s();
        {
            let mut state = channel.state();
            state.set_last_seq(standing.last_seq);
            state.holders_mut().add(waiting);
            if self.limits.size > 0 {
                for (seq, age, data) in standing.log {
                    let payload = Bytes::from(push_of(name, seq, &data));
                    let at = now.saturating_sub(age);
                    state.keep(seq, at, payload, self.limits.size);
                }
            }
            self.watch(&channel, &mut state);
        }
        drop(syncing);
        self.notify_ready(&channel, waiting);
    }

    fn notify_ready(&self, channel: &ChannelRef, workers: u64) {
        for (worker, outlet) in self.outlets.iter().enumerate() {
            if workers & (1 << worker) != 0 {
                outlet.ready(ChannelRef::clone(channel));
            }
        }
    }

    /// A channel that could not be made: the workers retry and get the refusal.
    fn refused_ready(&self, name: &str, workers: u64) {
        let placeholder = ChannelRef::placeholder(name);
        self.notify_ready(&placeholder, workers);
    }

    /// A message Redis numbered: delivered if it is the channel's next.
    pub fn relayed(&self, name: &str, seq: u64, data: &str) -> Relay {
        let Some(channel) = self.find(name) else {
            return Relay::NotHeld;
        };
        let mut state = channel.state();
        if state.marks().removed {
            return Relay::NotHeld;
        }
        if seq <= state.last_seq() {
            return Relay::Duplicate;
        }
        let gap = seq > state.last_seq() + 1;
        self.published_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.hand_off(&channel, &mut state, seq, push_of(name, seq, data));
        if gap {
            Relay::AfterGap
        } else {
            Relay::Delivered
        }
    }

    /// Every channel this node holds, with its epoch and last seq: what the broker
    /// resubscribes and resyncs after an outage.
    pub fn held(&self) -> Vec<(Box<str>, Box<str>, u64)> {
        let channels = self.channels.read().expect("hub lock").all();
        channels
            .into_iter()
            .map(|c| {
                let last = c.state().last_seq();
                (c.name.as_str().into(), c.epoch.as_str().into(), last)
            })
            .collect()
    }

    pub fn last_seq(&self, channel: &Channel) -> u64 {
        channel.state().last_seq()
    }

    /// This node's presence on every channel that keeps it and has someone here:
    /// what the broker writes to Redis for the other nodes. Visits only those.
    pub fn local_presence(&self) -> Vec<(Box<str>, String)> {
        self.presences()
            .values()
            .map(|p| (p.name.as_str().into(), p.presence.json(&p.name)))
            .collect()
    }

    /// This node's presence on `name` (`None`: nobody here).
    pub fn local_presence_of(&self, name: &str) -> Option<String> {
        let channel = self.find(name)?;
        self.presences()
            .get(&channel.id)
            .map(|p| p.presence.json(name))
    }

    /// Whether `name` keeps presence (`--presence-channels`).
    pub fn keeps_presence(&self, name: &str) -> bool {
        self.presence_prefixes
            .iter()
            .any(|p| name.starts_with(&**p))
    }

    /// Channels waiting for the broker now.
    pub fn syncing_count(&self) -> usize {
        self.syncing.lock().expect("sync lock").len()
    }

    /// Gives up on the channels being synced (the broker went away): their
    /// workers retry, and make them here.
    pub fn abandon_syncs(&self) {
        let all = std::mem::take(&mut *self.syncing.lock().expect("sync lock"));
        for (name, workers) in all {
            self.refused_ready(&name, workers);
        }
    }
}

impl From<super::TooManyChannels> for AttachError {
    fn from(_: super::TooManyChannels) -> AttachError {
        AttachError::TooManyChannels
    }
}

/// A presence event as it crosses Redis: `!` then the event's fields, which no
/// JSON data can start with, so that a node rebuilds the event and not a push.
pub fn presence_data(kind: &str, user: &str, info: Option<&str>) -> String {
    let event = presence::event("", 0, kind, user, info);
    let text = String::from_utf8(event).expect("the event is JSON text");
    // `{"channel":"","seq":0,` is rebuilt by `push_of` with the real values.
    let fields = text
        .split_once(",\"presence\"")
        .map_or("", |(_, rest)| rest);
    format!("!\"presence\"{fields}")
}

/// The bytes a node sends for message `seq` of `name`: a push, or a presence event.
pub fn push_of(name: &str, seq: u64, data: &str) -> Vec<u8> {
    match data.strip_prefix('!') {
        Some(fields) => format!("{{\"channel\":\"{name}\",\"seq\":{seq},{fields}").into_bytes(),
        None => command::push(name, seq, data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_events_cross_redis_unchanged() {
        let data = presence_data("join", "ann", Some(r#"{"n":1}"#));
        assert!(data.starts_with('!'));
        assert_eq!(
            push_of("room", 7, &data),
            presence::event("room", 7, "join", "ann", Some(r#"{"n":1}"#))
        );
        assert_eq!(push_of("c", 1, "{}"), command::push("c", 1, "{}"));
    }
}
