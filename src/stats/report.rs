//! `GET /api/stats`: the counters as JSON.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::{memory, Shared};

pub fn stats_json(shared: &Shared) -> String {
    let totals = shared.totals();
    let workers: Vec<_> = shared
        .workers
        .iter()
        .enumerate()
        .map(|(id, w)| {
            let c = w.load();
            json!({
                "id": id,
                "online": c.online,
                "events_total": c.events,
                "events_per_s": w.events_per_s.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({
        "uptime_s": shared.started.elapsed().as_secs(),
        "online": totals.online,
        "sse_online": totals.sse_online,
        "polls_held": totals.polls_held,
        "polls_answered_total": totals.polls_answered,
        "poll_timeouts_total": totals.poll_timeouts,
        "resumes_not_recovered_total": totals.resumes_not_recovered,
        "connections_open": shared.open_connections.load(Ordering::Relaxed),
        "connections_total": totals.accepted,
        "published_total": shared.hub.published_total(),
        "delivered_total": totals.delivered,
        "channels": shared.hub.channel_count(),
        "channels_refused_total": shared.hub.channels_refused(),
        "rss_bytes": memory::rss_bytes(),
        "allocated_bytes": memory::allocated_bytes(),
        "rejected_total": totals.rejected,
        "emfile_drops_total": shared.emfile_drops.load(Ordering::Relaxed),
        "api_unauthorized_total": shared.api_unauthorized.load(Ordering::Relaxed),
        "http_errors_total": totals.http_errors,
        "protocol_errors_total": totals.protocol_errors,
        "command_errors_total": totals.command_errors,
        "idle_timeouts_total": totals.idle_timeouts,
        "handshake_timeouts_total": totals.handshake_timeouts,
        "slow_consumer_closes_total": totals.slow_consumer_closes,
        "per_ip_rejected_total": totals.per_ip_rejected,
        "commands_rate_closes_total": totals.commands_rate_closes,
        "addresses_counted": shared.per_address.addresses(),
        "auth_failures_total": totals.auth_failures,
        "forbidden_total": totals.forbidden,
        "token_expired_closes_total": totals.token_expired_closes,
        "refreshes_total": totals.refreshes,
        "workers": workers,
    })
    .to_string()
}
