//! Client commands (subscribe, unsubscribe, publish, noop, auth, refresh) and joining a channel,
//! which every transport shares: a subscription starts live from a known seq, after
//! the catch-up a resume asked for.

use bytes::{Bytes, BytesMut};

use super::stall::SYNCING;
use super::subscriptions::Subscription;
use super::Worker;
use crate::proto::command::{self, Command};
use crate::proto::ws;
use crate::pubsub::history::CatchUp;
use crate::pubsub::hub::{AttachError, ChannelRef, Position, TOO_MANY_CHANNELS};
use crate::pubsub::publication::Upstream;

/// A connection joined a channel.
#[derive(Debug)]
pub(super) struct Joined {
    pub channel: ChannelRef,
    /// Where the connection stands once `catch_up` is delivered; every later
    /// message reaches it through fan-out.
    pub last_seq: u64,
    pub catch_up: CatchUp,
}

impl Worker {
    pub(super) fn on_command(&mut self, key: usize, payload: &[u8]) {
        if self.is_stalled(key) {
            return self.queue_command(key, payload);
        }
        let parsed = command::parse(payload);
        if self.lacks_required_token(key)
            && !matches!(parsed, Ok(Command::Auth(_) | Command::Noop) | Err(_))
        {
            return self.refuse(key, "token required");
        }
        match parsed {
            Ok(Command::Subscribe {
                channel,
                since,
                epoch,
            }) => {
                if let Err(refused) = self.may_join(key, &channel) {
                    return self.refuse(key, &refused.reason);
                }
                let position = Position {
                    since,
                    epoch: epoch.as_deref(),
                };
                match self.join(key, &channel, position) {
                    Ok(joined) => self.confirm_ws(key, &joined),
                    Err(SYNCING) => self.queue_command(key, payload),
                    Err(reason) => self.refuse(key, reason),
                }
            }
            Ok(Command::Unsubscribe(channel)) => {
                self.unsubscribe(key, &channel);
                self.reply(key, command::unsubscribed(&channel));
            }
            Ok(Command::Publish { channel, data }) => {
                if let Err(refused) = self.may_join(key, &channel) {
                    return self.refuse(key, &refused.reason);
                }
                if self.settings.client_publish {
                    if let Some(broker) = self.shared.broker.get().filter(|b| b.is_up()) {
                        broker.publish_for(self.id, key, &channel, data);
                        return self.await_publish(key);
                    }
                    match self.hub.publish(&channel, data) {
                        Ok((_, seq)) => self.reply(key, command::published(&channel, seq)),
                        Err(_) => self.refuse(key, TOO_MANY_CHANNELS),
                    }
                } else {
                    self.refuse(key, "publish is disabled");
                }
            }
            Ok(Command::Noop) => {}
            Ok(Command::Auth(token)) => self.on_auth(key, &token),
            Ok(Command::Refresh(token)) => self.on_refresh(key, &token),
            Err(reason) => self.refuse(key, &reason),
        }
    }

    /// The `subscribed` reply, then the catch-up pushes, in one write.
    pub(super) fn confirm_ws(&mut self, key: usize, joined: &Joined) {
        let reply = command::subscribed(
            &joined.channel.name,
            joined.last_seq,
            &joined.channel.epoch,
            joined.catch_up.recovered,
        );
        let mut out = BytesMut::new();
        let mut frame = Vec::with_capacity(reply.len() + 4);
        ws::encode(ws::Kind::Text, reply.as_bytes(), &mut frame);
        out.extend_from_slice(&frame);
        for (_, payload) in &joined.catch_up.messages {
            frame.clear();
            ws::encode(ws::Kind::Text, payload, &mut frame);
            out.extend_from_slice(&frame);
        }
        self.count_resume(joined);
        self.counters.delivered += joined.catch_up.messages.len() as u64;
        self.send(key, out.freeze());
    }

    pub(super) fn count_resume(&mut self, joined: &Joined) {
        if !joined.catch_up.recovered {
            self.counters.resumes_not_recovered += 1;
        }
    }

    pub(super) fn reply(&mut self, key: usize, message: String) {
        self.send(
            key,
            Bytes::from(ws::frame(ws::Kind::Text, message.as_bytes())),
        );
    }

    pub(super) fn refuse(&mut self, key: usize, reason: &str) {
        self.counters.command_errors += 1;
        self.reply(key, command::error(reason));
    }

    /// Subscribes `key` to `name` (already validated), live from the channel's
    /// position on this worker, with what a resume from `position` needs first.
    /// Joining a channel twice keeps one subscription (and still resumes).
    pub(super) fn join(
        &mut self,
        key: usize,
        name: &str,
        position: Position<'_>,
    ) -> Result<Joined, &'static str> {
        crate::fail_point::panic_if("worker-join", name);
        let held = self.hub.find(name).and_then(|c| {
            self.topics
                .of(&c)
                .map(|l| (l.channel.to_ref(), l.position()))
        });
        if let Some((channel, last_seq)) = held {
            let catch_up = self.hub.catch_up(&channel, position, last_seq);
            if !self.is_subscribed(key, channel.id) {
                self.add_subscriber(key, &channel)?;
            }
            return Ok(Joined {
                channel,
                last_seq,
                catch_up,
            });
        }
        // Checked before the hub creates anything.
        if self.subscription_count(key) >= self.settings.max_subscriptions {
            return Err("too many subscriptions");
        }
        let joined = match self.hub.attach(name, self.id, position) {
            Ok(joined) => joined,
            Err(AttachError::Syncing) => {
                self.stall_on(key, name);
                return Err(SYNCING);
            }
            Err(AttachError::TooManyChannels) => return Err(TOO_MANY_CHANNELS),
        };
        self.topics
            .insert(ChannelRef::clone(&joined.channel), joined.last_seq);
        self.add_subscriber(key, &joined.channel)?;
        Ok(Joined {
            channel: joined.channel,
            last_seq: joined.last_seq,
            catch_up: joined.catch_up,
        })
    }

    fn add_subscriber(&mut self, key: usize, channel: &ChannelRef) -> Result<(), &'static str> {
        if self.subscription_count(key) >= self.settings.max_subscriptions {
            return Err("too many subscriptions");
        }
        let position = self.topics.add_subscriber(channel.id, key as u32);
        self.add_subscription(
            key,
            Subscription {
                channel: channel.id,
                position,
            },
        );
        if channel.keeps_presence() {
            self.presence_joined(key, channel);
        }
        Ok(())
    }

    fn unsubscribe(&mut self, key: usize, name: &str) {
        let found = self
            .subscriptions(key)
            .iter()
            .find(|s| {
                self.topics
                    .get(s.channel)
                    .is_some_and(|local| &*local.channel.name == name)
            })
            .map(|s| s.channel);
        if let Some(channel) = found {
            if let Some(removed) = self.remove_subscription(key, channel) {
                self.drop_subscriber(key, removed);
            }
        }
    }

    /// Removes every subscription of `key` (on close, or once a poll is answered).
    pub(super) fn unsubscribe_all(&mut self, key: usize) {
        if self.conns.get(key).is_none() {
            return;
        }
        let all = self.take_subscriptions(key);
        for &subscription in all.as_slice() {
            self.drop_subscriber(key, subscription);
        }
    }

    /// Takes one subscriber out of its channel's list and fixes the back-pointer of
    /// the connection that moved into its place.
    fn drop_subscriber(&mut self, key: usize, subscription: Subscription) {
        let presence = self
            .topics
            .get(subscription.channel)
            .filter(|local| local.channel.keeps_presence())
            .map(|local| local.channel.to_ref());
        if let Some(channel) = presence {
            self.presence_left(key, &channel);
        }
        let removed = self
            .topics
            .remove(subscription.channel, subscription.position);
        if let Some((moved, position)) = removed.moved {
            if self.conns.get(moved as usize).is_some() {
                self.set_subscription_position(moved as usize, subscription.channel, position);
            }
        }
        if let Some(channel) = removed.emptied {
            self.hub.detach(&channel, self.id);
        }
    }
}
