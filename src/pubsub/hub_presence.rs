//! The hub's side of presence (`--presence-channels`): who is connected to each
//! presence channel, joins and leaves (a leave decided by the sweep after its
//! grace), their events with `--presence-events`, and `GET /api/presence`.

use std::collections::HashMap;
use std::sync::MutexGuard;

use super::remote;
use super::{Channel, ChannelId, ChannelRef, Hub, Locked, Present};
use crate::pubsub::presence::{self, Change, Presence};

impl Hub {
    /// A connection (of `user`, if it has a token) joined a presence channel the
    /// worker holds.
    pub fn presence_join(&self, channel: &ChannelRef, user: Option<&str>, info: Option<&str>) {
        let mut state = channel.state();
        let change = self
            .presences()
            .entry(channel.id)
            .or_insert_with(|| Present {
                name: channel.name.clone(),
                presence: Presence::default(),
            })
            .presence
            .join(user, info);
        if let (Change::Joined, Some(user), true) = (change, user, self.presence_events) {
            self.presence_event(channel, &mut state, "join", user, info);
        }
        drop(state);
        self.presence_changed(&channel.name);
    }

    /// A join or leave event: numbered here, or with the broker published through
    /// Redis like any message, so that every node's subscribers see it in order.
    fn presence_event(
        &self,
        channel: &ChannelRef,
        state: &mut Locked<'_>,
        kind: &str,
        user: &str,
        info: Option<&str>,
    ) {
        if let Some(upstream) = self.upstream.get().filter(|u| u.is_up()) {
            upstream.publish_event(&channel.name, remote::presence_data(kind, user, info));
            return;
        }
        let name = &channel.name;
        self.push_locked(channel, state, |seq| {
            presence::event(name, seq, kind, user, info)
        });
    }

    fn presence_changed(&self, name: &str) {
        if let Some(upstream) = self.upstream.get() {
            upstream.presence_changed(name);
        }
    }

    /// The connection left; its user's leave is decided by the sweep after the grace.
    pub fn presence_leave(&self, channel: &ChannelRef, user: Option<&str>) {
        let now = self.now_s();
        let mut state = channel.state();
        {
            let mut presences = self.presences();
            let Some(Present { presence, .. }) = presences.get_mut(&channel.id) else {
                return;
            };
            presence.leave(user, now);
            if presence.is_empty() {
                presences.remove(&channel.id);
            }
        }
        self.watch(channel, &mut state);
        drop(state);
        self.presence_changed(&channel.name);
    }

    /// `GET /api/presence`: who is connected to `name`, or why it cannot say.
    pub fn presence_json(&self, name: &str) -> Result<String, String> {
        if !self
            .presence_prefixes
            .iter()
            .any(|p| name.starts_with(&**p))
        {
            return Err(format!(
                "channel {name} keeps no presence (see --presence-channels)"
            ));
        }
        let Some(channel) = self.find(name) else {
            return Ok(presence::empty_json(name));
        };
        Ok(match self.presences().get(&channel.id) {
            Some(p) => p.presence.json(name),
            None => presence::empty_json(name),
        })
    }

    pub(super) fn presences(&self) -> MutexGuard<'_, HashMap<ChannelId, Present>> {
        self.presences.lock().expect("presence lock")
    }

    /// A user's leave is in its grace: the sweep must come back to the channel.
    pub(super) fn presence_leaving(&self, channel: &Channel) -> bool {
        channel.keeps_presence()
            && self
                .presences()
                .get(&channel.id)
                .is_some_and(|p| p.presence.has_leaving())
    }

    /// Announces (with `--presence-events`) the users whose grace has passed.
    pub(super) fn expire_presence(&self, channel: &ChannelRef, state: &mut Locked<'_>, now: u32) {
        let gone = {
            let mut presences = self.presences();
            let Some(Present { presence, .. }) = presences.get_mut(&channel.id) else {
                return;
            };
            let gone = presence.expire(now);
            if presence.is_empty() {
                presences.remove(&channel.id);
            }
            gone
        };
        if !gone.is_empty() {
            self.presence_changed(&channel.name);
        }
        if self.presence_events && state.holders().any() {
            for user in gone {
                self.presence_event(channel, state, "leave", &user, None);
            }
        }
    }
}
