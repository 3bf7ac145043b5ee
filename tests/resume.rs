//! History and resume over WebSocket, against the real binary: exactly the missed
//! messages after a reconnect, `recovered:false` when that cannot be, no gap and no
//! duplicate while publishes race a resume, and channels that go and come back.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Sends a resume and returns its `subscribed` reply.
fn resume(ws: &mut Ws, channel: &str, since: u64, epoch: Option<&str>) -> Value {
    let epoch = epoch
        .map(|e| format!(r#","epoch":"{e}""#))
        .unwrap_or_default();
    send_text(
        ws,
        &format!(r#"{{"op":"subscribe","channel":"{channel}","since":{since}{epoch}}}"#),
    );
    let reply = recv_json(ws);
    assert_eq!(reply["op"], "subscribed", "{reply}");
    reply
}

fn epoch_of(server: &Server, channel: &str) -> String {
    let (status, body) = server.publisher().request(
        "GET",
        &format!("/api/history?channel={channel}&limit=0"),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["epoch"].as_str().expect("epoch").to_owned()
}

#[test]
fn a_resume_after_a_disconnect_delivers_exactly_the_missed_messages() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "news");
    for n in 1..=3 {
        publisher.publish_ok("news", &n.to_string());
        expect_push(&mut ws, "news", n, &n.to_string());
    }
    let epoch = epoch_of(&server, "news");
    drop(ws);
    for n in 4..=7 {
        publisher.publish_ok("news", &n.to_string());
    }
    let mut ws = server.connect("/ws");
    let reply = resume(&mut ws, "news", 3, Some(&epoch));
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str());
    assert_eq!(reply["seq"], 7, "{reply}");
    for n in 4..=7 {
        expect_push(&mut ws, "news", n, &n.to_string());
    }
    publisher.publish_ok("news", "8");
    expect_push(&mut ws, "news", 8, "8");
}

#[test]
fn the_on_connect_form_resumes_several_channels() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    for n in 1..=3 {
        publisher.publish_ok("a", &n.to_string());
        publisher.publish_ok("b", &(10 + n).to_string());
    }
    let mut ws = server.connect("/ws?subscribe=a,b&since=1,3");
    let first = recv_json(&mut ws);
    assert_eq!(
        (first["channel"].as_str(), first["recovered"].as_bool()),
        (Some("a"), Some(true))
    );
    expect_push(&mut ws, "a", 2, "2");
    expect_push(&mut ws, "a", 3, "3");
    let second = recv_json(&mut ws);
    assert_eq!(second["channel"], "b", "{second}");
    assert_eq!(second["seq"], 3, "b is already caught up: {second}");
    publisher.publish_ok("b", "14");
    expect_push(&mut ws, "b", 4, "14");
}

#[test]
fn a_resume_from_too_far_back_or_another_epoch_is_not_recovered() {
    let server = Server::start(&["--history-size", "3"]);
    let mut publisher = server.publisher();
    for n in 1..=10 {
        publisher.publish_ok("c", &n.to_string());
    }
    let epoch = epoch_of(&server, "c");
    let mut ws = server.connect("/ws");
    let reply = resume(&mut ws, "c", 2, Some(&epoch));
    assert_eq!(reply["recovered"], false, "seq 3..7 left history: {reply}");
    for n in 8..=10 {
        expect_push(&mut ws, "c", n, &n.to_string());
    }
    let mut other = server.connect("/ws");
    let reply = resume(&mut other, "c", 9, Some("zzzz"));
    assert_eq!(reply["recovered"], false, "another epoch: {reply}");
    assert_eq!(
        reply["epoch"],
        epoch.as_str(),
        "the reply names the real one"
    );
    let mut exact = server.connect("/ws");
    assert_eq!(resume(&mut exact, "c", 7, Some(&epoch))["recovered"], true);
    let stats = server.stats();
    assert_eq!(stats["resumes_not_recovered_total"], 2, "{stats}");
}

#[test]
fn a_restarted_server_starts_new_epochs() {
    let first = Server::start(&[]);
    first.publisher().publish_ok("e", "1");
    let old = epoch_of(&first, "e");
    drop(first);
    let second = Server::start(&[]);
    second.publisher().publish_ok("e", "1");
    let mut ws = second.connect("/ws");
    let reply = resume(&mut ws, "e", 0, Some(&old));
    assert_ne!(reply["epoch"], old.as_str());
    assert_eq!(reply["recovered"], false, "{reply}");
    expect_push(&mut ws, "e", 1, "1");
}

/// Publishes race each resume: the client must see every seq exactly once.
#[test]
fn publishes_racing_a_resume_never_leave_a_gap_or_a_duplicate() {
    let server = Server::start(&["--history-size", "1000"]);
    let api = server.api_addr;
    let total = 400u64;
    let publishing = thread::spawn(move || {
        let mut publisher = Publisher::connect(api);
        for n in 1..=total {
            publisher.publish_ok("race", &n.to_string());
            if n % 2 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let mut seen: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rounds = 0;
    while seen.last().copied().unwrap_or(0) < total && Instant::now() < deadline {
        rounds += 1;
        let mut ws = server.connect("/ws");
        let since = seen.last().copied().unwrap_or(0);
        let reply = resume(&mut ws, "race", since, None);
        assert_eq!(reply["recovered"], true, "round {rounds}: {reply}");
        // A few messages per connection, then drop it mid-stream.
        for _ in 0..5 {
            if seen.last().copied().unwrap_or(0) >= total {
                break;
            }
            let push = recv_json(&mut ws);
            seen.push(push["seq"].as_u64().expect("a push"));
        }
    }
    publishing.join().unwrap();
    assert!(rounds > 20, "too few rounds to race: {rounds}");
    let expect: Vec<u64> = (1..=total).collect();
    assert_eq!(seen, expect, "after {rounds} rounds");
}

/// Channels removed a second after their last use: history kept 1 s, an idle
/// channel lingering 1 s (for a poller's next poll), and no command rate, since
/// these tests send thousands of commands at once.
const QUICK_REMOVAL: [&str; 6] = [
    "--history-ttl",
    "1",
    "--poll-timeout",
    "1",
    "--max-commands-per-second",
    "0",
];

#[test]
fn unused_channels_are_removed_and_return_with_a_new_epoch() {
    let server = Server::start(&QUICK_REMOVAL);
    let mut ws = server.connect("/ws");
    for n in 0..2000 {
        send_text(
            &mut ws,
            &format!(r#"{{"op":"subscribe","channel":"churn-{n}"}}"#),
        );
        send_text(
            &mut ws,
            &format!(r#"{{"op":"unsubscribe","channel":"churn-{n}"}}"#),
        );
    }
    for _ in 0..4000 {
        recv_json(&mut ws);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats()["channels"] != 0 {
        assert!(Instant::now() < deadline, "idle channels never went");
        thread::sleep(Duration::from_millis(100));
    }

    let mut publisher = server.publisher();
    publisher.publish_ok("back", "1");
    let old = epoch_of(&server, "back");
    assert_eq!(server.stats()["channels"], 1, "history keeps it");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats()["channels"] != 0 {
        assert!(Instant::now() < deadline, "history never expired");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        publisher.publish_ok("back", "1"),
        1,
        "the sequence restarts"
    );
    assert_ne!(epoch_of(&server, "back"), old);
}

#[test]
fn ids_of_removed_channels_go_to_new_ones_and_each_keeps_its_own_subscribers() {
    // A removed channel's id goes to the next channel made. With one worker the old
    // and the new share its index, and a long-lived channel must keep its own.
    let server = Server::start(
        &[
            &QUICK_REMOVAL[..],
            &["--workers", "1", "--max-subscriptions", "100"],
        ]
        .concat(),
    );
    let mut news = server.connect("/ws");
    subscribe(&mut news, "news");
    let mut publisher = server.publisher();
    for round in 0..3 {
        let mut ws = server.connect("/ws");
        for n in 0..100 {
            assert_eq!(
                subscribe(&mut ws, &format!("r{round}-{n}")),
                0,
                "a fresh channel"
            );
        }
        for n in (0..100).step_by(7) {
            publisher.publish_ok(&format!("r{round}-{n}"), &format!("{}", round * 100 + n));
        }
        publisher.publish_ok("news", &format!("{round}"));
        for n in (0..100).step_by(7) {
            expect_push(
                &mut ws,
                &format!("r{round}-{n}"),
                1,
                &format!("{}", round * 100 + n),
            );
        }
        expect_push(&mut news, "news", round + 1, &format!("{round}"));
        drop(ws);
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.stats()["channels"] != 1 {
            assert!(
                Instant::now() < deadline,
                "round {round}'s channels never went"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}
