//! HTTP answers on the client listener and the upgrade response (docs/protocol.md,
//! "Connecting"). Requests are written by hand to control every byte.

mod common;

use common::*;
use std::io::Write;
use tungstenite::Message;

/// Every error answer has the given status, `Connection: close`, a body, and then
/// the server closes the connection (`raw_http` reads a body without
/// `Content-Length` to EOF, so it would time out otherwise).
fn expect_error(server: &Server, request: &str, status: u16) {
    let (got, headers, body) = raw_http(server.client_addr, request.as_bytes());
    let first_line = request.lines().next().unwrap_or_default();
    let len = request.len();
    assert_eq!(got, status, "{first_line} ({len} bytes); body: {body}");
    let connection = header(&headers, "connection").unwrap_or_default();
    assert!(
        connection.eq_ignore_ascii_case("close"),
        "error answer without Connection: close: {headers:?}"
    );
    assert!(!body.is_empty(), "error answer without a reason");
}

#[test]
fn bad_upgrades_get_400() {
    let server = Server::start(&[]);
    let valid = upgrade_request("/ws");
    let bad = [
        valid.replace(&format!("Sec-WebSocket-Key: {SAMPLE_KEY}\r\n"), ""),
        valid.replace(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: short",
        ),
        valid.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        valid.replace("GET /ws", "POST /ws"),
        valid.replace("Connection: Upgrade", "Connection: keep-alive"),
        upgrade_request("/ws?subscribe=ok,bad!name"),
    ];
    for request in &bad {
        expect_error(&server, request, 400);
    }
}

#[test]
fn plain_get_on_ws_gets_426() {
    let server = Server::start(&[]);
    expect_error(&server, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426);
}

#[test]
fn unknown_path_gets_404() {
    let server = Server::start(&[]);
    expect_error(&server, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404);
    // An upgrade on an unknown path is no better.
    expect_error(&server, &upgrade_request("/nope"), 404);
}

#[test]
fn echo_is_off_by_default() {
    let server = Server::start(&[]);
    expect_error(&server, &upgrade_request("/echo"), 404);
}

#[test]
fn health() {
    let server = Server::start(&[]);
    let (status, _, body) = raw_http(
        server.client_addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(body, "ok");
}

#[test]
fn upgrade_response_headers() {
    let server = Server::start(&[]);
    let mut s = tcp(server.client_addr);
    s.write_all(upgrade_request("/ws").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let head = read_head(&mut s, &mut buf);
    assert_eq!(head.status, 101, "{}", head.raw);
    // Exact header lines, as picky clients compare them byte for byte.
    let lines: Vec<&str> = head.raw.split("\r\n").collect();
    let accept = tungstenite::handshake::derive_accept_key(SAMPLE_KEY.as_bytes());
    for want in [
        "Upgrade: websocket".to_string(),
        "Connection: Upgrade".to_string(),
        format!("Sec-WebSocket-Accept: {accept}"),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "no {want:?} in:\n{}",
            head.raw
        );
    }
    // Nothing is negotiated.
    for absent in ["sec-websocket-extensions", "sec-websocket-protocol"] {
        assert!(header(&head.headers, absent).is_none(), "{}", head.raw);
    }
    assert!(buf.is_empty(), "bytes after the 101 head: {buf:?}");
}

#[test]
fn connection_header_is_a_token_list() {
    // Firefox sends `Connection: keep-alive, Upgrade`, and header names are
    // case-insensitive (RFC 6455 4.2.1).
    let server = Server::start(&[]);
    let request = upgrade_request("/ws")
        .replace("Connection: Upgrade", "connection: keep-alive, Upgrade")
        .replace("Upgrade: websocket", "upgrade: WebSocket");
    let mut s = tcp(server.client_addr);
    s.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut s, &mut Vec::new());
    assert_eq!(head.status, 101, "{}", head.raw);
}

#[test]
fn endless_request_head_gets_431() {
    let server = Server::start(&[]);
    // Over 8 KiB of headers and no end of head in sight.
    let mut request = "GET /ws HTTP/1.1\r\nHost: x\r\n".to_string();
    for i in 0..100 {
        request.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(100)));
    }
    let mut s = tcp(server.client_addr);
    s.write_all(request.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut s, &mut Vec::new());
    assert_eq!(status, 431, "{body}");
}

#[test]
fn complete_but_oversized_request_head_gets_431() {
    // The limit holds even when the whole head arrives at once.
    let server = Server::start(&[]);
    let request = upgrade_request("/ws").replace(
        "Host: 127.0.0.1\r\n",
        &format!("Host: 127.0.0.1\r\nX-Pad: {}\r\n", "p".repeat(9 * 1024)),
    );
    expect_error(&server, &request, 431);
}

#[test]
fn incomplete_request_gets_408() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    let mut s = tcp(server.client_addr);
    // Half a request head, never finished.
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (status, headers, _) = read_response(&mut s, &mut Vec::new());
    assert_eq!(status, 408);
    assert_eq!(
        header(&headers, "connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
}

#[test]
fn echo_endpoint() {
    let server = Server::start(&["--echo"]);
    let mut ws = server.connect("/echo");
    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo"));
    let bytes = vec![0u8, 1, 2, 255];
    ws.send(Message::binary(bytes.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(bytes));
    // Bigger than one read, still echoed whole.
    let big = "e".repeat(50_000);
    ws.send(Message::text(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(big));
}
