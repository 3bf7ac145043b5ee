//! `--broker`: Halley nodes sharing channels through a real `redis-server` (and a
//! real 3-shard Redis Cluster), all on loopback.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use std::time::{Duration, Instant};

use common::comet::Sse;
use common::redis::{Cluster, Redis};
use common::*;
use serde_json::{json, Value};

fn node(broker: &str) -> Server {
    Server::start(&["--broker", broker, "--workers", "2", "--client-publish"])
}

/// Waits (at most 15 s: the reconnect backoff tops at 5 s) for the broker state.
fn broker_state(server: &Server, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = server.stats();
        if stats["broker"]["state"] == want || Instant::now() > deadline {
            assert_eq!(stats["broker"]["state"], want, "stats: {stats}");
            return stats;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn data(n: u64) -> String {
    format!(r#"{{"n":{n}}}"#)
}

#[test]
fn a_publish_on_one_node_reaches_every_node_once_in_order() {
    let redis = Redis::start();
    let nodes: Vec<Server> = (0..3).map(|_| node(&redis.url())).collect();
    let mut subscribers: Vec<Ws> = nodes[1..]
        .iter()
        .flat_map(|n| [n.connect("/ws"), n.connect("/ws")])
        .collect();
    for ws in &mut subscribers {
        assert_eq!(subscribe(ws, "news"), 0);
    }
    // Joined by the upgrade URL, on a node that does not hold the channel yet: the
    // join waits for the sync, silently.
    let mut by_url = nodes[2].connect("/ws?subscribe=news,other");
    let mut joined = false;
    for _ in 0..250 {
        let stats = nodes[2].stats();
        if stats["broker"]["syncs_total"] == 2 && stats["broker"]["syncing"] == 0 {
            joined = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        joined,
        "the URL's channels were synced: {}",
        nodes[2].stats()
    );
    let mut publisher = nodes[0].publisher();
    for n in 1..=200 {
        assert_eq!(publisher.publish_ok("news", &data(n)), n);
    }
    // A last message from another node: nothing may come between 200 and it.
    assert_eq!(nodes[2].publisher().publish_ok("news", &data(201)), 201);
    for ws in subscribers.iter_mut().chain([&mut by_url]) {
        for n in 1..=201 {
            expect_push(ws, "news", n, &data(n));
        }
    }
    let stats = nodes[1].stats();
    assert_eq!(stats["broker"]["state"], "up", "{stats}");
    assert_eq!(stats["broker"]["relayed_total"], 201, "{stats}");
    assert_eq!(stats["broker"]["duplicates_total"], 0, "{stats}");
    assert_eq!(stats["broker"]["gaps_total"], 0, "{stats}");
}

#[test]
fn a_client_that_moves_to_another_node_resumes_without_loss() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let mut ws = a.connect("/ws");
    subscribe(&mut ws, "moving");
    let mut publisher = a.publisher();
    for n in 1..=5 {
        publisher.publish_ok("moving", &data(n));
        expect_push(&mut ws, "moving", n, &data(n));
    }
    send_text(&mut ws, r#"{"op":"subscribe","channel":"moving"}"#);
    let epoch = recv_json(&mut ws)["epoch"].as_str().unwrap().to_string();
    close(ws);
    // Published while the client is away, from the node it left.
    for n in 6..=9 {
        publisher.publish_ok("moving", &data(n));
    }
    let mut ws = b.connect("/ws");
    send_text(
        &mut ws,
        &format!(r#"{{"op":"subscribe","channel":"moving","since":5,"epoch":"{epoch}"}}"#),
    );
    let reply = recv_json(&mut ws);
    assert_eq!(reply["op"], "subscribed", "{reply}");
    assert_eq!(
        reply["epoch"],
        epoch.as_str(),
        "the epoch comes from Redis: {reply}"
    );
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["seq"], 9, "{reply}");
    for n in 6..=9 {
        expect_push(&mut ws, "moving", n, &data(n));
    }
    publisher.publish_ok("moving", &data(10));
    expect_push(&mut ws, "moving", 10, &data(10));
}

#[test]
fn sse_and_long_poll_on_a_cold_node_wait_for_the_sync_then_deliver() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let mut publisher = a.publisher();
    publisher.publish_ok("cold", &data(1));
    let mut sse = Sse::open(b.client_addr, "/sse?channel=cold", "");
    let subscribed = sse.next();
    assert!(subscribed.data.contains("\"seq\":1"), "{}", subscribed.data);
    publisher.publish_ok("cold", &data(2));
    let event = sse.next();
    check_push(&event.data, "cold", 2, &data(2));
    // A poll from the start of history, on a node that had never held the channel.
    let mut poller = common::comet::Poller::connect(b.client_addr);
    publisher.publish_ok("cold2", &data(1));
    publisher.publish_ok("cold2", &data(2));
    let answer = poller.poll("/poll?channel=cold2&since=0");
    assert_eq!(
        common::comet::seqs(&answer, "cold2"),
        vec![1, 2],
        "{answer}"
    );
}

#[test]
fn a_client_publish_goes_through_redis_to_the_other_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let mut listener = b.connect("/ws");
    subscribe(&mut listener, "chat");
    let mut talker = a.connect("/ws");
    send_text(
        &mut talker,
        r#"{"op":"publish","channel":"chat","data":{"hi":1}}"#,
    );
    let reply = recv_json(&mut talker);
    assert_eq!(reply["op"], "published", "{reply}");
    assert_eq!(reply["seq"], 1, "{reply}");
    expect_push(&mut listener, "chat", 1, r#"{"hi":1}"#);
}

#[test]
fn losing_redis_keeps_local_delivery_and_the_nodes_recover() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let (mut on_a, mut on_b) = (a.connect("/ws"), b.connect("/ws"));
    subscribe(&mut on_a, "live");
    subscribe(&mut on_b, "live");
    let mut publisher = a.publisher();
    publisher.publish_ok("live", &data(1));
    expect_push(&mut on_a, "live", 1, &data(1));
    expect_push(&mut on_b, "live", 1, &data(1));

    redis.stop();
    broker_state(&a, "down");
    // Local subscribers still get what is published on their node.
    for n in 2..=4 {
        assert_eq!(publisher.publish_ok("live", &data(n)), n);
        expect_push(&mut on_a, "live", n, &data(n));
    }
    let stats = a.stats();
    assert_eq!(stats["broker"]["published_locally_total"], 3, "{stats}");

    redis.restart();
    broker_state(&a, "up");
    broker_state(&b, "up");
    // Numbers never go back for connected clients: Redis's counter was raised to
    // node A's last seq, and the epoch A held was kept.
    assert_eq!(publisher.publish_ok("live", &data(5)), 5);
    expect_push(&mut on_a, "live", 5, &data(5));
    expect_push(&mut on_b, "live", 5, &data(5));
    let stats = a.stats();
    assert_eq!(stats["broker"]["reconnects_total"], 1, "{stats}");
}

#[test]
fn the_same_publish_works_on_a_three_shard_redis_cluster() {
    let cluster = Cluster::start();
    let (a, b) = (node(&cluster.url()), node(&cluster.url()));
    let channels: Vec<String> = (0..12).map(|i| format!("shard{i}")).collect();
    let mut ws = b.connect("/ws");
    for channel in &channels {
        subscribe(&mut ws, channel);
    }
    let mut publisher = a.publisher();
    for round in 1..=3 {
        for channel in &channels {
            assert_eq!(publisher.publish_ok(channel, &data(round)), round);
        }
    }
    let mut got: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for _ in 0..channels.len() * 3 {
        let push = recv_json(&mut ws);
        got.entry(push["channel"].as_str().unwrap().to_string())
            .or_default()
            .push(push["seq"].as_u64().unwrap());
    }
    for channel in &channels {
        assert_eq!(got[channel], vec![1, 2, 3], "{channel}");
    }
    // The channels really are spread over the shards.
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).trim() != "0")
        .count();
    assert_eq!(holding, 3, "every shard holds some channel's keys");
    let stats = b.stats();
    assert!(
        stats["broker"]["url"]
            .as_str()
            .unwrap()
            .starts_with("redis-cluster://"),
        "{stats}"
    );
}

fn presence_until(server: &Server, channel: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) =
            server
                .publisher()
                .request("GET", &format!("/api/presence?channel={channel}"), b"");
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "presence never became as expected: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn presence_spans_the_nodes_and_a_dead_node_drops_out() {
    let redis = Redis::start();
    let secret = tokens::secret_file();
    let args = |r: &Redis| {
        Server::start(&[
            "--broker",
            &r.url(),
            "--token-secret-file",
            secret.to_str().unwrap(),
            "--presence-events",
        ])
    };
    let (a, b) = (args(&redis), args(&redis));
    let token = |sub: &str| {
        let claims = json!({"sub": sub, "exp": tokens::now() + 120, "channels": ["private:*"]});
        tokens::sign(&claims, tokens::SECRET)
    };
    let mut ann = a.connect(&format!("/ws?token={}", token("ann")));
    subscribe(&mut ann, "private:room");
    // Ann's own join, numbered by Redis like any message.
    let event = recv_json(&mut ann);
    assert_eq!(
        (event["presence"].as_str(), event["user"].as_str()),
        (Some("join"), Some("ann")),
        "{event}"
    );
    let mut bob = b.connect(&format!("/ws?token={}", token("bob")));
    subscribe(&mut bob, "private:room");
    // Bob joined on the other node: Ann hears of it, with the next seq.
    let event = recv_json(&mut ann);
    assert_eq!(event["user"], "bob", "{event}");
    assert_eq!(event["seq"], 2, "{event}");
    let both = presence_until(&a, "private:room", |p| {
        p["users"].as_array().is_some_and(|u| u.len() == 2)
    });
    assert_eq!(both["connections"], 2, "{both}");
    // Node B dies without a word: its entry stops counting once it is stale.
    drop(bob);
    drop(b);
    let alone = presence_until(&a, "private:room", |p| {
        p["users"].as_array().is_some_and(|u| u.len() == 1)
    });
    assert_eq!(alone["users"][0]["user"], "ann", "{alone}");
}

#[test]
fn a_redis_with_a_password_works_and_the_password_is_not_shown() {
    let redis = Redis::start_with_password("s3cret-pw");
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let mut ws = b.connect("/ws");
    subscribe(&mut ws, "guarded");
    a.publisher().publish_ok("guarded", &data(1));
    expect_push(&mut ws, "guarded", 1, &data(1));
    let stats = b.stats();
    let url = stats["broker"]["url"].as_str().unwrap();
    assert!(!url.contains("s3cret-pw") && url.contains("***"), "{url}");
}

#[test]
fn batches_resp_and_history_go_through_redis_too() {
    let redis = Redis::start();
    let a = Server::start(&["--broker", &redis.url(), "--resp-listen", "127.0.0.1:0"]);
    let b = node(&redis.url());
    let mut ws = b.connect("/ws");
    subscribe(&mut ws, "mixed");
    // A batch: one round trip to Redis per shard, numbered there.
    let (status, body) = a.publisher().request(
        "POST",
        "/api/publish",
        br#"[{"channel":"mixed","data":1},{"channel":"elsewhere","data":2},{"channel":"mixed","data":3}]"#,
    );
    assert_eq!(status, 200, "{body}");
    let answers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answers[0]["seq"], 1, "{body}");
    assert_eq!(answers[1]["seq"], 1, "{body}");
    assert_eq!(answers[2]["seq"], 2, "{body}");
    expect_push(&mut ws, "mixed", 1, "1");
    expect_push(&mut ws, "mixed", 2, "3");
    // RESP on node A.
    let resp = a.resp_addr.expect("resp listener");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &resp.port().to_string()])
        .args(["PUBLISH", "mixed", "4"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    expect_push(&mut ws, "mixed", 3, "4");
    // Node B never held "elsewhere": its history comes from Redis's log.
    let (status, body) =
        b.publisher()
            .request("GET", "/api/history?channel=elsewhere&since=0", b"");
    assert_eq!(status, 200, "{body}");
    let history: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        common::comet::seqs(&history, "elsewhere"),
        vec![1],
        "{history}"
    );
    assert_eq!(history["recovered"], true, "{history}");
    assert_eq!(history["last_seq"], 1, "{history}");
}
