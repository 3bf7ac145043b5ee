//! 1,000 connections that send garbage (random bytes, bad HTTP, bad frames after a
//! good upgrade) each get a clear answer, and leave the server serving everyone
//! else: a subscriber receives every publish during and after, in order.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

const THREADS: usize = 4;
const PER_THREAD: usize = 250;
const DURING: u64 = 200;
const AFTER: u64 = 100;

/// xorshift64: reproducible garbage without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A masked frame with the given first byte, for frames no library would send.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask | n as u8),
        n => {
            f.push(mask | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if masked {
        let key = [1, 2, 3, 4];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Frames the server must refuse with a close code.
fn bad_frame(n: usize) -> Vec<u8> {
    match n % 8 {
        0 => frame(0x81, b"{\"op\":\"noop\"}", false), // unmasked
        1 => frame(0xC1, b"x", true),                  // RSV1 without an extension
        2 => frame(0x83, b"x", true),                  // reserved opcode
        3 => frame(0x89, &[b'p'; 126], true),          // control frame over 125
        4 => frame(0x81, &[0xff, 0xfe, 0xfd], true),   // invalid UTF-8
        5 => frame(0x88, &999u16.to_be_bytes(), true), // invalid close code
        6 => frame(0x09, b"", true),                   // fragmented ping
        _ => frame(0x80, b"x", true),                  // continuation of nothing
    }
}

/// What one garbage connection sends: random bytes (ended as a head, so there is
/// something to answer), bad HTTP, or bad frames after a good upgrade.
fn garbage(n: usize, noise: &mut Noise) -> (Vec<u8>, bool) {
    match n % 4 {
        0 => {
            let len = 1 + (noise.next() % 2000) as usize;
            let mut bytes = noise.bytes(len);
            bytes.extend_from_slice(b"\r\n\r\n");
            (bytes, false)
        }
        1 => {
            let bad: [&[u8]; 4] = [
                b"GET /ws HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
                b"BREW /ws HTCPCP/1.0\r\n\r\n",
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                b"GET /ws?subscribe=%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
            ];
            (bad[n / 4 % bad.len()].to_vec(), false)
        }
        2 => {
            let mut long = b"GET /ws HTTP/1.1\r\nX: ".to_vec();
            long.extend(std::iter::repeat_n(b'a', 70_000));
            long.extend_from_slice(b"\r\n\r\n");
            (long, false)
        }
        _ => {
            let mut bytes = upgrade_request("/ws").into_bytes();
            bytes.extend(bad_frame(n / 4));
            (bytes, true)
        }
    }
}

/// Reads the server's answer to one garbage connection: an HTTP status of 4xx, or
/// (after a 101) a close frame with an error code.
fn answer(stream: &mut TcpStream, upgraded: bool) -> Result<u16, String> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&got))),
        }
    }
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no answer: {:?}", String::from_utf8_lossy(&got)))?;
    let status: u16 = String::from_utf8_lossy(&got[..head_end])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    if !upgraded {
        return Ok(status);
    }
    let frame = &got[head_end + 4..];
    if status != 101 || frame.len() < 4 || frame[0] != 0x88 {
        return Err(format!("upgrade {status}, then {frame:?}"));
    }
    Ok(u16::from_be_bytes([frame[2], frame[3]]))
}

fn counter(server: &Server, name: &str) -> u64 {
    server.stats()[name].as_u64().expect(name)
}

#[test]
fn garbage_from_1000_connections_leaves_the_server_serving_everyone_else() {
    let server = Server::start(&[]);
    let mut subscriber = server.connect("/ws");
    subscribe(&mut subscriber, "g");
    let reader = thread::spawn(move || {
        for seq in 1..=DURING + AFTER {
            expect_push(&mut subscriber, "g", seq, &seq.to_string());
        }
    });

    let addr = server.client_addr;
    let attackers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                let mut noise = Noise(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                // All of this thread's connections are open at once.
                let mut open: Vec<(TcpStream, bool)> = (0..PER_THREAD)
                    .map(|i| {
                        let mut stream = tcp(addr);
                        let (bytes, upgraded) = garbage(t * PER_THREAD + i, &mut noise);
                        // A server that answers early may reset the rest: fine.
                        let _ = stream.write_all(&bytes);
                        (stream, upgraded)
                    })
                    .collect();
                open.drain(..)
                    .map(|(mut stream, upgraded)| answer(&mut stream, upgraded))
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    let mut publisher = server.publisher();
    for seq in 1..=DURING {
        assert_eq!(publisher.publish_ok("g", &seq.to_string()), seq);
        thread::sleep(Duration::from_millis(2));
    }
    let mut http = 0;
    let mut frames = 0;
    for attacker in attackers {
        for (i, result) in attacker.join().expect("attacker").into_iter().enumerate() {
            let code = result.unwrap_or_else(|e| panic!("connection {i}: {e}"));
            match code {
                400..=499 => http += 1,
                1002 | 1007 => frames += 1,
                other => panic!("connection {i}: answered {other}"),
            }
        }
    }
    assert_eq!(http + frames, THREADS * PER_THREAD);
    assert_eq!(frames, THREADS * PER_THREAD / 4);
    for seq in DURING + 1..=DURING + AFTER {
        assert_eq!(publisher.publish_ok("g", &seq.to_string()), seq);
    }
    reader.join().expect("the subscriber missed a publish");

    // Every refusal is counted, and a newcomer is served as before.
    assert!(counter(&server, "http_errors_total") >= http as u64);
    assert_eq!(counter(&server, "protocol_errors_total"), frames as u64);
    let mut late = server.connect("/ws");
    subscribe(&mut late, "g");
}
