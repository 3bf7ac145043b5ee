//! Fan-out: each turn, every publication drained from the inbox goes to the local
//! subscribers of its channel. Frames a connection is owed in one turn are joined
//! so that it costs one write, however many messages arrived.

use bytes::{Bytes, BytesMut};
use mio::Token;

use super::connection::Flags;
use super::Worker;

impl Worker {
    pub(super) fn fan_out(&mut self) {
        if self.publications.is_empty() {
            return;
        }
        // Stable: a channel's publications stay in sequence order.
        self.publications.sort_by_key(|p| p.channel);
        let publications = std::mem::take(&mut self.publications);
        let registry = self.poll.registry();
        for group in publications.chunk_by(|a, b| a.channel == b.channel) {
            let Some(local) = self.topics.get_mut(group[0].channel) else {
                continue;
            };
            // Publications at or below last_seq predate this worker's subscription.
            let fresh: Vec<&Bytes> = group
                .iter()
                .filter(|p| p.seq > local.last_seq)
                .map(|p| &p.frame)
                .collect();
            local.last_seq = local.last_seq.max(group[group.len() - 1].seq);
            let frames = match fresh.len() {
                0 => continue,
                1 => fresh[0].clone(),
                _ => {
                    let mut joined = BytesMut::with_capacity(fresh.iter().map(|f| f.len()).sum());
                    for frame in &fresh {
                        joined.extend_from_slice(frame);
                    }
                    joined.freeze()
                }
            };
            for &key in &local.subscribers {
                let key = key as usize;
                let conn = &mut self.conns[key];
                if conn.flags.has(Flags::DOOMED) {
                    continue;
                }
                if conn.send(frames.clone(), registry, Token(key)).is_err() {
                    conn.flags.set(Flags::DOOMED);
                    self.doomed.push(key);
                }
            }
            self.counters.delivered += (fresh.len() * local.subscribers.len()) as u64;
        }
        // Keep the allocation for the next turn.
        let mut publications = publications;
        publications.clear();
        self.publications = publications;
    }
}
