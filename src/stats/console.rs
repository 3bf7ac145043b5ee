//! The ticker: once a second it refreshes the rates and, with
//! `--stats`, prints one console line of at most 100 columns.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{memory, Shared, WorkerCounters};

/// Workers shown one by one; past this the line shows their total and busiest.
const WORKERS_SHOWN: usize = 4;

#[derive(Debug)]
struct Previous {
    at: Instant,
    accepted: u64,
    delivered: u64,
    events: Vec<u64>,
}

/// Runs forever on its own thread.
pub fn run_ticker(shared: Arc<Shared>, print: bool) {
    let mut previous = Previous {
        at: Instant::now(),
        accepted: 0,
        delivered: 0,
        events: vec![0; shared.workers.len()],
    };
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += Duration::from_secs(1);
        // History expiry rides on the same once-a-second clock.
        shared.hub.sweep();
        let line = tick(&shared, &mut previous);
        if print {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

fn tick(shared: &Shared, previous: &mut Previous) -> String {
    let now = Instant::now();
    let seconds = now.duration_since(previous.at).as_secs_f64().max(1e-3);
    let per_s = |delta: u64| (delta as f64 / seconds).round() as u64;
    let mut worker_rates = Vec::with_capacity(shared.workers.len());
    for (i, worker) in shared.workers.iter().enumerate() {
        let events = worker.events.load(Ordering::Relaxed);
        let rate = per_s(events.saturating_sub(previous.events[i]));
        worker.events_per_s.store(rate, Ordering::Relaxed);
        previous.events[i] = events;
        worker_rates.push(rate);
    }
    let totals: WorkerCounters = shared.totals();
    let memory = memory::Memory::read();
    let line = format_line(&Line {
        uptime_s: shared.started.elapsed().as_secs(),
        // Everyone a push would reach: WebSockets, SSE streams and held polls.
        online: totals.online + totals.sse_online + totals.polls_held,
        new_per_s: per_s(totals.accepted.saturating_sub(previous.accepted)),
        worker_events_per_s: &worker_rates,
        delivered_per_s: per_s(totals.delivered.saturating_sub(previous.delivered)),
        rss: memory.rss,
        heap: memory.allocated,
        limited: totals.slow_consumer_closes
            + totals.per_ip_rejected
            + totals.commands_rate_closes
            + shared.hub.channels_refused(),
        broker: shared.broker.get().map(|b| b.state().name()),
    });
    previous.at = now;
    previous.accepted = totals.accepted;
    previous.delivered = totals.delivered;
    line
}

#[derive(Debug)]
pub struct Line<'a> {
    pub uptime_s: u64,
    pub online: u64,
    pub new_per_s: u64,
    pub worker_events_per_s: &'a [u64],
    pub delivered_per_s: u64,
    pub rss: u64,
    pub heap: u64,
    /// Clients stopped by an abuse limit since start: slow consumers, refused per
    /// address, past the command rate, refused channels.
    pub limited: u64,
    /// `--broker`'s state (`up`, `down`, `connecting`); none when standalone.
    pub broker: Option<&'static str>,
}

/// `[    48s] online    19,000 +0/s | ev/s 6.4k/8.4k | push/s 19.0k | rss/heap 7.0M/2.3M`
/// (events per second per worker, one figure each, slash-separated), then
/// `| lim N` once an abuse limit stopped someone, where the 100 columns leave room.
pub fn format_line(line: &Line<'_>) -> String {
    let workers = line.worker_events_per_s;
    let events = if workers.len() <= WORKERS_SHOWN {
        workers
            .iter()
            .map(|r| compact(*r))
            .collect::<Vec<_>>()
            .join("/")
    } else {
        let total: u64 = workers.iter().sum();
        let busiest = workers.iter().copied().max().unwrap_or(0);
        format!(
            "{}w {} max {}",
            workers.len(),
            compact(total),
            compact(busiest)
        )
    };
    let mut out = format!(
        "[{:>6}s] online {:>9} +{}/s | ev/s {} | push/s {} | rss/heap {}/{}",
        line.uptime_s,
        grouped(line.online),
        compact(line.new_per_s),
        events,
        compact(line.delivered_per_s),
        bytes(line.rss),
        bytes(line.heap),
    );
    if let Some(state) = line.broker {
        let shown = match state {
            "up" => " | redis up",
            "connecting" => " | redis ...",
            _ => " | redis DOWN",
        };
        if out.len() + shown.len() <= 100 {
            out.push_str(shown);
        }
    }
    let limited = format!(" | lim {}", compact(line.limited));
    if line.limited > 0 && out.len() + limited.len() <= 100 {
        out.push_str(&limited);
    }
    out
}

/// 999, 12.3k, 4.56M: at most 5 characters, readable at any rate.
fn compact(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=99_999 => format!("{:.1}k", n as f64 / 1e3),
        100_000..=999_999 => format!("{}k", n / 1_000),
        1_000_000..=99_999_999 => format!("{:.2}M", n as f64 / 1e6),
        100_000_000..=999_999_999 => format!("{}M", n / 1_000_000),
        1_000_000_000..=99_999_999_999 => format!("{:.1}G", n as f64 / 1e9),
        _ => format!("{}G", n / 1_000_000_000),
    }
}

/// 1,234,567
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: u64) -> String {
    match n {
        0..=1_048_575 => format!("{}K", n / 1024),
        _ if n < 10 << 30 => format!("{:.1}M", n as f64 / (1u64 << 20) as f64),
        _ if n < 100 << 30 => format!("{:.1}G", n as f64 / (1u64 << 30) as f64),
        _ => format!("{}G", n >> 30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_fits_100_columns_at_extreme_values() {
        for workers in [vec![999_999_999; 2], vec![123_456; 4], vec![99_999_999; 64]] {
            let line = format_line(&Line {
                uptime_s: 9_999_999,
                online: 99_999_999,
                new_per_s: 999_999_999,
                worker_events_per_s: &workers,
                delivered_per_s: 999_999_999_999,
                rss: 999 << 30,
                heap: 999 << 30,
                limited: 999_999_999_999,
                broker: Some("connecting"),
            });
            assert!(line.len() <= 100, "{} columns: {line}", line.len());
        }
    }

    #[test]
    fn limits_show_once_they_stopped_someone() {
        let mut line = Line {
            uptime_s: 48,
            online: 19_000,
            new_per_s: 0,
            worker_events_per_s: &[6_400, 8_400],
            delivered_per_s: 19_000,
            rss: 7 << 20,
            heap: 2 << 20,
            broker: None,
            limited: 0,
        };
        assert!(!format_line(&line).contains("lim"));
        line.limited = 1_234;
        assert!(
            format_line(&line).ends_with(" | lim 1.2k"),
            "{}",
            format_line(&line)
        );
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(compact(999), "999");
        assert_eq!(compact(12_345), "12.3k");
        assert_eq!(compact(4_560_000), "4.56M");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(bytes(90 << 20), "90.0M");
    }
}
