//! A subscriber that never reads delays nobody: publishes keep returning 200 and the
//! other subscribers, on its channel and on others, keep receiving everything.

mod common;

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::TcpStream;
use std::thread;

const MESSAGES: u64 = 5000; // alternately to A and B: 2,500 each, ~1 KiB apiece

fn data(i: u64) -> String {
    format!(r#"{{"i":{i},"pad":"{}"}}"#, "s".repeat(1000))
}

#[test]
fn a_consumer_that_never_reads_delays_nobody() {
    let server = Server::start(&[]);

    // The stuck client: a tiny receive buffer so the server's writes to it block
    // (EAGAIN) almost at once. It reads its `subscribed` reply, then nothing ever.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.client_addr.into()).unwrap();
    let stream = TcpStream::from(sock);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut stuck = RawWs::handshake(stream, "/ws");
    stuck.send_text(r#"{"op":"subscribe","channel":"A"}"#);
    assert_eq!(stuck.recv_frame().opcode, OP_TEXT);

    // Readers, subscribed before the first publish. Message i goes to A when i is
    // odd, to B when even; the k-th message on a channel has seq k.
    let readers: Vec<_> = ["A", "A", "B"]
        .into_iter()
        .map(|channel| {
            let mut ws = server.connect("/ws");
            assert_eq!(subscribe(&mut ws, channel), 0);
            thread::spawn(move || {
                let first = if channel == "A" { 1 } else { 2 };
                for (k, i) in (first..=MESSAGES).step_by(2).enumerate() {
                    // A read timeout here (the server stalled) fails the test.
                    expect_push(&mut ws, channel, k as u64 + 1, &data(i));
                }
            })
        })
        .collect();

    let mut publisher = server.publisher();
    for i in 1..=MESSAGES {
        let channel = if i % 2 == 1 { "A" } else { "B" };
        assert_eq!(publisher.publish_ok(channel, &data(i)), i.div_ceil(2));
    }
    for reader in readers {
        reader.join().expect("a reader missed messages or stalled");
    }
    drop(stuck); // kept open (and unread) to the end on purpose
}
