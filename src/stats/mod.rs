//! Counters. Each worker counts in plain integers on its own thread and copies them
//! into its atomics once per loop turn; readers (the console, /api/stats) only load.

pub mod console;
pub mod memory;
pub mod report;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::admission::PerAddress;
use crate::pubsub::hub::Hub;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
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

        impl WorkerCounters {
            /// Adds `other` field by field (the same list, so none can be forgotten).
            pub fn add(&mut self, other: &WorkerCounters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Upgraded connections held now (a gauge).
    online,
    /// Readiness events handled.
    events,
    /// Connections accepted (admitted or not).
    accepted,
    /// Messages written or queued to subscribers.
    delivered,
    /// Connections refused with 503 past --max-connections.
    rejected,
    /// Requests answered with a 4xx status.
    http_errors,
    /// Connections failed with close 1002, 1007 or 1009.
    protocol_errors,
    /// Commands answered with an error message.
    command_errors,
    /// Clients closed for silence past --idle-timeout.
    idle_timeouts,
    /// Requests closed for not completing the handshake (408).
    handshake_timeouts,
    /// Open SSE streams now (a gauge).
    sse_online,
    /// Long-polls held now (a gauge).
    polls_held,
    /// Long-polls answered, with messages or empty.
    polls_answered,
    /// Long-polls answered empty after --poll-timeout.
    poll_timeouts,
    /// Resumes (since=) that could not be exact: recovered false.
    resumes_not_recovered,
    /// Connections closed for being owed more than --max-queued-bytes.
    slow_consumer_closes,
    /// Connections refused with 503 past --max-connections-per-ip.
    per_ip_rejected,
    /// WebSockets closed (1008) past --max-commands-per-second.
    commands_rate_closes,
    /// Tokens refused (forged, expired, malformed), and auth timeouts.
    auth_failures,
    /// Joins refused for a channel the token does not grant (or no token).
    forbidden,
    /// Connections closed (or polls answered 401) because their token expired.
    token_expired_closes,
    /// Successful {"op":"refresh"}.
    refreshes,
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
