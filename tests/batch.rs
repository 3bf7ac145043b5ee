//! `POST /api/publish` batches against the real binary: a JSON array or NDJSON body,
//! one answer per message in order, subscribers get every message, bad batches are
//! refused whole.

mod common;

use std::io::Write;

use common::*;
use serde_json::Value;

/// `POST /api/publish` with `content_type`, on a fresh connection: `(status, body)`.
fn post(server: &Server, content_type: &str, body: &str) -> (u16, Value) {
    let mut stream = tcp(server.api_addr);
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _headers, body) = read_response(&mut stream, &mut Vec::new());
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn check_answer(item: &Value, channel: &str, seq: u64) {
    assert_eq!(item["channel"], channel, "{item}");
    assert_eq!(item["seq"], seq, "{item}");
    assert!(
        item["epoch"].as_str().is_some_and(|e| !e.is_empty()),
        "{item}"
    );
    assert_eq!(item.as_object().unwrap().len(), 3, "{item}");
}

#[test]
fn a_json_array_batch_reaches_each_channel_in_order() {
    let server = Server::start(&[]);
    let mut a = server.connect("/ws");
    subscribe(&mut a, "a");
    let mut b = server.connect("/ws");
    subscribe(&mut b, "b");
    let body =
        r#"[{"channel":"a","data":{"n":1}},{"channel":"b","data":"x"},{"channel":"a","data":[2]}]"#;
    let (status, answer) = post(&server, "application/json", body);
    assert_eq!(status, 200, "{answer}");
    let items = answer.as_array().expect("an array");
    assert_eq!(items.len(), 3, "{answer}");
    check_answer(&items[0], "a", 1);
    check_answer(&items[1], "b", 1);
    check_answer(&items[2], "a", 2);
    expect_push(&mut a, "a", 1, r#"{"n":1}"#);
    expect_push(&mut a, "a", 2, "[2]");
    expect_push(&mut b, "b", 1, "\"x\"");
}

#[test]
fn an_ndjson_batch_of_the_most_messages_allowed_gets_one_seq_each() {
    const N: u64 = 1000;
    let server = Server::start(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "many");
    let body: String = (1..=N)
        .map(|i| format!("{{\"channel\":\"many\",\"data\":{i}}}\n"))
        .collect();
    let (status, answer) = post(&server, "application/x-ndjson", &body);
    assert_eq!(status, 200, "{answer}");
    let items = answer.as_array().expect("an array");
    assert_eq!(items.len(), N as usize);
    for (i, item) in items.iter().enumerate() {
        check_answer(item, "many", i as u64 + 1);
    }
    for i in 1..=N {
        expect_push(&mut ws, "many", i, &i.to_string());
    }
}

#[test]
fn a_bad_batch_is_refused_whole_and_publishes_nothing() {
    let server = Server::start(&[]);
    let body = r#"[{"channel":"ok","data":1},{"channel":"not ok","data":2}]"#;
    let (status, answer) = post(&server, "application/json", body);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "message 1: invalid channel name");
    let too_many: String = "{\"channel\":\"ok\",\"data\":1}\n".repeat(1001);
    let (status, answer) = post(&server, "application/x-ndjson", &too_many);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "a batch may carry at most 1000 messages");
    // Nothing of either went out: the next publish is the channel's first.
    let seq = server.publisher().publish_ok("ok", "1");
    assert_eq!(seq, 1);
}

#[test]
fn a_batch_past_max_channels_answers_503_with_what_went_out() {
    let server = Server::start(&["--max-channels", "1"]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "held");
    let body =
        r#"[{"channel":"held","data":1},{"channel":"new","data":2},{"channel":"held","data":3}]"#;
    let (status, answer) = post(&server, "application/json", body);
    assert_eq!(status, 503, "{answer}");
    let items = answer.as_array().expect("an array");
    check_answer(&items[0], "held", 1);
    assert_eq!(
        items[1],
        serde_json::json!({"channel": "new", "error": "too many channels"})
    );
    check_answer(&items[2], "held", 2);
    expect_push(&mut ws, "held", 1, "1");
    expect_push(&mut ws, "held", 2, "3");
}
