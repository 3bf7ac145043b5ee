//! Counters. Each worker counts in plain integers on its own thread and copies them
//! into its atomics once per loop turn; readers (the console, /api/stats, /metrics)
//! only load.

pub mod console;
pub mod memory;
pub mod names;
pub mod prometheus;
pub mod report;
pub mod snapshot;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::admission::PerAddress;
use crate::pubsub::hub::Hub;
use names::Family;

/// Where a counter is exported: summed over the workers, or one series per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Total,
    PerWorker,
}

/// One Prometheus series a figure feeds: its family (names.rs) and fixed labels.
#[derive(Debug)]
pub struct Target {
    pub scope: Scope,
    pub family: &'static Family,
    pub labels: &'static [(&'static str, &'static str)],
}

/// How one worker counter is shown: its `/api/stats` key (none: only per worker)
/// and its Prometheus series.
#[derive(Debug)]
pub struct CounterDef {
    pub field: &'static str,
    pub json: Option<&'static str>,
    pub metrics: &'static [Target],
}

/// Each counter is declared once, with its JSON key and its Prometheus series; the
/// structs, /api/stats and /metrics all follow from this one list.
macro_rules! counters {
    ($(
        $(#[$doc:meta])*
        $name:ident: json $json:expr,
        metrics [$($scope:ident $family:ident {$($key:ident: $value:literal),*}),* $(,)?];
    )*) => {
        /// A worker's counters, owned by the worker thread.
        #[derive(Debug, Default, Clone, Copy)]
        pub struct WorkerCounters { $($(#[$doc])* pub $name: u64,)* }

        /// The same counters, readable from other threads.
        #[derive(Debug, Default)]
        pub struct WorkerStats {
            $(pub $name: AtomicU64,)*
            /// Written by the ticker once a second.
            pub events_per_s: AtomicU64,
        }

        impl WorkerStats {
            pub fn store(&self, counters: &WorkerCounters) {
                $(self.$name.store(counters.$name, Ordering::Relaxed);)*
            }

            pub fn load(&self) -> WorkerCounters {
                WorkerCounters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        /// How many counters there are.
        pub const COUNTER_COUNT: usize = [$(stringify!($name)),*].len();

        /// Every counter's JSON key and series, in declaration order.
        pub const COUNTERS: [CounterDef; COUNTER_COUNT] = [$(CounterDef {
            field: stringify!($name),
            json: $json,
            metrics: &[$(Target {
                scope: Scope::$scope,
                family: &names::$family,
                labels: &[$((stringify!($key), $value)),*],
            }),*],
        }),*];

        impl WorkerCounters {
            /// Adds `other` field by field (the same list, so none can be forgotten).
            pub fn add(&mut self, other: &WorkerCounters) {
                $(self.$name += other.$name;)*
            }

            /// The values in the order of [`COUNTERS`].
            pub fn values(&self) -> [u64; COUNTER_COUNT] {
                [$(self.$name),*]
            }
        }
    };
}

counters! {
    /// Upgraded connections held now (a gauge).
    online: json Some("online"), metrics [Total CONNECTIONS {transport: "ws"}];
    /// Readiness events handled.
    events: json None, metrics [PerWorker WORKER_EVENTS {}];
    /// Connections accepted (admitted or not).
    accepted: json Some("connections_total"), metrics [Total CONNECTIONS_OPENED {}];
    /// Messages written or queued to subscribers.
    delivered: json Some("delivered_total"), metrics [Total MESSAGES_DELIVERED {}];
    /// Connections refused with 503 past --max-connections.
    rejected: json Some("rejected_total"),
        metrics [Total CONNECTIONS_REJECTED {cause: "max_connections"}];
    /// Requests answered with a 4xx status.
    http_errors: json Some("http_errors_total"), metrics [Total HTTP_ERRORS {}];
    /// Connections failed with close 1002, 1007 or 1009.
    protocol_errors: json Some("protocol_errors_total"),
        metrics [Total CONNECTIONS_CLOSED {cause: "protocol_error"}];
    /// Commands answered with an error message.
    command_errors: json Some("command_errors_total"), metrics [Total COMMAND_ERRORS {}];
    /// Clients closed for silence past --idle-timeout.
    idle_timeouts: json Some("idle_timeouts_total"),
        metrics [Total CONNECTIONS_CLOSED {cause: "idle_timeout"}];
    /// Requests closed for not completing the handshake (408).
    handshake_timeouts: json Some("handshake_timeouts_total"),
        metrics [Total CONNECTIONS_CLOSED {cause: "handshake_timeout"}];
    /// Open SSE streams now (a gauge).
    sse_online: json Some("sse_online"), metrics [Total CONNECTIONS {transport: "sse"}];
    /// Long-polls held now (a gauge).
    polls_held: json Some("polls_held"), metrics [Total CONNECTIONS {transport: "poll"}];
    /// Connections with an `Extra` now (a gauge): what is not idle costs more than
    /// the 24-byte slot.
    buffered: json Some("connections_buffered"), metrics [Total CONNECTIONS_BUFFERED {}];
    /// Long-polls answered, with messages or empty.
    polls_answered: json Some("polls_answered_total"), metrics [Total POLLS_ANSWERED {}];
    /// Long-polls answered empty after --poll-timeout.
    poll_timeouts: json Some("poll_timeouts_total"), metrics [Total POLL_TIMEOUTS {}];
    /// Resumes (since=) that could not be exact: recovered false.
    resumes_not_recovered: json Some("resumes_not_recovered_total"),
        metrics [Total RESUMES_NOT_RECOVERED {}];
    /// Connections closed for being owed more than --max-queued-bytes.
    slow_consumer_closes: json Some("slow_consumer_closes_total"),
        metrics [
            Total CONNECTIONS_CLOSED {cause: "slow_consumer"},
            Total SLOW_CONSUMER_CLOSES {},
        ];
    /// Connections refused with 503 past --max-connections-per-ip.
    per_ip_rejected: json Some("per_ip_rejected_total"),
        metrics [Total CONNECTIONS_REJECTED {cause: "per_ip"}];
    /// WebSockets closed (1008) past --max-commands-per-second.
    commands_rate_closes: json Some("commands_rate_closes_total"),
        metrics [Total CONNECTIONS_CLOSED {cause: "command_rate"}];
    /// Tokens refused (forged, expired, malformed), and auth timeouts.
    auth_failures: json Some("auth_failures_total"), metrics [Total AUTH_FAILURES {}];
    /// Joins refused for a channel the token does not grant (or no token).
    forbidden: json Some("forbidden_total"), metrics [Total JOINS_FORBIDDEN {}];
    /// Connections closed (or polls answered 401) because their token expired.
    token_expired_closes: json Some("token_expired_closes_total"),
        metrics [Total CONNECTIONS_CLOSED {cause: "token_expired"}];
    /// Successful {"op":"refresh"}.
    refreshes: json Some("refreshes_total"), metrics [Total TOKEN_REFRESHES {}];
    /// WebSockets that agreed to permessage-deflate.
    deflate_negotiated: json Some("deflate_negotiated_total"),
        metrics [Total DEFLATE_NEGOTIATED {}];
    /// Messages compressed: once per worker per publication, however many receive it.
    frames_deflated: json Some("frames_deflated_total"), metrics [Total FRAMES_DEFLATED {}];
    /// Compressed client messages refused: too big once inflated (1009) or corrupt (1002).
    inflate_refused: json Some("inflate_refused_total"), metrics [Total INFLATE_REFUSED {}];
    /// SSE segments and long-poll answers gzip-compressed (shared ones once per worker).
    gzip_compressed: json Some("gzip_compressed_total"), metrics [Total GZIP_COMPRESSED {}];
}

/// Everything the console and the API read.
#[derive(Debug)]
pub struct Shared {
    pub started: Instant,
    pub hub: Arc<Hub>,
    pub workers: Vec<Arc<WorkerStats>>,
    /// Client sockets counted against --max-connections (accept adds, workers subtract).
    pub open_connections: AtomicUsize,
    /// Connections the accept thread had to drop because the process ran out of fds.
    pub emfile_drops: AtomicU64,
    /// Connections per source address, when --max-connections-per-ip is set.
    pub per_address: PerAddress,
    /// API requests refused with 401 for a missing or wrong --api-key-file key.
    pub api_unauthorized: AtomicU64,
    /// API answers with a 4xx or 5xx status, the 401s included.
    pub api_errors: AtomicU64,
    /// `--broker`, once it is started.
    pub broker: std::sync::OnceLock<Arc<crate::broker::Broker>>,
    /// RESP (`--resp-listen`): commands answered, error replies, connections held now.
    pub resp_commands: AtomicU64,
    pub resp_errors: AtomicU64,
    pub resp_connections: AtomicU64,
    /// Publishes (API and RESP) that waited for a worker that was behind.
    pub publishes_held: AtomicU64,
}

impl Shared {
    pub fn new(hub: Arc<Hub>, workers: usize) -> Shared {
        Shared {
            started: Instant::now(),
            hub,
            workers: (0..workers).map(|_| Arc::default()).collect(),
            open_connections: AtomicUsize::new(0),
            emfile_drops: AtomicU64::new(0),
            per_address: PerAddress::default(),
            api_unauthorized: AtomicU64::new(0),
            api_errors: AtomicU64::new(0),
            broker: std::sync::OnceLock::new(),
            resp_commands: AtomicU64::new(0),
            resp_errors: AtomicU64::new(0),
            resp_connections: AtomicU64::new(0),
            publishes_held: AtomicU64::new(0),
        }
    }

    /// Sum of every worker's counters.
    pub fn totals(&self) -> WorkerCounters {
        let mut sum = WorkerCounters::default();
        for worker in &self.workers {
            sum.add(&worker.load());
        }
        sum
    }
}
