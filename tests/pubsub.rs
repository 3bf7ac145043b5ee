//! The client commands and the publish API (docs/protocol.md).

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use tungstenite::Message;

/// Data with odd spacing, a trailing zero and an escape: any re-serialisation by the
/// server would change its bytes.
const ODD_DATA: &str = r#"{"k": [1, 2.50, "\u00e9"],  "z":null}"#;

#[test]
fn subscribe_then_publish_delivers_data_verbatim() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    send_text(&mut ws, r#"{"op":"subscribe","channel":"news"}"#);
    assert_eq!(
        without_epoch(recv_json(&mut ws)),
        json!({"op":"subscribed","channel":"news","seq":0,"recovered":true})
    );

    let (status, body) = server.publish("news", ODD_DATA);
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(without_epoch(reply), json!({"channel":"news","seq":1}));

    expect_push(&mut ws, "news", 1, ODD_DATA);
}

#[test]
fn subscribe_query_is_silent_until_a_push() {
    let server = Server::start(&[]);
    // Channel names may be percent-encoded: `enc%3Aone` is `enc:one`.
    let mut ws = server.connect("/ws?subscribe=q1,enc%3Aone");
    // Commands are answered in order, so if the server had sent anything on connect,
    // it would arrive before this reply.
    assert_eq!(subscribe(&mut ws, "probe"), 0);
    let mut publisher = server.publisher();
    assert_eq!(publisher.publish_ok("enc:one", "[1]"), 1);
    expect_push(&mut ws, "enc:one", 1, "[1]");
    assert_eq!(publisher.publish_ok("q1", r#""two""#), 1);
    expect_push(&mut ws, "q1", 1, r#""two""#);
}

#[test]
fn raw_body_publish() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "raw");
    let mut publisher = server.publisher();

    // Not JSON: delivered as a JSON string.
    let (status, body) = publisher.request("POST", "/api/publish?channel=raw", b"hello world");
    assert_eq!(publish_reply_seq(status, &body, "raw"), 1);
    expect_push(&mut ws, "raw", 1, r#""hello world""#);

    // JSON: delivered as is, byte for byte.
    let (status, body) = publisher.request("POST", "/api/publish?channel=raw", ODD_DATA.as_bytes());
    assert_eq!(publish_reply_seq(status, &body, "raw"), 2);
    expect_push(&mut ws, "raw", 2, ODD_DATA);
}

#[test]
fn unsubscribe_stops_delivery() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "gone");
    subscribe(&mut ws, "kept");
    send_text(&mut ws, r#"{"op":"unsubscribe","channel":"gone"}"#);
    assert_eq!(
        recv_json(&mut ws),
        json!({"op":"unsubscribed","channel":"gone"})
    );
    // No frame is expected for "gone"; publishing "kept" afterwards orders the check:
    // the next frame must be kept's push, not gone's.
    let mut publisher = server.publisher();
    publisher.publish_ok("gone", "1");
    publisher.publish_ok("kept", "2");
    expect_push(&mut ws, "kept", 1, "2");
}

#[test]
fn noop_gets_no_reply() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    send_text(&mut ws, r#"{"op":"noop"}"#);
    // Commands are handled in order: a reply to the noop would come before this one.
    subscribe(&mut ws, "after-noop");
    send_text(&mut ws, r#"{"op":"noop"}"#);
    server.publisher().publish_ok("after-noop", "true");
    expect_push(&mut ws, "after-noop", 1, "true");
}

#[test]
fn commands_in_binary_frames() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    let cmd = r#"{"op":"subscribe","channel":"bin"}"#;
    ws.send(Message::binary(cmd.as_bytes().to_vec())).unwrap();
    assert_eq!(
        without_epoch(recv_json(&mut ws)),
        json!({"op":"subscribed","channel":"bin","seq":0,"recovered":true})
    );
    server.publisher().publish_ok("bin", "3");
    // Pushes are text frames whatever the command frames were.
    expect_push(&mut ws, "bin", 1, "3");
}

/// Sends `cmd` and expects `{"op":"error","reason":..}` starting with `reason`.
fn expect_error(ws: &mut Ws, cmd: &str, reason: &str) {
    send_text(ws, cmd);
    let reply = recv_json(ws);
    assert_eq!(reply["op"], "error", "{cmd} -> {reply}");
    let got = reply["reason"].as_str().unwrap_or_default();
    assert!(
        got.starts_with(reason),
        "{cmd}: want {reason:?}, got {reply}"
    );
}

#[test]
fn bad_commands_get_errors_and_the_connection_keeps_working() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    send_text(&mut ws, r#"{"op":"foo"}"#);
    assert_eq!(
        recv_json(&mut ws),
        json!({"op":"error","reason":"unknown op \"foo\""})
    );
    expect_error(&mut ws, "not json", "invalid JSON");
    expect_error(&mut ws, r#"{"channel":"x"}"#, "missing op");
    expect_error(&mut ws, r#"{"op":"subscribe"}"#, "missing channel");
    // Still usable after all of that.
    subscribe(&mut ws, "still-ok");
    server.publisher().publish_ok("still-ok", "0");
    expect_push(&mut ws, "still-ok", 1, "0");
}

#[test]
fn invalid_channel_names_are_rejected() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    let too_long = "x".repeat(129);
    for name in ["", "bad name", "slash/no", "é", too_long.as_str()] {
        let cmd = json!({"op":"subscribe","channel":name}).to_string();
        expect_error(&mut ws, &cmd, "invalid channel name");
    }
    // The limits are inclusive: 128 bytes of the full alphabet is fine.
    let longest = "aZ09_.:-".repeat(16);
    assert_eq!(subscribe(&mut ws, &longest), 0);
    // And the API enforces the same rule.
    let (status, body) = server.publish("bad name", "1");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn subscription_limit() {
    let server = Server::start(&["--max-subscriptions", "2"]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "one");
    subscribe(&mut ws, "two");
    expect_error(
        &mut ws,
        r#"{"op":"subscribe","channel":"three"}"#,
        "too many subscriptions",
    );
    // Subscribing is idempotent: a channel already held does not count again.
    subscribe(&mut ws, "one");
}

#[test]
fn client_publish_is_disabled_by_default() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "c");
    expect_error(
        &mut ws,
        r#"{"op":"publish","channel":"c","data":1}"#,
        "publish is disabled",
    );
    // Nothing was published: the next API publish is seq 1.
    assert_eq!(server.publisher().publish_ok("c", "2"), 1);
    expect_push(&mut ws, "c", 1, "2");
}

#[test]
fn client_publish_when_enabled() {
    let server = Server::start(&["--client-publish"]);
    let mut reader = server.connect("/ws");
    subscribe(&mut reader, "chat");
    let mut writer = server.connect("/ws");
    send_text(
        &mut writer,
        &format!(r#"{{"op":"publish","channel":"chat","data":{ODD_DATA}}}"#),
    );
    assert_eq!(
        recv_json(&mut writer),
        json!({"op":"published","channel":"chat","seq":1})
    );
    expect_push(&mut reader, "chat", 1, ODD_DATA);
    expect_error(
        &mut writer,
        r#"{"op":"publish","channel":"chat"}"#,
        "missing data",
    );
}

#[test]
fn subscribed_seq_is_the_last_published() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    for want in 1..=3 {
        assert_eq!(publisher.publish_ok("hist", &want.to_string()), want);
    }
    let mut ws = server.connect("/ws");
    assert_eq!(subscribe(&mut ws, "hist"), 3);
    assert_eq!(publisher.publish_ok("hist", "4"), 4);
    expect_push(&mut ws, "hist", 4, "4");
}

#[test]
fn api_errors() {
    let server = Server::start(&["--max-message-size", "1024"]);
    // A fresh connection per request: error answers may close it.
    let req =
        |method: &str, path: &str, body: &[u8]| server.publisher().request(method, path, body);

    let (status, body) = req("POST", "/api/publish", b"{\"channel\":");
    assert_eq!(status, 400, "bad JSON: {body}");
    let v: Value = serde_json::from_str(&body).expect("error body is JSON");
    assert!(v["error"].is_string(), "{body}");

    let (status, body) = req(
        "POST",
        "/api/publish",
        br#"{"channel":"bad name","data":1}"#,
    );
    assert_eq!(status, 400, "bad channel: {body}");

    let (status, body) = req("POST", "/api/publish?channel=x", &[0xff, 0xfe]);
    assert_eq!(status, 400, "non-UTF-8 raw body: {body}");

    let big = format!(r#"{{"channel":"big","data":"{}"}}"#, "x".repeat(2000));
    let (status, body) = req("POST", "/api/publish", big.as_bytes());
    assert_eq!(status, 413, "oversized body: {body}");

    let (status, body) = req("POST", "/api/nope", b"{}");
    assert_eq!(status, 404, "unknown path: {body}");

    let (status, body) = req("GET", "/api/publish", b"");
    assert_eq!(status, 405, "wrong method: {body}");

    // No Content-Length at all.
    let (status, _, body) = raw_http(
        server.api_addr,
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400, "missing Content-Length: {body}");

    // None of the failures consumed a sequence number.
    assert_eq!(server.publisher().publish_ok("big", "1"), 1);
}

#[test]
fn expect_100_continue() {
    let server = Server::start(&[]);
    let mut s = tcp(server.api_addr);
    let body = br#"{"channel":"cont","data":1}"#;
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_head(&mut s, &mut buf).status, 100);
    s.write_all(body).unwrap();
    let (status, _, body) = read_response(&mut s, &mut buf);
    assert_eq!(publish_reply_seq(status, &body, "cont"), 1);
}

#[test]
fn stats_and_health() {
    let server = Server::start(&[]);
    let _ws = server.connect("/ws");
    let stats = server.stats();
    for key in [
        "uptime_s",
        "online",
        "connections_total",
        "published_total",
        "delivered_total",
        "channels",
        "rss_bytes",
        "allocated_bytes",
    ] {
        assert!(
            stats[key].is_number(),
            "{key} missing or not a number: {stats}"
        );
    }
    let workers = stats["workers"].as_array().expect("workers list");
    assert_eq!(workers.len(), server.workers, "{stats}");
    for w in workers {
        for key in ["id", "online", "events_total", "events_per_s"] {
            assert!(w[key].is_number(), "worker {key} missing: {stats}");
        }
    }
    let (status, body) = server.publisher().request("GET", "/health", b"");
    assert_eq!(status, 200, "API /health: {body}");
}

#[test]
fn keep_alive_publishes() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    for want in 1..=100u64 {
        assert_eq!(publisher.publish_ok("ka", &want.to_string()), want);
    }
}

/// A connection's second subscription moves its subscriptions out of the slot into
/// its side entry, and its last-but-one leaving moves them back; positions in the
/// channels' lists must follow every move (swap-removes fix back-pointers).
#[test]
fn subscriptions_spill_out_of_the_slot_and_back() {
    let server = Server::start(&["--workers", "1"]);
    let mut three = server.connect("/ws");
    let mut two = server.connect("/ws");
    let mut one = server.connect("/ws");
    for channel in ["sx", "sy", "sz"] {
        subscribe(&mut three, channel);
    }
    subscribe(&mut two, "sx");
    subscribe(&mut two, "sy");
    subscribe(&mut one, "sx");
    // sx's list is [three, two, one]: three leaving moves one into its place.
    send_text(&mut three, r#"{"op":"unsubscribe","channel":"sx"}"#);
    assert_eq!(recv_json(&mut three)["op"], "unsubscribed");
    // two back to a single subscription, held in its slot again.
    send_text(&mut two, r#"{"op":"unsubscribe","channel":"sy"}"#);
    assert_eq!(recv_json(&mut two)["op"], "unsubscribed");
    // sx's list is [one, two]: one leaving moves two, whose subscription is inline.
    send_text(&mut one, r#"{"op":"unsubscribe","channel":"sx"}"#);
    assert_eq!(recv_json(&mut one)["op"], "unsubscribed");
    subscribe(&mut one, "sprobe");

    let mut publisher = server.publisher();
    publisher.publish_ok("sx", "1");
    publisher.publish_ok("sy", "2");
    publisher.publish_ok("sz", "3");
    publisher.publish_ok("sprobe", "4");
    expect_push(&mut two, "sx", 1, "1");
    expect_push(&mut three, "sy", 1, "2");
    expect_push(&mut three, "sz", 1, "3");
    // one left sx before it was published: its next frame is the probe's push.
    expect_push(&mut one, "sprobe", 1, "4");

    // two leaves for good; sx has no subscriber left and the next publish reaches
    // three's and one's other channels only.
    close(two);
    send_text(&mut three, r#"{"op":"unsubscribe","channel":"sy"}"#);
    assert_eq!(recv_json(&mut three)["op"], "unsubscribed");
    publisher.publish_ok("sx", "5");
    publisher.publish_ok("sz", "6");
    expect_push(&mut three, "sz", 2, "6");
    publisher.publish_ok("sprobe", "7");
    expect_push(&mut one, "sprobe", 2, "7");
}

#[test]
fn crowded_channels_keep_their_own_lists_as_lists_are_freed_and_reused() {
    // One worker: every subscriber of a channel is in the same local list. A third
    // subscriber moves a channel's keys into the worker's slab of lists; down to two
    // they go back to a pair and the list's slot is free for the next crowded channel.
    let server = Server::start(&["--workers", "1"]);
    let mut a: Vec<Ws> = (0..3).map(|_| server.connect("/ws")).collect();
    for ws in &mut a {
        subscribe(ws, "crowd-a");
    }
    send_text(&mut a[0], r#"{"op":"unsubscribe","channel":"crowd-a"}"#);
    assert_eq!(recv_json(&mut a[0])["op"], "unsubscribed");
    // crowd-a is inline again; crowd-b takes the freed list, then crowd-a spills anew.
    let mut b: Vec<Ws> = (0..3).map(|_| server.connect("/ws")).collect();
    for ws in &mut b {
        subscribe(ws, "crowd-b");
    }
    subscribe(&mut a[0], "crowd-a");
    let mut publisher = server.publisher();
    publisher.publish_ok("crowd-a", "1");
    publisher.publish_ok("crowd-b", "2");
    for ws in &mut a {
        expect_push(ws, "crowd-a", 1, "1");
    }
    for ws in &mut b {
        expect_push(ws, "crowd-b", 1, "2");
    }
    // Everyone leaves crowd-b, one by one: the next push reaches crowd-a's three only,
    // and each of them gets exactly one frame (the probe on its own channel follows).
    for ws in &mut b {
        send_text(ws, r#"{"op":"unsubscribe","channel":"crowd-b"}"#);
        assert_eq!(recv_json(ws)["op"], "unsubscribed");
    }
    publisher.publish_ok("crowd-b", "3");
    publisher.publish_ok("crowd-a", "4");
    for ws in &mut a {
        expect_push(ws, "crowd-a", 2, "4");
    }
    subscribe(&mut b[0], "crowd-probe");
    publisher.publish_ok("crowd-probe", "5");
    expect_push(&mut b[0], "crowd-probe", 1, "5");
    let stats = server.stats();
    assert_eq!(stats["channels"], 3, "{stats}");
}

/// Unsubscribes `ws` from `channel` and checks it hears nothing more of it: its next
/// frame is a push on a probe channel of its own.
fn leave_and_hear_nothing_more(ws: &mut Ws, publisher: &mut Publisher, channel: &str, probe: &str) {
    send_text(
        ws,
        &format!(r#"{{"op":"unsubscribe","channel":"{channel}"}}"#),
    );
    assert_eq!(recv_json(ws)["op"], "unsubscribed");
    publisher.publish_ok(channel, r#""after""#);
    subscribe(ws, probe);
    publisher.publish_ok(probe, "0");
    expect_push(ws, probe, 1, "0");
}

/// Publishes the next seq of "duo" and checks that each of `listeners` gets it.
fn push(publisher: &mut Publisher, seq: &mut u64, listeners: &mut [&mut Ws]) {
    *seq += 1;
    let data = seq.to_string();
    assert_eq!(publisher.publish_ok("duo", &data), *seq);
    for ws in listeners.iter_mut() {
        expect_push(ws, "duo", *seq, &data);
    }
}

#[test]
fn two_on_a_worker_pair_up_and_each_leaves_alone() {
    // One worker, one channel: one subscriber inline, two in a pair, three in a list,
    // and back. Whoever moves into a leaver's place must still be the one removed
    // when it leaves in turn, and still get every push until then.
    let server = Server::start(&["--workers", "1"]);
    let mut publisher = server.publisher();
    let mut seq = 0;
    let mut a = server.connect("/ws");
    let mut b = server.connect("/ws");
    let mut c = server.connect("/ws");
    subscribe(&mut a, "duo");
    subscribe(&mut b, "duo");
    push(&mut publisher, &mut seq, &mut [&mut a, &mut b]);
    // a at the front leaves: b moves into its place, alone (inline).
    leave_and_hear_nothing_more(&mut a, &mut publisher, "duo", "probe-a");
    seq += 1;
    expect_push(&mut b, "duo", seq, r#""after""#);
    push(&mut publisher, &mut seq, &mut [&mut b]);
    // c joins (a pair again), then a (a list), then the front leaves twice.
    subscribe(&mut c, "duo");
    push(&mut publisher, &mut seq, &mut [&mut b, &mut c]);
    subscribe(&mut a, "duo");
    push(&mut publisher, &mut seq, &mut [&mut b, &mut c, &mut a]);
    leave_and_hear_nothing_more(&mut b, &mut publisher, "duo", "probe-b");
    seq += 1;
    expect_push(&mut c, "duo", seq, r#""after""#);
    expect_push(&mut a, "duo", seq, r#""after""#);
    push(&mut publisher, &mut seq, &mut [&mut c, &mut a]);
    leave_and_hear_nothing_more(&mut c, &mut publisher, "duo", "probe-c");
    seq += 1;
    expect_push(&mut a, "duo", seq, r#""after""#);
    push(&mut publisher, &mut seq, &mut [&mut a]);
    // The last one leaves: the channel has no subscriber on the worker.
    leave_and_hear_nothing_more(&mut a, &mut publisher, "duo", "probe-a2");
}

/// A channel names the workers that hold it in a 47-bit mask beside its idle bit,
/// packed in 6 bytes. With the most workers allowed, one subscriber on each
/// (connections are dealt round robin), every one gets every publish, also after
/// the sweep has visited the channel.
#[test]
fn with_47_workers_each_holds_its_subscriber() {
    let server = Server::start(&["--workers", "47"]);
    let mut subscribers: Vec<Ws> = (0..47)
        .map(|_| {
            let mut ws = server.connect("/ws");
            assert_eq!(subscribe(&mut ws, "all"), 0);
            ws
        })
        .collect();
    let mut publisher = server.publisher();
    assert_eq!(publisher.publish_ok("all", r#"{"n":1}"#), 1);
    for ws in &mut subscribers {
        expect_push(ws, "all", 1, r#"{"n":1}"#);
    }
    // The sweep runs once a second and looks at every channel with history.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(publisher.publish_ok("all", r#"{"n":2}"#), 2);
    for ws in &mut subscribers {
        expect_push(ws, "all", 2, r#"{"n":2}"#);
    }
}
