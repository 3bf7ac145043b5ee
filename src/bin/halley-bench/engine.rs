//! One process's share of a run: starts the reactor threads, walks the scenario's
//! phases (open → ready/go → hold, deliver or burst → close) and merges the results.

use crate::reactor::{self, Control, Kind, Plan};
use crate::stats::{Live, Outcome};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub struct Share {
    /// Global index of this process's first connection.
    pub first: usize,
    pub count: usize,
    pub threads: usize,
    /// hold: how long to hold once every connection is open.
    pub hold: Duration,
    /// fanout: how long to wait for deliveries after the go.
    pub timeout: Duration,
}

/// Called once the opening phase is over (hold, fanout): publishes, or tells the
/// parent and waits for its go. Returns what it measured (the publisher's counts).
pub type Gate<'a> = Box<dyn FnOnce(&Live) -> Outcome + 'a>;

const POLL: Duration = Duration::from_millis(20);

pub fn run(plan: Plan, share: &Share, live: Arc<Live>, gate: Gate<'_>) -> Outcome {
    let kind = plan.kind;
    let threads = share.threads.clamp(1, share.count.max(1));
    let ctl = Arc::new(Control {
        close: AtomicBool::new(false),
    });
    let plan = Arc::new(plan);
    let mut handles = Vec::new();
    let mut first = share.first;
    for t in 0..threads {
        let n = share.count / threads + usize::from(t < share.count % threads);
        let (p, l, c) = (plan.clone(), live.clone(), ctl.clone());
        let start = first;
        handles.push(
            thread::Builder::new()
                .name(format!("reactor-{t}"))
                .spawn(move || reactor::run(p, start, n, l, c))
                .expect("spawn reactor thread"),
        );
        first += n;
    }

    let mut extra = Outcome::default();
    if kind != Kind::Churn {
        wait_resolved(&live, share.count as u64, &plan);
    }
    match kind {
        Kind::Hold => {
            extra = gate(&live);
            let end = Instant::now() + share.hold;
            // Nothing left to hold (e.g. the server refused all): no need to wait.
            while Instant::now() < end && Live::get(&live.open) > 0 {
                thread::sleep(POLL);
            }
        }
        Kind::Fanout => {
            extra = gate(&live);
            let end = Instant::now() + share.timeout;
            while Instant::now() < end
                && Live::get(&live.deliveries) < Live::get(&live.expected)
                && Live::get(&live.open) > 0
            {
                thread::sleep(POLL);
            }
        }
        Kind::Burst | Kind::Churn => {}
    }
    ctl.close.store(kind != Kind::Churn, Relaxed);

    let mut out = Outcome::default();
    for h in handles {
        match h.join() {
            Ok(o) => out.merge(&o),
            Err(_) => out.errors.push("a reactor thread panicked".into()),
        }
    }
    out.merge(&extra);
    out
}

/// Waits until every connection attempt has succeeded or failed. Each attempt is
/// bounded by the connect timeout and the pace by the rate, so this is bounded too;
/// the extra bound only guards against a bug in the accounting.
fn wait_resolved(live: &Live, count: u64, plan: &Plan) {
    let pace = if plan.rate > 0.0 {
        count as f64 / plan.rate
    } else {
        0.0
    };
    let bound = crate::stats::secs(pace + 60.0) + plan.connect_timeout * 2;
    let end = Instant::now() + bound;
    while Live::get(&live.resolved) < count && Instant::now() < end {
        thread::sleep(POLL);
    }
}
