//! A panic in any of the server's threads stops the whole server, for a supervisor
//! to restart it, rather than leave the others running without that thread. The
//! panics come from fail points that debug builds carry (src/fail_point.rs).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;

/// Starts a server whose `point` panics when reached with `arg`.
fn server_failing_at(point_and_arg: &str) -> Server {
    let env = [("HALLEY_FAIL_POINT", point_and_arg)];
    Server::start_capturing_stderr(&["--workers", "2"], &env)
}

/// The server ended by abort, not by a clean exit nor still running, and said why
/// on stderr: the panic's report, then that it stops.
fn expect_aborted(server: &mut Server, point: &str) {
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server stopped after the panic");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let mut said = String::new();
    let stderr = server.stderr.as_mut().expect("stderr captured");
    stderr.read_to_string(&mut said).expect("read stderr");
    assert!(
        said.contains(&format!("fail point {point} reached")),
        "{said}"
    );
    assert!(
        said.contains("halley: a thread panicked, so the server stops"),
        "{said}"
    );
}

/// A connection of the stopped server ends: the read fails at once, not by timing out.
fn expect_ended(ws: &mut Ws) {
    match ws.read() {
        Ok(message) => panic!("a message from a stopped server: {message:?}"),
        Err(tungstenite::Error::Io(e)) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the connection hung: {e}"
        ),
        Err(_) => {}
    }
}

#[test]
fn a_worker_that_panics_stops_the_server_instead_of_leaving_its_connections_hanging() {
    let mut server = server_failing_at("worker-join:boom");
    // One connection per worker: connections are handed out in turn.
    let mut bystanders: Vec<Ws> = (0..2).map(|_| server.connect("/ws")).collect();
    for ws in &mut bystanders {
        subscribe(ws, "calm");
    }
    let mut trigger = server.connect("/ws");
    send_text(&mut trigger, r#"{"op":"subscribe","channel":"boom"}"#);
    expect_aborted(&mut server, "worker-join");
    for ws in &mut bystanders {
        expect_ended(ws);
    }
}

#[test]
fn an_api_thread_that_panics_stops_the_server_instead_of_leaving_publishers_unanswered() {
    let mut server = server_failing_at("publish:boom");
    let mut subscriber = server.connect("/ws");
    subscribe(&mut subscriber, "calm");
    let mut publisher = tcp(server.api_addr);
    publisher
        .write_all(
            b"POST /api/publish?channel=boom HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
    expect_aborted(&mut server, "publish");
    // The panicking publish gets no answer: its connection ends with the server.
    let mut answer = Vec::new();
    match publisher.read_to_end(&mut answer) {
        Ok(_) => assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer)),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    expect_ended(&mut subscriber);
}
