//! Memory per idle, subscribed connection, measured on the real server: a WebSocket
//! (default), an SSE stream or a held long-poll (`HALLEY_MEM_TRANSPORT=sse|poll`).
//!
//! Starts the release `halley`, opens a base load of connections (each subscribed
//! to one channel through `?subscribe=`), samples the server's VmRSS and jemalloc's
//! allocated bytes, opens more, samples again, and divides the growth by the added
//! connections so that fixed costs cancel. Then criterion times the set-up of one
//! more subscribed connection while the load is held.
//!
//!     cargo bench --bench memory_per_connection
//!     HALLEY_MEM_BASE=2000 HALLEY_MEM_ADDED=10000 HALLEY_MEM_CHANNELS=100 cargo bench --bench memory_per_connection
//!     HALLEY_MEM_TRANSPORT=poll HALLEY_MEM_BASE=0 cargo bench --bench memory_per_connection
//!     HALLEY_MEM_BURST=1 HALLEY_MEM_TRANSPORT=sse cargo bench --bench memory_per_connection

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    clients: SocketAddr,
    api: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halley"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--stats",
            "false",
        ])
        .args([
            "--ping-interval",
            "0",
            "--idle-timeout",
            "0",
            "--max-connections",
            "19000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start halley");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("start-up line");
    let addr = |key: &str| -> SocketAddr {
        let start = line.find(key).expect("address in start-up line") + key.len();
        line[start..]
            .split_whitespace()
            .next()
            .expect("address")
            .parse()
            .expect("socket address")
    };
    Server {
        clients: addr("clients="),
        api: addr("api="),
        child,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Ws,
    Sse,
    Poll,
}

impl Transport {
    fn from_env() -> Transport {
        match std::env::var("HALLEY_MEM_TRANSPORT").as_deref() {
            Ok("sse") => Transport::Sse,
            Ok("poll") => Transport::Poll,
            _ => Transport::Ws,
        }
    }

    /// The /api/stats gauge that counts these connections.
    fn gauge(self) -> &'static str {
        match self {
            Transport::Ws => "online",
            Transport::Sse => "sse_online",
            Transport::Poll => "polls_held",
        }
    }
}

/// A subscribed connection on CHANNEL, kept open: a WebSocket upgraded on
/// `/ws?subscribe=`, an SSE stream whose head has arrived, or a held poll (which
/// has no answer to wait for; `sample` waits for the gauge instead).
fn open(server: &Server, transport: Transport, channel: usize) -> TcpStream {
    let mut stream = TcpStream::connect(server.clients).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = match transport {
        Transport::Ws => format!(
            "GET /ws?subscribe=mem-{channel} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        Transport::Sse => format!("GET /sse?channel=mem-{channel} HTTP/1.1\r\nHost: bench\r\n\r\n"),
        Transport::Poll => format!("GET /poll?channel=mem-{channel} HTTP/1.1\r\nHost: bench\r\n\r\n"),
    };
    stream.write_all(request.as_bytes()).expect("handshake");
    // A held poll has no answer to wait for, so polls always arrive as a burst;
    // HALLEY_MEM_BURST=1 opens the others the same way, for a like-for-like figure.
    if transport == Transport::Poll || std::env::var_os("HALLEY_MEM_BURST").is_some() {
        return stream;
    }
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("101 response");
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101") || response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    stream
}

fn stats(server: &Server) -> serde_json::Value {
    let mut stream = TcpStream::connect(server.api).expect("api");
    stream
        .write_all(b"GET /api/stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .expect("stats request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("stats response");
    let body = response.split("\r\n\r\n").nth(1).expect("body");
    serde_json::from_str(body).expect("stats JSON")
}

fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("kB")
        * 1024
}

/// Waits (bounded) until the server reports `online` connections, then lets the
/// allocator settle, and returns (VmRSS, allocated bytes).
fn sample(server: &Server, gauge: &str, online: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats(server)[gauge].as_u64() != Some(online) {
        assert!(
            Instant::now() < deadline,
            "server never reached {online} online"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let allocated = stats(server)["allocated_bytes"]
        .as_u64()
        .expect("allocated_bytes");
    (vm_rss(server.child.id()), allocated)
}

fn memory_per_connection(c: &mut Criterion) {
    // The client side of the load: one descriptor per connection, like the server.
    halley::limits::raise_open_files();
    let base = env_or("HALLEY_MEM_BASE", 2_000);
    let added = env_or("HALLEY_MEM_ADDED", 10_000);
    let channels = env_or("HALLEY_MEM_CHANNELS", 100).max(1);
    let transport = Transport::from_env();
    let gauge = transport.gauge();
    let server = start_server();
    let mut held: Vec<TcpStream> = (0..base)
        .map(|i| open(&server, transport, i % channels))
        .collect();
    let (rss_base, heap_base) = sample(&server, gauge, base as u64);
    held.extend((base..base + added).map(|i| open(&server, transport, i % channels)));
    let (rss_full, heap_full) = sample(&server, gauge, (base + added) as u64);
    let per = |full: u64, base: u64| full.saturating_sub(base) as f64 / added as f64;
    println!(
        "memory_per_connection: {gauge}: {base} -> {} idle connections on {channels} channels: \
         RSS {:.1} B/conn, heap {:.1} B/conn (VmRSS {} -> {} KiB, allocated {} -> {} KiB)",
        base + added,
        per(rss_full, rss_base),
        per(heap_full, heap_base),
        rss_base / 1024,
        rss_full / 1024,
        heap_base / 1024,
        heap_full / 1024
    );

    let mut group = c.benchmark_group("memory_per_connection");
    group.sample_size(20);
    group.bench_function("open_subscribed_connection_under_load", |b| {
        b.iter(|| open(&server, transport, 0));
    });
    group.finish();
    drop(held);
}

criterion_group!(benches, memory_per_connection);
criterion_main!(benches);
