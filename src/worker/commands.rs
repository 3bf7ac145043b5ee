//! Client commands: subscribe, unsubscribe, publish, noop.

use bytes::Bytes;

use super::subscriptions::Subscription;
use super::Worker;
use crate::proto::command::{self, Command};
use crate::proto::ws;

impl Worker {
    pub(super) fn on_command(&mut self, key: usize, payload: &[u8]) {
        match command::parse(payload) {
            Ok(Command::Subscribe(channel)) => self.subscribe(key, &channel, true),
            Ok(Command::Unsubscribe(channel)) => {
                self.unsubscribe(key, &channel);
                self.reply(key, command::unsubscribed(&channel));
            }
            Ok(Command::Publish { channel, data }) => {
                if self.settings.client_publish {
                    let seq = self.hub.publish(&channel, data);
                    self.reply(key, command::published(&channel, seq));
                } else {
                    self.refuse(key, "publish is disabled");
                }
            }
            Ok(Command::Noop) => {}
            Err(reason) => self.refuse(key, &reason),
        }
    }

    fn reply(&mut self, key: usize, message: String) {
        self.send(
            key,
            Bytes::from(ws::frame(ws::Kind::Text, message.as_bytes())),
        );
    }

    fn refuse(&mut self, key: usize, reason: &str) {
        self.counters.command_errors += 1;
        self.reply(key, command::error(reason));
    }

    /// Subscribes `key` to `name` (already validated). With `reply`, confirms with
    /// the last sequence number this worker has seen on the channel: the next push
    /// the client gets is exactly the one after it.
    pub(super) fn subscribe(&mut self, key: usize, name: &str, reply: bool) {
        let channel = self.hub.channel(name);
        let id = channel.id;
        let subscriptions = &self.conns[key].subscriptions;
        if !subscriptions.contains(id) {
            if subscriptions.len() >= self.settings.max_subscriptions {
                return self.refuse(key, "too many subscriptions");
            }
            let (hub, worker) = (&self.hub, self.id);
            let position = self
                .topics
                .add(channel, key as u32, |c| hub.attach(c, worker));
            self.conns[key].subscriptions.add(Subscription {
                channel: id,
                position,
            });
        }
        if reply {
            let seq = self.topics.get(id).map_or(0, |local| local.last_seq);
            self.reply(key, command::subscribed(name, seq));
        }
    }

    fn unsubscribe(&mut self, key: usize, name: &str) {
        let found = self.conns[key]
            .subscriptions
            .as_slice()
            .iter()
            .find(|s| {
                self.topics
                    .get(s.channel)
                    .is_some_and(|local| &*local.channel.name == name)
            })
            .map(|s| s.channel);
        if let Some(channel) = found {
            if let Some(removed) = self.conns[key].subscriptions.remove(channel) {
                self.drop_subscriber(removed);
            }
        }
    }

    /// Removes every subscription of `key` (on close).
    pub(super) fn unsubscribe_all(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let all = std::mem::take(&mut conn.subscriptions);
        if all.is_empty() {
            return;
        }
        for &subscription in all.as_slice() {
            self.drop_subscriber(subscription);
        }
    }

    /// Takes one subscriber out of its channel's list and fixes the back-pointer of
    /// the connection that moved into its place.
    fn drop_subscriber(&mut self, subscription: Subscription) {
        let removed = self
            .topics
            .remove(subscription.channel, subscription.position);
        if let Some((moved, position)) = removed.moved {
            if let Some(conn) = self.conns.get_mut(moved as usize) {
                conn.subscriptions
                    .set_position(subscription.channel, position);
            }
        }
        if let Some(channel) = removed.emptied {
            self.hub.detach(&channel, self.id);
        }
    }
}
