//! gzip for SSE and long-polling against the real binary: shared compressed bytes,
//! what inflates, who gets plain text (no or refused Accept-Encoding, --compression
//! off, small bodies), resume over a gzip'd stream, and its heartbeat.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use common::comet::Sse;
use common::*;
use flate2::read::GzDecoder;
use flate2::{Decompress, FlushDecompress};
use serde_json::Value;

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// A JSON message of about 1 KB, which compresses well.
fn kilobyte_json(n: u32) -> String {
    let items: Vec<String> = (0..24)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}","price":{n}.5,"tags":["a","b"]}}"#))
        .collect();
    format!(r#"{{"n":{n},"items":[{}]}}"#, items.join(","))
}

/// A gzip'd SSE stream read as a browser reads it: a streaming inflater fed with
/// every byte that arrives, no trailer ever expected.
struct GzSse {
    stream: TcpStream,
    head: Head,
    inflater: Decompress,
    /// Everything inflated so far.
    text: Vec<u8>,
    /// Where the caller has read `text` to.
    seen: usize,
}

impl GzSse {
    fn open(addr: SocketAddr, target: &str, extra: &str) -> GzSse {
        let mut stream = tcp(addr);
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip, deflate, br\r\n{extra}\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let head = read_head(&mut stream, &mut buf);
        assert_eq!(head.status, 200, "{}", head.raw);
        assert_eq!(header(&head.headers, "content-encoding"), Some("gzip"));
        assert_eq!(header(&head.headers, "vary"), Some("Accept-Encoding"));
        while buf.len() < GZIP_HEADER.len() {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).expect("read gzip header");
            assert!(n > 0, "the stream ended");
            buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(
            buf[..10],
            GZIP_HEADER,
            "the gzip header right after the head"
        );
        let mut sse = GzSse {
            stream,
            head,
            inflater: Decompress::new(false),
            text: Vec::new(),
            seen: 0,
        };
        sse.feed(&buf[10..]);
        sse
    }

    fn feed(&mut self, mut raw: &[u8]) {
        while !raw.is_empty() {
            let before = self.inflater.total_in();
            self.text.reserve(64 * 1024);
            self.inflater
                .decompress_vec(raw, &mut self.text, FlushDecompress::Sync)
                .expect("valid deflate");
            let used = (self.inflater.total_in() - before) as usize;
            raw = &raw[used..];
        }
    }

    /// Reads until the inflated text past what was seen contains `needle`; returns
    /// that text (up to and including the needle) and the raw bytes read for it.
    fn until(&mut self, needle: &[u8]) -> (String, Vec<u8>) {
        let mut raw = Vec::new();
        for _ in 0..10_000 {
            let fresh = &self.text[self.seen..];
            if let Some(at) = fresh.windows(needle.len()).position(|w| w == needle) {
                let end = self.seen + at + needle.len();
                let text = String::from_utf8(self.text[self.seen..end].to_vec()).unwrap();
                self.seen = end;
                return (text, raw);
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).expect("read sse");
            assert!(n > 0, "the stream ended");
            raw.extend_from_slice(&chunk[..n]);
            self.feed(&chunk[..n]);
        }
        panic!("never saw {needle:?}");
    }
}

/// The id and `data:` text of every `id:` event in `text`.
fn events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|block| block.starts_with("id: "))
        .map(|block| {
            let mut lines = block.lines();
            let id = lines.next().unwrap()["id: ".len()..].to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (id, data.to_owned())
        })
        .collect()
}

#[test]
fn gzip_sse_subscribers_share_one_compressed_segment_and_plain_ones_get_text() {
    // One worker holds all three streams, so "once per worker" is once.
    let server = Server::start(&["--workers", "1"]);
    let mut a = GzSse::open(server.client_addr, "/sse?channel=news", "");
    let mut b = GzSse::open(server.client_addr, "/sse?channel=news", "");
    let mut plain = Sse::open(server.client_addr, "/sse?channel=news", "");
    assert_eq!(header(&plain.head.headers, "content-encoding"), None);
    assert_eq!(header(&plain.head.headers, "vary"), Some("Accept-Encoding"));
    for sse in [&mut a, &mut b] {
        let (text, _) = sse.until(b"event: subscribed\n");
        assert!(text.starts_with("retry: 1000\n\n"), "{text:?}");
        sse.until(b"\n\n");
    }
    assert_eq!(plain.next().kind.as_deref(), Some("subscribed"));

    let message = kilobyte_json(1);
    server.publisher().publish_ok("news", &message);
    let (text_a, raw_a) = a.until(b"\n\n");
    let (text_b, raw_b) = b.until(b"\n\n");
    assert_eq!(raw_a, raw_b, "the same compressed bytes for both");
    assert!(
        raw_a.ends_with(&[0, 0, 0xff, 0xff]),
        "a sync-flushed segment"
    );
    assert!(
        raw_a.len() * 3 < message.len(),
        "{} compressed bytes for a {} byte message",
        raw_a.len(),
        message.len()
    );
    assert_eq!(text_a, text_b);
    let got = events(&text_a);
    assert_eq!(got.len(), 1, "{text_a:?}");
    assert_eq!(got[0].0, "1");
    check_push(&got[0].1, "news", 1, &message);
    let event = plain.next();
    assert_eq!(event.id.as_deref(), Some("1"));
    check_push(&event.data, "news", 1, &message);
    // The plain stream's event is the inflated text, byte for byte.
    assert_eq!(text_a, format!("id: 1\ndata: {}\n\n", event.data));

    let stats = server.stats_when(|s| s["delivered_total"] == 3);
    assert_eq!(
        stats["gzip_compressed_total"], 1,
        "compressed once: {stats}"
    );
    // A second publication: a new segment, still decoded by the same inflater.
    server.publisher().publish_ok("news", "\"small\"");
    let (text, _) = a.until(b"\n\n");
    assert_eq!(events(&text)[0].0, "2");
    let stats = server.stats();
    assert_eq!(stats["sse_online"], 3, "{stats}");
}

/// A raw long-poll: status, headers and the body's exact bytes.
fn poll_raw(stream: &mut TcpStream, target: &str, accept: &str) -> (u16, Headers, Vec<u8>) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(stream)
}

fn read_answer(stream: &mut TcpStream) -> (u16, Headers, Vec<u8>) {
    let mut buf = Vec::new();
    let head = read_head(stream, &mut buf);
    let len: usize = header(&head.headers, "content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    while buf.len() < len {
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).expect("read body");
        assert!(n > 0, "EOF after {} of {len} bytes", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf.len(), len, "nothing after the answer");
    (head.status, head.headers, buf)
}

fn gunzip(body: &[u8]) -> Value {
    let mut out = Vec::new();
    GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a complete gzip member");
    serde_json::from_slice(&out).expect("JSON inside")
}

fn is_gzip(headers: &Headers) -> bool {
    header(headers, "content-encoding") == Some("gzip")
}

const GZIP: &str = "Accept-Encoding: gzip\r\n";

#[test]
fn a_gzip_poll_inflates_to_the_plain_answer() {
    let server = Server::start(&["--workers", "1"]);
    let mut publisher = server.publisher();
    for n in 1..=3 {
        publisher.publish_ok("feed", &kilobyte_json(n));
    }
    // A catch-up: an answer of its own, compressed for this request.
    let mut conn = tcp(server.client_addr);
    let (status, headers, zipped) = poll_raw(&mut conn, "/poll?channel=feed&since=0", GZIP);
    assert_eq!(status, 200);
    assert!(is_gzip(&headers), "{headers:?}");
    assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
    let (_, plain_headers, plain) = poll_raw(&mut conn, "/poll?channel=feed&since=0", "");
    assert!(!is_gzip(&plain_headers));
    assert_eq!(header(&plain_headers, "vary"), Some("Accept-Encoding"));
    let plain: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(gunzip(&zipped), plain);
    assert_eq!(plain["messages"].as_array().unwrap().len(), 3);
    assert!(zipped.len() * 3 < serde_json::to_vec(&plain).unwrap().len());

    // Held polls: the answer fan-out builds once, gzip'd once for both.
    let mut x = tcp(server.client_addr);
    let mut y = tcp(server.client_addr);
    let mut z = tcp(server.client_addr);
    for (conn, accept) in [
        (&mut x, GZIP),
        (&mut y, "Accept-Encoding: br, GZip;q=0.5\r\n"),
        (&mut z, ""),
    ] {
        let request =
            format!("GET /poll?channel=feed&since=3 HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}\r\n");
        conn.write_all(request.as_bytes()).unwrap();
    }
    server.stats_when(|s| s["polls_held"] == 3);
    publisher.publish_ok("feed", &kilobyte_json(4));
    let (_, hx, bx) = read_answer(&mut x);
    let (_, hy, by) = read_answer(&mut y);
    let (_, hz, bz) = read_answer(&mut z);
    assert!(is_gzip(&hx) && is_gzip(&hy) && !is_gzip(&hz));
    assert_eq!(bx, by, "one shared gzip member");
    // One for the catch-up answer, one for the shared answer of both held polls.
    let stats = server.stats_when(|s| s["polls_answered_total"] == 5);
    assert_eq!(stats["gzip_compressed_total"], 2, "{stats}");
    let plain: Value = serde_json::from_slice(&bz).unwrap();
    assert_eq!(gunzip(&bx), plain);
    assert_eq!(plain["last_seq"], 4);
    // The connection is kept: the next poll on it is answered too, here in gzip.
    let (status, headers, again) = poll_raw(&mut x, "/poll?channel=feed&since=3", GZIP);
    assert_eq!(status, 200);
    assert!(is_gzip(&headers));
    assert_eq!(gunzip(&again), plain);
}

#[test]
fn refused_or_absent_gzip_gets_plain_answers() {
    let server = Server::start(&[]);
    server.publisher().publish_ok("p", &kilobyte_json(1));
    let mut conn = tcp(server.client_addr);
    for accept in [
        "",
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: *, gzip;q=0\r\n",
        "Accept-Encoding: identity\r\n",
        "Accept-Encoding: gzip;q=2\r\n",
    ] {
        let (status, headers, body) = poll_raw(&mut conn, "/poll?channel=p&since=0", accept);
        assert_eq!(status, 200);
        assert!(!is_gzip(&headers), "{accept:?}: {headers:?}");
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["last_seq"], 1, "{answer}");
    }
    let (_, headers, body) = poll_raw(
        &mut conn,
        "/poll?channel=p&since=0",
        "Accept-Encoding: *\r\n",
    );
    assert!(is_gzip(&headers), "* takes gzip");
    assert_eq!(gunzip(&body)["last_seq"], 1);
}

#[test]
fn compression_off_never_gzips() {
    let server = Server::start(&["--compression", "off"]);
    server.publisher().publish_ok("p", &kilobyte_json(1));
    let mut conn = tcp(server.client_addr);
    let (_, headers, body) = poll_raw(&mut conn, "/poll?channel=p&since=0", GZIP);
    assert!(!is_gzip(&headers), "{headers:?}");
    assert_eq!(header(&headers, "vary"), None, "nothing varies");
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["last_seq"], 1);
    let mut sse = Sse::open(server.client_addr, "/sse?channel=p&since=0", GZIP);
    assert_eq!(header(&sse.head.headers, "content-encoding"), None);
    assert_eq!(sse.next().kind.as_deref(), Some("subscribed"));
    let event = sse.next();
    assert_eq!(event.id.as_deref(), Some("1"));
    check_push(&event.data, "p", 1, &kilobyte_json(1));
}

#[test]
fn bodies_under_the_min_size_stay_plain() {
    let server = Server::start(&["--compression-min-size", "5000"]);
    let mut publisher = server.publisher();
    publisher.publish_ok("p", &kilobyte_json(1));
    let mut conn = tcp(server.client_addr);
    let (_, headers, body) = poll_raw(&mut conn, "/poll?channel=p&since=0", GZIP);
    assert!(!is_gzip(&headers), "about 1 KB is under 5000");
    assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["last_seq"], 1);
    for n in 2..=6 {
        publisher.publish_ok("p", &kilobyte_json(n));
    }
    let (_, headers, body) = poll_raw(&mut conn, "/poll?channel=p&since=0", GZIP);
    assert!(is_gzip(&headers), "six messages pass 5000 bytes");
    assert_eq!(gunzip(&body)["last_seq"], 6);
    // A gzip'd stream stays gzip: small events go in stored blocks, still inflated.
    let mut sse = GzSse::open(server.client_addr, "/sse?channel=p", "");
    sse.until(b"event: subscribed\n");
    sse.until(b"\n\n");
    publisher.publish_ok("p", "\"tiny\"");
    let (text, raw) = sse.until(b"\n\n");
    assert_eq!(raw[0], 0, "a stored block");
    assert!(raw.windows(6).any(|w| w == b"\"tiny\""), "stored as is");
    check_push(&events(&text)[0].1, "p", 7, "\"tiny\"");
}

#[test]
fn last_event_id_resumes_a_gzip_stream_and_heartbeats_inflate() {
    let server = Server::start(&["--ping-interval", "1"]);
    let mut publisher = server.publisher();
    for n in 1..=5 {
        publisher.publish_ok("feed", &kilobyte_json(n));
    }
    let mut sse = GzSse::open(
        server.client_addr,
        "/sse?channel=feed",
        "Last-Event-ID: 2\r\n",
    );
    assert!(sse.head.raw.contains("Content-Encoding: gzip\r\n"));
    sse.until(b"event: subscribed\n");
    let (subscribed, _) = sse.until(b"\n\n");
    assert!(subscribed.contains("\"recovered\":true"), "{subscribed:?}");
    let mut caught_up = String::new();
    for _ in 3..=5 {
        caught_up.push_str(&sse.until(b"\n\n").0);
    }
    let got = events(&caught_up);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["3", "4", "5"], "{caught_up:?}");
    for (i, (_, push)) in got.iter().enumerate() {
        let n = i as u32 + 3;
        check_push(push, "feed", u64::from(n), &kilobyte_json(n));
    }
    // The heartbeat comment, its constant segment inflated like the rest.
    let (beat, raw) = sse.until(b":\n\n");
    assert_eq!(beat, ":\n\n");
    assert!(raw.ends_with(&[0, 0, 0xff, 0xff]));
    thread::sleep(Duration::from_millis(50));
    publisher.publish_ok("feed", &kilobyte_json(6));
    let (live, _) = sse.until(b"id: 6\n");
    assert!(live.ends_with("id: 6\n"), "{live:?}");
    let (rest, _) = sse.until(b"\n\n");
    let push: Value = serde_json::from_str(rest.trim().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(push["seq"], 6);
}

#[test]
fn streams_and_polls_of_several_channels_are_gzipped_for_themselves() {
    let server = Server::start(&[]);
    let mut publisher = server.publisher();
    publisher.publish_ok("b", &kilobyte_json(1));
    let mut sse = GzSse::open(server.client_addr, "/sse?channel=a,b", "");
    sse.until(b"event: subscribed\n");
    sse.until(b"\n\n");
    sse.until(b"event: subscribed\n");
    sse.until(b"\n\n");
    publisher.publish_ok("a", &kilobyte_json(2));
    let (text, raw) = sse.until(b"\n\n");
    assert!(
        raw.ends_with(&[0, 0, 0xff, 0xff]),
        "compressed for this stream"
    );
    let got = events(&text);
    assert_eq!(got[0].0, "1,1", "positions in both channels: {text:?}");
    check_push(&got[0].1, "a", 1, &kilobyte_json(2));

    let mut conn = tcp(server.client_addr);
    let (_, headers, body) = poll_raw(&mut conn, "/poll?channel=a,b&since=0,0", GZIP);
    assert!(is_gzip(&headers), "{headers:?}");
    let answer = gunzip(&body);
    assert_eq!(answer["channels"]["a"]["last_seq"], 1, "{answer}");
    assert_eq!(answer["channels"]["b"]["last_seq"], 1, "{answer}");
    assert_eq!(answer["messages"].as_array().unwrap().len(), 2);
    // Held on both, answered by fan-out with a body of its own, gzip'd for it.
    let request =
        "GET /poll?channel=a,b&since=1,1 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n";
    conn.write_all(request.as_bytes()).unwrap();
    server.stats_when(|s| s["polls_held"] == 1);
    publisher.publish_ok("b", &kilobyte_json(3));
    let (_, headers, body) = read_answer(&mut conn);
    assert!(is_gzip(&headers));
    let answer = gunzip(&body);
    assert_eq!(answer["channels"]["b"]["last_seq"], 2, "{answer}");
    assert_eq!(answer["messages"][0]["seq"], 2, "{answer}");
}

#[test]
fn an_expired_token_ends_a_gzip_stream_with_a_segment() {
    let secret = tokens::secret_file();
    let server = Server::start(&["--token-secret-file", secret.to_str().unwrap()]);
    let token = tokens::mint("ann", 2, &["private:a"]);
    let target = format!("/sse?channel=private:a&token={token}");
    let mut sse = GzSse::open(server.client_addr, &target, "");
    sse.until(b"event: subscribed\n");
    sse.until(b"\n\n");
    // The sweep closes the stream once exp passes (the read timeout guards the wait).
    let (text, _) = sse.until(b"event: expired\n");
    assert!(text.ends_with("event: expired\n"), "{text:?}");
    let (rest, _) = sse.until(b"\n\n");
    assert_eq!(rest, "data: token expired\n\n");
}
