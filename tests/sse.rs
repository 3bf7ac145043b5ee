//! Server-Sent Events against the real binary: the stream, resume by Last-Event-ID
//! (and its query form), ids for several channels, and the heartbeat.

mod common;

use std::thread;
use std::time::Duration;

use common::comet::Sse;
use common::*;

#[test]
fn a_stream_carries_the_websocket_push_json_with_seq_ids() {
    let server = Server::start(&[]);
    let mut sse = Sse::open(server.client_addr, "/sse?channel=live", "");
    assert_eq!(sse.head.status, 200);
    assert_eq!(
        header(&sse.head.headers, "content-type"),
        Some("text/event-stream")
    );
    let subscribed = sse.next();
    assert_eq!(subscribed.kind.as_deref(), Some("subscribed"));
    assert_eq!(subscribed.json()["seq"], 0);
    server
        .publisher()
        .publish_ok("live", "{\n  \"multi\": \"line\"\n}");
    let event = sse.next();
    assert_eq!(event.id.as_deref(), Some("1"));
    check_push(&event.data, "live", 1, "{\n  \"multi\": \"line\"\n}");
    assert_eq!(server.stats_when(|s| s["sse_online"] == 1)["sse_online"], 1);
}

#[test]
fn last_event_id_resumes_the_stream() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    for n in 1..=5 {
        publisher.publish_ok("feed", &n.to_string());
    }
    let mut sse = Sse::open(
        server.client_addr,
        "/sse?channel=feed",
        "Last-Event-ID: 3\r\n",
    );
    let subscribed = sse.next().json();
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    for n in 4..=5u64 {
        let event = sse.next();
        assert_eq!(event.id, Some(n.to_string()));
        check_push(&event.data, "feed", n, &n.to_string());
    }
    publisher.publish_ok("feed", "6");
    assert_eq!(sse.next().id.as_deref(), Some("6"));

    // The polyfill form, in the query.
    let mut polyfill = Sse::open(server.client_addr, "/sse?channel=feed&last_event_id=5", "");
    polyfill.next();
    check_push(&polyfill.next().data, "feed", 6, "6");
}

#[test]
fn several_channels_get_positional_ids_that_resume_each() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    publisher.publish_ok("a", "1");
    publisher.publish_ok("b", "1");
    publisher.publish_ok("b", "2");
    let mut sse = Sse::open(server.client_addr, "/sse?channel=a,b&since=0,1", "");
    assert_eq!(sse.next().kind.as_deref(), Some("subscribed"));
    assert_eq!(sse.next().kind.as_deref(), Some("subscribed"));
    let (a1, b2) = (sse.next(), sse.next());
    assert_eq!(a1.id.as_deref(), Some("1,1"), "{a1:?}");
    assert_eq!(b2.id.as_deref(), Some("1,2"), "{b2:?}");
    publisher.publish_ok("a", "2");
    let a2 = sse.next();
    assert_eq!(a2.id.as_deref(), Some("2,2"), "{a2:?}");
    drop(sse);

    publisher.publish_ok("b", "3");
    let mut again = Sse::open(
        server.client_addr,
        "/sse?channel=a,b",
        "Last-Event-ID: 2,2\r\n",
    );
    again.next();
    again.next();
    let b3 = again.next();
    check_push(&b3.data, "b", 3, "3");
    assert_eq!(b3.id.as_deref(), Some("2,3"));
}

#[test]
fn an_idle_stream_gets_heartbeats_and_a_dropped_one_is_counted_out() {
    let server = Server::start(&["--ping-interval", "1"]);
    let mut sse = Sse::open(server.client_addr, "/sse?channel=hb", "");
    sse.next();
    sse.read_until(b":\n\n");
    drop(sse);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while server.stats()["sse_online"] != 0 {
        assert!(std::time::Instant::now() < deadline, "{}", server.stats());
        thread::sleep(Duration::from_millis(100));
    }
}
