//! permessage-deflate (RFC 7692) against the real server: the negotiation answer,
//! one compressed frame shared by every subscriber that agreed to it, plain frames
//! for the others, and the inflate path's limits (zip bomb, RSV1 not negotiated).

mod common;

use common::*;
use serde_json::Value;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A raw client on `/ws`, offering `extra`; returns it and the answer's extension.
fn connect(server: &Server, extra: &str) -> (RawWs, Option<String>) {
    let (ws, head) = RawWs::handshake_with(tcp(server.client_addr), "/ws", extra);
    let agreed = header(&head.headers, "sec-websocket-extensions").map(str::to_string);
    (ws, agreed)
}

/// Subscribes over a raw client and checks the (plain) `subscribed` reply.
fn raw_subscribe(ws: &mut RawWs, channel: &str) {
    ws.send_text(&format!(r#"{{"op":"subscribe","channel":"{channel}"}}"#));
    let reply = ws.recv_frame();
    assert!(!reply.rsv1, "replies go uncompressed: {reply:?}");
    let v: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(v["op"], "subscribed", "{v}");
}

/// About 1 KB of JSON, the size the benchmarks use.
fn kilobyte_json() -> String {
    let items: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"id":{i},"name":"item {i}","price":{}.5,"tags":["a","b"]}}"#,
                i * 3
            )
        })
        .collect();
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

#[test]
fn two_subscribers_share_one_compressed_frame_that_inflates_to_the_push() {
    let server = Server::start(&["--workers", "1"]);
    let (mut a, agreed_a) = connect(&server, OFFER);
    let (mut b, agreed_b) = connect(&server, OFFER);
    assert_eq!(agreed_a.as_deref(), Some(AGREED));
    assert_eq!(agreed_b.as_deref(), Some(AGREED));
    raw_subscribe(&mut a, "news");
    raw_subscribe(&mut b, "news");
    let data = kilobyte_json();
    assert!(data.len() > 900, "{} bytes", data.len());
    server.publisher().publish_ok("news", &data);
    let (fa, fb) = (a.recv_frame(), b.recv_frame());
    assert!(fa.rsv1 && fa.fin && fa.opcode == OP_TEXT, "{fa:?}");
    assert_eq!(fa, fb, "both subscribers get the same frame bytes");
    assert!(
        fa.payload.len() * 2 < data.len(),
        "{} bytes compressed from {}",
        fa.payload.len(),
        data.len()
    );
    let push = String::from_utf8(inflate_message(&fa.payload)).expect("UTF-8 push");
    check_push(&push, "news", 1, &data);
    let stats = server.stats_when(|s| s["frames_deflated_total"] == 1);
    assert_eq!(
        stats["frames_deflated_total"], 1,
        "compressed once: {stats}"
    );
    assert_eq!(stats["deflate_negotiated_total"], 2, "{stats}");
}

#[test]
fn a_client_that_did_not_negotiate_gets_plain_frames_beside_one_that_did() {
    let server = Server::start(&["--workers", "1"]);
    let (mut deflating, _) = connect(&server, OFFER);
    let (mut plain, agreed) = connect(&server, "");
    assert_eq!(agreed, None, "no offer, no extension");
    raw_subscribe(&mut deflating, "mixed");
    raw_subscribe(&mut plain, "mixed");
    let data = kilobyte_json();
    server.publisher().publish_ok("mixed", &data);
    let compressed = deflating.recv_frame();
    let frame = plain.recv_frame();
    assert!(compressed.rsv1);
    assert!(!frame.rsv1, "{frame:?}");
    check_push(
        std::str::from_utf8(&frame.payload).unwrap(),
        "mixed",
        1,
        &data,
    );
    assert_eq!(inflate_message(&compressed.payload), frame.payload);
}

#[test]
fn messages_under_the_min_size_go_plain_even_when_negotiated() {
    let server = Server::start(&["--compression-min-size", "512"]);
    let (mut ws, agreed) = connect(&server, OFFER);
    assert_eq!(agreed.as_deref(), Some(AGREED));
    raw_subscribe(&mut ws, "small");
    let mut publisher = server.publisher();
    publisher.publish_ok("small", r#""short""#);
    let data = kilobyte_json();
    publisher.publish_ok("small", &data);
    let first = ws.recv_frame();
    assert!(!first.rsv1, "{first:?}");
    check_push(
        std::str::from_utf8(&first.payload).unwrap(),
        "small",
        1,
        r#""short""#,
    );
    let second = ws.recv_frame();
    assert!(second.rsv1, "{second:?}");
    let push = String::from_utf8(inflate_message(&second.payload)).unwrap();
    check_push(&push, "small", 2, &data);
}

#[test]
fn a_compressed_command_is_inflated_and_answered() {
    let server = Server::start(&[]);
    let (mut ws, _) = connect(&server, OFFER);
    let command = br#"{"op":"subscribe","channel":"inflated"}"#;
    ws.send_raw_frame(0xc1, &deflate_message(command), true);
    let reply = ws.recv_frame();
    let v: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(v["op"], "subscribed", "{v}");
    assert_eq!(v["channel"], "inflated", "{v}");
    // Fragmented: RSV1 on the first frame only.
    let packed = deflate_message(br#"{"op":"subscribe","channel":"second"}"#);
    let (head, tail) = packed.split_at(packed.len() / 2);
    ws.send_raw_frame(0x41, head, true);
    ws.send_raw_frame(0x80, tail, true);
    let v: Value = serde_json::from_slice(&ws.recv_frame().payload).expect("JSON reply");
    assert_eq!(v["channel"], "second", "{v}");
}

#[test]
fn a_zip_bomb_over_the_cap_once_inflated_is_closed_with_1009() {
    let server = Server::start(&["--max-message-size", "65536"]);
    let (mut ws, _) = connect(&server, OFFER);
    let bomb = deflate_message(&vec![b' '; 16 << 20]);
    assert!(
        bomb.len() < 65536,
        "the bomb itself fits the cap: {}",
        bomb.len()
    );
    ws.send_raw_frame(0xc1, &bomb, true);
    assert_eq!(ws.expect_close(), 1009);
    let stats = server.stats_when(|s| s["inflate_refused_total"] == 1);
    assert_eq!(stats["inflate_refused_total"], 1, "{stats}");
    assert_eq!(stats["protocol_errors_total"], 1, "{stats}");
}

#[test]
fn rsv1_from_a_client_that_did_not_negotiate_is_closed_with_1002() {
    let server = Server::start(&[]);
    let (mut ws, agreed) = connect(&server, "");
    assert_eq!(agreed, None);
    ws.send_raw_frame(0xc1, &deflate_message(b"hello"), true);
    assert_eq!(ws.expect_close(), 1002);
}

#[test]
fn compression_off_declines_every_offer() {
    let server = Server::start(&["--compression", "off"]);
    let (mut ws, agreed) = connect(&server, OFFER);
    assert_eq!(agreed, None);
    ws.send_raw_frame(0xc1, &deflate_message(b"hello"), true);
    assert_eq!(ws.expect_close(), 1002);
    assert_eq!(server.stats()["deflate_negotiated_total"], 0);
}

#[test]
fn a_smaller_server_window_is_echoed_and_honoured_with_plain_frames() {
    let server = Server::start(&[]);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
    let (mut ws, agreed) = connect(&server, offer);
    assert_eq!(
        agreed.as_deref(),
        Some(&*format!("{AGREED}; server_max_window_bits=10"))
    );
    raw_subscribe(&mut ws, "window");
    let data = kilobyte_json();
    server.publisher().publish_ok("window", &data);
    let frame = ws.recv_frame();
    assert!(!frame.rsv1, "{frame:?}");
    check_push(
        std::str::from_utf8(&frame.payload).unwrap(),
        "window",
        1,
        &data,
    );
    // It may still send compressed messages.
    let command = br#"{"op":"subscribe","channel":"window-2"}"#;
    ws.send_raw_frame(0xc1, &deflate_message(command), true);
    let v: Value = serde_json::from_slice(&ws.recv_frame().payload).expect("JSON reply");
    assert_eq!(v["channel"], "window-2", "{v}");
}

#[test]
fn a_malformed_offer_declines_the_extension_not_the_upgrade() {
    let server = Server::start(&[]);
    let bad = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n";
    let (mut ws, agreed) = connect(&server, bad);
    assert_eq!(agreed, None);
    raw_subscribe(&mut ws, "still-works");
}
