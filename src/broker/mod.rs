//! `--broker`: nodes share channels through Redis. Redis numbers every message (one
//! Lua script increments the channel's counter, appends to its capped log and
//! publishes), keeps the history and the epoch; each node subscribes only to the
//! channels it holds and delivers what Redis relays, once each, in order.
//!
//! Threads: the broker thread (`run`) owns one command connection and one pub/sub
//! connection per shard, subscribes, reads channel states, publishes for clients
//! and watches Redis; one reader thread per pub/sub connection delivers relayed
//! messages into the hub. The API thread publishes on connections of its own.
//! Workers never wait on Redis: they ask (`Upstream::hold`) and are told (`ready`).

mod link;
mod orders;
pub mod presence;
pub mod publisher;
pub mod target;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::pubsub::epoch::Epochs;
use crate::pubsub::hub::remote::Relay;
use crate::pubsub::hub::{HistoryLimits, Hub};
use crate::pubsub::publication::{Outlet, Upstream};
use link::Link;
use target::{SlotMap, Target};

/// Messages kept for a channel between its subscribe and its state read.
const BUFFERED_PER_SYNC: usize = 10_000;
const HEALTH_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Client publishes and syncs handled per round trip at most.
const BATCH: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BrokerState {
    Connecting = 0,
    Up = 1,
    Down = 2,
}

impl BrokerState {
    pub fn name(self) -> &'static str {
        match self {
            BrokerState::Connecting => "connecting",
            BrokerState::Up => "up",
            BrokerState::Down => "down",
        }
    }
}

/// What the console, /api/stats and /metrics show of the broker.
#[derive(Debug, Default)]
pub struct BrokerCounters {
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    /// Published on this node only, numbered here, while Redis was unreachable.
    pub published_locally: AtomicU64,
    pub relayed: AtomicU64,
    pub duplicates: AtomicU64,
    pub gaps: AtomicU64,
    pub syncs: AtomicU64,
    pub reconnects: AtomicU64,
    /// Round trip of the last health PING, in microseconds.
    pub latency_us: AtomicU64,
    pub subscribed: AtomicU64,
}

/// A publish done by the broker thread: a WebSocket client's (answered through
/// its worker's inbox) or a presence event (`reply_to` none).
#[derive(Debug)]
struct ClientPublish {
    /// (worker, connection key).
    reply_to: Option<(usize, usize)>,
    channel: Box<str>,
    data: Box<str>,
}

/// A channel and this node's presence on it (none: nobody here now).
type PresenceEntry = (Box<str>, Option<String>);

/// Relayed messages held for one channel: (seq, data).
type Buffered = Vec<(u64, String)>;

#[derive(Debug)]
enum Order {
    Hold(Box<str>),
    Release(Box<str>),
    Publish(ClientPublish),
    /// This node's presence on the channel changed: write it for the other nodes.
    Presence(Box<str>),
}

#[derive(Debug)]
pub struct Broker {
    pub target: Target,
    hub: Arc<Hub>,
    outlets: Vec<Arc<dyn Outlet>>,
    history: HistoryLimits,
    epochs: Epochs,
    state: AtomicU8,
    slots: RwLock<SlotMap>,
    orders: Mutex<Vec<Order>>,
    wakeup: Condvar,
    /// Relayed messages of channels between their subscribe and their state read.
    buffered: Mutex<HashMap<Box<str>, Buffered>>,
    /// This process's name in the presence hashes (a fresh epoch-like word).
    node_id: Box<str>,
    pub counters: BrokerCounters,
}

impl Broker {
    pub fn new(
        target: Target,
        hub: Arc<Hub>,
        outlets: Vec<Arc<dyn Outlet>>,
        history: HistoryLimits,
    ) -> Broker {
        let first = match &target {
            Target::Single(url) => url.clone(),
            Target::Cluster(seeds) => seeds[0].clone(),
        };
        let epochs = Epochs::new();
        Broker {
            node_id: epochs.next(),
            target,
            hub,
            outlets,
            history,
            epochs,
            state: AtomicU8::new(BrokerState::Connecting as u8),
            slots: RwLock::new(SlotMap::single(&first)),
            orders: Mutex::default(),
            wakeup: Condvar::new(),
            buffered: Mutex::default(),
            counters: BrokerCounters::default(),
        }
    }

    pub fn state(&self) -> BrokerState {
        match self.state.load(Ordering::Relaxed) {
            1 => BrokerState::Up,
            2 => BrokerState::Down,
            _ => BrokerState::Connecting,
        }
    }

    fn set_state(&self, state: BrokerState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn slots(&self) -> SlotMap {
        self.slots.read().expect("slots").clone()
    }

    pub fn history(&self) -> HistoryLimits {
        self.history
    }

    pub fn new_epoch(&self) -> Box<str> {
        self.epochs.next()
    }

    fn order(&self, order: Order) {
        self.orders.lock().expect("orders").push(order);
        self.wakeup.notify_one();
    }

    /// Interrupts the broker thread's wait (a reader died).
    fn wake(&self) {
        self.wakeup.notify_one();
    }

    /// A client's `publish` command: done by the broker thread, answered through
    /// the worker's inbox.
    pub fn publish_for(&self, worker: usize, key: usize, channel: &str, data: &str) {
        self.order(Order::Publish(ClientPublish {
            reply_to: Some((worker, key)),
            channel: channel.into(),
            data: data.into(),
        }));
    }

    /// A message relayed by Redis (reader thread).
    fn on_relayed(&self, channel: &str, payload: &[u8]) {
        let Some(relayed) = wire::decode_relayed(payload) else {
            return;
        };
        let mut buffered = self.buffered.lock().expect("buffered");
        if let Some(waiting) = buffered.get_mut(channel) {
            if waiting.len() < BUFFERED_PER_SYNC {
                waiting.push((relayed.seq, relayed.data.to_string()));
            }
            return;
        }
        self.count_relay(self.hub.relayed(channel, relayed.seq, relayed.data));
    }

    fn count_relay(&self, relay: Relay) {
        let counter = match relay {
            Relay::Delivered => &self.counters.relayed,
            Relay::Duplicate => &self.counters.duplicates,
            Relay::AfterGap => &self.counters.gaps,
            Relay::NotHeld => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The broker thread: connects, serves orders, watches Redis, and after an
    /// outage reconnects with backoff and resyncs every channel the node holds.
    pub fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_FIRST;
        let mut announced_down = false;
        loop {
            let mut links = match self.connect() {
                Ok(links) => links,
                Err(e) => {
                    if !announced_down {
                        eprintln!(
                            "broker: {} unreachable ({e}); serving local subscribers, retrying",
                            self.target
                        );
                        announced_down = true;
                    }
                    self.go_down();
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if announced_down {
                eprintln!("broker: {} reachable again; resyncing", self.target);
                self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            backoff = BACKOFF_FIRST;
            // Up once every channel held here is subscribed and resynced; the
            // joins and publishes of the meantime wait in the orders.
            self.set_state(BrokerState::Connecting);
            let resync = std::mem::take(&mut *self.orders.lock().expect("orders"));
            let error = match self.carry_out(&mut links, resync) {
                Ok(()) => {
                    self.set_state(BrokerState::Up);
                    self.serve(&mut links)
                }
                Err(e) => e,
            };
            eprintln!(
                "broker: lost {} ({error}); serving local subscribers, reconnecting",
                self.target
            );
            announced_down = true;
            drop(links);
            self.go_down();
        }
    }

    fn go_down(&self) {
        self.set_state(BrokerState::Down);
        self.counters.subscribed.store(0, Ordering::Relaxed);
        self.buffered.lock().expect("buffered").clear();
        // Waiting workers make their channels here; they are resynced on return.
        self.hub.abandon_syncs();
        let orders = std::mem::take(&mut *self.orders.lock().expect("orders"));
        for order in orders {
            if let Order::Publish(publish) = order {
                self.publish_locally(&publish);
            }
        }
    }

    fn connect(self: &Arc<Self>) -> Result<Vec<Link>, String> {
        let slots = match &self.target {
            Target::Single(url) => SlotMap::single(url),
            Target::Cluster(seeds) => discover(seeds)?,
        };
        let sharded = self.target.sharded();
        let links = slots
            .shards
            .iter()
            .map(|url| Link::open(url, sharded, self))
            .collect::<Result<Vec<Link>, String>>()?;
        *self.slots.write().expect("slots") = slots;
        // Every channel held now, first: those made during the outage, and the
        // others, which may have missed messages.
        let held: Vec<Order> = self
            .hub
            .held()
            .into_iter()
            .map(|(name, _, _)| Order::Hold(name))
            .collect();
        self.orders.lock().expect("orders").splice(0..0, held);
        Ok(links)
    }

    fn serve(&self, links: &mut [Link]) -> String {
        let mut last_health = Instant::now();
        let mut last_presence = Instant::now();
        loop {
            if let Some(dead) = links.iter().find(|l| l.is_dead()) {
                return format!("pub/sub connection to {} closed", dead.url);
            }
            let orders = {
                let mut orders = self.orders.lock().expect("orders");
                if orders.is_empty() {
                    orders = self
                        .wakeup
                        .wait_timeout(orders, HEALTH_EVERY)
                        .expect("orders")
                        .0;
                }
                let take = orders.len().min(BATCH);
                orders.drain(..take).collect::<Vec<Order>>()
            };
            if let Err(e) = self.carry_out(links, orders) {
                return e;
            }
            if last_presence.elapsed() >= Duration::from_secs(presence::REFRESH_S) {
                last_presence = Instant::now();
                let all = self
                    .hub
                    .local_presence()
                    .into_iter()
                    .map(|(name, json)| (name, Some(json)))
                    .collect();
                if let Err(e) = self.write_presence(links, all) {
                    return e;
                }
            }
            if last_health.elapsed() >= HEALTH_EVERY {
                last_health = Instant::now();
                for link in links.iter_mut() {
                    let began = Instant::now();
                    if let Err(e) = redis::cmd("PING").query::<String>(&mut link.commands) {
                        return format!("{}: {e}", link.url);
                    }
                    let us = began.elapsed().as_micros() as u64;
                    self.counters.latency_us.store(us, Ordering::Relaxed);
                }
            }
        }
    }

    /// `GET /api/history` for a channel this node does not hold: Redis's log.
    pub fn backlog(
        &self,
        publisher: &mut publisher::Publisher,
        name: &str,
    ) -> Option<publisher::Backlog> {
        if self.state() == BrokerState::Down {
            return None;
        }
        let slots = self.slots();
        let conn = publisher.connection(&slots, name).ok()?;
        publisher::read_backlog(conn, name).ok().flatten()
    }

    /// `GET /api/presence` with the broker: every live node's entry, merged.
    pub fn presence_json(
        &self,
        publisher: &mut publisher::Publisher,
        name: &str,
    ) -> Option<String> {
        if self.state() == BrokerState::Down {
            return None;
        }
        let slots = self.slots();
        let conn = publisher.connection(&slots, name).ok()?;
        let entries = presence::read(conn, name).ok()?;
        Some(presence::merge(name, &entries, unix_now()))
    }
}

impl Upstream for Broker {
    /// Connecting counts: joins then wait for the first connection (or for the
    /// resync after an outage) rather than make channels Redis may know.
    fn is_up(&self) -> bool {
        self.state() != BrokerState::Down
    }

    fn hold(&self, channel: &str) {
        self.order(Order::Hold(channel.into()));
    }

    fn release(&self, channel: &str) {
        if self.is_up() {
            self.order(Order::Release(channel.into()));
        }
    }

    fn publish_event(&self, channel: &str, data: String) {
        self.order(Order::Publish(ClientPublish {
            reply_to: None,
            channel: channel.into(),
            data: data.into(),
        }));
    }

    fn presence_changed(&self, channel: &str) {
        if self.is_up() {
            self.order(Order::Presence(channel.into()));
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Groups `items` by the shard that owns the channel `channel_of` names, keeping
/// their order within each shard.
fn by_shard<T>(
    slots: &SlotMap,
    items: Vec<T>,
    channel_of: impl Fn(&T) -> &str,
) -> Vec<(usize, Vec<T>)> {
    let mut by: Vec<(usize, Vec<T>)> = Vec::new();
    for item in items {
        let shard = slots.shard_of(wire::slot(channel_of(&item)));
        match by.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, list)) => list.push(item),
            None => by.push((shard, vec![item])),
        }
    }
    by
}

/// Asks the seeds, in turn, which primary serves which slots.
fn discover(seeds: &[String]) -> Result<SlotMap, String> {
    let mut last = String::from("no seed");
    for seed in seeds {
        let reply = redis::Client::open(seed.as_str())
            .and_then(|c| c.get_connection_with_timeout(publisher::CONNECT_TIMEOUT))
            .and_then(|mut c| {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<redis::Value>(&mut c)
            });
        match reply {
            Ok(value) => {
                return SlotMap::from_cluster_slots(&value)
                    .ok_or_else(|| format!("{seed}: no slots assigned (is the cluster created?)"))
            }
            Err(e) => last = format!("{seed}: {e}"),
        }
    }
    Err(last)
}
