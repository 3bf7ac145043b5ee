//! The fanout publisher: `--publishers` keep-alive HTTP/1.1 connections to the API,
//! each pipelining up to `--pipeline` requests, paced to `--publish-rate` overall.
//! Publisher `p` posts messages p, p+P, p+2P, … on a global schedule (message i is
//! due at start + i / rate), each stamped with its send time. With `order` > 1 the
//! n-th message sent is message n × order mod M (a bijection, `order` being prime to
//! M): the channels are hit in a scrambled order, not round-robin. `via` chooses
//! the wire: single HTTP publishes, HTTP batches of several of the publisher's
//! messages, or pipelined RESP `PUBLISH` (`wire.rs`).

use crate::stats::{add_errors, secs, unix_us, Outcome};
use crate::target::Endpoint;
use crate::wire::{self, Message, Via};
use std::collections::VecDeque;
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
    pub via: Via,
    /// The RESP listener (used with `Via::Resp`).
    pub resp: Option<Endpoint>,
    /// The API key, sent as RESP `AUTH` first (HTTP sends `auth`).
    pub key: Option<String>,
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

/// Appends one request carrying up to `via.batch()` of this publisher's messages
/// from `*next` on (stepping by `step`); returns how many it carries.
fn request(cfg: &PubCfg, next: &mut u64, step: u64, out: &mut Vec<u8>) -> u64 {
    let mut texts = Vec::new();
    while *next < cfg.messages && texts.len() < cfg.via.batch() {
        let n = *next;
        let i = if cfg.order > 1 {
            ((u128::from(n) * u128::from(cfg.order)) % u128::from(cfg.messages)) as u64
        } else {
            n
        };
        let channel = format!("{}-{}", cfg.prefix, i % cfg.channels as u64);
        let data = format!(r#"{{"t":{},"i":{}{}}}"#, unix_us(), i, cfg.pad);
        texts.push((channel, data));
        *next += step;
    }
    if cfg.via == Via::Resp {
        for (channel, data) in &texts {
            wire::resp_command(&[b"PUBLISH", channel.as_bytes(), data.as_bytes()], out);
        }
    } else {
        let messages: Vec<Message<'_>> = texts
            .iter()
            .map(|(channel, data)| Message { channel, data })
            .collect();
        wire::http_request(&cfg.api.host, &cfg.auth, &messages, out);
    }
    texts.len() as u64
}

fn publisher(cfg: &PubCfg, first: u64, step: u64, start: Instant) -> Outcome {
    let mut out = Outcome::default();
    let mine = (first..cfg.messages).step_by(step as usize).count() as u64;
    let fail_rest = |out: &mut Outcome, done: u64, why: String| {
        out.publish_errors += mine - done;
        add_errors(&mut out.errors, [why]);
    };
    let addr = match (&cfg.via, &cfg.resp) {
        (Via::Resp, Some(resp)) => resp.addr,
        (Via::Resp, None) => {
            fail_rest(&mut out, 0, "--via resp needs --resp".into());
            return out;
        }
        (Via::Http { .. }, _) => cfg.api.addr,
    };
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            fail_rest(&mut out, 0, format!("publisher {addr}: {e}"));
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
    let (mut next, mut done) = (first, 0u64);
    // Messages carried by each request in flight, oldest first (AUTH carries none).
    let mut inflight: VecDeque<u64> = VecDeque::new();
    let mut wbuf = Vec::new();
    if let (Via::Resp, Some(key)) = (cfg.via, &cfg.key) {
        wire::resp_command(&[b"AUTH", key.as_bytes()], &mut wbuf);
        inflight.push_back(0);
    }
    let mut rbuf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut statuses = Vec::new();
    while done < mine {
        let now = Instant::now();
        if now >= hard_end {
            fail_rest(&mut out, done, "publishing did not finish in time".into());
            break;
        }
        while next < cfg.messages
            && inflight.len() < cfg.pipeline.max(1)
            && (cfg.rate <= 0.0 || due(next) <= now)
        {
            let carried = request(cfg, &mut next, step, &mut wbuf);
            inflight.push_back(carried);
        }
        if !wbuf.is_empty() {
            if out.first_publish_us == 0 {
                out.first_publish_us = unix_us();
            }
            if let Err(e) = stream.write_all(&wbuf) {
                fail_rest(&mut out, done, format!("publisher write: {e}"));
                break;
            }
            wbuf.clear();
        }
        if inflight.is_empty() {
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
        let parsed = match cfg.via {
            Via::Resp => wire::resp_replies(&rbuf, &mut statuses),
            Via::Http { .. } => wire::http_responses(&rbuf, &mut statuses),
        };
        match parsed {
            Ok(used) => {
                rbuf.drain(..used);
            }
            Err(e) => {
                fail_rest(&mut out, done, e);
                break;
            }
        }
        for &code in &statuses {
            let carried = inflight.pop_front().unwrap_or(0);
            done += carried;
            if code == 200 {
                out.published += carried;
            } else {
                out.publish_errors += carried;
                add_errors(&mut out.errors, [format!("publish answered {code}")]);
            }
        }
        out.last_publish_us = unix_us();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{padding, scrambler};

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
}
