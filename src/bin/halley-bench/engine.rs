//! One process's share of a run: starts the reactor threads, walks the scenario's
//! phases (open → ready/go → hold, deliver, drop and resume, or burst → close) and
//! merges the results.

use crate::publisher::{self, PubCfg};
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
    /// fanout, reconnect: how long to wait for deliveries after the last publish.
    pub timeout: Duration,
    /// reconnect: when to drop every subscriber, counted from the go.
    pub drop_after: Duration,
    /// reconnect: how long publishing is planned to take (messages / rate).
    pub publish_span: Duration,
}

/// The hand-over once the opening phase is over (hold, fanout, reconnect).
pub struct Gate<'a> {
    /// Blocks until the run may go on: in a child, tells the parent and waits for
    /// its go; alone, returns at once.
    pub wait: Box<dyn FnOnce() + 'a>,
    /// What this process publishes (nothing in a child: the parent publishes).
    pub publish: Option<PubCfg>,
}

const POLL: Duration = Duration::from_millis(20);

pub fn run(plan: Plan, share: &Share, live: Arc<Live>, gate: Gate<'_>) -> Outcome {
    let kind = plan.kind;
    let threads = share.threads.clamp(1, share.count.max(1));
    let ctl = Arc::new(Control {
        close: AtomicBool::new(false),
        drop: AtomicBool::new(false),
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
            (gate.wait)();
            let end = Instant::now() + share.hold;
            // Nothing left to hold (e.g. the server refused all): no need to wait.
            while Instant::now() < end && Live::get(&live.open) > 0 {
                thread::sleep(POLL);
            }
        }
        Kind::Fanout => {
            (gate.wait)();
            if let Some(p) = &gate.publish {
                extra = publisher::publish(p);
            }
            let end = Instant::now() + share.timeout;
            while Instant::now() < end
                && Live::get(&live.deliveries) < Live::get(&live.expected)
                && Live::get(&live.open) > 0
            {
                thread::sleep(POLL);
            }
        }
        Kind::Reconnect => extra = reconnect(gate, share, &live, &ctl, threads as u64),
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

/// reconnect after the opening phase: publishing runs (here or in the parent) while
/// every subscriber is dropped at `drop_after` and resumes; then waits until all have
/// resumed and every message was delivered, bounded by the publishing span plus the
/// timeout.
fn reconnect(gate: Gate<'_>, share: &Share, live: &Live, ctl: &Control, threads: u64) -> Outcome {
    (gate.wait)();
    let go = Instant::now();
    let publishing = gate
        .publish
        .map(|p| thread::spawn(move || publisher::publish(&p)));
    let drop_at = go + share.drop_after;
    let end = go + share.publish_span.max(share.drop_after) + share.timeout;
    while Instant::now() < drop_at && Live::get(&live.open) > 0 {
        thread::sleep(POLL.min(drop_at.saturating_duration_since(Instant::now())));
    }
    ctl.drop.store(true, Relaxed);
    while Instant::now() < end {
        let dropped = Live::get(&live.drop_acks) >= threads;
        let resumed = Live::get(&live.resumed) >= Live::get(&live.dropped);
        let delivered = Live::get(&live.deliveries) >= Live::get(&live.expected);
        if dropped && resumed && delivered {
            break;
        }
        thread::sleep(POLL);
    }
    match publishing.map(|h| h.join()) {
        Some(Ok(o)) => o,
        Some(Err(_)) => Outcome {
            errors: vec!["the publisher thread panicked".into()],
            ..Outcome::default()
        },
        None => Outcome::default(),
    }
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
