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
