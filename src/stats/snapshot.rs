//! One reading of every figure, taken once per request, and the one list that says
//! how each figure is shown in /api/stats and /metrics. Rendering reads only the
//! snapshot, so the formats are pure functions, tested byte by byte.

use std::sync::atomic::Ordering;

use super::names;
use super::{memory, Scope, Shared, Target, WorkerCounters, COUNTERS};

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
    pub resp_commands: u64,
    pub resp_errors: u64,
    pub resp_connections: u64,
    pub published: u64,
    pub channels: u64,
    pub channels_refused: u64,
    pub addresses_counted: u64,
    pub rss_bytes: u64,
    pub allocated_bytes: u64,
}

/// One figure: its `/api/stats` key (if any), its value and its Prometheus series.
#[derive(Debug)]
pub struct Figure {
    pub json: Option<&'static str>,
    pub value: u64,
    pub metrics: &'static [Target],
}

macro_rules! series {
    ($family:ident $(, $key:literal = $value:literal)*) => {
        &[Target {
            scope: Scope::Total,
            family: &names::$family,
            labels: &[$(($key, $value)),*],
        }]
    };
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
            resp_commands: shared.resp_commands.load(Ordering::Relaxed),
            resp_errors: shared.resp_errors.load(Ordering::Relaxed),
            resp_connections: shared.resp_connections.load(Ordering::Relaxed),
            published: shared.hub.published_total(),
            channels: shared.hub.channel_count() as u64,
            channels_refused: shared.hub.channels_refused(),
            addresses_counted: shared.per_address.addresses() as u64,
            rss_bytes: memory::rss_bytes(),
            allocated_bytes: memory::allocated_bytes(),
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
            (Some("rss_bytes"), self.rss_bytes, series!(MEMORY_RESIDENT)),
            (
                Some("allocated_bytes"),
                self.allocated_bytes,
                series!(MEMORY_ALLOCATED),
            ),
        ]
        .map(|(json, value, metrics)| Figure {
            json,
            value,
            metrics,
        });
        counters.chain(process).collect()
    }
}
