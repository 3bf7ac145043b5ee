//! Admission control: `--max-connections` is a hard cap answered with 503, and
//! closed connections free their places.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

const MAX: usize = 50;

/// Connects and subscribes to "adm", retrying (bounded) while the server answers 503:
/// places are freed asynchronously after a close.
fn connect_when_admitted(server: &Server) -> Ws {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match server.try_connect("/ws") {
            Ok(mut ws) => {
                subscribe(&mut ws, "adm");
                return ws;
            }
            Err(tungstenite::Error::Http(r)) if r.status() == 503 => {
                assert!(
                    Instant::now() < deadline,
                    "still 503 after closing connections"
                );
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
}

#[test]
fn connections_past_the_cap_get_503_and_places_are_freed() {
    let max = MAX.to_string();
    let server = Server::start(&["--max-connections", &max]);
    let mut clients: Vec<Ws> = (0..MAX)
        .map(|_| {
            let mut ws = server.connect("/ws");
            subscribe(&mut ws, "adm");
            ws
        })
        .collect();

    // Number 51 is refused, with a hint when to come back.
    let (status, headers, body) = raw_http(server.client_addr, upgrade_request("/ws").as_bytes());
    assert_eq!(status, 503, "{body}");
    assert!(
        header(&headers, "retry-after").is_some(),
        "no Retry-After: {headers:?}"
    );

    // The refusal did not disturb the admitted ones.
    let mut publisher = server.publisher();
    assert_eq!(publisher.publish_ok("adm", "1"), 1);
    for ws in clients.iter_mut() {
        expect_push(ws, "adm", 1, "1");
    }

    // Free 10 places; 10 newcomers get in.
    for ws in clients.drain(..10) {
        close(ws);
    }
    for _ in 0..10 {
        clients.push(connect_when_admitted(&server));
    }
    assert_eq!(clients.len(), MAX);

    // Full again.
    let (status, _, body) = raw_http(server.client_addr, upgrade_request("/ws").as_bytes());
    assert_eq!(status, 503, "{body}");

    assert_eq!(publisher.publish_ok("adm", "2"), 2);
    for ws in clients.iter_mut() {
        expect_push(ws, "adm", 2, "2");
    }
}
