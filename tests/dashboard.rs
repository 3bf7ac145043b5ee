//! The live dashboard against the real binary: `GET /api/stats/stream` (the stats
//! as Server-Sent Events once a second, capped), `GET /dashboard`, and the API key
//! given in the query where a browser cannot send a header.

mod common;

use common::comet::Sse;
use common::*;
use serde_json::Value;

const STREAM: &str = "/api/stats/stream";

fn get(api: std::net::SocketAddr, path: &str, auth: &str) -> (u16, Headers, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
    raw_http(api, request.as_bytes())
}

fn key_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("halley-{name}-{}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn the_stats_stream_sends_the_stats_json_once_a_second() {
    let server = Server::start(&[]);
    let mut sse = Sse::open(server.api_addr, STREAM, "");
    assert_eq!(sse.head.status, 200);
    assert_eq!(
        header(&sse.head.headers, "content-type"),
        Some("text/event-stream")
    );
    let events: Vec<_> = (0..3).map(|_| sse.next()).collect();
    let stats: Vec<Value> = events.iter().map(|e| e.json()).collect();
    for (i, (event, stats)) in events.iter().zip(&stats).enumerate() {
        assert_eq!(event.kind.as_deref(), Some("stats"), "{event:?}");
        assert_eq!(event.id, Some((i + 1).to_string()), "{event:?}");
        assert!(stats["online"].is_u64(), "{stats}");
        assert!(stats["workers"].is_array(), "{stats}");
        assert!(stats["rates"]["delivered_per_s"].is_number(), "{stats}");
    }
    // The second and third events are a tick apart, a second at least, so the
    // server's own uptime has moved on.
    let uptime = |s: &Value| s["uptime_s"].as_u64().unwrap();
    assert!(uptime(&stats[2]) > uptime(&stats[0]), "{stats:?}");
}

#[test]
fn the_stream_shows_connections_and_deliveries() {
    let server = Server::start(&[]);
    let mut sse = Sse::open(server.api_addr, STREAM, "");
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "watched");
    let mut publisher = server.publisher();
    let mut seen_online = false;
    let mut seen_deliveries = false;
    for n in 1..=10u64 {
        for _ in 0..20 {
            let seq = publisher.publish_ok("watched", &n.to_string());
            expect_push(&mut ws, "watched", seq, &n.to_string());
        }
        let stats = sse.next().json();
        seen_online |= stats["online"] == 1;
        seen_deliveries |= stats["rates"]["delivered_per_s"].as_f64().unwrap() > 0.0;
        if seen_online && seen_deliveries {
            break;
        }
    }
    assert!(
        seen_online && seen_deliveries,
        "online {seen_online}, deliveries {seen_deliveries}"
    );
}

#[test]
fn the_dashboard_page_is_served_whole_under_its_policy() {
    let server = Server::start(&[]);
    let (status, headers, body) = get(server.api_addr, "/dashboard", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    let policy = header(&headers, "content-security-policy").unwrap();
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert!(body.contains(STREAM) && body.contains("window.dashboard"));
    assert!(!body.contains("<script src"), "no external script");
}

#[test]
fn streams_past_the_cap_get_503() {
    let server = Server::start(&[]);
    let held: Vec<Sse> = (0..64)
        .map(|_| Sse::open(server.api_addr, STREAM, ""))
        .collect();
    assert!(held.iter().all(|s| s.head.status == 200));
    let (status, _, body) = get(server.api_addr, STREAM, "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many stats streams"), "{body}");
    drop(held);
    // The server frees the slots as it reads the clients' ends.
    let mut reopened = None;
    for _ in 0..50 {
        let sse = Sse::open(server.api_addr, STREAM, "");
        if sse.head.status == 200 {
            reopened = Some(sse);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        reopened.is_some(),
        "no slot came back after the clients left"
    );
}

#[test]
fn with_an_api_key_the_dashboard_takes_it_in_the_header_or_the_query() {
    let path = key_file("dashboard-key", "sesame-7\n");
    let server = Server::start(&["--api-key-file", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    let api = server.api_addr;
    assert_eq!(get(api, "/dashboard", "").0, 401);
    assert_eq!(get(api, "/dashboard?key=sesame-6", "").0, 401);
    assert_eq!(get(api, "/dashboard?key=sesame-7", "").0, 200);
    assert_eq!(
        get(api, "/api/stats?key=sesame-7", "").0,
        401,
        "only the dashboard's routes"
    );
    assert_eq!(get(api, STREAM, "").0, 401);
    let by_query = Sse::open(api, &format!("{STREAM}?key=sesame-7"), "");
    assert_eq!(by_query.head.status, 200);
    let mut by_header = Sse::open(api, STREAM, "Authorization: Bearer sesame-7\r\n");
    assert_eq!(by_header.head.status, 200);
    assert_eq!(by_header.next().kind.as_deref(), Some("stats"));
}
