//! Fan-out: one channel, 2,000 subscribers spread over the workers, a burst of
//! messages; every subscriber gets every message exactly once, in order.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 2000;
const BURST: u64 = 100;

fn data(i: u64) -> String {
    format!(r#"{{"i":{i},"pad":"{}"}}"#, "f".repeat(40))
}

#[test]
fn every_subscriber_gets_every_message_once_in_order() {
    // Two workers so that "spread over the workers" means something on any machine.
    let server = Server::start(&["--workers", "2"]);
    let mut clients: Vec<Ws> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut ws = server.connect("/ws");
            // The reply guarantees every later push reaches this client.
            assert_eq!(subscribe(&mut ws, "fan"), 0);
            ws
        })
        .collect();

    // Each worker holds some of the clients. Stats may be refreshed periodically, so
    // poll (bounded) until they show all connections.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stats = server.stats();
        let online: Vec<u64> = stats["workers"]
            .as_array()
            .expect("workers list")
            .iter()
            .map(|w| w["online"].as_u64().expect("worker online"))
            .collect();
        if online.len() == 2 && online.iter().all(|&n| n > 0) && stats["online"] == SUBSCRIBERS {
            break;
        }
        assert!(Instant::now() < deadline, "connections not spread: {stats}");
        thread::sleep(Duration::from_millis(100));
    }

    // The burst over one keep-alive connection. Pushes wait in kernel buffers
    // (~7 KB per client) until the reader gets to them.
    let mut publisher = server.publisher();
    for i in 1..=BURST {
        assert_eq!(publisher.publish_ok("fan", &data(i)), i);
    }

    // One thread reads the clients one after another. Expecting exactly seq 1..=100
    // in that order catches both loss/reordering and duplicates (a duplicate would
    // take the place of the next seq).
    for ws in clients.iter_mut() {
        for i in 1..=BURST {
            expect_push(ws, "fan", i, &data(i));
        }
    }

    // After the burst, one more message: each client's next frame must be it (no
    // duplicate of the burst left over).
    assert_eq!(publisher.publish_ok("fan", "\"end\""), BURST + 1);
    for ws in clients.iter_mut() {
        expect_push(ws, "fan", BURST + 1, "\"end\"");
    }
}
