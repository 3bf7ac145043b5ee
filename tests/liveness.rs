//! Server pings and the idle timeout: a silent client is pinged, then closed with
//! 1001 "idle timeout"; a client that answers pings is kept.

mod common;

use common::*;

const LIVENESS: [&str; 4] = ["--ping-interval", "1", "--idle-timeout", "3"];

#[test]
fn a_silent_client_is_pinged_then_closed_with_1001() {
    let server = Server::start(&LIVENESS);
    let mut ws = server.raw("/ws?subscribe=quiet");
    assert_eq!(
        ws.recv_frame().opcode,
        OP_PING,
        "a silent client is pinged first"
    );
    let close = ws.recv_frame();
    assert_eq!(close.opcode, OP_CLOSE);
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1001
    );
    assert_eq!(&close.payload[2..], b"idle timeout");
    assert!(ws.at_eof(), "the server half-closes after its close frame");
    // The counter is published at the end of the worker's turn, just after the send.
    let counted = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        server.stats()["idle_timeouts_total"] == 1
    });
    assert!(
        counted,
        "idle_timeouts_total never reached 1: {}",
        server.stats()
    );
}

#[test]
fn a_client_that_answers_pings_outlives_the_idle_timeout() {
    let server = Server::start(&LIVENESS);
    let mut ws = server.raw("/ws?subscribe=lively");
    // Four ping/pong rounds take at least four seconds: past the 3 s idle timeout.
    for _ in 0..4 {
        let ping = ws.recv_frame();
        assert_eq!(ping.opcode, OP_PING, "expected a ping, got {ping:?}");
        ws.send_frame(true, OP_PONG, &ping.payload, true);
    }
    let (status, _) = server.publish("lively", "1");
    assert_eq!(status, 200);
    let mut next = ws.recv_frame();
    while next.opcode == OP_PING {
        ws.send_frame(true, OP_PONG, &next.payload, true);
        next = ws.recv_frame();
    }
    assert_eq!(
        next.opcode, OP_TEXT,
        "still subscribed, not closed: {next:?}"
    );
    check_push(&String::from_utf8(next.payload).unwrap(), "lively", 1, "1");
    assert_eq!(server.stats()["idle_timeouts_total"], 0);
}
