//! SIGTERM: every client gets close 1001, and the process exits 0 (docs/cli.md).

mod common;

use common::*;
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut server = Server::start(&[]);
    let mut clients: Vec<Ws> = Vec::new();
    for i in 0..4 {
        let mut ws = server.connect("/ws");
        subscribe(&mut ws, &format!("sd{i}"));
        clients.push(ws);
    }
    // Silently subscribed ones and one with no subscription at all.
    clients.push(server.connect("/ws?subscribe=sd0"));
    clients.push(server.connect("/ws"));
    // Every handshake above has completed (101 received), so all are admitted.

    send_sigterm(server.pid);

    for (n, ws) in clients.iter_mut().enumerate() {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Away, "client {n}: {frame}")
            }
            other => panic!("client {n}: expected close 1001, got {other:?}"),
        }
    }
    // Keep reading (bounded): tungstenite sends its close reply, then sees the
    // server close the TCP connection.
    for ws in clients.iter_mut() {
        for _ in 0..10 {
            if ws.read().is_err() {
                break;
            }
        }
    }

    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("halley still running 15 s after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}
