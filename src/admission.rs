//! What the accept thread decides for each new socket, and the count of connections
//! per source address behind `--max-connections-per-ip`: the accept thread raises
//! it, the worker that removes the connection lowers it. Sharded, so the workers'
//! releases rarely meet the accept thread on one lock.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;

/// The accept thread's verdict on a new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted against the limits; `peer` is set when counted per address.
    Admitted { peer: Option<IpAddr> },
    /// Past `--max-connections`: answered 503.
    Full,
    /// Past `--max-connections-per-ip`: answered 503.
    AddressFull,
}

const SHARDS: usize = 16;

#[derive(Debug)]
pub struct PerAddress {
    shards: Vec<Mutex<HashMap<IpAddr, u32>>>,
    hasher: RandomState,
}

impl Default for PerAddress {
    fn default() -> PerAddress {
        PerAddress {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

/// The address a connection is counted under: an IPv4 client on a dual-stack
/// listener counts as IPv4, and IPv6 counts per /64, the block one host or
/// subscriber is usually given (counting whole addresses would let one host use
/// 2^64 of them).
pub fn counted_as(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

impl PerAddress {
    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.shards[self.hasher.hash_one(ip) as usize % SHARDS]
    }

    /// Counts one more connection from `ip` unless it already has `limit`.
    pub fn try_add(&self, ip: IpAddr, limit: u32) -> bool {
        let mut shard = self.shard(&ip).lock().expect("per-address lock");
        let count = shard.entry(ip).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// One connection from `ip` is gone; an address with none left holds no entry.
    pub fn release(&self, ip: IpAddr) {
        let mut shard = self.shard(&ip).lock().expect("per-address lock");
        if let Entry::Occupied(mut entry) = shard.entry(ip) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
        if shard.capacity() > 4 * shard.len() + 64 {
            shard.shrink_to_fit();
        }
    }

    /// Addresses counted now.
    pub fn addresses(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("per-address lock").len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_and_its_places_back() {
        let count = PerAddress::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(count.try_add(ip, 2) && count.try_add(ip, 2));
        assert!(!count.try_add(ip, 2));
        assert!(count.try_add("10.0.0.2".parse().unwrap(), 2));
        count.release(ip);
        assert!(count.try_add(ip, 2));
        count.release(ip);
        count.release(ip);
        count.release("10.0.0.2".parse().unwrap());
        assert_eq!(count.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a = counted_as("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = counted_as("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(a, counted_as("2001:db8:1:3::1".parse().unwrap()));
        let mapped = counted_as("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(mapped, "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
