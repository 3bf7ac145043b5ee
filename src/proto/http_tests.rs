use super::*;

const ROUTES: Routes = Routes {
    echo: false,
    demo: false,
    transports: Transports::ALL,
    max_subscriptions: 4,
};
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn routed(raw: &str, routes: Routes) -> ClientRequest {
    match parse_client_request(raw.as_bytes(), routes) {
        Parsed::Done { request, .. } => request,
        Parsed::Partial => panic!("partial: {raw:?}"),
    }
}

fn status_of(raw: &str) -> u16 {
    match routed(raw, ROUTES) {
        ClientRequest::Refuse(r) => r.status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_upgrade_is_accepted_with_the_rfc_accept_key() {
    let raw = upgrade("/ws", "");
    assert_eq!(
        routed(&raw, ROUTES),
        ClientRequest::Upgrade {
            endpoint: Endpoint::PubSub,
            // RFC 6455 section 1.3's worked example.
            accept_key: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
            subscribe: vec![],
            token: None,
            deflate: None,
        }
    );
}

#[test]
fn a_deflate_offer_is_read_from_every_extensions_header() {
    let offered = |extra: &str| match routed(&upgrade("/ws", extra), ROUTES) {
        ClientRequest::Upgrade { deflate, .. } => deflate,
        other => panic!("{other:?}"),
    };
    let browser = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    assert!(offered(browser).is_some_and(|a| a.takes_compressed()));
    let two_lines = "Sec-WebSocket-Extensions: x-foo\r\n\
                     sec-websocket-extensions: permessage-deflate; server_max_window_bits=9\r\n";
    assert_eq!(offered(two_lines).unwrap().server_max_window_bits, Some(9));
    // A bad offer declines the extension, not the upgrade.
    assert_eq!(
        offered("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n"),
        None
    );
    assert_eq!(offered(""), None);
}

#[test]
fn every_prefix_of_a_request_is_partial_and_the_head_length_is_exact() {
    let raw = upgrade("/ws?subscribe=a", "");
    for cut in 0..raw.len() {
        assert_eq!(
            parse_client_request(&raw.as_bytes()[..cut], ROUTES),
            Parsed::Partial,
            "cut {cut}"
        );
    }
    let mut with_frame = raw.clone().into_bytes();
    with_frame.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
    match parse_client_request(&with_frame, ROUTES) {
        Parsed::Done { head_len, .. } => assert_eq!(head_len, raw.len()),
        Parsed::Partial => panic!("complete head reported partial"),
    }
}

#[test]
fn subscribe_query_is_decoded_deduplicated_and_validated() {
    match routed(
        &upgrade("/ws?x=1&subscribe=news,chat%3Aroom-1,news", ""),
        ROUTES,
    ) {
        ClientRequest::Upgrade { subscribe, .. } => {
            let names: Vec<&str> = subscribe.iter().map(|w| w.name.as_str()).collect();
            assert_eq!(names, vec!["news", "chat:room-1"])
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status_of(&upgrade("/ws?subscribe=bad%20name", "")), 400);
    assert_eq!(status_of(&upgrade("/ws?subscribe=a,b,c,d,e", "")), 400);
}

#[test]
fn bad_upgrades_get_400() {
    let no_key = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(status_of(no_key), 400);
    assert_eq!(
        status_of(&upgrade("/ws", "").replace("Version: 13", "Version: 8")),
        400
    );
    assert_eq!(status_of(&upgrade("/ws", "").replace("GET", "POST")), 400);
    assert_eq!(
        status_of(&upgrade("/ws", "").replace("keep-alive, Upgrade", "keep-alive")),
        400
    );
    assert_eq!(status_of(&upgrade("/ws", "").replace(KEY, "short==")), 400);
    assert_eq!(status_of("garbage\r\n\r\n"), 400);
}

#[test]
fn routing_answers_404_426_and_health() {
    assert_eq!(status_of(&upgrade("/nope", "")), 404);
    assert_eq!(
        status_of(&upgrade("/echo", "")),
        404,
        "echo is off by default"
    );
    assert_eq!(status_of("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
    assert_eq!(
        routed("GET /health HTTP/1.1\r\n\r\n", ROUTES),
        ClientRequest::Health
    );
    let echo = Routes {
        echo: true,
        ..ROUTES
    };
    assert!(matches!(
        routed(&upgrade("/echo", ""), echo),
        ClientRequest::Upgrade {
            endpoint: Endpoint::Echo,
            ..
        }
    ));
}

#[test]
fn an_endless_head_is_refused_with_431() {
    let mut raw = b"GET /ws HTTP/1.1\r\n".to_vec();
    while raw.len() < MAX_HEAD {
        raw.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    match parse_client_request(&raw, ROUTES) {
        Parsed::Done {
            request: ClientRequest::Refuse(r),
            ..
        } => assert_eq!(r.status, 431),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_complete_head_over_the_limit_is_refused_with_431() {
    let raw = upgrade("/ws", &format!("X-Pad: {}\r\n", "a".repeat(MAX_HEAD)));
    match parse_client_request(raw.as_bytes(), ROUTES) {
        Parsed::Done {
            request: ClientRequest::Refuse(r),
            ..
        } => assert_eq!(r.status, 431),
        other => panic!("{other:?}"),
    }
}

#[test]
fn responses_are_well_formed() {
    let ok = String::from_utf8(switching_protocols("abc=", None)).unwrap();
    assert!(ok.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(
        ok.contains("\r\nConnection: Upgrade\r\n")
            && ok.ends_with("Sec-WebSocket-Accept: abc=\r\n\r\n")
    );
    let agreed = crate::proto::deflate_offer::Agreement {
        server_max_window_bits: None,
    };
    let deflated = String::from_utf8(switching_protocols("abc=", Some(&agreed))).unwrap();
    assert!(deflated.ends_with(
        "Sec-WebSocket-Accept: abc=\r\nSec-WebSocket-Extensions: permessage-deflate; \
         server_no_context_takeover; client_no_context_takeover\r\n\r\n"
    ));
    let busy = String::from_utf8(closing_response(503, "busy", Some(2))).unwrap();
    assert!(busy.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    assert!(busy.contains("Retry-After: 2\r\n") && busy.contains("Content-Length: 4\r\n"));
    assert!(busy.ends_with("\r\n\r\nbusy"));
    let upgrade = String::from_utf8(closing_response(426, "upgrade", None)).unwrap();
    assert!(
        upgrade.contains("\r\nUpgrade: websocket\r\n")
            && upgrade.contains("Sec-WebSocket-Version: 13\r\n")
    );
}

fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
}

#[test]
fn resume_positions_come_with_the_upgrade() {
    match routed(&upgrade("/ws?subscribe=a,b&since=4,&epoch=k3", ""), ROUTES) {
        ClientRequest::Upgrade { subscribe, .. } => {
            assert_eq!(subscribe[0].since, Some(4));
            assert_eq!(subscribe[0].epoch.as_deref(), Some("k3"));
            assert_eq!(subscribe[1].since, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sse_and_poll_are_routed_with_their_channels() {
    match routed(
        &get("/sse?channel=a,b&since=1,2", "Last-Event-ID: 5,6\r\n"),
        ROUTES,
    ) {
        ClientRequest::Sse { channels, .. } => {
            assert_eq!(channels.len(), 2);
            assert_eq!((channels[0].since, channels[1].since), (Some(5), Some(6)));
        }
        other => panic!("{other:?}"),
    }
    match routed(&get("/poll?channel=a&since=3", ""), ROUTES) {
        ClientRequest::Poll {
            channels,
            keep_alive,
            ..
        } => {
            assert_eq!(channels[0].since, Some(3));
            assert!(keep_alive, "HTTP/1.1 keeps the connection by default");
        }
        other => panic!("{other:?}"),
    }
    match routed(&get("/poll?channel=a", "Connection: close\r\n"), ROUTES) {
        ClientRequest::Poll { keep_alive, .. } => assert!(!keep_alive),
        other => panic!("{other:?}"),
    }
    assert_eq!(status_of(&get("/poll", "")), 400, "a poll needs a channel");
    assert_eq!(status_of(&get("/sse?channel=a%20b", "")), 400);
    assert_eq!(status_of("POST /poll?channel=a HTTP/1.1\r\n\r\n"), 405);
}

#[test]
fn disabled_transports_and_the_demo_answer_404_until_enabled() {
    let only_poll = Routes {
        transports: Transports::parse("poll").unwrap(),
        ..ROUTES
    };
    for target in ["/ws", "/sse?channel=a"] {
        match routed(&upgrade(target, ""), only_poll) {
            ClientRequest::Refuse(r) => {
                assert_eq!((r.status, r.reason), (404, "transport disabled"))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(Transports::parse("ws,carrier-pigeon").is_err());
    assert_eq!(status_of(&get("/demo", "")), 404);
    let demo = Routes {
        demo: true,
        ..ROUTES
    };
    assert!(matches!(
        routed(&get("/demo", ""), demo),
        ClientRequest::Asset {
            asset: Asset::DemoPage,
            ..
        }
    ));
    match routed(
        "POST /demo/publish?channel=d&data=hi%20there HTTP/1.1\r\n\r\n",
        demo,
    ) {
        ClientRequest::DemoPublish { channel, data } => {
            assert_eq!((channel.as_str(), data.as_str()), ("d", "\"hi there\""))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        routed(&get("/halley.js", ""), ROUTES),
        ClientRequest::Asset {
            asset: Asset::ClientJs,
            keep_alive: true
        }
    ));
}

#[test]
fn the_token_rides_on_every_transport() {
    let token = |request: ClientRequest| match request {
        ClientRequest::Upgrade { token, .. }
        | ClientRequest::Sse { token, .. }
        | ClientRequest::Poll { token, .. } => token,
        other => panic!("{other:?}"),
    };
    let ws = routed(&upgrade("/ws?subscribe=a&token=h.p.s", ""), ROUTES);
    assert_eq!(token(ws).as_deref(), Some("h.p.s"));
    let sse = routed(&get("/sse?channel=a&token=h.p.s", ""), ROUTES);
    assert_eq!(token(sse).as_deref(), Some("h.p.s"));
    let poll = routed(&get("/poll?token=h.p.s&channel=a", ""), ROUTES);
    assert_eq!(token(poll).as_deref(), Some("h.p.s"));
    assert_eq!(token(routed(&upgrade("/ws", ""), ROUTES)), None);
}

#[test]
fn sse_and_poll_read_accept_encoding() {
    let gzip_of = |request: &str| match routed(request, ROUTES) {
        ClientRequest::Sse { gzip, .. } | ClientRequest::Poll { gzip, .. } => gzip,
        other => panic!("{other:?}"),
    };
    assert!(gzip_of(&get(
        "/sse?channel=a",
        "Accept-Encoding: gzip, deflate, br\r\n"
    )));
    assert!(gzip_of(&get(
        "/poll?channel=a",
        "accept-encoding: br\r\nAccept-Encoding: GZIP\r\n"
    )));
    assert!(!gzip_of(&get("/sse?channel=a", "")));
    assert!(!gzip_of(&get(
        "/poll?channel=a",
        "Accept-Encoding: gzip;q=0\r\n"
    )));
    assert!(!gzip_of(&get(
        "/poll?channel=a",
        "Accept-Encoding: identity\r\n"
    )));
}
