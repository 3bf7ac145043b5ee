//! The publish API's HTTP behaviour against the real binary: HTTP/1.0 keep-alive,
//! pipelined bursts, refusals with their status, the API key and the loopback rule.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;

use common::*;
use serde_json::Value;

/// One answer from a stream of answers: `(status, headers, body)`.
fn next_answer(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> (u16, Headers, String) {
    read_response(stream, buf)
}

fn at_eof(stream: &mut std::net::TcpStream, buf: &[u8]) -> bool {
    if !buf.is_empty() {
        return false;
    }
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn publish_10(channel: &str, extra: &str) -> Vec<u8> {
    let body = r#"{"n":1}"#;
    format!(
        "POST /api/publish?channel={channel} HTTP/1.0\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn http10_keep_alive_gets_the_header_and_the_connection_stays_usable() {
    let server = Server::start(&[]);
    let mut stream = tcp(server.api_addr);
    let mut buf = Vec::new();
    for round in 1..=5u64 {
        stream
            .write_all(&publish_10("k10", "Connection: Keep-Alive\r\n"))
            .unwrap();
        let (status, headers, body) = next_answer(&mut stream, &mut buf);
        assert_eq!(status, 200, "round {round}: {body}");
        assert_eq!(
            header(&headers, "connection").map(str::to_ascii_lowercase),
            Some("keep-alive".into()),
            "round {round}: {headers:?}"
        );
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reply["seq"], round, "{body}");
    }
    // An HTTP/1.1 answer on the same server carries no Connection header at all.
    let (status, _) = server.publisher().request("GET", "/api/stats", b"");
    assert_eq!(status, 200);
}

#[test]
fn http10_without_keep_alive_gets_close_and_the_connection_ends() {
    let server = Server::start(&[]);
    let mut stream = tcp(server.api_addr);
    let mut buf = Vec::new();
    stream.write_all(&publish_10("c10", "")).unwrap();
    let (status, headers, body) = next_answer(&mut stream, &mut buf);
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "connection"), Some("close"), "{headers:?}");
    assert!(at_eof(&mut stream, &buf), "the server kept the connection");
}

#[test]
fn a_pipelined_burst_gets_every_answer_without_more_bytes() {
    // About 2 MiB of requests and 550 KiB of answers: more than one turn's reads and
    // more answers than the server queues for a client that is not reading yet.
    const N: usize = 5000;
    let server = Server::start(&[]);
    let mut stream = tcp(server.api_addr);
    let payload = "x".repeat(300);
    let mut burst = Vec::new();
    for i in 0..N {
        let body = format!(r#"{{"i":{i},"pad":"{payload}"}}"#);
        burst.extend_from_slice(
            format!(
                "POST /api/publish?channel=burst HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    assert!(burst.len() > 64 * 1024 + 64 * 1024, "{} bytes", burst.len());
    // One write, from another thread: the server stops reading while we do not read
    // its answers, so a single-threaded client could deadlock on a full socket.
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&burst).map(|_| ()));
    // Not reading at first lets the answers pile up to the server's output bound.
    thread::sleep(std::time::Duration::from_millis(300));
    let mut buf = Vec::new();
    for i in 0..N {
        let (status, _, body) = next_answer(&mut stream, &mut buf);
        assert_eq!(
            publish_reply_seq(status, &body, "burst"),
            i as u64 + 1,
            "answer {i}"
        );
    }
    sender.join().unwrap().expect("the burst was written");
    assert!(buf.is_empty(), "bytes after the last answer");
}

#[test]
fn malformed_and_oversized_requests_get_their_status() {
    let server = Server::start(&["--max-message-size", "1000", "--api-request-timeout", "1"]);
    let api = server.api_addr;
    let cases: [(&[u8], u16); 5] = [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (
            b"POST /api/publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            411,
        ),
        (
            b"POST /api/publish?channel=a HTTP/1.1\r\nContent-Length: 5000\r\n\r\n",
            413,
        ),
        (
            b"POST /api/publish?channel=a HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
            400,
        ),
        // A body that never completes: the request timeout answers it.
        (
            b"POST /api/publish?channel=a HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"half",
            408,
        ),
    ];
    for (request, expected) in cases {
        let (status, headers, body) = raw_http(api, request);
        let shown = String::from_utf8_lossy(request);
        assert_eq!(status, expected, "{shown}: {body}");
        assert_eq!(header(&headers, "connection"), Some("close"), "{shown}");
        let reason: Value = serde_json::from_str(&body).unwrap();
        assert!(
            reason["error"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
    }
    // A head past 8 KiB: 431, even with its rest still being sent.
    let mut huge = b"GET /api/stats HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.resize(20 * 1024, b'a');
    let (status, _, body) = raw_http(api, &huge);
    assert_eq!(status, 431, "{body}");
    // A 413 with its body sent anyway still arrives (the server drains, not resets).
    let mut big =
        b"POST /api/publish?channel=a HTTP/1.1\r\nContent-Length: 200000\r\n\r\n".to_vec();
    big.resize(big.len() + 200_000, b'z');
    let mut stream = tcp(api);
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&big);
    });
    let (status, _, body) = read_response(&mut stream, &mut Vec::new());
    assert_eq!(status, 413, "{body}");
    drop(stream);
    sender.join().unwrap();
    // The server still serves.
    let (status, _) = server.publish("after", "1");
    assert_eq!(status, 200);
    // Each refusal above was counted once, the publish that succeeded not at all.
    let stats = server.stats();
    assert_eq!(stats["api_errors_total"], 7, "{stats}");
    assert_eq!(stats["api_unauthorized_total"], 0, "{stats}");
}

fn key_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("halley-{name}-{}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

fn request_with(api: std::net::SocketAddr, path: &str, auth: &str) -> (u16, Headers, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
    raw_http(api, request.as_bytes())
}

#[test]
fn the_api_key_is_required_and_checked() {
    let path = key_file("api-key", "sesame-42\n");
    let server = Server::start(&["--api-key-file", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    let api = server.api_addr;
    for auth in [
        "",
        "Authorization: Bearer sesame-41\r\n",
        "Authorization: sesame-42\r\n",
    ] {
        let (status, headers, body) = request_with(api, "/api/stats", auth);
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(
            header(&headers, "www-authenticate"),
            Some("Bearer"),
            "{auth:?}"
        );
        let reason: Value = serde_json::from_str(&body).unwrap();
        assert!(
            reason["error"].as_str().unwrap().contains("API key"),
            "{body}"
        );
    }
    let publish = b"POST /api/publish?channel=k HTTP/1.1\r\nContent-Length: 1\r\n\r\n1";
    let (status, _, _) = raw_http(api, publish);
    assert_eq!(status, 401, "a publish without the key");
    let (status, _, _) = request_with(api, "/health", "");
    assert_eq!(status, 200, "/health stays open");
    let (status, _, body) = request_with(api, "/api/stats", "Authorization: Bearer sesame-42\r\n");
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["api_unauthorized_total"], 4, "{body}");
    assert_eq!(
        stats["api_errors_total"], 4,
        "the 401s are errors too: {body}"
    );
}

/// Runs `halley serve ARGS`, expecting it to refuse: its exit status and stderr.
/// A server that starts anyway is killed after [`TIMEOUT`].
fn refused_start(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halley"))
        .arg("serve")
        .args(args)
        .args(["--stats", "false"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn halley");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("halley {args:?} started instead of refusing");
        }
        thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn the_server_refuses_a_public_api_without_a_key() {
    let (status, message) =
        refused_start(&["--listen", "127.0.0.1:0", "--api-listen", "0.0.0.0:0"]);
    assert!(!status.success(), "{message}");
    assert!(
        message.contains("not a loopback address") && message.contains("--api-key-file"),
        "{message}"
    );
    let empty = key_file("empty-key", "  \n");
    let (status, message) = refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
        "--api-key-file",
        empty.to_str().unwrap(),
    ]);
    std::fs::remove_file(&empty).unwrap();
    assert!(!status.success(), "it started with an empty key");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(&["--api-idle-timeout", "1"]);
    let mut stream = tcp(server.api_addr);
    let mut buf = Vec::new();
    stream
        .write_all(b"GET /api/stats HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (status, headers, _) = next_answer(&mut stream, &mut buf);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), None, "{headers:?}");
    // Nothing more is sent: the server closes (the read timeout is only a hang guard).
    assert!(at_eof(&mut stream, &buf), "the idle connection stayed open");
}

#[test]
fn a_client_that_reads_late_gets_every_large_answer() {
    const N: usize = 400;
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    let data = format!("\"{}\"", "h".repeat(1000));
    for _ in 0..50 {
        publisher.publish_ok("late", &data);
    }
    let one = b"GET /api/history?channel=late HTTP/1.1\r\nHost: t\r\n\r\n";
    let burst: Vec<u8> = one.repeat(N);
    let mut stream = tcp(server.api_addr);
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&burst).map(|_| ()));
    // About 20 MB of answers, more than the sockets hold: the server must stop
    // reading until this client reads, then carry on from where it stopped.
    thread::sleep(std::time::Duration::from_millis(300));
    let mut buf = Vec::new();
    for i in 0..N {
        let (status, _, body) = next_answer(&mut stream, &mut buf);
        assert_eq!(status, 200, "answer {i}");
        let history: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            history["messages"].as_array().map(Vec::len),
            Some(50),
            "answer {i}"
        );
    }
    sender.join().unwrap().expect("the burst was written");
    assert!(buf.is_empty(), "bytes after the last answer");
}

#[test]
fn api_connections_past_the_cap_get_503_and_places_free_as_connections_go() {
    // The test holds as many connections as the server's cap: one descriptor each.
    halley::limits::raise_open_files();
    let server = Server::start(&[]);
    let api = server.api_addr;
    let held: Vec<_> = (0..halley::api::MAX_CONNECTIONS)
        .map(|_| tcp(api))
        .collect();
    // The next one is accepted after those, and answered without sending a byte.
    let mut refused = tcp(api);
    let (status, headers, body) = read_response(&mut refused, &mut Vec::new());
    assert_eq!(status, 503, "{body}");
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert!(body.contains(halley::api::TOO_MANY_CONNECTIONS), "{body}");
    drop(held);
    // Bounded: the server sees the closes on its next turns.
    let stats = (0..200).find_map(|_| {
        thread::sleep(std::time::Duration::from_millis(20));
        stats_if_answered(api)
    });
    let stats: Value = serde_json::from_str(&stats.expect("a place once they closed")).unwrap();
    assert!(stats["api_errors_total"].as_u64() >= Some(1), "{stats}");
}

/// `GET /api/stats` once; `None` if refused (503) or reset while still at the cap.
fn stats_if_answered(api: std::net::SocketAddr) -> Option<String> {
    let mut stream = tcp(api);
    let request = b"GET /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}
