//! One reading of every figure, taken once per request, and the one list that says
//! how each figure is shown in /api/stats and /metrics. Rendering reads only the
//! snapshot, so the formats are pure functions, tested byte by byte.

use std::sync::atomic::Ordering;

use super::memory::Memory;
use super::names;
use super::{Scope, Shared, Target, WorkerCounters, COUNTERS};

macro_rules! series {
    ($family:ident $(, $key:literal = $value:literal)*) => {
        &[Target {
            scope: Scope::Total,
            family: &names::$family,
            labels: &[$(($key, $value)),*],
        }]
    };
}

/// Every figure at one moment.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub uptime_s: u64,
    pub totals: WorkerCounters,
    pub workers: Vec<WorkerCounters>,
    /// Each worker's events per second (the ticker's last figure).
    pub events_per_s: Vec<u64>,
    pub open_connections: u64,
    pub emfile_drops: u64,
    pub api_unauthorized: u64,
    pub api_errors: u64,
    pub resp_commands: u64,
    pub resp_errors: u64,
    pub resp_connections: u64,
    pub published: u64,
    pub publishes_held: u64,
    pub channels: u64,
    pub channels_refused: u64,
    pub addresses_counted: u64,
    pub memory: Memory,
    pub broker: Option<BrokerFigures>,
}

/// The broker's state and counters (`--broker`).
#[derive(Debug, Default, Clone)]
pub struct BrokerFigures {
    pub url: String,
    pub state: &'static str,
    pub ping_us: u64,
    pub channels: u64,
    pub syncing: u64,
    pub published: u64,
    pub published_locally: u64,
    pub publish_errors: u64,
    pub relayed: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub syncs: u64,
    pub reconnects: u64,
}

impl BrokerFigures {
    fn take(shared: &Shared) -> Option<BrokerFigures> {
        let broker = shared.broker.get()?;
        let c = &broker.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Some(BrokerFigures {
            url: broker.target.to_string(),
            state: broker.state().name(),
            ping_us: load(&c.latency_us),
            channels: load(&c.subscribed),
            syncing: shared.hub.syncing_count() as u64,
            published: load(&c.published),
            published_locally: load(&c.published_locally),
            publish_errors: load(&c.publish_errors),
            relayed: load(&c.relayed),
            duplicates: load(&c.duplicates),
            gaps: load(&c.gaps),
            syncs: load(&c.syncs),
            reconnects: load(&c.reconnects),
        })
    }

    /// Its Prometheus samples (it has no flat /api/stats keys: `broker` is an object).
    fn figures(&self) -> Vec<Figure> {
        let rows: [(u64, &'static [Target]); 11] = [
            (u64::from(self.state == "up"), series!(BROKER_UP)),
            (self.ping_us, series!(BROKER_PING)),
            (self.channels, series!(BROKER_CHANNELS)),
            (
                self.published,
                series!(BROKER_PUBLISHED, "origin" = "api_or_client"),
            ),
            (self.published_locally, series!(BROKER_PUBLISHED_LOCALLY)),
            (self.publish_errors, series!(BROKER_PUBLISH_ERRORS)),
            (
                self.relayed,
                series!(BROKER_RELAYED, "outcome" = "delivered"),
            ),
            (
                self.duplicates,
                series!(BROKER_RELAYED, "outcome" = "duplicate"),
            ),
            (self.gaps, series!(BROKER_RELAYED, "outcome" = "after_gap")),
            (self.syncs, series!(BROKER_SYNCS)),
            (self.reconnects, series!(BROKER_RECONNECTS)),
        ];
        rows.into_iter()
            .map(|(value, metrics)| Figure {
                json: None,
                value,
                metrics,
            })
            .collect()
    }
}

/// One figure: its `/api/stats` key (if any), its value and its Prometheus series.
#[derive(Debug)]
pub struct Figure {
    pub json: Option<&'static str>,
    pub value: u64,
    pub metrics: &'static [Target],
}

impl Snapshot {
    pub fn take(shared: &Shared) -> Snapshot {
        let workers: Vec<_> = shared.workers.iter().map(|w| w.load()).collect();
        let mut totals = WorkerCounters::default();
        for worker in &workers {
            totals.add(worker);
        }
        Snapshot {
            uptime_s: shared.started.elapsed().as_secs(),
            totals,
            events_per_s: shared
                .workers
                .iter()
                .map(|w| w.events_per_s.load(Ordering::Relaxed))
                .collect(),
            workers,
            open_connections: shared.open_connections.load(Ordering::Relaxed) as u64,
            emfile_drops: shared.emfile_drops.load(Ordering::Relaxed),
            api_unauthorized: shared.api_unauthorized.load(Ordering::Relaxed),
            api_errors: shared.api_errors.load(Ordering::Relaxed),
            resp_commands: shared.resp_commands.load(Ordering::Relaxed),
            resp_errors: shared.resp_errors.load(Ordering::Relaxed),
            resp_connections: shared.resp_connections.load(Ordering::Relaxed),
            published: shared.hub.published_total(),
            publishes_held: shared.publishes_held.load(Ordering::Relaxed),
            channels: shared.hub.channel_count() as u64,
            channels_refused: shared.hub.channels_refused(),
            addresses_counted: shared.per_address.addresses() as u64,
            memory: Memory::read(),
            broker: BrokerFigures::take(shared),
        }
    }

    /// Every figure once: the worker counters summed, then the process-wide ones.
    pub fn figures(&self) -> Vec<Figure> {
        let counters = COUNTERS
            .iter()
            .zip(self.totals.values())
            .map(|(def, value)| Figure {
                json: def.json,
                value,
                metrics: def.metrics,
            });
        let process = [
            (
                Some("uptime_s"),
                self.uptime_s,
                series!(UPTIME) as &[Target],
            ),
            (
                Some("connections_open"),
                self.open_connections,
                series!(CONNECTIONS_OPEN),
            ),
            (
                Some("published_total"),
                self.published,
                series!(MESSAGES_PUBLISHED),
            ),
            (
                Some("publishes_held_total"),
                self.publishes_held,
                series!(PUBLISHES_HELD),
            ),
            (Some("channels"), self.channels, series!(CHANNELS)),
            (
                Some("channels_refused_total"),
                self.channels_refused,
                series!(CONNECTIONS_REJECTED, "cause" = "channels"),
            ),
            (
                Some("emfile_drops_total"),
                self.emfile_drops,
                series!(CONNECTIONS_REJECTED, "cause" = "fd_exhausted"),
            ),
            (
                Some("api_unauthorized_total"),
                self.api_unauthorized,
                series!(API_UNAUTHORIZED),
            ),
            (
                Some("api_errors_total"),
                self.api_errors,
                series!(API_ERRORS),
            ),
            (
                Some("resp_commands_total"),
                self.resp_commands,
                series!(RESP_COMMANDS),
            ),
            (
                Some("resp_errors_total"),
                self.resp_errors,
                series!(RESP_ERRORS),
            ),
            (
                Some("resp_connections"),
                self.resp_connections,
                series!(RESP_CONNECTIONS),
            ),
            (
                Some("addresses_counted"),
                self.addresses_counted,
                series!(ADDRESSES_COUNTED),
            ),
            (Some("rss_bytes"), self.memory.rss, series!(MEMORY_RESIDENT)),
            (
                Some("rss_file_bytes"),
                self.memory.rss_file,
                series!(MEMORY_RESIDENT_FILE),
            ),
            (
                Some("allocated_bytes"),
                self.memory.allocated,
                series!(MEMORY_ALLOCATED),
            ),
            (
                Some("allocator_active_bytes"),
                self.memory.active,
                series!(MEMORY_ALLOCATOR_ACTIVE),
            ),
            (
                Some("allocator_resident_bytes"),
                self.memory.resident,
                series!(MEMORY_ALLOCATOR_RESIDENT),
            ),
            (
                Some("allocator_metadata_bytes"),
                self.memory.metadata,
                series!(MEMORY_ALLOCATOR_METADATA),
            ),
        ]
        .map(|(json, value, metrics)| Figure {
            json,
            value,
            metrics,
        });
        let broker = self.broker.iter().flat_map(BrokerFigures::figures);
        counters.chain(process).chain(broker).collect()
    }
}
