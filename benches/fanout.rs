//! In-process fan-out: one publish reaching 10,000 subscribers spread over every
//! worker, timed from `Hub::publish` until the workers have written it to all of
//! them (their `delivered` counters).
//!
//!     cargo bench --bench fanout
//!     HALLEY_FANOUT_SUBSCRIBERS=5000 cargo bench --bench fanout

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halley::config::{Config, Machine, ServeArgs};
use halley::server;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The subscribers live in a `halley-bench hold` child process: one process cannot
/// hold both ends of 10,000 connections under a 20,000 open-file limit. It keeps
/// reading, so the subscribers' buffers never fill.
fn hold_subscribers(client_addr: SocketAddr, subscribers: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_halley-bench"))
        .args([
            "hold",
            "--url",
            &format!("ws://{client_addr}"),
            "--connections",
            &subscribers.to_string(),
        ])
        .args([
            "--channels",
            "1",
            "--channel-prefix",
            "fanout",
            "--duration",
            "600",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start halley-bench hold")
}

fn fanout(c: &mut Criterion) {
    let subscribers: usize = std::env::var("HALLEY_FANOUT_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let args = ServeArgs {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        api_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ping_interval: Some(0),
        idle_timeout: Some(0),
        stats: Some(false),
        ..ServeArgs::default()
    };
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        open_files_hard: halley::limits::open_files_hard(),
        stdout_is_terminal: false,
    };
    let config = Config::resolve(args, machine).expect("config");
    let running = server::start(&config).expect("start halley in-process");
    let mut holder = hold_subscribers(running.client_addr, subscribers);
    let shared = running.shared.clone();
    let delivered = || shared.totals().delivered;
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.totals().online < subscribers as u64 {
        if Instant::now() > deadline {
            let _ = holder.kill();
            panic!("subscribers never came online");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let data = r#"{"t":0,"title":"a headline of moderate length"}"#;
    let channel = "fanout-0";

    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(subscribers as u64));
    group.sample_size(30);
    group.bench_function(format!("one_publish_to_{subscribers}_subscribers"), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let target = delivered() + subscribers as u64;
                let started = Instant::now();
                shared.hub.publish(channel, data).expect("one channel");
                // Sleep, not spin: on a 2-core machine a spinning thread takes a core
                // from the workers.
                while delivered() < target {
                    std::thread::sleep(Duration::from_micros(100));
                }
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
    let _ = holder.kill();
    let _ = holder.wait();
    running.shutdown();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
