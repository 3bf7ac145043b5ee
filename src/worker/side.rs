//! What only some connections need (a token's session, the peer address a
//! per-address limit counts, a command rate window, a second subscription), kept
//! off the 24-byte slot in a per-worker slab. A connection that needs none of it holds no entry: the slot
//! stores the entry's index plus one in what was padding, 0 meaning none.

use std::net::IpAddr;

use super::rate::CommandRate;
use super::subscriptions::Subscription;
use super::Worker;
use crate::auth::Session;

#[derive(Debug, Default)]
pub struct Side {
    /// What a verified token left: user id, exp, grants and info (`auth::Session`).
    pub session: Option<Session>,
    /// Worker clock by which a connection that must authenticate sends `auth`; 0 = none.
    pub auth_deadline: u32,
    /// Boxed, so that the common entry (a token's session alone) stays at 40 B.
    pub rare: Option<Box<Rare>>,
}

/// What fewer connections still keep: the per-address limit's address, the command
/// rate, and the subscriptions of a connection on more than one channel.
#[derive(Debug, Default)]
pub struct Rare {
    /// The source address counted against `--max-connections-per-ip`.
    pub peer: Option<IpAddr>,
    /// Commands of this second, while the client sends them.
    pub rate: Option<CommandRate>,
    /// Every subscription, once there are two or more (`subscriptions.rs`).
    pub subscriptions: Vec<Subscription>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.peer.is_none() && self.rate.is_none() && self.subscriptions.is_empty()
    }
}

#[allow(dead_code)] // the first users land with the features that fill it
impl Side {
    pub fn peer(&self) -> Option<IpAddr> {
        self.rare.as_ref().and_then(|r| r.peer)
    }

    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Drops the box once it holds nothing.
    fn trim_rare(&mut self) {
        if self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
    }

    /// Drops the command rate.
    pub fn clear_rate(&mut self) {
        if let Some(rare) = &mut self.rare {
            rare.rate = None;
        }
        self.trim_rare();
    }

    pub fn more_subscriptions(&self) -> &[Subscription] {
        self.rare.as_ref().map_or(&[], |r| &r.subscriptions)
    }

    pub fn more_subscriptions_mut(&mut self) -> &mut Vec<Subscription> {
        &mut self.rare_mut().subscriptions
    }

    /// Drops the subscriptions' vector (they are back in the slot, or gone).
    pub fn drop_more_subscriptions(&mut self) {
        if let Some(rare) = &mut self.rare {
            rare.subscriptions = Vec::new();
        }
        self.trim_rare();
    }

    /// True when the entry holds nothing and can be given back.
    pub fn is_empty(&self) -> bool {
        self.rare.is_none() && self.session.is_none() && self.auth_deadline == 0
    }
}

#[allow(dead_code)]
impl Worker {
    /// The side entry of `key`, created on first use.
    pub(super) fn side_mut(&mut self, key: usize) -> &mut Side {
        let index = self.conns[key].side;
        if index == 0 {
            let created = self.sides.insert(Side::default());
            self.conns[key].side = u32::try_from(created + 1).expect("fewer than 2^32 entries");
            return &mut self.sides[created];
        }
        &mut self.sides[index as usize - 1]
    }

    /// The side entry of `key`, if it has one.
    pub(super) fn side(&self, key: usize) -> Option<&Side> {
        let index = self.conns.get(key)?.side;
        (index != 0).then(|| &self.sides[index as usize - 1])
    }

    /// Gives the entry of `key` back once it holds nothing.
    pub(super) fn trim_side(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.side != 0 && self.sides[conn.side as usize - 1].is_empty() {
            self.sides.remove(conn.side as usize - 1);
            conn.side = 0;
        }
    }

    /// Takes the entry of a connection being removed (index from its slot).
    pub(super) fn take_side(&mut self, index: u32) -> Option<Side> {
        (index != 0).then(|| self.sides.remove(index as usize - 1))
    }
}

#[cfg(test)]
mod tests {
    /// A token's session lives here; its size is what a token-carrying idle
    /// connection pays on top of the 24-byte slot (plus its user id on the heap).
    #[test]
    fn a_side_entry_stays_small() {
        assert!(std::mem::size_of::<crate::auth::Session>() <= 24);
        let size = std::mem::size_of::<super::Side>();
        assert!(size <= 40, "{size} bytes");
    }
}
