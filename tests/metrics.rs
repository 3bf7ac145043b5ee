//! `GET /metrics`: Prometheus text that Prometheus' own parser (the Python
//! `prometheus_client`, installed by tsung/install.sh) reads, behind the API key,
//! with values that follow connections and publishes.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Reads Prometheus text on stdin with `text_string_to_metric_families` and prints
/// `TYPE family type` and `SAMPLE name{labels} value` lines, labels sorted.
const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("TYPE", family.name, family.type)
    for s in family.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        print("SAMPLE", "%s{%s}" % (s.name, labels), repr(s.value))
"#;

/// The first Python that has `prometheus_client` (the Debian package installs it for
/// the system's python3, which a pyenv shim on PATH may hide).
fn python() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import prometheus_client"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "no python3 with prometheus_client: run tsung/install.sh \
             (apt-get install python3-prometheus-client)",
        )
}

#[derive(Debug)]
struct Parsed {
    types: HashMap<String, String>,
    /// `name{labels}` → value.
    samples: HashMap<String, f64>,
}

impl Parsed {
    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:?}", self.samples.keys()))
    }
}

fn parse(text: &str) -> Parsed {
    let mut child = Command::new(python())
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut parsed = Parsed {
        types: HashMap::new(),
        samples: HashMap::new(),
    };
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let fields: Vec<_> = line.split(' ').collect();
        match fields[..] {
            ["TYPE", name, kind] => {
                parsed.types.insert(name.into(), kind.into());
            }
            ["SAMPLE", series, value] => {
                parsed.samples.insert(series.into(), value.parse().unwrap());
            }
            _ => panic!("parser line {line}"),
        }
    }
    parsed
}

fn get_metrics(server: &Server, auth: &str) -> (u16, Headers, String) {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n");
    raw_http(server.api_addr, request.as_bytes())
}

fn metrics(server: &Server) -> Parsed {
    let (status, headers, body) = get_metrics(server, "");
    assert_eq!(status, 200, "{body}");
    let kind = header(&headers, "content-type").unwrap_or_default();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    parse(&body)
}

/// The metrics once `settled` holds of them, or the last ones after 5 s: workers
/// copy their counters out at the end of a turn.
fn metrics_when(server: &Server, settled: impl Fn(&Parsed) -> bool) -> Parsed {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let parsed = metrics(server);
        if settled(&parsed) || Instant::now() > deadline {
            return parsed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_parse_as_prometheus_text_and_follow_connections_and_publishes() {
    let server = Server::start(&["--workers", "2"]);
    let before = metrics(&server);
    for (family, kind) in [
        ("halley_connections", "gauge"),
        ("halley_connections_opened", "counter"),
        ("halley_connections_closed", "counter"),
        ("halley_connections_rejected", "counter"),
        ("halley_messages_published", "counter"),
        ("halley_messages_delivered", "counter"),
        ("halley_slow_consumer_closes", "counter"),
        ("halley_worker_events", "counter"),
        ("halley_channels", "gauge"),
        ("halley_memory_resident_bytes", "gauge"),
        ("halley_memory_resident_file_bytes", "gauge"),
        ("halley_memory_allocated_bytes", "gauge"),
        ("halley_memory_allocator_active_bytes", "gauge"),
        ("halley_memory_allocator_resident_bytes", "gauge"),
        ("halley_memory_allocator_metadata_bytes", "gauge"),
        ("halley_api_unauthorized", "counter"),
    ] {
        assert_eq!(
            before.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(before.value(r#"halley_connections{transport="ws"}"#), 0.0);
    assert!(before.value("halley_memory_resident_bytes{}") > 0.0);
    memory_figures_nest(&before);
    for cause in ["idle_timeout", "slow_consumer", "token_expired"] {
        before.value(&format!(
            r#"halley_connections_closed_total{{cause="{cause}"}}"#
        ));
    }
    for cause in ["max_connections", "per_ip", "channels"] {
        before.value(&format!(
            r#"halley_connections_rejected_total{{cause="{cause}"}}"#
        ));
    }
    for worker in 0..2 {
        before.value(&format!(
            r#"halley_worker_events_total{{worker="{worker}"}}"#
        ));
    }

    const SUBSCRIBERS: usize = 3;
    let mut clients: Vec<_> = (0..SUBSCRIBERS).map(|_| server.connect("/ws")).collect();
    for ws in &mut clients {
        subscribe(ws, "metered");
    }
    let joined = metrics_when(&server, |m| {
        m.value(r#"halley_connections{transport="ws"}"#) == SUBSCRIBERS as f64
    });
    assert_eq!(
        joined.value(r#"halley_connections{transport="ws"}"#),
        SUBSCRIBERS as f64
    );
    assert!(
        joined.value("halley_connections_opened_total{}")
            >= before.value("halley_connections_opened_total{}") + SUBSCRIBERS as f64
    );

    server.publisher().publish_ok("metered", "\"hello\"");
    for ws in &mut clients {
        expect_push(ws, "metered", 1, "\"hello\"");
    }
    let delivered_before = before.value("halley_messages_delivered_total{}");
    let after = metrics_when(&server, |m| {
        m.value("halley_messages_delivered_total{}") >= delivered_before + SUBSCRIBERS as f64
    });
    assert_eq!(
        after.value("halley_messages_delivered_total{}"),
        delivered_before + SUBSCRIBERS as f64,
        "one publish to {SUBSCRIBERS} subscribers"
    );
    assert_eq!(
        after.value("halley_messages_published_total{}"),
        before.value("halley_messages_published_total{}") + 1.0
    );
    assert!(after.value("halley_channels{}") >= 1.0);
    let events = |m: &Parsed| {
        (0..2)
            .map(|w| m.value(&format!(r#"halley_worker_events_total{{worker="{w}"}}"#)))
            .sum::<f64>()
    };
    assert!(events(&after) > events(&before), "workers handled events");
    memory_figures_nest(&after);
}

#[test]
fn metrics_need_the_api_key_like_every_api_route() {
    let path = std::env::temp_dir().join(format!("halley-metrics-key-{}", std::process::id()));
    std::fs::write(&path, "m3trics-key\n").unwrap();
    let server = Server::start(&["--api-key-file", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    let (status, headers, _) = get_metrics(&server, "");
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    let (status, _, body) = get_metrics(&server, "Authorization: Bearer m3trics-key\r\n");
    assert_eq!(status, 200, "{body}");
    let parsed = parse(&body);
    assert_eq!(
        parsed.value("halley_api_unauthorized_total{}"),
        1.0,
        "the refused scrape is counted"
    );
}

#[test]
fn broker_metrics_follow_redis_and_parse() {
    let mut redis = common::redis::Redis::start();
    let server = Server::start(&["--broker", &redis.url()]);
    let mut ws = server.connect("/ws");
    common::subscribe(&mut ws, "watched");
    server.publisher().publish_ok("watched", "1");
    common::expect_push(&mut ws, "watched", 1, "1");
    let parsed = metrics_when(&server, |m| {
        m.samples
            .get("halley_broker_relayed_total{outcome=\"delivered\"}")
            .is_some_and(|v| *v == 1.0)
    });
    assert_eq!(parsed.types["halley_broker_up"], "gauge");
    assert_eq!(parsed.value("halley_broker_up{}"), 1.0);
    assert_eq!(parsed.value("halley_broker_syncs_total{}"), 1.0);
    assert_eq!(parsed.value("halley_broker_channels{}"), 1.0);
    assert_eq!(
        parsed.value("halley_broker_published_total{origin=\"api_or_client\"}"),
        1.0
    );
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics(&server).value("halley_broker_up{}") != 0.0 {
        assert!(
            Instant::now() < deadline,
            "halley_broker_up never went to 0"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The memory gauges split one another as docs/metrics.md says: code pages within
/// RSS, and jemalloc's allocated ≤ active ≤ resident, its metadata within that.
fn memory_figures_nest(m: &Parsed) {
    let rss = m.value("halley_memory_resident_bytes{}");
    let file = m.value("halley_memory_resident_file_bytes{}");
    let allocated = m.value("halley_memory_allocated_bytes{}");
    let active = m.value("halley_memory_allocator_active_bytes{}");
    let resident = m.value("halley_memory_allocator_resident_bytes{}");
    let metadata = m.value("halley_memory_allocator_metadata_bytes{}");
    let all = [rss, file, allocated, active, resident, metadata];
    assert!(0.0 < file && file < rss, "{all:?}");
    assert!(
        0.0 < allocated && allocated <= active && active <= resident,
        "{all:?}"
    );
    assert!(0.0 < metadata && metadata < resident, "{all:?}");
}

#[test]
fn the_grafana_dashboard_names_only_metrics_that_exist() {
    let dashboard = include_str!("../docs/grafana/halley-dashboard.json");
    let listed = include_str!("../docs/metrics.md");
    let mut named = 0;
    for (at, _) in dashboard.match_indices("halley_") {
        let name: String = dashboard[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        named += 1;
        assert!(
            listed.contains(&format!("| `{name}` |")),
            "the dashboard reads {name}, which docs/metrics.md does not list"
        );
    }
    assert!(
        named > 10,
        "only {named} metric names found in the dashboard"
    );
}
