//! Every Prometheus metric family Halley exports, in one place (the model is sozu's
//! `metrics/names.rs`). The counters (mod.rs) and the process-wide figures
//! (snapshot.rs) name a family from here; /metrics prints the families in this order.

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until a restart); names end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family: its name, type and `# HELP` text.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

macro_rules! families {
    ($($id:ident: $name:literal, $kind:ident, $help:literal;)*) => {
        $(pub const $id: Family = Family { name: $name, kind: Kind::$kind, help: $help };)*
        /// Every family, in the order /metrics prints them.
        pub const FAMILIES: &[&Family] = &[$(&$id),*];
    };
}

families! {
    UPTIME: "halley_uptime_seconds", Gauge, "Seconds since the server started.";
    CONNECTIONS: "halley_connections", Gauge,
        "Subscribers held now, by transport: upgraded WebSockets, SSE streams, held long-polls.";
    CONNECTIONS_OPEN: "halley_connections_open", Gauge,
        "Client sockets held now, the figure --max-connections applies to.";
    CONNECTIONS_OPENED: "halley_connections_opened_total", Counter,
        "Connections accepted on the client listener, refused ones and /health checks included.";
    CONNECTIONS_CLOSED: "halley_connections_closed_total", Counter,
        "Connections the server closed, by cause (closes by the client are not counted).";
    CONNECTIONS_REJECTED: "halley_connections_rejected_total", Counter,
        "Connections or channels refused by a limit, by cause.";
    MESSAGES_PUBLISHED: "halley_messages_published_total", Counter,
        "Messages published (API, client publishes and the demo).";
    PUBLISHES_HELD: "halley_publishes_held_total", Counter,
        "HTTP and RESP publishes that waited for a worker that was behind (each counted once).";
    MESSAGES_DELIVERED: "halley_messages_delivered_total", Counter,
        "Messages written or queued to subscribers.";
    SLOW_CONSUMER_CLOSES: "halley_slow_consumer_closes_total", Counter,
        "Connections closed for being owed more than --max-queued-bytes.";
    CONNECTIONS_BUFFERED: "halley_connections_buffered", Gauge,
        "Connections holding buffers now: part of a request or frame, or bytes their socket has not taken.";
    CHANNELS: "halley_channels", Gauge,
        "Channels that exist now: with a subscriber, a held poll or history.";
    POLLS_ANSWERED: "halley_polls_answered_total", Counter,
        "Long-polls answered, with messages or empty.";
    POLL_TIMEOUTS: "halley_poll_timeouts_total", Counter,
        "Long-polls answered empty after --poll-timeout.";
    RESUMES_NOT_RECOVERED: "halley_resumes_not_recovered_total", Counter,
        "Resumes that could not be exact (recovered false).";
    HTTP_ERRORS: "halley_http_errors_total", Counter,
        "Client listener requests answered with a 4xx status.";
    COMMAND_ERRORS: "halley_command_errors_total", Counter,
        "WebSocket commands answered with an error message.";
    AUTH_FAILURES: "halley_auth_failures_total", Counter,
        "Tokens refused (forged, expired, malformed) and auth timeouts.";
    JOINS_FORBIDDEN: "halley_joins_forbidden_total", Counter,
        "Joins refused for a channel the token does not grant.";
    TOKEN_REFRESHES: "halley_token_refreshes_total", Counter,
        "Successful token refreshes.";
    ADDRESSES_COUNTED: "halley_addresses_counted", Gauge,
        "Source addresses counted for --max-connections-per-ip now.";
    API_UNAUTHORIZED: "halley_api_unauthorized_total", Counter,
        "API requests answered 401 for a missing or wrong API key.";
    API_ERRORS: "halley_api_errors_total", Counter,
        "API requests answered with a 4xx or 5xx status, 401s included: bad requests, limits, timeouts, publishes held too long.";
    BROKER_UP: "halley_broker_up", Gauge,
        "1 while the Redis broker is reachable, 0 while it is not (only with --broker).";
    BROKER_PING: "halley_broker_ping_microseconds", Gauge,
        "Round trip of the broker's last health PING to Redis, in microseconds (an integer, so not in seconds).";
    BROKER_CHANNELS: "halley_broker_channels", Gauge,
        "Channels this node is subscribed to in Redis.";
    BROKER_PUBLISHED: "halley_broker_published_total", Counter,
        "Messages this node published through Redis.";
    BROKER_PUBLISHED_LOCALLY: "halley_broker_published_locally_total", Counter,
        "Messages published while Redis was unreachable: numbered here, delivered on this node only.";
    BROKER_PUBLISH_ERRORS: "halley_broker_publish_errors_total", Counter,
        "Publishes Redis failed or did not answer (then published locally).";
    BROKER_RELAYED: "halley_broker_relayed_total", Counter,
        "Messages Redis relayed to this node, by outcome.";
    BROKER_SYNCS: "halley_broker_syncs_total", Counter,
        "Channel states read from Redis (a first subscriber here, or a resync).";
    BROKER_RECONNECTS: "halley_broker_reconnects_total", Counter,
        "Times the broker came back after Redis was unreachable.";
    RESP_COMMANDS: "halley_resp_commands_total", Counter,
        "RESP commands answered (--resp-listen), errors included.";
    RESP_ERRORS: "halley_resp_errors_total", Counter,
        "RESP error replies: refused commands and protocol errors.";
    RESP_CONNECTIONS: "halley_resp_connections", Gauge,
        "RESP connections held now.";
    DEFLATE_NEGOTIATED: "halley_deflate_negotiated_total", Counter,
        "WebSocket connections that agreed to permessage-deflate.";
    FRAMES_DEFLATED: "halley_frames_deflated_total", Counter,
        "Messages compressed for permessage-deflate, once per worker per publication.";
    INFLATE_REFUSED: "halley_inflate_refused_total", Counter,
        "Compressed client messages refused: too big once inflated, or corrupt.";
    GZIP_COMPRESSED: "halley_gzip_compressed_total", Counter,
        "SSE segments and long-poll answers compressed for gzip; shared ones once per worker.";
    WORKER_EVENTS: "halley_worker_events_total", Counter,
        "Readiness events handled, by worker.";
    MEMORY_RESIDENT: "halley_memory_resident_bytes", Gauge,
        "Resident set size of the process (VmRSS).";
    MEMORY_RESIDENT_FILE: "halley_memory_resident_file_bytes", Gauge,
        "The file-backed part of the resident set: the binary's code pages and the libraries'.";
    MEMORY_ALLOCATED: "halley_memory_allocated_bytes", Gauge,
        "Bytes allocated by the application through jemalloc.";
    MEMORY_ALLOCATOR_ACTIVE: "halley_memory_allocator_active_bytes", Gauge,
        "Bytes of the pages jemalloc's allocations sit on: allocated plus the free slots of partly used slabs.";
    MEMORY_ALLOCATOR_RESIDENT: "halley_memory_allocator_resident_bytes", Gauge,
        "Bytes of jemalloc's resident pages: active, its metadata, and freed pages not yet purged.";
    MEMORY_ALLOCATOR_METADATA: "halley_memory_allocator_metadata_bytes", Gauge,
        "Bytes of jemalloc's own bookkeeping.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_style_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for family in FAMILIES {
            assert!(seen.insert(family.name), "{} twice", family.name);
            assert!(family.name.starts_with("halley_"), "{}", family.name);
            assert!(
                family
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                family.name
            );
            let total = family.name.ends_with("_total");
            assert_eq!(total, family.kind == Kind::Counter, "{}", family.name);
            // HELP text is printed as is: no escapes needed.
            assert!(!family.help.contains(['\\', '\n']), "{}", family.name);
        }
    }

    #[test]
    fn docs_metrics_md_lists_every_family() {
        let doc = include_str!("../../docs/metrics.md");
        for family in FAMILIES {
            let row = format!("| `{}` | {} |", family.name, family.kind.as_str());
            assert!(doc.contains(&row), "docs/metrics.md lacks the row {row}");
        }
    }
}
