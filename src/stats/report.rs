//! `GET /api/stats`: the counters as JSON, keyed as snapshot.rs and the counter
//! list say.

use serde_json::{json, Map, Value};

use super::snapshot::Snapshot;
use super::Shared;

pub fn stats_json(shared: &Shared) -> String {
    render(&Snapshot::take(shared))
}

pub fn render(snapshot: &Snapshot) -> String {
    let mut out = Map::new();
    for figure in snapshot.figures() {
        if let Some(key) = figure.json {
            out.insert(key.into(), figure.value.into());
        }
    }
    let workers: Vec<_> = snapshot
        .workers
        .iter()
        .zip(&snapshot.events_per_s)
        .enumerate()
        .map(|(id, (c, per_s))| {
            json!({
                "id": id,
                "online": c.online,
                "events_total": c.events,
                "events_per_s": per_s,
            })
        })
        .collect();
    out.insert("workers".into(), workers.into());
    let broker = match &snapshot.broker {
        None => json!({ "state": "standalone" }),
        Some(b) => json!({
            "state": b.state,
            "url": b.url,
            "ping_us": b.ping_us,
            "channels": b.channels,
            "syncing": b.syncing,
            "published_total": b.published,
            "published_locally_total": b.published_locally,
            "publish_errors_total": b.publish_errors,
            "relayed_total": b.relayed,
            "duplicates_total": b.duplicates,
            "gaps_total": b.gaps,
            "syncs_total": b.syncs,
            "reconnects_total": b.reconnects,
        }),
    };
    out.insert("broker".into(), broker);
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_keys_stay_as_tools_read_them() {
        let snapshot = Snapshot {
            workers: vec![Default::default()],
            events_per_s: vec![3],
            ..Default::default()
        };
        let stats: Value = serde_json::from_str(&render(&snapshot)).unwrap();
        let mut keys: Vec<_> = stats.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut expected = vec![
            "uptime_s",
            "online",
            "sse_online",
            "polls_held",
            "polls_answered_total",
            "poll_timeouts_total",
            "resumes_not_recovered_total",
            "connections_open",
            "connections_buffered",
            "connections_total",
            "published_total",
            "publishes_held_total",
            "delivered_total",
            "channels",
            "channels_refused_total",
            "rss_bytes",
            "rss_file_bytes",
            "allocated_bytes",
            "allocator_active_bytes",
            "allocator_resident_bytes",
            "allocator_metadata_bytes",
            "rejected_total",
            "emfile_drops_total",
            "api_unauthorized_total",
            "api_errors_total",
            "resp_commands_total",
            "resp_errors_total",
            "resp_connections",
            "http_errors_total",
            "protocol_errors_total",
            "command_errors_total",
            "idle_timeouts_total",
            "handshake_timeouts_total",
            "slow_consumer_closes_total",
            "per_ip_rejected_total",
            "commands_rate_closes_total",
            "addresses_counted",
            "auth_failures_total",
            "forbidden_total",
            "token_expired_closes_total",
            "refreshes_total",
            "deflate_negotiated_total",
            "frames_deflated_total",
            "inflate_refused_total",
            "gzip_compressed_total",
            "workers",
            "broker",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(
            stats["workers"],
            json!([{"id": 0, "online": 0, "events_total": 0, "events_per_s": 3}])
        );
    }
}
