//! Carrying out what the hub and the workers asked of the broker thread, a batch
//! per round trip: subscribing to the channels held (and reading their state),
//! unsubscribing from those let go, publishing for clients, and writing presence.

use std::sync::atomic::Ordering;

use super::link::Link;
use super::publisher::{self, Ask, Item};
use super::target::SlotMap;
use super::{by_shard, presence, unix_now, Broker, ClientPublish, Order, PresenceEntry};
use crate::pubsub::hub::remote::Standing;

impl Broker {
    /// Runs a batch of orders: in order of kind runs, so a release followed by a
    /// hold of one channel ends subscribed.
    pub(super) fn carry_out(&self, links: &mut [Link], orders: Vec<Order>) -> Result<(), String> {
        let slots = self.slots();
        let mut holds: Vec<Box<str>> = Vec::new();
        let mut releases: Vec<Box<str>> = Vec::new();
        let mut publishes: Vec<ClientPublish> = Vec::new();
        let mut presence: Vec<Box<str>> = Vec::new();
        for order in orders {
            match order {
                Order::Hold(name) => {
                    if !releases.is_empty() {
                        self.release_all(links, &slots, std::mem::take(&mut releases))?;
                    }
                    holds.push(name);
                }
                Order::Release(name) => {
                    if !holds.is_empty() {
                        self.hold_all(links, &slots, std::mem::take(&mut holds))?;
                    }
                    releases.push(name);
                }
                Order::Publish(publish) => publishes.push(publish),
                Order::Presence(name) => {
                    if !presence.contains(&name) {
                        presence.push(name);
                    }
                }
            }
        }
        self.hold_all(links, &slots, holds)?;
        self.release_all(links, &slots, releases)?;
        self.publish_all(links, &slots, publishes)?;
        let changed = presence
            .into_iter()
            .map(|name| {
                let local = self.hub.local_presence_of(&name);
                (name, local)
            })
            .collect();
        self.write_presence(links, changed)
    }

    pub(super) fn write_presence(
        &self,
        links: &mut [Link],
        entries: Vec<PresenceEntry>,
    ) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let slots = self.slots();
        let now = unix_now();
        for (shard, entries) in by_shard(&slots, entries, |e| &e.0) {
            presence::write(&mut links[shard].commands, &self.node_id, &entries, now)?;
        }
        Ok(())
    }

    fn hold_all(
        &self,
        links: &mut [Link],
        slots: &SlotMap,
        names: Vec<Box<str>>,
    ) -> Result<(), String> {
        for (shard, names) in by_shard(slots, names, |n| n) {
            let link = &mut links[shard];
            {
                let mut buffered = self.buffered.lock().expect("buffered");
                for name in &names {
                    buffered.entry(name.clone()).or_default();
                }
            }
            let refs: Vec<&str> = names.iter().map(|n| &**n).collect();
            link.subscribe(&refs)?;
            let asks: Vec<Ask> = names
                .iter()
                .map(|name| match self.hub.find(name) {
                    Some(held) => Ask {
                        channel: name.clone(),
                        epoch: held.epoch.as_str().into(),
                        last_seq: self.hub.last_seq(&held),
                    },
                    None => Ask {
                        channel: name.clone(),
                        epoch: self.epochs.next(),
                        last_seq: 0,
                    },
                })
                .collect();
            let states = publisher::read_states(&mut link.commands, &asks)?;
            for (ask, state) in asks.iter().zip(states) {
                let mut buffered = self.buffered.lock().expect("buffered");
                let waiting = buffered.remove(&ask.channel).unwrap_or_default();
                let Some(state) = state else { continue };
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                self.counters.subscribed.fetch_add(1, Ordering::Relaxed);
                self.hub.synced(
                    &ask.channel,
                    Standing {
                        epoch: state.epoch,
                        last_seq: state.last_seq,
                        log: state
                            .log
                            .into_iter()
                            .map(|l| (l.seq, l.age_s, l.data))
                            .collect(),
                    },
                );
                for (seq, data) in waiting {
                    self.count_relay(self.hub.relayed(&ask.channel, seq, &data));
                }
            }
        }
        Ok(())
    }

    fn release_all(
        &self,
        links: &mut [Link],
        slots: &SlotMap,
        names: Vec<Box<str>>,
    ) -> Result<(), String> {
        for (shard, names) in by_shard(slots, names, |n| n) {
            // Held again since the release was ordered: keep the subscription.
            let names: Vec<&str> = names
                .iter()
                .filter(|n| self.hub.find(n).is_none())
                .map(|n| &**n)
                .collect();
            links[shard].unsubscribe(&names)?;
            let n = names.len() as u64;
            let _ =
                self.counters
                    .subscribed
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                        Some(s.saturating_sub(n))
                    });
        }
        Ok(())
    }

    fn publish_all(
        &self,
        links: &mut [Link],
        slots: &SlotMap,
        all: Vec<ClientPublish>,
    ) -> Result<(), String> {
        if all.is_empty() {
            return Ok(());
        }
        let epoch = self.epochs.next();
        for (shard, publishes) in by_shard(slots, all, |p| &p.channel) {
            let items: Vec<Item<'_>> = publishes
                .iter()
                .map(|p| Item {
                    channel: &p.channel,
                    data: &p.data,
                })
                .collect();
            let replies = match publisher::publish_batch(
                &mut links[shard].commands,
                &items,
                self.history,
                &epoch,
                self.target.sharded(),
            ) {
                Ok(replies) => replies,
                Err(e) => {
                    for publish in &publishes {
                        self.publish_locally(publish);
                    }
                    return Err(e.text);
                }
            };
            for (publish, reply) in publishes.iter().zip(replies) {
                let answer = match reply {
                    Ok((seq, _)) => {
                        self.counters.published.fetch_add(1, Ordering::Relaxed);
                        crate::proto::command::published(&publish.channel, seq)
                    }
                    Err(e) => {
                        self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                        crate::proto::command::error(&format!("publish failed: {e}"))
                    }
                };
                self.answer(publish, answer);
            }
        }
        Ok(())
    }

    fn answer(&self, publish: &ClientPublish, answer: String) {
        if let Some((worker, key)) = publish.reply_to {
            self.outlets[worker].published(key, answer);
        }
    }

    /// Redis is unreachable: the message reaches this node's subscribers only.
    pub(super) fn publish_locally(&self, publish: &ClientPublish) {
        let answer = match self.hub.publish(&publish.channel, &publish.data) {
            Ok((_, seq)) => {
                self.counters
                    .published_locally
                    .fetch_add(1, Ordering::Relaxed);
                crate::proto::command::published(&publish.channel, seq)
            }
            Err(_) => crate::proto::command::error(crate::pubsub::hub::TOO_MANY_CHANNELS),
        };
        self.answer(publish, answer);
    }
}
