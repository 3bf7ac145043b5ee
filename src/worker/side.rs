//! What only some connections need (a token's session, the peer address a
//! per-address limit counts, a command rate window), kept off the 40-byte slot in
//! a per-worker slab. A connection that needs none of it holds no entry: the slot
//! stores the entry's index plus one in what was padding, 0 meaning none.

use std::net::IpAddr;

use super::rate::CommandRate;
use super::Worker;
use crate::auth::Session;

#[derive(Debug, Default)]
pub struct Side {
    /// What a verified token left: user id, exp, grants and info (`auth::Session`).
    pub session: Option<Session>,
    /// Worker clock by which a connection that must authenticate sends `auth`; 0 = none.
    pub auth_deadline: u32,
    /// Boxed, so that the common entry (a token's session alone) stays at 40 B.
    pub limits: Option<Box<Limits>>,
}

/// What the per-address limit and the command rate keep, where they act.
#[derive(Debug, Default)]
pub struct Limits {
    /// The source address counted against `--max-connections-per-ip`.
    pub peer: Option<IpAddr>,
    /// Commands of this second, while the client sends them.
    pub rate: Option<CommandRate>,
}

#[allow(dead_code)] // the first users land with the features that fill it
impl Side {
    pub fn peer(&self) -> Option<IpAddr> {
        self.limits.as_ref().and_then(|l| l.peer)
    }

    pub fn limits_mut(&mut self) -> &mut Limits {
        self.limits.get_or_insert_with(Box::default)
    }

    /// Drops the command rate, and the box once it holds nothing.
    pub fn clear_rate(&mut self) {
        if let Some(limits) = &mut self.limits {
            limits.rate = None;
            if limits.peer.is_none() {
                self.limits = None;
            }
        }
    }

    /// True when the entry holds nothing and can be given back.
    pub fn is_empty(&self) -> bool {
        self.limits.is_none() && self.session.is_none() && self.auth_deadline == 0
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
    /// connection pays on top of the 40-byte slot (plus its user id on the heap).
    #[test]
    fn a_side_entry_stays_small() {
        assert!(std::mem::size_of::<crate::auth::Session>() <= 24);
        let size = std::mem::size_of::<super::Side>();
        assert!(size <= 40, "{size} bytes");
    }
}
