//! Protocol core throughput: client frame decoding, server frame encoding, and the
//! HTTP upgrade request's parsing and routing.
//!
//!     cargo bench --bench protocol

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halley::proto::http::{parse_client_request, Routes, Transports};
use halley::proto::{command, ws};

fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_decode");
    let command = br#"{"op":"subscribe","channel":"news.sport:42"}"#.to_vec();
    let large = vec![b'x'; 16 * 1024];
    for (name, payload) in [("command_45B", command), ("text_16KiB", large)] {
        let wire = masked_text_frame(&payload);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            let mut buf = wire.clone();
            b.iter(|| {
                // Decoding unmasks in place; copying the frame back in is part of the cost.
                buf.copy_from_slice(&wire);
                let mut fragments = None;
                black_box(ws::decode(&mut buf, &mut fragments, 1 << 20).is_ok())
            });
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_encode");
    let data = r#"{"t":1763900000000000,"i":42,"title":"a headline of moderate length"}"#;
    group.throughput(Throughput::Elements(1));
    group.bench_function("push_frame", |b| {
        b.iter(|| {
            black_box(ws::frame(
                ws::Kind::Text,
                &command::push(black_box("news"), 42, data),
            ))
        });
    });
    group.finish();
}

fn upgrade(c: &mut Criterion) {
    let request = "GET /ws?subscribe=news,chat%3Aroom-1 HTTP/1.1\r\nHost: push.example.com\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\nOrigin: https://example.com\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let routes = Routes {
        echo: false,
        demo: false,
        transports: Transports::ALL,
        max_subscriptions: 64,
    };
    let mut group = c.benchmark_group("http_upgrade");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_and_route", |b| {
        b.iter(|| black_box(parse_client_request(black_box(request.as_bytes()), routes)));
    });
    group.finish();
}

criterion_group!(benches, decode, encode, upgrade);
criterion_main!(benches);
