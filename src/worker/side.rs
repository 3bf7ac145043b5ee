//! What only some connections need (a token's session, the peer address a
//! per-address limit counts, a command rate window), kept off the 40-byte slot in
//! a per-worker slab. A connection that needs none of it holds no entry: the slot
//! stores the entry's index plus one in what was padding, 0 meaning none.

use std::net::IpAddr;

use super::Worker;


#[derive(Debug, Default)]
#[allow(dead_code)]
pub struct Side {
    /// The source address counted against `--max-connections-per-ip`.
    pub peer: Option<IpAddr>,
}

#[allow(dead_code)] // the first users land with the features that fill it
impl Side {
    /// True when the entry holds nothing and can be given back.
    pub fn is_empty(&self) -> bool {
        self.peer.is_none()
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
