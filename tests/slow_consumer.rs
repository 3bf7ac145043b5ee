//! A subscriber that never reads delays nobody: publishes keep returning 200 and the
//! other subscribers, on its channel and on others, keep receiving everything.

mod common;

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::TcpStream;
use std::thread;

const PAD: usize = 4096;

fn data(i: u64) -> String {
    format!(r#"{{"i":{i},"pad":"{}"}}"#, "s".repeat(PAD))
}

/// Messages per channel. The kernel absorbs up to `tcp_wmem` max (4 MiB by default)
/// in the server's send buffer for the stuck socket, plus its small receive buffer;
/// channel A must carry well over that, or the server never even sees EAGAIN.
fn per_channel() -> u64 {
    let wmem_max: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    ((2 * wmem_max + (1 << 20)) / PAD as u64).clamp(2500, 20_000)
}

#[test]
fn a_consumer_that_never_reads_delays_nobody() {
    let server = Server::start(&[]);

    // The stuck client: a tiny receive buffer, so all the backlog sits on the server
    // side. It reads its `subscribed` reply, then nothing ever.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.client_addr.into()).unwrap();
    let stream = TcpStream::from(sock);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut stuck = RawWs::handshake(stream, "/ws");
    stuck.send_text(r#"{"op":"subscribe","channel":"A"}"#);
    assert_eq!(stuck.recv_frame().opcode, OP_TEXT);

    // Readers, subscribed before the first publish, several per channel so that some
    // share the stuck client's worker. Message i goes to A when i is odd, to B when
    // even; the k-th message on a channel has seq k.
    let messages = 2 * per_channel();
    let readers: Vec<_> = ["A", "A", "A", "B", "B", "B"]
        .into_iter()
        .map(|channel| {
            let mut ws = server.connect("/ws");
            assert_eq!(subscribe(&mut ws, channel), 0);
            thread::spawn(move || {
                let first = if channel == "A" { 1 } else { 2 };
                for (k, i) in (first..=messages).step_by(2).enumerate() {
                    // A read timeout here (the server stalled) fails the test.
                    expect_push(&mut ws, channel, k as u64 + 1, &data(i));
                }
            })
        })
        .collect();

    let mut publisher = server.publisher();
    for i in 1..=messages {
        let channel = if i % 2 == 1 { "A" } else { "B" };
        assert_eq!(publisher.publish_ok(channel, &data(i)), i.div_ceil(2));
    }
    for reader in readers {
        reader.join().expect("a reader missed messages or stalled");
    }
    drop(stuck); // kept open (and unread) to the end on purpose
}
