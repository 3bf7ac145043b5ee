//! The channels one connection is subscribed to, with its position in each
//! channel's local subscriber list. One subscription (the common case) lives in
//! the connection's slot, in 8 bytes; a connection with more keeps them all in its
//! side entry and the slot only says so. That keeps the slot at 24 bytes: an enum
//! with an inline case and a boxed case would need a tag and take 16.

use super::connection::Connection;
use super::side::Side;
use super::Worker;
use crate::paged::PagedSlab;
use crate::pubsub::hub::ChannelId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub channel: ChannelId,
    /// Index in the worker's subscriber list of that channel.
    pub position: u32,
}

/// Positions a subscriber list never reaches (it would need 2^32 entries on one
/// worker), used as the slot's marks.
const NONE: u32 = u32::MAX;
const SPILLED: u32 = u32::MAX - 1;

/// What the slot holds: nothing, the one subscription, or a mark that the
/// subscriptions are in the side entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriptions(Subscription);

impl Default for Subscriptions {
    fn default() -> Subscriptions {
        Subscriptions::with_position(NONE)
    }
}

impl Subscriptions {
    fn with_position(position: u32) -> Subscriptions {
        Subscriptions(Subscription {
            channel: 0,
            position,
        })
    }

    fn one(&self) -> Option<&Subscription> {
        (self.0.position < SPILLED).then_some(&self.0)
    }

    fn spilled(&self) -> bool {
        self.0.position == SPILLED
    }

    /// The subscriptions, given the worker's side slab (for callers that hold the
    /// worker's fields apart, like fan-out).
    pub fn in_slab<'a>(&'a self, sides: &'a PagedSlab<Side>, side: u32) -> &'a [Subscription] {
        match self.one() {
            Some(one) => std::slice::from_ref(one),
            None if self.spilled() => sides[side as usize - 1].more_subscriptions(),
            None => &[],
        }
    }
}

/// A connection's subscriptions taken out of it as it leaves its channels.
#[derive(Debug)]
pub enum Taken {
    None,
    One(Subscription),
    Many(Vec<Subscription>),
}

impl Taken {
    pub fn as_slice(&self) -> &[Subscription] {
        match self {
            Taken::None => &[],
            Taken::One(one) => std::slice::from_ref(one),
            Taken::Many(many) => many,
        }
    }
}

/// The subscriptions of `conn`, whose side entries are in `sides`.
pub fn of<'a>(conn: &'a Connection, sides: &'a PagedSlab<Side>) -> &'a [Subscription] {
    conn.subscriptions.in_slab(sides, conn.side)
}

impl Worker {
    pub(super) fn subscriptions(&self, key: usize) -> &[Subscription] {
        of(&self.conns[key], &self.sides)
    }

    pub(super) fn subscription_count(&self, key: usize) -> usize {
        self.subscriptions(key).len()
    }

    pub(super) fn is_subscribed(&self, key: usize, channel: ChannelId) -> bool {
        self.subscriptions(key).iter().any(|s| s.channel == channel)
    }

    pub(super) fn add_subscription(&mut self, key: usize, added: Subscription) {
        debug_assert!(added.position < SPILLED);
        let slot = self.conns[key].subscriptions;
        if slot.spilled() {
            self.side_mut(key).more_subscriptions_mut().push(added);
        } else if let Some(&one) = slot.one() {
            *self.side_mut(key).more_subscriptions_mut() = vec![one, added];
            self.conns[key].subscriptions = Subscriptions::with_position(SPILLED);
        } else {
            self.conns[key].subscriptions = Subscriptions(added);
        }
    }

    pub(super) fn remove_subscription(
        &mut self,
        key: usize,
        channel: ChannelId,
    ) -> Option<Subscription> {
        let slot = self.conns[key].subscriptions;
        if let Some(&one) = slot.one() {
            if one.channel != channel {
                return None;
            }
            self.conns[key].subscriptions = Subscriptions::default();
            return Some(one);
        }
        if !slot.spilled() {
            return None;
        }
        let many = self.side_mut(key).more_subscriptions_mut();
        let index = many.iter().position(|s| s.channel == channel)?;
        let removed = many.swap_remove(index);
        if many.len() == 1 {
            let last = many[0];
            self.side_mut(key).drop_more_subscriptions();
            self.conns[key].subscriptions = Subscriptions(last);
            self.trim_side(key);
        }
        Some(removed)
    }

    pub(super) fn set_subscription_position(
        &mut self,
        key: usize,
        channel: ChannelId,
        position: u32,
    ) {
        let conn = &mut self.conns[key];
        if conn.subscriptions.0.channel == channel && conn.subscriptions.one().is_some() {
            conn.subscriptions.0.position = position;
        } else if conn.subscriptions.spilled() {
            let many = self.side_mut(key).more_subscriptions_mut();
            if let Some(s) = many.iter_mut().find(|s| s.channel == channel) {
                s.position = position;
            }
        }
    }

    /// Empties the connection's subscriptions and hands them over.
    pub(super) fn take_subscriptions(&mut self, key: usize) -> Taken {
        let slot = std::mem::take(&mut self.conns[key].subscriptions);
        if let Some(&one) = slot.one() {
            return Taken::One(one);
        }
        if !slot.spilled() {
            return Taken::None;
        }
        let many = std::mem::take(self.side_mut(key).more_subscriptions_mut());
        self.side_mut(key).drop_more_subscriptions();
        self.trim_side(key);
        Taken::Many(many)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_holds_one_subscription_in_eight_bytes() {
        assert_eq!(std::mem::size_of::<Subscriptions>(), 8);
        let none = Subscriptions::default();
        assert!(none.one().is_none() && !none.spilled());
        let one = Subscriptions(Subscription {
            channel: 7,
            position: 3,
        });
        assert_eq!(one.one().map(|s| s.channel), Some(7));
        assert!(Subscriptions::with_position(SPILLED).spilled());
        assert!(Subscriptions::with_position(SPILLED).one().is_none());
    }

    #[test]
    fn taken_subscriptions_read_as_a_slice() {
        let s = Subscription {
            channel: 1,
            position: 2,
        };
        assert!(Taken::None.as_slice().is_empty());
        assert_eq!(Taken::One(s).as_slice(), &[s]);
        assert_eq!(Taken::Many(vec![s, s]).as_slice().len(), 2);
    }
}
