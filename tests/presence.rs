//! Presence against the real binary: `GET /api/presence` counts and lists who is
//! connected to a presence channel, `--presence-events` pushes joins and leaves
//! with a seq, and a long-poller's successive polls are not a leave and a join.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use std::thread;
use std::time::{Duration, Instant};

use common::comet::Poller;
use common::{recv_json, subscribe, Server, Ws};
use serde_json::{json, Value};
use tokens::{mint, now, secret_file, sign};

fn server(extra: &[&str]) -> (Server, std::path::PathBuf) {
    let secret = secret_file();
    let mut args = vec!["--token-secret-file", secret.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&args), secret)
}

fn token_with_info(sub: &str, info: Value) -> String {
    let claims = json!({"sub": sub, "exp": now() + 60, "channels": ["private:*"], "info": info});
    sign(&claims, tokens::SECRET)
}

fn presence(server: &Server, channel: &str) -> (u16, Value) {
    let (status, body) =
        server
            .publisher()
            .request("GET", &format!("/api/presence?channel={channel}"), b"");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

fn join(server: &Server, token: &str, channel: &str) -> Ws {
    let mut ws = server.connect(&format!("/ws?token={token}"));
    subscribe(&mut ws, channel);
    ws
}

/// Asks until `check` holds (bounded: the grace of a leave is a few seconds).
fn presence_until(server: &Server, channel: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        let (status, body) = presence(server, channel);
        assert_eq!(status, 200, "{body}");
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "presence never became as expected: {body}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_presence_api_counts_connections_and_lists_users() {
    let (server, _secret) = server(&["--workers", "2"]);
    let ann = token_with_info("ann", json!({"name": "Ann"}));
    let _a1 = join(&server, &ann, "private:room");
    let _a2 = join(&server, &ann, "private:room");
    let bob = join(&server, &mint("bob", 60, &["private:room"]), "private:room");
    let (status, body) = presence(&server, "private:room");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"channel":"private:room","connections":3,"users":[
            {"user":"ann","connections":2,"info":{"name":"Ann"}},
            {"user":"bob","connections":1,"info":null}]})
    );
    common::close(bob);
    let after = presence_until(&server, "private:room", |b| b["connections"] == 2);
    assert_eq!(after["users"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(presence(&server, "private:empty").1["connections"], 0);
}

#[test]
fn a_channel_without_presence_says_so() {
    let (server, _secret) = server(&[]);
    let _public = join(&server, &mint("ann", 60, &[]), "news");
    let (status, body) = presence(&server, "news");
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "channel news keeps no presence (see --presence-channels)"
    );
    let (server, _secret) = self::server(&["--presence-channels", "room:,private:"]);
    let _anonymous = join(&server, &mint("ann", 60, &[]), "room:1");
    let (status, body) = presence(&server, "room:1");
    assert_eq!((status, body["connections"].clone()), (200, json!(1)));
}

#[test]
fn presence_events_announce_joins_and_leaves_with_a_seq() {
    let (server, _secret) = server(&["--presence-events"]);
    let mut ann = join(&server, &mint("ann", 60, &["private:room"]), "private:room");
    let own = recv_json(&mut ann);
    assert_eq!(
        own,
        json!({"channel":"private:room","seq":1,"presence":"join","user":"ann"})
    );
    let info = json!({"name": "Bob"});
    let bob = join(
        &server,
        &token_with_info("bob", info.clone()),
        "private:room",
    );
    assert_eq!(
        recv_json(&mut ann),
        json!({"channel":"private:room","seq":2,"presence":"join","user":"bob","info":info})
    );
    common::close(bob);
    // The leave comes once bob has been gone for the grace (a few seconds).
    assert_eq!(
        recv_json(&mut ann),
        json!({"channel":"private:room","seq":3,"presence":"leave","user":"bob"})
    );
}

#[test]
fn a_long_poller_does_not_leave_and_join_on_every_poll() {
    let (server, _secret) = server(&["--presence-events", "--poll-timeout", "1"]);
    let mut ann = join(&server, &mint("ann", 60, &["private:room"]), "private:room");
    assert_eq!(recv_json(&mut ann)["user"], "ann");
    let bob = mint("bob", 60, &["private:room"]);
    let mut poller = Poller::connect(server.client_addr);
    let mut since = 1;
    for _ in 0..3 {
        // Each poll is held, then answered empty (or with bob's own join).
        let answer = poller.poll(&format!(
            "/poll?channel=private:room&since={since}&token={bob}"
        ));
        since = answer["last_seq"].as_u64().expect("last_seq");
    }
    server
        .publisher()
        .publish_ok("private:room", r#""after the polls""#);
    let join = recv_json(&mut ann);
    assert_eq!(
        join,
        json!({"channel":"private:room","seq":2,"presence":"join","user":"bob"})
    );
    let next = recv_json(&mut ann);
    assert_eq!(
        (next["seq"].clone(), next["data"].clone()),
        (json!(3), json!("after the polls"))
    );
}

#[test]
fn a_connection_that_authenticates_later_is_counted_under_its_user() {
    let (server, _secret) = server(&["--presence-channels", "room:"]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "room:1");
    let anonymous = presence(&server, "room:1").1;
    assert_eq!(
        anonymous,
        json!({"channel":"room:1","connections":1,"users":[]})
    );
    let token = token_with_info("ann", json!("Ann"));
    common::send_text(&mut ws, &format!(r#"{{"op":"auth","token":"{token}"}}"#));
    assert_eq!(recv_json(&mut ws)["op"], "authenticated");
    let named = presence(&server, "room:1").1;
    assert_eq!(
        named,
        json!({"channel":"room:1","connections":1,"users":[{"user":"ann","connections":1,"info":"Ann"}]})
    );
}
