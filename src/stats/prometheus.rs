//! `GET /metrics`: the Prometheus text exposition format, version 0.0.4
//! (`# HELP`, `# TYPE`, then the family's samples together), built from a
//! [`Snapshot`] by a pure function.

use std::fmt::Write;

use super::names::{Family, FAMILIES};
use super::snapshot::Snapshot;
use super::{Scope, Target, COUNTERS};

/// The `Content-Type` Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family of names.rs, in its order, with its samples.
pub fn render(snapshot: &Snapshot) -> String {
    let figures = snapshot.figures();
    let per_worker: Vec<_> = snapshot.workers.iter().map(|w| w.values()).collect();
    let mut out = String::with_capacity(4096);
    for family in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
        for figure in &figures {
            for target in targets(figure.metrics, family, Scope::Total) {
                sample(&mut out, family, target.labels, None, figure.value);
            }
        }
        for (index, def) in COUNTERS.iter().enumerate() {
            for target in targets(def.metrics, family, Scope::PerWorker) {
                for (worker, values) in per_worker.iter().enumerate() {
                    sample(&mut out, family, target.labels, Some(worker), values[index]);
                }
            }
        }
    }
    out
}

fn targets<'a>(
    metrics: &'a [Target],
    family: &'a Family,
    scope: Scope,
) -> impl Iterator<Item = &'a Target> {
    // Compared by name: a `const` may live at several addresses.
    metrics
        .iter()
        .filter(move |t| t.scope == scope && t.family.name == family.name)
}

/// `name{k="v",worker="N"} value`. Label values are fixed words or numbers, so no
/// escaping is needed.
fn sample(
    out: &mut String,
    family: &Family,
    labels: &[(&str, &str)],
    worker: Option<usize>,
    value: u64,
) {
    out.push_str(family.name);
    let worker = worker.map(|w| w.to_string());
    let all = labels
        .iter()
        .copied()
        .chain(worker.as_deref().map(|w| ("worker", w)));
    for (i, (key, value)) in all.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let _ = write!(out, "{key}=\"{value}\"");
    }
    if !labels.is_empty() || worker.is_some() {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::WorkerCounters;

    fn snapshot() -> Snapshot {
        let one = WorkerCounters {
            online: 3,
            events: 40,
            accepted: 7,
            delivered: 9,
            slow_consumer_closes: 1,
            idle_timeouts: 2,
            ..Default::default()
        };
        let two = WorkerCounters {
            online: 1,
            events: 2,
            sse_online: 5,
            per_ip_rejected: 4,
            ..Default::default()
        };
        let mut totals = one;
        totals.add(&two);
        Snapshot {
            uptime_s: 12,
            totals,
            workers: vec![one, two],
            events_per_s: vec![0, 0],
            open_connections: 9,
            published: 6,
            channels: 2,
            channels_refused: 8,
            memory: crate::stats::memory::Memory {
                rss: 4096,
                rss_file: 2048,
                allocated: 1024,
                active: 1536,
                resident: 3072,
                metadata: 512,
            },
            broker: Some(crate::stats::snapshot::BrokerFigures {
                state: "up",
                ping_us: 250,
                relayed: 7,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn families_print_help_type_and_their_samples_together() {
        let text = render(&snapshot());
        let expected_start = "\
# HELP halley_uptime_seconds Seconds since the server started.
# TYPE halley_uptime_seconds gauge
halley_uptime_seconds 12
# HELP halley_connections Subscribers held now, by transport: upgraded WebSockets, SSE streams, held long-polls.
# TYPE halley_connections gauge
halley_connections{transport=\"ws\"} 4
halley_connections{transport=\"sse\"} 5
halley_connections{transport=\"poll\"} 0
# HELP halley_connections_open Client sockets held now, the figure --max-connections applies to.
# TYPE halley_connections_open gauge
halley_connections_open 9
# HELP halley_connections_opened_total Connections accepted on the client listener, refused ones and /health checks included.
# TYPE halley_connections_opened_total counter
halley_connections_opened_total 7
# HELP halley_connections_closed_total Connections the server closed, by cause (closes by the client are not counted).
# TYPE halley_connections_closed_total counter
halley_connections_closed_total{cause=\"protocol_error\"} 0
halley_connections_closed_total{cause=\"idle_timeout\"} 2
halley_connections_closed_total{cause=\"handshake_timeout\"} 0
halley_connections_closed_total{cause=\"slow_consumer\"} 1
halley_connections_closed_total{cause=\"command_rate\"} 0
halley_connections_closed_total{cause=\"token_expired\"} 0
# HELP halley_connections_rejected_total Connections or channels refused by a limit, by cause.
# TYPE halley_connections_rejected_total counter
halley_connections_rejected_total{cause=\"max_connections\"} 0
halley_connections_rejected_total{cause=\"per_ip\"} 4
halley_connections_rejected_total{cause=\"channels\"} 8
halley_connections_rejected_total{cause=\"fd_exhausted\"} 0
# HELP halley_messages_published_total Messages published (API, client publishes and the demo).
# TYPE halley_messages_published_total counter
halley_messages_published_total 6
# HELP halley_publishes_held_total HTTP and RESP publishes that waited for a worker that was behind (each counted once).
# TYPE halley_publishes_held_total counter
halley_publishes_held_total 0
# HELP halley_messages_delivered_total Messages written or queued to subscribers.
# TYPE halley_messages_delivered_total counter
halley_messages_delivered_total 9
# HELP halley_slow_consumer_closes_total Connections closed for being owed more than --max-queued-bytes.
# TYPE halley_slow_consumer_closes_total counter
halley_slow_consumer_closes_total 1
# HELP halley_connections_buffered Connections holding buffers now: part of a request or frame, or bytes their socket has not taken.
# TYPE halley_connections_buffered gauge
halley_connections_buffered 0
# HELP halley_channels Channels that exist now: with a subscriber, a held poll or history.
# TYPE halley_channels gauge
halley_channels 2
";
        assert!(text.starts_with(expected_start), "{text}");
        let expected_end = "\
# HELP halley_worker_events_total Readiness events handled, by worker.
# TYPE halley_worker_events_total counter
halley_worker_events_total{worker=\"0\"} 40
halley_worker_events_total{worker=\"1\"} 2
# HELP halley_memory_resident_bytes Resident set size of the process (VmRSS).
# TYPE halley_memory_resident_bytes gauge
halley_memory_resident_bytes 4096
# HELP halley_memory_resident_file_bytes The file-backed part of the resident set: the binary's code pages and the libraries'.
# TYPE halley_memory_resident_file_bytes gauge
halley_memory_resident_file_bytes 2048
# HELP halley_memory_allocated_bytes Bytes allocated by the application through jemalloc.
# TYPE halley_memory_allocated_bytes gauge
halley_memory_allocated_bytes 1024
# HELP halley_memory_allocator_active_bytes Bytes of the pages jemalloc's allocations sit on: allocated plus the free slots of partly used slabs.
# TYPE halley_memory_allocator_active_bytes gauge
halley_memory_allocator_active_bytes 1536
# HELP halley_memory_allocator_resident_bytes Bytes of jemalloc's resident pages: active, its metadata, and freed pages not yet purged.
# TYPE halley_memory_allocator_resident_bytes gauge
halley_memory_allocator_resident_bytes 3072
# HELP halley_memory_allocator_metadata_bytes Bytes of jemalloc's own bookkeeping.
# TYPE halley_memory_allocator_metadata_bytes gauge
halley_memory_allocator_metadata_bytes 512
";
        assert!(text.ends_with(expected_end), "{text}");
    }

    #[test]
    fn every_family_has_one_help_one_type_and_a_sample() {
        let text = render(&snapshot());
        for family in FAMILIES {
            let help = format!("# HELP {} ", family.name);
            let kind = format!("# TYPE {} ", family.name);
            assert_eq!(text.matches(&help).count(), 1, "{}", family.name);
            assert_eq!(text.matches(&kind).count(), 1, "{}", family.name);
            let sampled = text.lines().any(|l| {
                l.strip_prefix(family.name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            });
            assert!(sampled, "no sample of {}", family.name);
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_counter_is_exported() {
        for def in &COUNTERS {
            assert!(!def.metrics.is_empty(), "{} has no series", def.field);
            for target in def.metrics {
                assert!(
                    FAMILIES.iter().any(|f| f.name == target.family.name),
                    "{} names a family not in FAMILIES",
                    def.field
                );
            }
        }
    }
}
