//! Long-polling against the real binary: immediate and held answers, the timeout,
//! keep-alive, several channels, CORS, and a thousand held polls at once.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::comet::{seqs, Poller};
use common::*;

#[test]
fn a_poll_answers_at_once_when_messages_wait_and_holds_otherwise() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    for n in 1..=3 {
        publisher.publish_ok("p", &format!(r#"{{"n":{n}}}"#));
    }
    let mut poller = Poller::connect(server.client_addr);
    let answer = poller.poll("/poll?channel=p&since=1");
    assert_eq!(seqs(&answer, "p"), vec![2, 3], "{answer}");
    assert_eq!(answer["last_seq"], 3);
    assert_eq!(answer["recovered"], true);
    assert!(answer["epoch"].is_string(), "{answer}");
    assert_eq!(answer["messages"][0]["data"], serde_json::json!({"n":2}));

    // Caught up: the same keep-alive connection holds until the next publish.
    poller.send("/poll?channel=p&since=3");
    thread::sleep(Duration::from_millis(200));
    publisher.publish_ok("p", "4");
    let (status, headers, held) = poller.answer();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), Some("keep-alive"));
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        None,
        "no CORS unless asked"
    );
    assert_eq!(seqs(&held, "p"), vec![4], "{held}");
    assert_eq!(held["last_seq"], 4);
}

#[test]
fn a_held_poll_returns_empty_after_its_timeout() {
    let server = Server::start(&["--poll-timeout", "1"]);
    server.publisher().publish_ok("quiet", "1");
    let mut poller = Poller::connect(server.client_addr);
    let started = Instant::now();
    let answer = poller.poll("/poll?channel=quiet&since=1");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered early"
    );
    assert_eq!(answer["messages"], serde_json::json!([]), "{answer}");
    assert_eq!(answer["last_seq"], 1, "{answer}");
    let stats = server.stats_when(|s| s["polls_held"] == 0);
    assert_eq!(stats["poll_timeouts_total"], 1, "{stats}");
    assert_eq!(stats["polls_held"], 0, "{stats}");
}

#[test]
fn several_channels_answer_with_each_position() {
    let server = Server::start(&["--allow-origin", "https://app.example"]);
    let mut publisher = server.publisher();
    publisher.publish_ok("x", "1");
    publisher.publish_ok("y", "1");
    publisher.publish_ok("y", "2");
    let mut poller = Poller::connect(server.client_addr);
    poller.send("/poll?channel=x,y&since=1,1");
    let (_, headers, answer) = poller.answer();
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(seqs(&answer, "y"), vec![2], "{answer}");
    assert_eq!(answer["channels"]["x"]["last_seq"], 1, "{answer}");
    assert_eq!(answer["channels"]["y"]["last_seq"], 2, "{answer}");

    // Held on both; a publish on one answers with the other's position too.
    poller.send("/poll?channel=x,y&since=1,2");
    thread::sleep(Duration::from_millis(200));
    publisher.publish_ok("x", "2");
    let (_, _, answer) = poller.answer();
    assert_eq!(seqs(&answer, "x"), vec![2], "{answer}");
    assert_eq!(answer["channels"]["x"]["last_seq"], 2, "{answer}");
    assert_eq!(answer["channels"]["y"]["last_seq"], 2, "{answer}");
}

#[test]
fn a_poll_from_another_epoch_answers_at_once_not_recovered() {
    let server = Server::start(&[]);
    server.publisher().publish_ok("ep", "1");
    let mut poller = Poller::connect(server.client_addr);
    let answer = poller.poll("/poll?channel=ep&since=1&epoch=old1");
    assert_eq!(answer["recovered"], false, "{answer}");
    assert_eq!(
        seqs(&answer, "ep"),
        vec![1],
        "what history holds comes along"
    );
}

#[test]
fn a_thousand_held_polls_all_receive_a_publish() {
    let server = Server::start(&[]);
    let mut pollers: Vec<Poller> = (0..1000)
        .map(|_| {
            let mut p = Poller::connect(server.client_addr);
            p.send("/poll?channel=crowd");
            p
        })
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    while server.stats()["polls_held"] != 1000 {
        assert!(Instant::now() < deadline, "{}", server.stats());
        thread::sleep(Duration::from_millis(50));
    }
    server.publisher().publish_ok("crowd", r#""all""#);
    for poller in &mut pollers {
        let (status, _, answer) = poller.answer();
        assert_eq!(status, 200);
        assert_eq!(seqs(&answer, "crowd"), vec![1], "{answer}");
    }
    let stats = server.stats();
    assert_eq!(stats["polls_held"], 0, "{stats}");
    assert_eq!(stats["polls_answered_total"], 1000, "{stats}");
}

#[test]
fn bad_polls_get_a_clear_status() {
    let server = Server::start(&["--transports", "ws,sse"]);
    let status = |target: &str| {
        raw_http(
            server.client_addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    };
    let (code, _, body) = status("/poll?channel=a");
    assert_eq!((code, body.as_str()), (404, "transport disabled"));
    let open = Server::start(&[]);
    for (target, reason) in [
        ("/poll", "missing channel"),
        ("/poll?channel=a%20b", "invalid channel name"),
        ("/poll?channel=a&since=x", "invalid since"),
    ] {
        let (code, _, body) = raw_http(
            open.client_addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert_eq!((code, body.as_str()), (400, reason), "{target}");
    }
    assert_eq!(
        open.stats_when(|s| s["http_errors_total"] == 3)["http_errors_total"],
        3
    );
}

/// Between two polls a channel with nothing in it has no subscriber: it must keep
/// its epoch, or every poll would come back `recovered: false` at once.
#[test]
fn an_idle_channel_keeps_its_epoch_from_one_poll_to_the_next() {
    let server = Server::start(&["--poll-timeout", "1", "--history-size", "0"]);
    let mut poller = Poller::connect(server.client_addr);
    let first = poller.poll("/poll?channel=idle");
    let epoch = first["epoch"].as_str().expect("epoch").to_owned();
    let started = Instant::now();
    let second = poller.poll(&format!("/poll?channel=idle&since=0&epoch={epoch}"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "held, not answered at once: {second}"
    );
    assert_eq!(second["recovered"], true, "{second}");
    assert_eq!(second["epoch"], epoch.as_str());
}
