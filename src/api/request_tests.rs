use super::*;

fn post(target: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn request_of(raw: &str) -> ApiRequest {
    match parse(raw.as_bytes(), 1024) {
        ApiParsed::Done { request, .. } => request,
        other => panic!("{other:?}"),
    }
}

fn status_of(raw: &str) -> u16 {
    match request_of(raw) {
        ApiRequest::Refuse { status, .. } => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn json_publish_keeps_data_byte_for_byte() {
    let raw = post(
        "/api/publish",
        r#"{"channel":"news","data":{"a": [1,2]}}"#,
        "",
    );
    assert_eq!(
        request_of(&raw),
        ApiRequest::Publish {
            channel: "news".into(),
            data: r#"{"a": [1,2]}"#.into()
        }
    );
}

#[test]
fn raw_publish_sends_json_as_is_and_text_as_a_string() {
    assert_eq!(
        request_of(&post("/api/publish?channel=c%3A1", "[1,2]", "")),
        ApiRequest::Publish {
            channel: "c:1".into(),
            data: "[1,2]".into()
        }
    );
    assert_eq!(
        request_of(&post("/api/publish?channel=c", "hello \"world\"", "")),
        ApiRequest::Publish {
            channel: "c".into(),
            data: r#""hello \"world\"""#.into()
        }
    );
}

#[test]
fn bad_publishes_are_refused() {
    assert_eq!(status_of(&post("/api/publish", "{nope", "")), 400);
    assert_eq!(
        status_of(&post("/api/publish", r#"{"channel":"a b","data":1}"#, "")),
        400
    );
    assert_eq!(
        status_of(&post("/api/publish", r#"{"channel":"a"}"#, "")),
        400
    );
    assert_eq!(status_of(&post("/api/publish", &"x".repeat(1025), "")), 413);
    assert_eq!(status_of(&post("/api/nope", "", "")), 404);
    assert_eq!(status_of("GET /api/publish HTTP/1.1\r\n\r\n"), 405);
    assert_eq!(
        status_of(&post("/api/publish", "", "Transfer-Encoding: chunked\r\n")),
        411
    );
}

#[test]
fn every_prefix_is_partial_and_requests_pipeline() {
    let one = post("/api/publish", r#"{"channel":"c","data":1}"#, "");
    for cut in 0..one.len() {
        assert!(
            matches!(
                parse(&one.as_bytes()[..cut], 1024),
                ApiParsed::Partial { .. }
            ),
            "cut {cut}"
        );
    }
    let two = format!("{one}{one}");
    match parse(two.as_bytes(), 1024) {
        ApiParsed::Done {
            consumed,
            keep_alive,
            ..
        } => {
            assert_eq!(consumed, one.len());
            assert!(keep_alive);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expect_continue_and_connection_close_are_seen() {
    let head = "POST /api/publish HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
    assert_eq!(
        parse(head.as_bytes(), 1024),
        ApiParsed::Partial {
            expects_continue: true
        }
    );
    let closing = post(
        "/api/publish",
        r#"{"channel":"c","data":1}"#,
        "Connection: close\r\n",
    );
    assert!(matches!(
        parse(closing.as_bytes(), 1024),
        ApiParsed::Done {
            keep_alive: false,
            ..
        }
    ));
    assert!(matches!(
        parse(b"GET /api/stats HTTP/1.0\r\n\r\n", 1024),
        ApiParsed::Done {
            keep_alive: false,
            ..
        }
    ));
}

#[test]
fn presence_names_a_channel() {
    let raw = b"GET /api/presence?channel=private:r HTTP/1.1\r\n\r\n";
    match parse(raw, 1024) {
        ApiParsed::Done { request, .. } => assert_eq!(
            request,
            ApiRequest::Presence {
                channel: "private:r".into()
            }
        ),
        other => panic!("{other:?}"),
    }
    match parse(b"GET /api/presence HTTP/1.1\r\n\r\n", 1024) {
        ApiParsed::Done { request, .. } => {
            assert!(matches!(request, ApiRequest::Refuse { status: 400, .. }))
        }
        other => panic!("{other:?}"),
    }
}
