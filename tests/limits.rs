//! Limits against abuse, each answered with its status or close code and a reason,
//! and counted in /api/stats: connections per source address, channels in total,
//! subscriptions per connection (checked before any channel exists), commands per
//! second, pings from a client that never reads, and a trickled handshake.

mod common;

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn counter(server: &Server, name: &str) -> u64 {
    let stats = server.stats();
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// Asserts that counter `name` reaches `want`: a worker publishes its counters at
/// the end of its turn, just after the answer a test may already have read.
fn assert_counter(server: &Server, name: &str, want: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = counter(server, name);
        if got == want || Instant::now() >= deadline {
            assert_eq!(got, want, "{name}");
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The next upgrade on `addr` is refused with 503, Retry-After and `reason`.
fn expect_503(addr: SocketAddr, reason: &str) {
    let (status, headers, body) = raw_http(addr, upgrade_request("/ws").as_bytes());
    assert_eq!(status, 503, "{body}");
    assert!(header(&headers, "retry-after").is_some(), "{headers:?}");
    assert!(body.contains(reason), "{body}");
}

#[test]
fn a_client_over_the_per_address_limit_gets_503() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let mut clients: Vec<Ws> = (0..3)
        .map(|_| {
            let mut ws = server.connect("/ws");
            subscribe(&mut ws, "ip");
            ws
        })
        .collect();
    expect_503(server.client_addr, "too many connections from this address");
    assert_counter(&server, "per_ip_rejected_total", 1);
    assert_counter(&server, "rejected_total", 0);

    // The admitted ones are served; a closed one gives its place back.
    assert_eq!(server.publish("ip", "1").0, 200);
    for ws in clients.iter_mut() {
        expect_push(ws, "ip", 1, "1");
    }
    close(clients.pop().expect("three"));
    let deadline = Instant::now() + TIMEOUT;
    let mut again = loop {
        match server.try_connect("/ws") {
            Ok(ws) => break ws,
            Err(tungstenite::Error::Http(r)) if r.status() == 503 => {
                assert!(Instant::now() < deadline, "the place never came back");
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    subscribe(&mut again, "ip");
    expect_503(server.client_addr, "from this address");
}

/// `halley serve` on [::1], for the IPv6 path (the shared helper listens on IPv4).
struct Ipv6Server {
    child: Child,
    client_addr: SocketAddr,
}

impl Ipv6Server {
    fn start(extra: &[&str]) -> Ipv6Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_halley"))
            .args([
                "serve",
                "--listen",
                "[::1]:0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .args(["--stats", "false"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn halley");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let addr = line
                .strip_prefix("halley listening: clients=")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            if let Some(client_addr) = addr {
                return Ipv6Server { child, client_addr };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("no start-up line");
    }
}

impl Drop for Ipv6Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_per_address_limit_counts_ipv6_clients() {
    let server = Ipv6Server::start(&["--max-connections-per-ip", "2"]);
    let held: Vec<RawWs> = (0..2)
        .map(|_| RawWs::handshake(tcp(server.client_addr), "/ws"))
        .collect();
    expect_503(server.client_addr, "too many connections from this address");
    drop(held);
}

#[test]
fn a_trickled_handshake_gets_408_after_the_handshake_timeout() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    let mut slow = tcp(server.client_addr);
    let request = upgrade_request("/ws");
    // One byte per 300 ms: each is a sign of life, but the bound counts from accept.
    let mut answered = None;
    for byte in request.as_bytes().iter().take(40) {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(300));
        slow.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        let ready = slow.peek(&mut peek).is_ok_and(|n| n > 0);
        slow.set_nonblocking(false).unwrap();
        if ready {
            answered = Some(read_response(&mut slow, &mut Vec::new()));
            break;
        }
    }
    let (status, _, body) = answered.expect("no answer while trickling 40 bytes over 12 s");
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("handshake timeout"), "{body}");
    assert_counter(&server, "handshake_timeouts_total", 1);
    // A well-behaved client is still served.
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "after");
}

fn subscribe_reply(ws: &mut Ws, channel: &str) -> serde_json::Value {
    send_text(
        ws,
        &format!(r#"{{"op":"subscribe","channel":"{channel}"}}"#),
    );
    recv_json(ws)
}

#[test]
fn no_channel_is_created_past_max_channels() {
    let server = Server::start(&["--max-channels", "3"]);
    let mut ws = server.connect("/ws");
    for name in ["c1", "c2", "c3"] {
        subscribe(&mut ws, name);
    }
    // A command gets an error reply and stays connected.
    let reply = subscribe_reply(&mut ws, "c4");
    assert_eq!(reply["op"], "error", "{reply}");
    assert_eq!(reply["reason"], "too many channels", "{reply}");
    // The API gets 503; an existing channel still takes publishes.
    let (status, body) = server.publish("c5", "1");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many channels"), "{body}");
    assert_eq!(server.publisher().publish_ok("c1", "1"), 1);
    expect_push(&mut ws, "c1", 1, "1");
    // At connect: close 1013 (try again later) for a WebSocket, 503 for SSE.
    let mut raw = server.raw("/ws?subscribe=c6");
    assert_eq!(raw.expect_close(), 1013);
    let request = "GET /sse?channel=c7 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let (status, headers, body) = raw_http(server.client_addr, request.as_bytes());
    assert_eq!(status, 503, "{body}");
    assert!(header(&headers, "retry-after").is_some(), "{headers:?}");
    assert!(body.contains("too many channels"), "{body}");

    assert_counter(&server, "channels", 3);
    assert_counter(&server, "channels_refused_total", 4);
    // Joining an existing channel is still fine.
    let mut other = server.connect("/ws");
    subscribe(&mut other, "c2");
}

#[test]
fn a_connection_at_its_subscription_cap_creates_no_channel() {
    let server = Server::start(&["--max-subscriptions", "2"]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "s1");
    subscribe(&mut ws, "s2");
    assert_counter(&server, "channels", 2);
    for i in 0..20 {
        let reply = subscribe_reply(&mut ws, &format!("new{i}"));
        assert_eq!(reply["reason"], "too many subscriptions", "{reply}");
    }
    assert_eq!(
        counter(&server, "channels"),
        2,
        "no channel for a refused join"
    );
    assert_counter(&server, "command_errors_total", 20);
}

#[test]
fn a_client_past_its_command_rate_is_closed_and_echo_is_not_limited() {
    let server = Server::start(&["--max-commands-per-second", "5", "--echo"]);
    let mut calm = server.connect("/ws");
    subscribe(&mut calm, "rate");

    // A burst of twice the rate passes; far past it, close 1008.
    let mut flood = server.raw("/ws");
    for _ in 0..40 {
        flood.send_text(r#"{"op":"noop"}"#);
    }
    let close = flood.recv_frame();
    assert_eq!(close.opcode, OP_CLOSE, "{close:?}");
    assert_eq!(&close.payload[..2], &1008u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"too many commands");
    assert_counter(&server, "commands_rate_closes_total", 1);

    // /echo (conformance) has no command rate.
    let mut echo = server.connect("/echo");
    for i in 0..100 {
        send_text(&mut echo, &i.to_string());
    }
    for i in 0..100 {
        assert_eq!(recv_text(&mut echo), i.to_string());
    }
    // The calm client is still served.
    assert_eq!(server.publish("rate", "1").0, 200);
    expect_push(&mut calm, "rate", 1, "1");
    assert_counter(&server, "commands_rate_closes_total", 1);
}

/// Pings with the largest payload a control frame may carry; unanswered, 150,000
/// of them would queue 19 MiB of pongs.
#[test]
fn a_ping_flood_without_reading_leaves_memory_bounded() {
    const PINGS: usize = 150_000;
    let server = Server::start(&[]);
    let mut other = server.connect("/ws");
    subscribe(&mut other, "calm");

    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.client_addr.into()).unwrap();
    let mut flood = RawWs::handshake(TcpStream::from(sock), "/ws");
    flood.stream.set_write_timeout(Some(TIMEOUT)).unwrap();

    let before = rss_kib(server.pid);
    let key = [9u8, 8, 7, 6];
    let mut ping = vec![0x89, 0x80 | 125];
    ping.extend_from_slice(&key);
    ping.extend((0..125).map(|i| b'p' ^ key[i % 4]));
    let batch: Vec<u8> = ping.repeat(1000);
    for _ in 0..PINGS / 1000 {
        flood
            .stream
            .write_all(&batch)
            .expect("the server keeps reading");
    }
    let grown_mib = rss_kib(server.pid).saturating_sub(before) / 1024;
    // The server still serves the others.
    assert_eq!(server.publish("calm", "1").0, 200);
    expect_push(&mut other, "calm", 1, "1");
    // Read at last: the pongs the kernel buffers held, at most two more, then the
    // reply to a command sent after the flood; the server answered every ping in
    // order, so it dropped all the pongs that were replaced.
    flood.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    flood.send_text(r#"{"op":"subscribe","channel":"after-flood"}"#);
    let mut pongs = 0;
    loop {
        let frame = flood.recv_frame();
        match frame.opcode {
            OP_PONG => pongs += 1,
            OP_TEXT => break,
            other => panic!("opcode {other}: {frame:?}"),
        }
        assert!(pongs <= PINGS, "more pongs than pings");
    }
    assert!(pongs < PINGS / 2, "{pongs} pongs for {PINGS} pings");
    assert!(grown_mib < 8, "RSS grew {grown_mib} MiB");
    assert_counter(&server, "slow_consumer_closes_total", 0);
    assert_counter(&server, "online", 2);
    drop(flood);
}
