use super::*;

const RULES: ApiRules<'static> = ApiRules {
    max_body: 1024,
    api_key: None,
};

fn post(target: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn request_of(raw: &str) -> ApiRequest {
    match parse(raw.as_bytes(), RULES) {
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
                parse(&one.as_bytes()[..cut], RULES),
                ApiParsed::Partial { .. }
            ),
            "cut {cut}"
        );
    }
    let two = format!("{one}{one}");
    match parse(two.as_bytes(), RULES) {
        ApiParsed::Done {
            consumed,
            keep_alive,
            ..
        } => {
            assert_eq!(consumed, one.len());
            assert_eq!(keep_alive, Persistence::KeepAlive);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expect_continue_and_connection_close_are_seen() {
    let head = "POST /api/publish HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
    assert_eq!(
        parse(head.as_bytes(), RULES),
        ApiParsed::Partial {
            expects_continue: true,
            wants: head.len() + 10,
        }
    );
    let closing = post(
        "/api/publish",
        r#"{"channel":"c","data":1}"#,
        "Connection: close\r\n",
    );
    assert!(matches!(
        parse(closing.as_bytes(), RULES),
        ApiParsed::Done {
            keep_alive: Persistence::Close,
            ..
        }
    ));
    assert!(matches!(
        parse(b"GET /api/stats HTTP/1.0\r\n\r\n", RULES),
        ApiParsed::Done {
            keep_alive: Persistence::Close,
            ..
        }
    ));
}

#[test]
fn http10_keep_alive_is_asked_for_and_answered() {
    let asked = "GET /api/stats HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    assert!(matches!(
        parse(asked.as_bytes(), RULES),
        ApiParsed::Done {
            keep_alive: Persistence::KeepAlive10,
            ..
        }
    ));
    let answer = String::from_utf8(response(200, "{}", Persistence::KeepAlive10)).unwrap();
    assert!(
        answer.contains("\r\nConnection: keep-alive\r\n"),
        "{answer}"
    );
    let plain = String::from_utf8(response(200, "{}", Persistence::KeepAlive)).unwrap();
    assert!(!plain.contains("Connection:"), "{plain}");
    let closing = String::from_utf8(response(400, "{}", Persistence::Close)).unwrap();
    assert!(closing.contains("\r\nConnection: close\r\n"), "{closing}");
}

#[test]
fn the_api_key_is_required_everywhere_but_health() {
    let keyed = ApiRules {
        max_body: 1024,
        api_key: Some(b"s3cret"),
    };
    let status = |raw: &str| match parse(raw.as_bytes(), keyed) {
        ApiParsed::Done {
            request: ApiRequest::Refuse { status, .. },
            ..
        } => status,
        ApiParsed::Done { .. } => 200,
        other => panic!("{other:?}"),
    };
    let stats = |auth: &str| format!("GET /api/stats HTTP/1.1\r\n{auth}\r\n");
    assert_eq!(status(&stats("")), 401);
    assert_eq!(status(&stats("Authorization: Bearer wrong\r\n")), 401);
    assert_eq!(status(&stats("Authorization: Bearer s3cre\r\n")), 401);
    assert_eq!(status(&stats("Authorization: Basic s3cret\r\n")), 401);
    assert_eq!(status(&stats("Authorization: Bearer s3cret\r\n")), 200);
    assert_eq!(status(&stats("authorization: bearer  s3cret \r\n")), 200);
    assert_eq!(status("GET /health HTTP/1.1\r\n\r\n"), 200);
    let publish = post("/api/publish", r#"{"channel":"c","data":1}"#, "");
    assert_eq!(status(&publish), 401);
    let answer = String::from_utf8(response(401, "{}", Persistence::KeepAlive)).unwrap();
    assert!(
        answer.contains("\r\nWWW-Authenticate: Bearer\r\n"),
        "{answer}"
    );
}

#[test]
fn refusals_carry_their_status() {
    let status = |raw: &[u8]| match parse(raw, RULES) {
        ApiParsed::Done {
            request: ApiRequest::Refuse { status, .. },
            ..
        } => status,
        other => panic!("{other:?}"),
    };
    assert_eq!(status(b"GARBAGE\r\n\r\n\r\n"), 400);
    assert_eq!(
        status(b"POST /api/publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        411
    );
    assert_eq!(
        status(b"POST /api/publish HTTP/1.1\r\nContent-Length: 1025\r\n\r\n"),
        413
    );
    assert_eq!(
        status(b"POST /api/publish HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        400
    );
    for length in ["+5", "-1", "5 5", "0x5", "99999999999999999999999"] {
        let raw = format!("POST /api/publish HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
        assert_eq!(status(raw.as_bytes()), 400, "Content-Length: {length}");
    }
    assert_eq!(
        status(b"POST /api/publish HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
        400,
        "two lengths that disagree"
    );
    let mut huge = b"GET /api/stats HTTP/1.1\r\nX: ".to_vec();
    huge.resize(MAX_HEAD, b'a');
    assert_eq!(status(&huge), 431);
}

#[test]
fn repeated_content_lengths_that_agree_are_one() {
    let raw =
        b"POST /api/publish?channel=c HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n7";
    assert!(matches!(
        parse(raw, RULES),
        ApiParsed::Done {
            request: ApiRequest::Publish { .. },
            ..
        }
    ));
}

#[test]
fn presence_names_a_channel() {
    let raw = b"GET /api/presence?channel=private:r HTTP/1.1\r\n\r\n";
    match parse(raw, RULES) {
        ApiParsed::Done { request, .. } => assert_eq!(
            request,
            ApiRequest::Presence {
                channel: "private:r".into()
            }
        ),
        other => panic!("{other:?}"),
    }
    match parse(b"GET /api/presence HTTP/1.1\r\n\r\n", RULES) {
        ApiParsed::Done { request, .. } => {
            assert!(matches!(request, ApiRequest::Refuse { status: 400, .. }))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn metrics_is_a_get_behind_the_api_key_answered_as_prometheus_text() {
    let get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(request_of(get), ApiRequest::Metrics);
    assert_eq!(status_of(&post("/metrics", "", "")), 405);
    let keyed = ApiRules {
        max_body: 1024,
        api_key: Some(b"s3cret"),
    };
    let refused = matches!(
        parse(get.as_bytes(), keyed),
        ApiParsed::Done {
            request: ApiRequest::Refuse { status: 401, .. },
            ..
        }
    );
    assert!(refused, "/metrics needs the key like every API route");
    let bearer = "GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n";
    let allowed = matches!(
        parse(bearer.as_bytes(), keyed),
        ApiParsed::Done {
            request: ApiRequest::Metrics,
            ..
        }
    );
    assert!(allowed);
    let answer = response_as(
        200,
        ApiRequest::Metrics.content_type(),
        "x 1\n",
        Persistence::KeepAlive,
    );
    assert_eq!(
        answer,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
          Content-Length: 4\r\n\r\nx 1\n"
    );
}

#[test]
fn the_dashboard_and_its_stream_also_take_the_key_in_the_query() {
    let keyed = ApiRules {
        max_body: 1024,
        api_key: Some(b"s3cret"),
    };
    let request = |target: &str, auth: &str| {
        let raw = format!("GET {target} HTTP/1.1\r\n{auth}\r\n");
        match parse(raw.as_bytes(), keyed) {
            ApiParsed::Done { request, .. } => request,
            other => panic!("{other:?}"),
        }
    };
    let refused = |r: ApiRequest| matches!(r, ApiRequest::Refuse { status: 401, .. });
    assert_eq!(request("/dashboard?key=s3cret", ""), ApiRequest::Dashboard);
    assert_eq!(
        request("/api/stats/stream?key=s3cret", ""),
        ApiRequest::StatsStream
    );
    assert_eq!(
        request("/api/stats/stream", "Authorization: Bearer s3cret\r\n"),
        ApiRequest::StatsStream
    );
    assert!(refused(request("/dashboard", "")));
    assert!(refused(request("/dashboard?key=s3cre", "")));
    assert!(refused(request("/api/stats/stream?key=wrong", "")));
    // Only those two routes: the query key opens nothing else.
    assert!(refused(request("/api/stats?key=s3cret", "")));
    let post = |target: &str| {
        let raw = format!("POST {target} HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        match parse(raw.as_bytes(), RULES) {
            ApiParsed::Done {
                request: ApiRequest::Refuse { status, .. },
                ..
            } => status,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(post("/dashboard"), 405);
    assert_eq!(post("/api/stats/stream"), 405);
}

fn ndjson(body: &str) -> String {
    post(
        "/api/publish",
        body,
        "Content-Type: application/x-ndjson\r\n",
    )
}

fn reason_of(raw: &str) -> (u16, String) {
    match request_of(raw) {
        ApiRequest::Refuse { status, reason } => (status, reason.into_owned()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn message(channel: &str, data: &str) -> BatchMessage {
    BatchMessage {
        channel: channel.into(),
        data: data.into(),
    }
}

#[test]
fn a_json_array_body_is_a_batch_in_order_with_data_byte_for_byte() {
    let raw = post(
        "/api/publish",
        r#" [{"channel":"a","data":{"x": 1}},{"channel":"b","data":"two"}]"#,
        "",
    );
    assert_eq!(
        request_of(&raw),
        ApiRequest::PublishBatch {
            messages: vec![message("a", r#"{"x": 1}"#), message("b", r#""two""#)]
        }
    );
}

#[test]
fn an_ndjson_body_is_a_batch_and_blank_lines_are_skipped() {
    let body = "{\"channel\":\"a\",\"data\":1}\n\n{\"channel\":\"a\",\"data\":[2]}\r\n";
    assert_eq!(
        request_of(&ndjson(body)),
        ApiRequest::PublishBatch {
            messages: vec![message("a", "1"), message("a", "[2]")]
        }
    );
    // A parameter on the content type is fine.
    let typed = post(
        "/api/publish",
        "{\"channel\":\"a\",\"data\":1}",
        "Content-Type: application/x-ndjson; charset=utf-8\r\n",
    );
    assert!(matches!(
        request_of(&typed),
        ApiRequest::PublishBatch { .. }
    ));
}

#[test]
fn a_raw_array_with_a_channel_parameter_stays_one_message() {
    assert_eq!(
        request_of(&post("/api/publish?channel=c", "[1,2]", "")),
        ApiRequest::Publish {
            channel: "c".into(),
            data: "[1,2]".into()
        }
    );
}

#[test]
fn a_bad_batch_is_refused_whole_naming_the_message() {
    let bad_channel = post(
        "/api/publish",
        r#"[{"channel":"a","data":1},{"channel":"b c","data":2}]"#,
        "",
    );
    assert_eq!(
        reason_of(&bad_channel),
        (400, "message 1: invalid channel name".into())
    );
    let bad_shape = ndjson("{\"channel\":\"a\",\"data\":1}\n{\"data\":2}\n");
    assert_eq!(
        reason_of(&bad_shape),
        (
            400,
            "message 1: must be {\"channel\":\"C\",\"data\":ANY}".into()
        )
    );
    assert_eq!(reason_of(&post("/api/publish", "[", "")).0, 400);
    assert_eq!(
        reason_of(&post("/api/publish", "[]", "")),
        (400, "a batch must carry at least one message".into())
    );
    assert_eq!(reason_of(&ndjson("\n\n")).0, 400);
}

#[test]
fn a_batch_carries_at_most_max_batch_messages() {
    let rules = ApiRules {
        max_body: 1 << 20,
        api_key: None,
    };
    let line = "{\"channel\":\"a\",\"data\":1}\n";
    let parse_of = |n: usize| match parse(ndjson(&line.repeat(n)).as_bytes(), rules) {
        ApiParsed::Done { request, .. } => request,
        other => panic!("{other:?}"),
    };
    match parse_of(MAX_BATCH) {
        ApiRequest::PublishBatch { messages } => assert_eq!(messages.len(), MAX_BATCH),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_of(MAX_BATCH + 1),
        ApiRequest::Refuse {
            status: 413,
            reason: format!("a batch may carry at most {MAX_BATCH} messages").into()
        }
    );
}
