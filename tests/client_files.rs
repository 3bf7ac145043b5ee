//! The browser's side of the client listener: /halley.js, the demo page and its
//! publish endpoint, and the admin drop that clients must survive by resuming.

mod common;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

fn get(server: &Server, target: &str) -> (u16, Headers, String) {
    raw_http(
        server.client_addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn the_browser_client_is_served_and_the_demo_only_when_asked() {
    let plain = Server::start(&[]);
    let (status, headers, body) = get(&plain, "/halley.js");
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type").is_some_and(|t| t.starts_with("application/javascript"))
    );
    assert!(body.contains("Halley"), "not the client: {body:.80}");
    assert_eq!(get(&plain, "/demo").0, 404);
    let (status, _, _) = raw_http(
        plain.client_addr,
        b"POST /demo/publish?channel=d&data=x HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status, 404, "no demo publish without --demo");

    let demo = Server::start(&["--demo"]);
    let (status, headers, page) = get(&demo, "/demo");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.contains("halley.js"), "the page loads the client");
    let mut ws = demo.connect("/ws");
    subscribe(&mut ws, "demo");
    let (status, _, body) = raw_http(
        demo.client_addr,
        b"POST /demo/publish?channel=demo&data=hello%20world HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(publish_reply_seq(status, &body, "demo"), 1);
    expect_push(&mut ws, "demo", 1, r#""hello world""#);
}

#[test]
fn dropped_connections_close_with_1012_and_resume_exactly() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "keep");
    publisher.publish_ok("keep", "1");
    expect_push(&mut ws, "keep", 1, "1");
    let (status, body) = publisher.request("POST", "/api/drop-connections", b"");
    assert_eq!((status, body.as_str()), (200, r#"{"dropped":true}"#));
    let close = match ws.read() {
        Ok(Message::Close(frame)) => frame,
        Ok(other) => panic!("expected a close, got {other:?}"),
        Err(e) => panic!("no close frame: {e}"),
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Restart, "1012");
    assert_eq!(close.reason.as_str(), "service restart");
    publisher.publish_ok("keep", "2");
    let mut again = server.connect("/ws?subscribe=keep&since=1");
    let reply = recv_json(&mut again);
    assert_eq!(reply["recovered"], true, "{reply}");
    expect_push(&mut again, "keep", 2, "2");
}
