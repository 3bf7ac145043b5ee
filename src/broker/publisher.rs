//! Running the two scripts: one connection per shard, owned by one thread (the API
//! thread, or the broker's own for client publishes and syncs). Many calls go out
//! as one pipeline: one round trip for a batch.

use std::time::Duration;

use redis::{Connection, Value};

use super::target::SlotMap;
use super::wire::{self, State};
use crate::pubsub::hub::HistoryLimits;

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A Redis that stops answering holds a caller this long at most.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a command connection with both scripts loaded.
pub fn connect(url: &str) -> Result<Connection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    for script in [wire::PUBLISH_SCRIPT, wire::STATE_SCRIPT] {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query::<String>(&mut conn)
            .map_err(|e| e.to_string())?;
    }
    Ok(conn)
}

fn sha(script: &str) -> String {
    redis::Script::new(script).get_hash().to_string()
}

/// Why a batch failed, and whether the connection was found dead before Redis
/// could run anything (then a retry on a new connection cannot publish twice).
#[derive(Debug)]
pub struct Failure {
    pub text: String,
    pub stale: bool,
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Failure {
        Failure {
            stale: e.is_connection_dropped() || e.is_connection_refusal(),
            text: e.to_string(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One message's `(seq, epoch)`, or why Redis refused it.
pub type Published = Result<(u64, String), String>;

/// One message to publish.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub channel: &'a str,
    pub data: &'a str,
}

/// Publishes `items` on `conn` (all of one shard) in one round trip; each gets its
/// `(seq, epoch)` or the reason it failed.
pub fn publish_batch(
    conn: &mut Connection,
    items: &[Item<'_>],
    history: HistoryLimits,
    epoch_candidate: &str,
    sharded: bool,
) -> Result<Vec<Published>, Failure> {
    let sha = sha(wire::PUBLISH_SCRIPT);
    let publish = if sharded { "SPUBLISH" } else { "PUBLISH" };
    let mut pipe = redis::pipe();
    for item in items {
        pipe.cmd("EVALSHA")
            .arg(&sha)
            .arg(3)
            .arg(wire::seq_key(item.channel))
            .arg(wire::epoch_key(item.channel))
            .arg(wire::log_key(item.channel))
            .arg(wire::pubsub_channel(item.channel))
            .arg(item.data)
            .arg(history.size)
            .arg(history.ttl_s.max(1))
            .arg(epoch_candidate)
            .arg(wire::KEEP_S.max(history.ttl_s + 60))
            .arg(publish);
    }
    let replies: Vec<Value> = pipe.query(conn).map_err(Failure::from)?;
    Ok(replies
        .iter()
        .map(|r| wire::decode_published(r).ok_or_else(|| format!("unexpected reply {r:?}")))
        .collect())
}

/// One channel whose standing to read: with the node's epoch and last seq when it
/// holds it already, else a fresh epoch and 0.
#[derive(Debug, Clone)]
pub struct Ask {
    pub channel: Box<str>,
    pub epoch: Box<str>,
    pub last_seq: u64,
}

/// Reads where each channel stands, in one round trip.
pub fn read_states(conn: &mut Connection, asks: &[Ask]) -> Result<Vec<Option<State>>, String> {
    let sha = sha(wire::STATE_SCRIPT);
    let mut pipe = redis::pipe();
    for ask in asks {
        pipe.cmd("EVALSHA")
            .arg(&sha)
            .arg(3)
            .arg(wire::seq_key(&ask.channel))
            .arg(wire::epoch_key(&ask.channel))
            .arg(wire::log_key(&ask.channel))
            .arg(&*ask.epoch)
            .arg(ask.last_seq)
            .arg(wire::KEEP_S);
    }
    let replies: Vec<Value> = pipe.query(conn).map_err(|e| e.to_string())?;
    Ok(replies.iter().map(wire::decode_state).collect())
}

/// A channel's kept messages as Redis has them, read-only: `None` if Redis knows no
/// epoch for it. For `GET /api/history` on a node that does not hold the channel.
pub fn read_backlog(conn: &mut Connection, channel: &str) -> Result<Option<Backlog>, String> {
    let (epoch, seq, log): (Option<String>, Option<u64>, Value) = redis::pipe()
        .cmd("GET")
        .arg(wire::epoch_key(channel))
        .cmd("GET")
        .arg(wire::seq_key(channel))
        .cmd("XRANGE")
        .arg(wire::log_key(channel))
        .arg("-")
        .arg("+")
        .query(conn)
        .map_err(|e| e.to_string())?;
    let Some(epoch) = epoch else {
        return Ok(None);
    };
    // The state reply's decoder reads the log; the clock does not matter here.
    let state = Value::Array(vec![
        Value::BulkString(epoch.clone().into_bytes()),
        Value::Int(seq.unwrap_or(0) as i64),
        Value::Int(0),
        log,
    ]);
    let state = wire::decode_state(&state).ok_or("unexpected log reply")?;
    let messages = state.log.into_iter().map(|l| (l.seq, l.data)).collect();
    Ok(Some(Backlog {
        epoch,
        last_seq: state.last_seq,
        messages,
    }))
}

/// What Redis keeps of a channel: its epoch, last seq and log (seq, data).
#[derive(Debug)]
pub struct Backlog {
    pub epoch: String,
    pub last_seq: u64,
    pub messages: Vec<(u64, String)>,
}

/// Every shard's command connection, for a thread that publishes (the API's).
/// Connections are opened on first use and dropped on an error; the broker's
/// state says whether trying is worth it.
#[derive(Default)]
pub struct Publisher {
    slots: Option<SlotMap>,
    conns: Vec<Option<Connection>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.conns.iter().filter(|c| c.is_some()).count();
        f.debug_struct("Publisher").field("open", &open).finish()
    }
}

impl Publisher {
    /// The connection to the shard that owns `channel`, opened if need be.
    pub fn connection(
        &mut self,
        slots: &SlotMap,
        channel: &str,
    ) -> Result<&mut Connection, String> {
        if self.slots.as_ref() != Some(slots) {
            self.slots = Some(slots.clone());
            self.conns = (0..slots.shards.len()).map(|_| None).collect();
        }
        let slot = &mut self.conns[slots.shard_of(wire::slot(channel))];
        if slot.is_none() {
            *slot = Some(connect(&slots.shards[slots.shard_of(wire::slot(channel))])?);
        }
        Ok(slot.as_mut().expect("connected"))
    }

    /// Publishes `items`, in one round trip per shard; each gets its `(seq, epoch)`
    /// or why not. A kept connection that turns out dead (Redis restarted) is
    /// replaced once: it failed before Redis ran anything, so nothing goes twice.
    pub fn publish_many(
        &mut self,
        slots: &SlotMap,
        items: &[Item<'_>],
        history: HistoryLimits,
        epoch_candidate: &str,
        sharded: bool,
    ) -> Vec<Published> {
        if self.slots.as_ref() != Some(slots) {
            self.slots = Some(slots.clone());
            self.conns = (0..slots.shards.len()).map(|_| None).collect();
        }
        let mut out: Vec<Published> = items.iter().map(|_| Err("not sent".into())).collect();
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); slots.shards.len()];
        for (i, item) in items.iter().enumerate() {
            by_shard[slots.shard_of(wire::slot(item.channel))].push(i);
        }
        for (shard, indices) in by_shard.iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let batch: Vec<Item<'_>> = indices.iter().map(|&i| items[i]).collect();
            let replies = self.publish_on(
                shard,
                &slots.shards[shard],
                &batch,
                history,
                epoch_candidate,
                sharded,
            );
            match replies {
                Ok(replies) => {
                    for (&i, reply) in indices.iter().zip(replies) {
                        out[i] = reply;
                    }
                }
                Err(e) => {
                    for &i in indices {
                        out[i] = Err(e.clone());
                    }
                }
            }
        }
        out
    }

    fn publish_on(
        &mut self,
        shard: usize,
        url: &str,
        batch: &[Item<'_>],
        history: HistoryLimits,
        epoch_candidate: &str,
        sharded: bool,
    ) -> Result<Vec<Published>, String> {
        let slot = &mut self.conns[shard];
        for fresh in [slot.is_none(), true] {
            if fresh {
                *slot = Some(connect(url)?);
            }
            let conn = slot.as_mut().expect("connected");
            match publish_batch(conn, batch, history, epoch_candidate, sharded) {
                Ok(replies) => return Ok(replies),
                Err(e) => {
                    *slot = None;
                    if fresh || !e.stale {
                        return Err(e.text);
                    }
                }
            }
        }
        Err("unreachable".into())
    }
}

/// Publishes through the broker, as the API and RESP do: one answer per item,
/// `None` when the broker is down or that item failed (the caller then publishes
/// it locally).
pub fn publish_through_many(
    broker: &super::Broker,
    publisher: &mut Publisher,
    items: &[Item<'_>],
) -> Vec<Option<(u64, String)>> {
    use std::sync::atomic::Ordering;
    if broker.state() == super::BrokerState::Down {
        return items.iter().map(|_| None).collect();
    }
    let replies = publisher.publish_many(
        &broker.slots(),
        items,
        broker.history(),
        &broker.new_epoch(),
        broker.target.sharded(),
    );
    replies
        .into_iter()
        .map(|reply| {
            let counter = match &reply {
                Ok(_) => &broker.counters.published,
                Err(_) => &broker.counters.publish_errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            reply.ok()
        })
        .collect()
}
