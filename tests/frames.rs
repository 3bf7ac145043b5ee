//! Frame-level behaviour (RFC 6455 and docs/protocol.md, "Close codes"), with frames
//! written by hand so the tests can break the rules on purpose.

mod common;

use common::*;

#[test]
fn unmasked_client_frame_is_closed_with_1002() {
    let server = Server::start(&[]);
    let mut ws = server.raw("/ws");
    ws.send_frame(true, OP_TEXT, br#"{"op":"noop"}"#, false);
    assert_eq!(ws.expect_close(), 1002);
}

#[test]
fn other_protocol_errors_are_closed_with_1002() {
    let server = Server::start(&[]);
    type Breakage = fn(&mut RawWs);
    let cases: [(&str, Breakage); 7] = [
        ("RSV1 set", |ws| {
            ws.send_raw_frame(0x80 | 0x40 | OP_TEXT, b"{}", true)
        }),
        ("reserved opcode 3", |ws| {
            ws.send_frame(true, 0x3, b"", true)
        }),
        ("continuation with nothing to continue", |ws| {
            ws.send_frame(true, OP_CONT, b"{}", true)
        }),
        ("fragmented ping", |ws| {
            ws.send_frame(false, OP_PING, b"x", true)
        }),
        ("ping over 125 bytes", |ws| {
            ws.send_frame(true, OP_PING, &[b'p'; 126], true)
        }),
        ("new text frame inside a fragmented message", |ws| {
            ws.send_frame(false, OP_TEXT, b"{", true);
            ws.send_frame(true, OP_TEXT, b"}", true);
        }),
        ("invalid close code 1005", |ws| ws.send_close(1005)),
    ];
    for (what, breakage) in cases {
        let mut ws = server.raw("/ws");
        breakage(&mut ws);
        assert_eq!(ws.expect_close(), 1002, "{what}");
    }
}

#[test]
fn oversized_message_is_closed_with_1009() {
    let server = Server::start(&["--max-message-size", "1024"]);
    // One frame over the limit.
    let mut ws = server.raw("/ws");
    ws.send_frame(true, OP_TEXT, &[b' '; 2000], true);
    assert_eq!(ws.expect_close(), 1009);
    // Two fragments each under the limit, together over it.
    let mut ws = server.raw("/ws");
    ws.send_frame(false, OP_TEXT, &[b' '; 600], true);
    ws.send_frame(true, OP_CONT, &[b' '; 600], true);
    assert_eq!(ws.expect_close(), 1009);
}

#[test]
fn message_at_the_size_limit_is_accepted() {
    let server = Server::start(&["--max-message-size", "1024"]);
    let mut ws = server.raw("/ws");
    // A subscribe command padded with JSON whitespace to exactly 1024 bytes.
    let cmd = r#"{"op":"subscribe","channel":"edge"}"#;
    let padded = format!("{cmd}{}", " ".repeat(1024 - cmd.len()));
    ws.send_text(&padded);
    let reply = ws.recv_frame();
    assert_eq!(reply.opcode, OP_TEXT, "{reply:?}");
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["op"], "subscribed", "{v}");
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    let server = Server::start(&[]);
    let mut ws = server.raw("/ws");
    ws.send_frame(true, OP_TEXT, &[b'"', 0xff, 0xfe, b'"'], true);
    assert_eq!(ws.expect_close(), 1007);
}

#[test]
fn fragmented_command_is_reassembled() {
    let server = Server::start(&[]);
    let mut ws = server.raw("/ws");
    ws.send_frame(false, OP_TEXT, br#"{"op":"subscr"#, true);
    // A control frame may sit between fragments (RFC 6455 5.4).
    ws.send_frame(true, OP_PING, b"mid", true);
    ws.send_frame(true, OP_CONT, br#"ibe","channel":"frag"}"#, true);
    let (mut pong, mut reply) = (None, None);
    for _ in 0..2 {
        let f = ws.recv_frame();
        match f.opcode {
            OP_PONG => pong = Some(f.payload),
            OP_TEXT => reply = Some(f.payload),
            _ => panic!("unexpected frame {f:?}"),
        }
    }
    assert_eq!(pong.as_deref(), Some(&b"mid"[..]));
    let reply: serde_json::Value = serde_json::from_slice(&reply.expect("a reply")).unwrap();
    assert_eq!(
        without_epoch(reply),
        serde_json::json!({"op":"subscribed","channel":"frag","seq":0,"recovered":true})
    );
}

#[test]
fn ping_gets_pong_with_the_same_payload() {
    let server = Server::start(&[]);
    let mut ws = server.raw("/ws");
    let payload: Vec<u8> = (0..125u8).collect(); // the largest control payload
    ws.send_frame(true, OP_PING, &payload, true);
    let f = ws.recv_frame();
    assert!(f.fin);
    assert_eq!(f.opcode, OP_PONG, "{f:?}");
    assert_eq!(f.payload, payload);
}

#[test]
fn client_close_is_echoed_then_eof() {
    let server = Server::start(&[]);
    let mut ws = server.raw("/ws");
    ws.send_close(1000);
    assert_eq!(ws.expect_close(), 1000);
    assert!(
        ws.at_eof(),
        "server kept the TCP connection open after the close"
    );
}
