//! A subscriber that never reads delays nobody, and is closed once it is owed more
//! than `--max-queued-bytes`: publishes keep returning 200, the other subscribers on
//! its channel and on others keep receiving everything, and the server's memory
//! stays bounded.

mod common;

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const PAD: usize = 4096;
const CAP: usize = 256 * 1024;

fn data(i: u64, pad: usize) -> String {
    format!(r#"{{"i":{i},"pad":"{}"}}"#, "s".repeat(pad))
}

/// Messages per channel. The kernel absorbs up to `tcp_wmem` max (4 MiB by default)
/// in the server's send buffer for the stuck socket, plus its small receive buffer;
/// channel A must carry well over that plus the cap, or the cap is never reached.
fn per_channel() -> u64 {
    let wmem_max: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    ((2 * wmem_max + (1 << 20)) / PAD as u64).clamp(2500, 20_000)
}

/// A client with a tiny receive buffer, so its backlog sits on the server side. It
/// reads its `subscribed` reply, then nothing until the test says so.
fn stuck_subscriber(server: &Server, channel: &str) -> RawWs {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.client_addr.into()).unwrap();
    let stream = TcpStream::from(sock);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut stuck = RawWs::handshake(stream, "/ws");
    stuck.send_text(&format!(r#"{{"op":"subscribe","channel":"{channel}"}}"#));
    assert_eq!(stuck.recv_frame().opcode, OP_TEXT);
    stuck
}

/// Waits (bounded) until `received` reaches `at_least`: the publisher stays within a
/// window of its fast subscribers, as a fast subscriber keeps up with real traffic.
/// Without it a debug-build test reader falls behind a tight publish loop by more
/// than the cap, and is rightly closed too.
fn wait_for(received: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + TIMEOUT;
    while received.load(Ordering::Relaxed) < at_least {
        assert!(Instant::now() < deadline, "a fast subscriber stalled");
        thread::sleep(Duration::from_millis(1));
    }
}

fn slow_consumer_closes(server: &Server) -> u64 {
    server.stats()["slow_consumer_closes_total"]
        .as_u64()
        .expect("slow_consumer_closes_total")
}

#[test]
fn a_slow_consumer_is_closed_at_the_cap_and_delays_nobody() {
    let cap = CAP.to_string();
    let server = Server::start(&["--max-queued-bytes", &cap]);
    let mut stuck = Some(stuck_subscriber(&server, "A"));

    // Readers, subscribed before the first publish, several per channel so that some
    // share the stuck client's worker. Message i goes to A when i is odd, to B when
    // even; the k-th message on a channel has seq k.
    let messages = 2 * per_channel();
    let progress: Vec<Arc<AtomicU64>> = (0..6).map(|_| Arc::default()).collect();
    let readers: Vec<_> = ["A", "A", "A", "B", "B", "B"]
        .into_iter()
        .zip(progress.clone())
        .map(|(channel, received)| {
            let mut ws = server.connect("/ws");
            assert_eq!(subscribe(&mut ws, channel), 0);
            thread::spawn(move || {
                let first = if channel == "A" { 1 } else { 2 };
                for (k, i) in (first..=messages).step_by(2).enumerate() {
                    // A read timeout here (the server stalled) fails the test.
                    expect_push(&mut ws, channel, k as u64 + 1, &data(i, PAD));
                    received.store(k as u64 + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut publisher = server.publisher();
    let mut closed_at = None;
    let mut drained = None;
    for i in 1..=messages {
        let channel = if i % 2 == 1 { "A" } else { "B" };
        // 16 messages per channel in flight: 64 KiB, a quarter of the cap.
        for received in &progress {
            wait_for(received, (i / 2).saturating_sub(16));
        }
        assert_eq!(publisher.publish_ok(channel, &data(i, PAD)), i.div_ceil(2));
        if closed_at.is_none() && i % 100 == 0 && slow_consumer_closes(&server) == 1 {
            closed_at = Some(i);
            // The stuck client reads now: what the kernel held, the partly written
            // frame, then the close, well within the server's close wait.
            let mut stuck = stuck.take().expect("closed once");
            drained = Some(thread::spawn(move || {
                for _ in 0..messages {
                    let frame = stuck.recv_frame();
                    if frame.opcode == OP_CLOSE {
                        assert_eq!(&frame.payload[..2], &1008u16.to_be_bytes());
                        assert_eq!(&frame.payload[2..], b"slow consumer");
                        return;
                    }
                    assert_eq!(frame.opcode, OP_TEXT, "{frame:?}");
                }
                panic!("no close frame");
            }));
        }
    }
    let closed_at = closed_at.expect("the stuck client was never closed");
    assert!(closed_at < messages, "closed only at the end");
    for reader in readers {
        reader.join().expect("a reader missed messages or stalled");
    }
    drained
        .expect("reading started")
        .join()
        .expect("the stuck client saw its close 1008");
    assert_eq!(slow_consumer_closes(&server), 1, "only the stuck client");
}

/// The issue's finding: one subscriber that stopped reading grew the server by
/// 180 MiB while 3,000 messages of 60 KB went to its channel. At the default cap it
/// is closed and the memory goes with it.
#[test]
fn a_subscriber_that_stopped_reading_does_not_grow_the_server() {
    const BIG: usize = 60_000;
    const MESSAGES: u64 = 2_000;
    let server = Server::start(&[]);
    let stuck = stuck_subscriber(&server, "big");
    let mut fast = server.connect("/ws");
    assert_eq!(subscribe(&mut fast, "big"), 0);
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::clone(&received);
    let reader = thread::spawn(move || {
        for i in 1..=MESSAGES {
            expect_push(&mut fast, "big", i, &data(i, BIG));
            progress.store(i, Ordering::Relaxed);
        }
    });
    let before = rss_kib(server.pid);
    let mut publisher = server.publisher();
    for i in 1..=MESSAGES {
        // 16 messages in flight: 1 MiB, a quarter of the default cap.
        wait_for(&received, i.saturating_sub(16));
        assert_eq!(publisher.publish_ok("big", &data(i, BIG)), i);
    }
    reader
        .join()
        .expect("the fast subscriber missed messages or stalled");
    let grown_mib = rss_kib(server.pid).saturating_sub(before) / 1024;
    // Uncapped, the stuck client alone held about 110 MiB here. Capped: its 4 MiB,
    // 100 messages of history (6 MiB) and allocator slack.
    assert!(grown_mib < 48, "RSS grew {grown_mib} MiB");
    assert_eq!(slow_consumer_closes(&server), 1);
    drop(stuck);
}

/// An SSE stream that stops reading just ends at the cap: what the kernel holds
/// arrives, then EOF.
#[test]
fn a_slow_sse_stream_ends_at_the_cap() {
    let server = Server::start(&["--max-queued-bytes", "65536"]);
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.client_addr.into()).unwrap();
    let mut stream = TcpStream::from(sock);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let request = "GET /sse?channel=sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_head(&mut stream, &mut buf).status, 200);

    let mut publisher = server.publisher();
    let mut closed = false;
    for i in 1..=per_channel() {
        assert_eq!(publisher.publish_ok("sse", &data(i, PAD)), i);
        if i % 100 == 0 && slow_consumer_closes(&server) == 1 {
            closed = true;
            break;
        }
    }
    assert!(closed, "the stream was never ended");
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut stream, &mut rest);
    assert!(read.is_ok(), "no clean end: {read:?}");
    assert_eq!(server.stats_when(|s| s["sse_online"] == 0)["sse_online"], 0);
}

/// A busy connection's buffers are kept beside the slab, by its slot's key, not in
/// the slot. When it goes they go with it: the connection that next takes its key
/// (one worker, so it does) gets only its own frames, never the frames queued for
/// the one before.
#[test]
fn the_next_connection_in_a_busy_ones_slot_gets_only_its_own_frames() {
    let server = Server::start(&["--workers", "1", "--max-queued-bytes", "67108864"]);
    let stuck = stuck_subscriber(&server, "A");
    // Far more than the kernel's buffers hold: the rest waits in the server's outbox.
    let messages = per_channel();
    let mut publisher = server.publisher();
    for i in 1..=messages {
        assert_eq!(publisher.publish_ok("A", &data(i, PAD)), i);
    }
    let handled = server.stats_when(|s| s["delivered_total"].as_u64() >= Some(messages));
    assert!(
        handled["delivered_total"].as_u64() >= Some(messages),
        "{handled}"
    );
    assert_eq!(
        handled["connections_buffered"], 1,
        "the stuck one: {handled}"
    );
    drop(stuck);
    let gone = server.stats_when(|s| s["online"].as_u64() == Some(0));
    assert_eq!(gone["online"], 0, "{gone}");
    assert_eq!(gone["connections_buffered"], 0, "{gone}");

    let stream = tcp(server.client_addr);
    let mut next = RawWs::handshake(stream, "/ws");
    // Its subscribe comes in two reads, so that this connection needs buffers too.
    let command = br#"{"op":"subscribe","channel":"B"}"#;
    let mut frame = vec![0x81, 0x80 | command.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(command);
    next.stream.write_all(&frame[..8]).unwrap();
    thread::sleep(Duration::from_millis(200));
    next.stream.write_all(&frame[8..]).unwrap();
    let reply = next.recv_frame();
    assert_eq!(reply.opcode, OP_TEXT);
    let reply = String::from_utf8(reply.payload).unwrap();
    assert!(
        reply.contains(r#""subscribed""#) && reply.contains(r#""B""#),
        "{reply}"
    );
    assert_eq!(publisher.publish_ok("B", r#"{"only":"mine"}"#), 1);
    let push = String::from_utf8(next.recv_frame().payload).unwrap();
    check_push(&push, "B", 1, r#"{"only":"mine"}"#);
    assert_eq!(slow_consumer_closes(&server), 0);
    let idle = server.stats_when(|s| s["connections_buffered"] == 0);
    assert_eq!(
        idle["connections_buffered"], 0,
        "an idle one holds none: {idle}"
    );
}
