//! The fanout publisher: `--publishers` keep-alive HTTP/1.1 connections to the API,
//! each pipelining up to `--pipeline` requests, paced to `--publish-rate` overall.
//! Publisher `p` posts messages p, p+P, p+2P, … on a global schedule (message i is
//! due at start + i / rate), each stamped with its send time. With `order` > 1 the
//! n-th message sent is message n × order mod M (a bijection, `order` being prime to
//! M): the channels are hit in a scrambled order, not round-robin.

use crate::stats::{add_errors, secs, unix_us, Outcome};
use crate::target::Endpoint;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct PubCfg {
    pub api: Endpoint,
    /// `Authorization: Bearer KEY\r\n` when the API needs a key, else empty.
    pub auth: String,
    pub prefix: String,
    pub channels: usize,
    pub messages: u64,
    /// Multiplier that scrambles the order of sending (1 = in order of i).
    pub order: u64,
    /// Messages per second overall; 0 = as fast as the API answers.
    pub rate: f64,
    pub publishers: usize,
    pub pipeline: usize,
    /// JSON members appended after `"i":I` to reach --payload-size (or empty).
    pub pad: String,
}

/// `,"items":[...]` of catalogue-like objects, so that `{"t":T,"i":I}` plus it is
/// about `size` bytes of ordinary JSON (what compression is measured on).
pub fn padding(size: usize) -> String {
    let mut items = Vec::new();
    let mut len = 40;
    let mut k = 0;
    while len < size {
        let item = format!(
            r#"{{"id":{k},"sku":"SKU-{:05}","name":"Item {k}","price":{}.{:02},"in_stock":{}}}"#,
            k * 7919 % 100_000,
            k * 37 % 500,
            k * 13 % 100,
            k % 3 != 0
        );
        len += item.len() + 1;
        items.push(item);
        k += 1;
    }
    if items.is_empty() {
        return String::new();
    }
    format!(r#","items":[{}]"#, items.join(","))
}

/// Posts every message; returns published / publish_errors and the time span.
pub fn publish(cfg: &PubCfg) -> Outcome {
    let start = Instant::now();
    let publishers = cfg.publishers.clamp(1, cfg.messages.max(1) as usize);
    let handles: Vec<_> = (0..publishers)
        .map(|p| {
            let cfg = cfg.clone();
            thread::spawn(move || publisher(&cfg, p as u64, publishers as u64, start))
        })
        .collect();
    let mut out = Outcome {
        messages: cfg.messages,
        ..Outcome::default()
    };
    for h in handles {
        match h.join() {
            Ok(o) => out.merge(&o),
            Err(_) => out.errors.push("a publisher thread panicked".into()),
        }
    }
    out
}

/// A multiplier prime to `m` near m × 0.618, so that consecutive sends land far
/// apart (1 for tiny `m`).
pub fn scrambler(m: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut a = (m as f64 * 0.618) as u64 | 1;
    // At most a few dozen steps: primes are dense.
    while a > 1 && gcd(a, m) != 1 {
        a += 2;
    }
    a.clamp(1, m.max(1))
}

fn request(cfg: &PubCfg, n: u64, out: &mut Vec<u8>) {
    let i = if cfg.order > 1 {
        ((u128::from(n) * u128::from(cfg.order)) % u128::from(cfg.messages)) as u64
    } else {
        n
    };
    let body = format!(
        r#"{{"channel":"{}-{}","data":{{"t":{},"i":{}{}}}}}"#,
        cfg.prefix,
        i % cfg.channels as u64,
        unix_us(),
        i,
        cfg.pad
    );
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{}\r\n",
        cfg.api.host,
        body.len(),
        cfg.auth
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

/// Parses complete responses from the front of `buf`: (bytes used, statuses).
fn responses(buf: &[u8], statuses: &mut Vec<u16>) -> Result<usize, String> {
    let mut pos = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(pos),
            Err(e) => return Err(format!("bad API response: {e}")),
        };
        let len = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        if buf.len() - pos < head + len {
            return Ok(pos);
        }
        statuses.push(resp.code.unwrap_or(0));
        pos += head + len;
    }
}

fn publisher(cfg: &PubCfg, first: u64, step: u64, start: Instant) -> Outcome {
    let mut out = Outcome::default();
    let mine = (first..cfg.messages).step_by(step as usize).count() as u64;
    let fail_rest = |out: &mut Outcome, done: u64, why: String| {
        out.publish_errors += mine - done;
        add_errors(&mut out.errors, [why]);
    };
    let mut stream = match TcpStream::connect_timeout(&cfg.api.addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            fail_rest(&mut out, 0, format!("API {}: {e}", cfg.api.addr));
            return out;
        }
    };
    let _ = stream.set_nodelay(true);
    // Only consulted when a rate is set.
    let due = |i: u64| start + secs(i as f64 / cfg.rate);
    let planned = if cfg.rate > 0.0 {
        cfg.messages as f64 / cfg.rate
    } else {
        0.0
    };
    let hard_end = start + secs(planned * 2.0 + 60.0);
    let (mut next, mut inflight, mut done) = (first, 0u64, 0u64);
    let mut wbuf = Vec::new();
    let mut rbuf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut statuses = Vec::new();
    while done < mine {
        let now = Instant::now();
        if now >= hard_end {
            fail_rest(&mut out, done, "publishing did not finish in time".into());
            break;
        }
        wbuf.clear();
        while next < cfg.messages
            && inflight < cfg.pipeline.max(1) as u64
            && (cfg.rate <= 0.0 || due(next) <= now)
        {
            request(cfg, next, &mut wbuf);
            next += step;
            inflight += 1;
        }
        if !wbuf.is_empty() {
            if out.first_publish_us == 0 {
                out.first_publish_us = unix_us();
            }
            if let Err(e) = stream.write_all(&wbuf) {
                fail_rest(&mut out, done, format!("API write: {e}"));
                break;
            }
        }
        if inflight == 0 {
            if cfg.rate > 0.0 && next < cfg.messages {
                // Only the rate holds us back: sleep until the next message is due.
                thread::sleep(due(next).saturating_duration_since(Instant::now()));
            }
            continue;
        }
        // Wake up in time for the next due message even while answers are pending.
        let wait = if cfg.rate > 0.0 && next < cfg.messages {
            due(next)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        } else {
            Duration::from_secs(1)
        };
        let _ = stream.set_read_timeout(Some(wait));
        match stream.read(&mut chunk) {
            Ok(0) => {
                fail_rest(&mut out, done, "API closed the connection".into());
                break;
            }
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                fail_rest(&mut out, done, format!("API read: {e}"));
                break;
            }
        }
        statuses.clear();
        match responses(&rbuf, &mut statuses) {
            Ok(used) => {
                rbuf.drain(..used);
            }
            Err(e) => {
                fail_rest(&mut out, done, e);
                break;
            }
        }
        for &code in &statuses {
            inflight -= 1;
            done += 1;
            if code == 200 {
                out.published += 1;
            } else {
                out.publish_errors += 1;
                add_errors(&mut out.errors, [format!("publish answered HTTP {code}")]);
            }
        }
        out.last_publish_us = unix_us();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{padding, responses, scrambler};

    #[test]
    fn the_scrambled_order_sends_every_message_once() {
        for m in [1u64, 2, 10, 1000, 200_000] {
            let a = scrambler(m);
            let mut seen = vec![false; m as usize];
            for n in 0..m {
                seen[((n * a) % m) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "m {m}, order {a}");
        }
        assert!(scrambler(200_000) > 1000);
    }

    #[test]
    fn padding_reaches_the_payload_size_as_json() {
        assert_eq!(padding(0), "");
        let data = format!(r#"{{"t":1764590000000000,"i":12345{}}}"#, padding(1024));
        assert!((1024..1200).contains(&data.len()), "{} bytes", data.len());
        let v: serde_json::Value = serde_json::from_str(&data).expect("JSON");
        assert_eq!(v["i"], 12345);
    }

    #[test]
    fn pipelined_responses() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 400 Bad\r\nContent-Length: 3\r\n\r\nab";
        let mut st = Vec::new();
        let used = responses(two, &mut st).unwrap();
        assert_eq!(st, [200]);
        assert_eq!(used, 40);
    }
}
