//! A publisher that outruns the workers waits, against the real binary: while a
//! worker has more publications queued than a turn should carry, the next publish
//! is held unread, so the queue stays bounded and nothing is lost or shed.

mod common;

use std::io::Write;
use std::thread;

use common::*;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// A JSON string of about 1,000 hex digits from a xorshift: it compresses little,
/// so deflating it is the slow part of the worker's turn and the worker falls
/// behind a pipelined publisher.
fn noisy(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut digits = String::with_capacity(1008);
    while digits.len() < 1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        digits.push_str(&format!("{x:016x}"));
    }
    format!("\"{}\"", &digits[..1000])
}

const BATCHES: usize = 40;
const PER_BATCH: usize = 50;

const TOTAL: usize = BATCHES * PER_BATCH;

/// One worker, and a 256 KiB connection cap: the worker is behind past 256 KiB
/// waiting. Returns the server and a subscriber of `flood` that agreed to deflate.
fn flood_server(extra: &[&str]) -> (Server, RawWs) {
    let mut args = vec!["--workers", "1", "--max-queued-bytes", "262144"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let (ws, _) = subscriber(&server);
    (server, ws)
}

/// A subscriber of `flood` that agreed to deflate, and the seq it joined at.
fn subscriber(server: &Server) -> (RawWs, u64) {
    let (mut ws, head) = RawWs::handshake_with(tcp(server.client_addr), "/ws", OFFER);
    assert!(
        header(&head.headers, "sec-websocket-extensions").is_some(),
        "deflate agreed"
    );
    ws.send_text(r#"{"op":"subscribe","channel":"flood"}"#);
    let reply: serde_json::Value =
        serde_json::from_slice(&ws.recv_frame().payload).expect("a JSON reply");
    assert_eq!(reply["op"], "subscribed", "{reply}");
    (ws, reply["seq"].as_u64().expect("a seq"))
}

/// Checks that the next pushes are exactly `seqs`, in order.
fn expect_pushes(ws: &mut RawWs, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        let frame = ws.recv_frame();
        let push = if frame.rsv1 {
            inflate_message(&frame.payload)
        } else {
            frame.payload
        };
        let push = String::from_utf8(push).expect("UTF-8 push");
        check_push(&push, "flood", seq, &noisy(seq - 1));
    }
}

/// Every message, once and in order, also to a subscriber that joins mid-flood
/// (while the worker carries the channel's backlog over several turns), then no
/// subscriber shed and some publish held.
fn expect_every_push_and_a_wait(server: &Server, ws: &mut RawWs) {
    expect_pushes(ws, 1..=500);
    let (mut joiner, joined_at) = subscriber(server);
    let late = thread::spawn(move || expect_pushes(&mut joiner, joined_at + 1..=TOTAL as u64));
    expect_pushes(ws, 501..=TOTAL as u64);
    late.join().expect("the subscriber that joined mid-flood");
    let stats = server.stats();
    assert_eq!(stats["slow_consumer_closes_total"], 0, "{stats}");
    assert!(
        stats["publishes_held_total"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "the publisher never waited: {stats}"
    );
}

#[test]
fn a_publisher_that_outruns_the_workers_waits_and_nothing_is_lost() {
    let (server, mut ws) = flood_server(&[]);

    // 2 MB of batches, pipelined, written from a thread: the server reads them only
    // as fast as it lets them be published.
    let mut requests = Vec::new();
    for batch in 0..BATCHES {
        let messages: Vec<String> = (0..PER_BATCH)
            .map(|i| {
                let data = noisy((batch * PER_BATCH + i) as u64);
                format!(r#"{{"channel":"flood","data":{data}}}"#)
            })
            .collect();
        let body = format!("[{}]", messages.join(","));
        let head = format!(
            "POST /api/publish HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        requests.extend_from_slice(head.as_bytes());
        requests.extend_from_slice(body.as_bytes());
    }
    let mut api = tcp(server.api_addr);
    let writer = thread::spawn(move || {
        api.write_all(&requests).expect("write the batches");
        api
    });

    expect_every_push_and_a_wait(&server, &mut ws);
    let mut api = writer.join().expect("writer");
    let mut buf = Vec::new();
    for _ in 0..BATCHES {
        let (status, _, body) = read_response(&mut api, &mut buf);
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn a_resp_publisher_that_outruns_the_workers_waits_and_nothing_is_lost() {
    let (server, mut ws) = flood_server(&["--resp-listen", "127.0.0.1:0"]);
    let mut commands = Vec::new();
    for n in 0..TOTAL {
        let data = noisy(n as u64);
        let command = format!(
            "*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n${}\r\n{data}\r\n",
            data.len()
        );
        commands.extend_from_slice(command.as_bytes());
    }
    let resp = tcp(server.resp_addr.expect("the RESP address"));
    let mut writer_side = resp.try_clone().expect("clone");
    let writer = thread::spawn(move || writer_side.write_all(&commands).expect("write"));
    expect_every_push_and_a_wait(&server, &mut ws);
    writer.join().expect("writer");
    // Each PUBLISH answered with its seq, in order.
    let want: String = (1..=TOTAL).map(|n| format!(":{n}\r\n")).collect();
    let mut got = vec![0u8; want.len()];
    std::io::Read::read_exact(&mut &resp, &mut got).expect("the replies");
    assert_eq!(String::from_utf8_lossy(&got), want);
}
