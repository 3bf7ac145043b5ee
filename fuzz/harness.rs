//! What each fuzz target does with one input, shared by the cargo-fuzz targets
//! (fuzz_targets/*.rs, nightly) and the regression test (tests/fuzz_regressions.rs,
//! stable), so a kept input is replayed exactly as it was found. Each checks the
//! parser's answer is sane; a panic or a failed assertion is a finding.
#![allow(dead_code)] // each fuzz target uses one of these

use halley::api::request::{self, ApiParsed, ApiRules};
use halley::proto::command;
use halley::proto::http::{self, Parsed, Routes, Transports, MAX_HEAD};
use halley::proto::ws::{self, Decoded, Event, Fragments};

/// The client listener's request parser and router; the first byte switches the
/// routes on and off.
pub fn client_request(data: &[u8]) {
    let Some((&switches, buf)) = data.split_first() else {
        return;
    };
    let routes = Routes {
        echo: switches & 1 != 0,
        demo: switches & 2 != 0,
        transports: Transports {
            ws: switches & 4 == 0,
            sse: switches & 8 == 0,
            poll: switches & 16 == 0,
        },
        max_subscriptions: 1 + (switches >> 5) as usize * 8,
    };
    match http::parse_client_request(buf, routes) {
        Parsed::Partial => assert!(buf.len() < MAX_HEAD, "partial past the head limit"),
        Parsed::Done { head_len, .. } => assert!(head_len <= buf.len(), "head_len past the input"),
    }
}

/// The publish API's parser over a pipelined stream; the first byte says whether a
/// key is required.
pub fn api_request(data: &[u8]) {
    const MAX_BODY: usize = 4096;
    let Some((&knob, mut rest)) = data.split_first() else {
        return;
    };
    let rules = ApiRules {
        max_body: MAX_BODY,
        api_key: (knob & 1 != 0).then_some(&b"k"[..]),
    };
    for _ in 0..1000 {
        match request::parse(rest, rules) {
            ApiParsed::Partial { wants, .. } => {
                assert!(wants > rest.len(), "partial with enough bytes");
                assert!(rest.len() < MAX_HEAD + MAX_BODY, "partial past head + body");
                return;
            }
            ApiParsed::Done {
                consumed,
                keep_alive,
                ..
            } => {
                assert!(
                    consumed > 0 && consumed <= rest.len(),
                    "consumed {consumed}"
                );
                if !keep_alive.keeps() {
                    return;
                }
                rest = &rest[consumed..];
            }
        }
    }
}

/// The WebSocket decoder over a whole client stream fed in pieces, fragment state
/// carried across calls; the first byte picks the size cap and the piece size. The
/// stream is decoded twice: as a plain connection, and as one that agreed to
/// permessage-deflate (RSV1 messages inflated under the cap).
pub fn ws_frames(data: &[u8]) {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let max_message = 125 + (knobs as usize & 0x0F) * 1000;
    let piece = 1 + (knobs as usize >> 4) * 7;
    ws_stream(stream, max_message, piece, None);
    let mut inflater = halley::proto::deflate::Inflater::default();
    ws_stream(stream, max_message, piece, Some(&mut inflater));
}

fn ws_stream(
    stream: &[u8],
    max_message: usize,
    piece: usize,
    mut inflater: Option<&mut halley::proto::deflate::Inflater>,
) {
    let mut fragments: Option<Fragments> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    while fed < stream.len() {
        let end = (fed + piece).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            match ws::decode_with(
                &mut buf,
                &mut fragments,
                max_message,
                inflater.as_deref_mut(),
            ) {
                Ok(Decoded::Incomplete) => break,
                Ok(Decoded::Frame { consumed, event }) => {
                    if let Some(Event::Message { payload, text }) = &event {
                        assert!(payload.len() <= max_message, "message over the cap");
                        if *text {
                            assert!(std::str::from_utf8(payload).is_ok(), "bad UTF-8 passed");
                        }
                    }
                    assert!(
                        consumed >= 2 && consumed <= buf.len(),
                        "consumed {consumed}"
                    );
                    buf.drain(..consumed);
                }
                Err(violation) => {
                    assert!(
                        matches!(violation.code, 1002 | 1007 | 1009),
                        "{violation:?}"
                    );
                    assert!(!violation.reason.is_empty());
                    return;
                }
            }
        }
    }
}

/// The client command parser: a command, or a refusal with a reason.
pub fn command(data: &[u8]) {
    if let Err(reason) = command::parse(data) {
        assert!(!reason.is_empty(), "a refusal without a reason");
    }
}

/// The RESP listener's parser and commands over a pipelined stream, one session
/// carried across commands, as `resp::server` runs them; the first byte picks the
/// argument and size caps and whether a key is required. Each command's reply must
/// be one RESP value, a publish must carry JSON text, and a partial command must
/// ask for more than it has (else the server's loop would spin) while holding no
/// more than the caps allow (else a client could make it buffer without bound).
pub fn resp(data: &[u8]) {
    use halley::resp::command::{self as resp_command, Action, Rules, Session};
    use halley::resp::parse::{self as resp_parse, Limits, Parsed as RespParsed};
    let Some((&knobs, mut rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_args: 1 + (knobs as usize & 0x07) * 4,
        max_command: 16 + (knobs as usize >> 3 & 0x0F) * 64,
    };
    let rules = Rules {
        api_key: (knobs & 0x80 != 0).then_some(&b"k"[..]),
        max_message: limits.max_command,
        uptime_s: 1,
        connected: 1,
    };
    // A count line is `*` or `$`, at most 32 bytes of digits, and CRLF.
    let most_buffered = 35 + limits.max_args * (35 + 2) + limits.max_command;
    let mut session = Session::new(1);
    for _ in 0..1000 {
        match resp_parse::parse(rest, limits) {
            RespParsed::Partial { wants } => {
                assert!(
                    wants > rest.len(),
                    "partial wants {wants} with {} held",
                    rest.len()
                );
                assert!(
                    rest.len() <= most_buffered,
                    "partial holding {}",
                    rest.len()
                );
                return;
            }
            RespParsed::Command { consumed, args } => {
                assert!(
                    consumed > 0 && consumed <= rest.len(),
                    "consumed {consumed}"
                );
                assert!(args.len() <= limits.max_args, "{} args", args.len());
                rest = &rest[consumed..];
                if args.is_empty() {
                    continue;
                }
                let mut out = Vec::new();
                match resp_command::execute(&mut session, &args, rules, &mut out) {
                    Action::Publish { channel, data } => {
                        assert!(out.is_empty(), "a publish replied before publishing");
                        assert!(!channel.is_empty());
                        // JSON text by its grammar, as the API checks it: a number past
                        // f64's range (`1e999`) is JSON, which `serde_json::Value` refuses.
                        assert!(
                            serde_json::from_str::<&serde_json::value::RawValue>(&data).is_ok(),
                            "a publish that is not JSON: {data:?}"
                        );
                    }
                    Action::Replied => assert!(is_one_reply(&out), "reply {out:?}"),
                    Action::Quit => return,
                }
            }
            RespParsed::Invalid { reason } => {
                assert!(!reason.is_empty(), "a protocol error without a reason");
                return;
            }
        }
    }
}

/// `out` is exactly one RESP2/RESP3 value.
fn is_one_reply(out: &[u8]) -> bool {
    fn value_len(buf: &[u8]) -> Option<usize> {
        let end = buf.windows(2).position(|w| w == b"\r\n")?;
        let head = std::str::from_utf8(buf.get(1..end)?).ok()?;
        let mut pos = end + 2;
        match buf.first()? {
            b'+' | b'-' | b':' | b'_' => Some(pos),
            b'$' if head == "-1" => Some(pos),
            b'$' => {
                let total = pos + head.parse::<usize>().ok()? + 2;
                (buf.get(total - 2..total)? == b"\r\n").then_some(total)
            }
            b'*' | b'%' => {
                let n: usize = head.parse().ok()?;
                for _ in 0..if buf[0] == b'%' { 2 * n } else { n } {
                    pos += value_len(buf.get(pos..)?)?;
                }
                Some(pos)
            }
            _ => None,
        }
    }
    value_len(out) == Some(out.len())
}

/// Connection tokens: the bytes as a token, then as the claims of a token signed
/// with the server's secret, so the claims parser is reached past the signature.
/// A token is either refused with a reason or gives a session the server can hold.
pub fn token(data: &[u8]) {
    use halley::auth::verify::{Verifier, MAX_SUB_LEN};
    const NOW: u64 = 1_800_000_000;
    const SECRET: &[u8] = b"fuzz-secret";
    let verifier = Verifier::hs256(SECRET).expect("a secret");
    let check = |token: &str| match verifier.verify(token, NOW) {
        Ok(verified) => {
            assert!(!verified.sub.is_empty() && verified.sub.len() <= MAX_SUB_LEN);
            assert!(verified.exp > NOW, "an expired token passed");
        }
        Err(reason) => assert!(!reason.is_empty(), "a refusal without a reason"),
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    if let Ok(claims) = serde_json::value::RawValue::from_string(text.to_owned()) {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET).expect("an HS256 key");
        if let Ok(signed) = jsonwebtoken::encode(&header, &claims, &key) {
            check(&signed);
        }
    }
}
