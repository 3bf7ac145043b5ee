//! The channels one connection is subscribed to, with its position in each
//! channel's local subscriber list. One subscription (the common case) is stored
//! inline; more spill into a small vector.

use crate::pubsub::hub::ChannelId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub channel: ChannelId,
    /// Index in the worker's subscriber list of that channel.
    pub position: u32,
}

#[derive(Debug, Default)]
pub enum Subscriptions {
    #[default]
    None,
    One(Subscription),
    Many(Box<Vec<Subscription>>),
}

impl Subscriptions {
    pub fn as_slice(&self) -> &[Subscription] {
        match self {
            Subscriptions::None => &[],
            Subscriptions::One(one) => std::slice::from_ref(one),
            Subscriptions::Many(many) => many,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Subscriptions::None)
    }

    pub fn contains(&self, channel: ChannelId) -> bool {
        self.as_slice().iter().any(|s| s.channel == channel)
    }

    pub fn add(&mut self, added: Subscription) {
        *self = match std::mem::take(self) {
            Subscriptions::None => Subscriptions::One(added),
            Subscriptions::One(one) => Subscriptions::Many(Box::new(vec![one, added])),
            Subscriptions::Many(mut many) => {
                many.push(added);
                Subscriptions::Many(many)
            }
        };
    }

    pub fn remove(&mut self, channel: ChannelId) -> Option<Subscription> {
        match self {
            Subscriptions::One(one) if one.channel == channel => {
                let removed = *one;
                *self = Subscriptions::None;
                Some(removed)
            }
            Subscriptions::Many(many) => {
                let index = many.iter().position(|s| s.channel == channel)?;
                let removed = many.swap_remove(index);
                if many.len() == 1 {
                    *self = Subscriptions::One(many[0]);
                }
                Some(removed)
            }
            _ => None,
        }
    }

    pub fn set_position(&mut self, channel: ChannelId, position: u32) {
        match self {
            Subscriptions::One(one) if one.channel == channel => one.position = position,
            Subscriptions::Many(many) => {
                if let Some(s) = many.iter_mut().find(|s| s.channel == channel) {
                    s.position = position;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(channel: ChannelId, position: u32) -> Subscription {
        Subscription { channel, position }
    }

    #[test]
    fn grows_inline_then_spills_and_shrinks_back() {
        let mut subs = Subscriptions::default();
        subs.add(sub(1, 10));
        assert!(matches!(subs, Subscriptions::One(_)));
        subs.add(sub(2, 20));
        subs.add(sub(3, 30));
        subs.set_position(2, 21);
        assert_eq!(subs.as_slice(), &[sub(1, 10), sub(2, 21), sub(3, 30)]);
        assert_eq!(subs.remove(1), Some(sub(1, 10)));
        assert_eq!(subs.remove(9), None);
        assert_eq!(subs.remove(3), Some(sub(3, 30)));
        assert!(matches!(subs, Subscriptions::One(s) if s == sub(2, 21)));
        assert_eq!(subs.remove(2), Some(sub(2, 21)));
        assert!(subs.is_empty());
    }

    #[test]
    fn an_idle_connection_keeps_its_subscriptions_in_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Subscriptions>(), 16);
    }
}
