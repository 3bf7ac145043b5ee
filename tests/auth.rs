//! Connection tokens against the real binary: `private:` and `user:` channels on
//! every transport, `auth` and `refresh`, expiry, `--require-token`, and ES256.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use std::thread;
use std::time::Duration;

use common::comet::{Poller, Sse};
use common::{raw_http, recv_json, send_text, subscribe, Server, OP_CLOSE};
use serde_json::{json, Value};
use tokens::{claims, mint, secret_file, sign};

fn server(extra: &[&str]) -> (Server, std::path::PathBuf) {
    let secret = secret_file();
    let mut args = vec!["--token-secret-file", secret.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&args), secret)
}

/// Opens `/ws?...` and returns the close frame's code and reason the server sends.
fn ws_closed_with(server: &Server, path: &str) -> (u16, String) {
    let mut ws = server.raw(path);
    let frame = ws.recv_frame();
    assert_eq!(
        frame.opcode, OP_CLOSE,
        "expected a close on {path}, got {frame:?}"
    );
    let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
    (
        code,
        String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
    )
}

fn http_get(server: &Server, target: &str) -> (u16, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, _, body) = raw_http(server.client_addr, request.as_bytes());
    (status, body)
}

#[test]
fn bad_tokens_cannot_join_private_or_user_channels_with_subscribe_in_the_url() {
    let (server, _secret) = server(&[]);
    let forged = sign(&claims("ann", 60, &["private:a"]), "wrong secret");
    let expired = mint("ann", -5, &["private:a"]);
    let no_grant = mint("ann", 60, &["private:b"]);
    let cases = [
        (
            format!("/ws?subscribe=private:a&token={forged}"),
            3000,
            "invalid token signature",
        ),
        (
            format!("/ws?subscribe=private:a&token={expired}"),
            3000,
            "token expired",
        ),
        (
            "/ws?subscribe=private:a&token=not.a.jwt".into(),
            3000,
            "malformed token",
        ),
        ("/ws?subscribe=private:a".into(), 3000, "token required"),
        ("/ws?subscribe=user:ann".into(), 3000, "token required"),
        (
            format!("/ws?subscribe=private:a&token={no_grant}"),
            3003,
            "forbidden channel private:a",
        ),
        (
            format!("/ws?subscribe=user:bob&token={no_grant}"),
            3003,
            "forbidden channel user:bob",
        ),
    ];
    for (path, code, reason) in cases {
        assert_eq!(
            ws_closed_with(&server, &path),
            (code, reason.to_owned()),
            "{path}"
        );
    }
    let stats = server.stats_when(|s| {
        s["auth_failures_total"].as_u64() >= Some(3) && s["forbidden_total"].as_u64() >= Some(4)
    });
    assert!(
        stats["auth_failures_total"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    assert!(stats["forbidden_total"].as_u64().unwrap() >= 4, "{stats}");
}

#[test]
fn a_good_token_joins_its_grants_and_its_own_user_channel() {
    let (server, _secret) = server(&[]);
    let token = mint("ann", 60, &["private:a", "private:team-7.*"]);
    let mut ws = server.connect(&format!("/ws?token={token}&subscribe=private:a,user:ann"));
    assert_eq!(subscribe(&mut ws, "private:team-7.chat"), 0);
    server.publisher().publish_ok("private:a", r#""hello""#);
    let push = recv_json(&mut ws);
    assert_eq!(
        (push["channel"].clone(), push["data"].clone()),
        (json!("private:a"), json!("hello"))
    );
}

#[test]
fn websocket_commands_follow_the_same_rules_and_the_connection_stays() {
    let (server, _secret) = server(&[]);
    let mut ws = server.connect("/ws");
    let command = |ws: &mut common::Ws, text: &str| -> Value {
        send_text(ws, text);
        recv_json(ws)
    };
    let refused = command(&mut ws, r#"{"op":"subscribe","channel":"private:a"}"#);
    assert_eq!(refused, json!({"op":"error","reason":"token required"}));
    let expired = mint("ann", -1, &["private:a"]);
    let reply = command(&mut ws, &format!(r#"{{"op":"auth","token":"{expired}"}}"#));
    assert_eq!(reply, json!({"op":"error","reason":"token expired"}));
    let forged = sign(&claims("ann", 60, &["private:a"]), "nope");
    let reply = command(&mut ws, &format!(r#"{{"op":"auth","token":"{forged}"}}"#));
    assert_eq!(
        reply,
        json!({"op":"error","reason":"invalid token signature"})
    );
    let good = mint("ann", 60, &["private:a"]);
    let reply = command(&mut ws, &format!(r#"{{"op":"auth","token":"{good}"}}"#));
    assert_eq!(reply["op"], "authenticated", "{reply}");
    assert_eq!(reply["user"], "ann");
    assert!(reply["exp"].as_u64().unwrap() > tokens::now());
    let other = command(&mut ws, r#"{"op":"subscribe","channel":"user:bob"}"#);
    assert_eq!(
        other,
        json!({"op":"error","reason":"forbidden channel user:bob"})
    );
    let ungranted = command(&mut ws, r#"{"op":"subscribe","channel":"private:b"}"#);
    assert_eq!(
        ungranted,
        json!({"op":"error","reason":"forbidden channel private:b"})
    );
    assert_eq!(
        subscribe(&mut ws, "private:a"),
        0,
        "the connection stayed usable"
    );
    assert_eq!(subscribe(&mut ws, "user:ann"), 0);
    let stolen = mint("bob", 60, &[]);
    let reply = command(
        &mut ws,
        &format!(r#"{{"op":"refresh","token":"{stolen}"}}"#),
    );
    assert_eq!(
        reply,
        json!({"op":"error","reason":"a refresh must keep the same sub"})
    );
    server.publisher().publish_ok("user:ann", "1");
    assert_eq!(
        recv_json(&mut ws)["channel"],
        "user:ann",
        "the old session stays"
    );
}

#[test]
fn sse_and_poll_answer_401_or_403_with_the_reason() {
    let (server, _secret) = server(&[]);
    let forged = sign(&claims("ann", 60, &["private:a"]), "nope");
    let expired = mint("ann", -1, &["private:a"]);
    let ann = mint("ann", 60, &["private:a"]);
    for transport in ["sse", "poll"] {
        let cases = [
            (
                format!("/{transport}?channel=private:a"),
                401,
                "token required",
            ),
            (
                format!("/{transport}?channel=user:ann"),
                401,
                "token required",
            ),
            (
                format!("/{transport}?channel=private:a&token={forged}"),
                401,
                "invalid token signature",
            ),
            (
                format!("/{transport}?channel=private:a&token={expired}"),
                401,
                "token expired",
            ),
            (
                format!("/{transport}?channel=private:b&token={ann}"),
                403,
                "forbidden channel private:b",
            ),
            (
                format!("/{transport}?channel=news,user:bob&token={ann}"),
                403,
                "forbidden channel user:bob",
            ),
        ];
        for (target, status, reason) in cases {
            assert_eq!(
                http_get(&server, &target),
                (status, reason.to_owned()),
                "{target}"
            );
        }
    }
    let mut sse = Sse::open(
        server.client_addr,
        &format!("/sse?channel=private:a&token={ann}"),
        "",
    );
    assert_eq!(sse.head.status, 200);
    assert_eq!(sse.next().kind.as_deref(), Some("subscribed"));
    let mut poller = Poller::connect(server.client_addr);
    server.publisher().publish_ok("user:ann", r#"{"n":1}"#);
    poller.send(&format!("/poll?channel=user:ann&since=0&token={ann}"));
    let (status, _, body) = poller.answer();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["data"], json!({"n":1}));
}

#[test]
fn a_refresh_keeps_a_connection_past_its_first_exp() {
    let (server, _secret) = server(&[]);
    let grants = ["private:room"];
    let mut kept = server.connect(&format!("/ws?token={}", mint("ann", 2, &grants)));
    let mut lapsed = server.raw(&format!("/ws?token={}", mint("bob", 2, &grants)));
    assert_eq!(subscribe(&mut kept, "private:room"), 0);
    lapsed.send_text(r#"{"op":"subscribe","channel":"private:room"}"#);
    assert_eq!(lapsed.recv_frame().opcode, 1, "subscribed");
    thread::sleep(Duration::from_secs(1));
    send_text(
        &mut kept,
        &format!(
            r#"{{"op":"refresh","token":"{}"}}"#,
            mint("ann", 60, &grants)
        ),
    );
    let reply = recv_json(&mut kept);
    assert_eq!(reply["op"], "refreshed", "{reply}");
    // The unrefreshed one is closed once its exp passes (the sweep runs each second).
    let frame = lapsed.recv_frame();
    assert_eq!(frame.opcode, OP_CLOSE, "{frame:?}");
    assert_eq!(&frame.payload[..2], &3000u16.to_be_bytes());
    assert_eq!(&frame.payload[2..], b"token expired");
    thread::sleep(Duration::from_secs(2)); // past the first exp for sure (4 s in)
    server
        .publisher()
        .publish_ok("private:room", r#""still here""#);
    assert_eq!(recv_json(&mut kept)["data"], "still here");
    let stats = server.stats_when(|s| s["token_expired_closes_total"].as_u64() >= Some(1));
    assert_eq!(stats["refreshes_total"], 1, "{stats}");
    assert!(
        stats["token_expired_closes_total"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn an_expired_token_ends_its_sse_stream_and_answers_its_held_poll_401() {
    let (server, _secret) = server(&["--poll-timeout", "30"]);
    let token = mint("ann", 2, &["private:a"]);
    let mut sse = Sse::open(
        server.client_addr,
        &format!("/sse?channel=private:a&token={token}"),
        "",
    );
    assert_eq!(sse.next().kind.as_deref(), Some("subscribed"));
    let mut poll = common::tcp(server.client_addr);
    let request = format!("GET /poll?channel=private:a&token={token} HTTP/1.1\r\nHost: x\r\n\r\n");
    std::io::Write::write_all(&mut poll, request.as_bytes()).unwrap();
    let last = sse.next();
    assert_eq!(
        (last.kind.as_deref(), last.data.as_str()),
        (Some("expired"), "token expired")
    );
    let (status, _, body) = common::read_response(&mut poll, &mut Vec::new());
    assert_eq!((status, body.as_str()), (401, "token expired"));
}

#[test]
fn under_require_token_everything_needs_a_token_and_auth_has_a_deadline() {
    let (server, _secret) = server(&["--require-token", "--handshake-timeout", "1"]);
    assert_eq!(
        http_get(&server, "/sse?channel=news"),
        (401, "token required".into())
    );
    assert_eq!(
        ws_closed_with(&server, "/ws?subscribe=news"),
        (3000, "token required".into())
    );
    let mut ws = server.raw("/ws");
    ws.send_text(r#"{"op":"subscribe","channel":"news"}"#);
    let reply: Value = serde_json::from_slice(&ws.recv_frame().payload).unwrap();
    assert_eq!(reply, json!({"op":"error","reason":"token required"}));
    let frame = ws.recv_frame();
    assert_eq!(frame.opcode, OP_CLOSE);
    assert_eq!(&frame.payload[2..], b"authentication timeout");
    let mut late = server.connect("/ws");
    send_text(
        &mut late,
        &format!(r#"{{"op":"auth","token":"{}"}}"#, mint("ann", 60, &[])),
    );
    assert_eq!(recv_json(&mut late)["op"], "authenticated");
    assert_eq!(subscribe(&mut late, "news"), 0);
}

#[test]
fn a_user_channel_reaches_every_connection_of_that_user_on_every_worker() {
    let (server, _secret) = server(&["--workers", "2"]);
    let ann = mint("ann", 60, &[]);
    let mut anns: Vec<common::Ws> = (0..4)
        .map(|_| server.connect(&format!("/ws?token={ann}")))
        .collect();
    for ws in &mut anns {
        assert_eq!(subscribe(ws, "user:ann"), 0);
    }
    let mut bob = server.connect(&format!("/ws?token={}", mint("bob", 60, &[])));
    subscribe(&mut bob, "user:bob");
    server.publisher().publish_ok("user:ann", r#""for ann""#);
    server.publisher().publish_ok("user:bob", r#""for bob""#);
    for ws in &mut anns {
        assert_eq!(recv_json(ws)["data"], "for ann");
    }
    assert_eq!(
        recv_json(&mut bob)["data"],
        "for bob",
        "bob got only his own"
    );
}

#[test]
fn es256_tokens_verify_with_a_pem_public_key() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let public = format!("{dir}/tests/keys/es256-public.pem");
    let server = Server::start(&["--token-public-key-file", &public]);
    let private = std::fs::read(format!("{dir}/tests/keys/es256-private.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&private).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let token = jsonwebtoken::encode(&header, &claims("ann", 60, &["private:a"]), &key).unwrap();
    let mut ws = server.connect(&format!("/ws?token={token}"));
    assert_eq!(subscribe(&mut ws, "private:a"), 0);
    // An HS256 token is the wrong algorithm for this server, whatever its secret.
    let hs = mint("ann", 60, &["private:a"]);
    assert_eq!(
        ws_closed_with(&server, &format!("/ws?token={hs}")),
        (3000, "wrong algorithm".into())
    );
}

#[test]
fn the_server_refuses_to_start_with_an_empty_or_missing_secret() {
    let empty = std::env::temp_dir().join(format!("halley-empty-secret-{}", std::process::id()));
    std::fs::write(&empty, "\n").unwrap();
    for path in [empty.to_str().unwrap(), "/nonexistent/halley-secret"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_halley"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .args(["--token-secret-file", path])
            .output()
            .expect("run halley");
        assert!(!out.status.success(), "{path}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--token-secret-file"), "{stderr}");
    }
    std::fs::remove_file(&empty).unwrap();
}
