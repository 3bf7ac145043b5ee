//! WebSocket wire format for the load connections: the client handshake, built and
//! checked by hand (it is two short texts), and frames through tungstenite's public
//! frame codec. tungstenite's `WebSocket` is not used: it allocates 128 KiB per
//! connection, which would dominate the memory of 10,000 connections.

use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};
use tungstenite::Bytes;

/// The upgrade request and the `Sec-WebSocket-Accept` value the 101 must carry.
/// With `deflate`, it offers permessage-deflate as a browser does, but asks for
/// `server_no_context_takeover` (which Halley always answers anyway), so that one
/// inflater per thread reads every connection of any server that agrees.
pub fn request(path: &str, host: &str, deflate: bool) -> (Vec<u8>, String) {
    let key = tungstenite::handshake::client::generate_key();
    let accept = derive_accept_key(key.as_bytes());
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
         client_max_window_bits\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    (req.into_bytes(), accept)
}

thread_local! {
    /// One inflater per reactor thread, reset per message: the server agrees to no
    /// context takeover, so nothing is kept per connection here either.
    static INFLATER: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// The part of a compressed push the bench inflates: its `channel`, `seq` and the
/// publisher's `t` and `i` come first, so the rest need not cost the client CPU that
/// the server on the same cores would miss.
pub const INFLATED_PREFIX: usize = 256;

/// Inflates one permessage-deflate message (RFC 7692 section 7.2.2), or its first
/// `limit` bytes.
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    INFLATER.with_borrow_mut(|inflater| {
        inflater.reset(false);
        let mut out = Vec::with_capacity((payload.len() * 4 + 64).min(limit));
        for input in [payload, &[0x00, 0x00, 0xff, 0xff][..]] {
            let start = inflater.total_in();
            // Bounded: every round consumes input or grows the output.
            for _ in 0..10_000 {
                let used = (inflater.total_in() - start) as usize;
                if out.len() >= limit {
                    out.truncate(limit);
                    return Ok(out);
                }
                if used == input.len() && out.len() < out.capacity() {
                    break;
                }
                if out.len() == out.capacity() {
                    out.reserve(out.len().max(1024).min(limit - out.len()));
                }
                inflater
                    .decompress_vec(&input[used..], &mut out, flate2::FlushDecompress::Sync)
                    .map_err(|e| format!("bad compressed frame: {e}"))?;
            }
        }
        Ok(out)
    })
}

pub enum Handshake {
    /// The response head is not complete yet.
    Incomplete,
    /// A valid 101; the number of bytes of the head (frames may follow).
    Upgraded(usize),
    /// A well-formed answer other than 101.
    Status(u16),
    /// Anything else wrong with the answer.
    Bad(String),
}

/// Checks the server's answer to `request` against RFC 6455 section 4.1.
pub fn check_response(buf: &[u8], accept: &str) -> Handshake {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 8192 => {
            return Handshake::Bad("response head over 8 KiB".into())
        }
        Ok(httparse::Status::Partial) => return Handshake::Incomplete,
        Err(e) => return Handshake::Bad(format!("bad HTTP response: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Handshake::Status(code);
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Handshake::Bad("101 without Upgrade: websocket".into());
    }
    if !header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return Handshake::Bad("101 without Connection: Upgrade".into());
    }
    match header("sec-websocket-accept") {
        Some(v) if v == accept => Handshake::Upgraded(head_len),
        Some(v) => Handshake::Bad(format!("wrong Sec-WebSocket-Accept {v:?}")),
        None => Handshake::Bad("101 without Sec-WebSocket-Accept".into()),
    }
}

pub const TEXT: OpCode = OpCode::Data(Data::Text);
pub const CLOSE: OpCode = OpCode::Control(Control::Close);
pub const PONG: OpCode = OpCode::Control(Control::Pong);

/// Appends one masked (client → server) final frame to `out`.
pub fn encode(opcode: OpCode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let header = FrameHeader {
        is_final: true,
        opcode,
        mask: Some(mask),
        ..FrameHeader::default()
    };
    Frame::from_payload(header, Bytes::copy_from_slice(payload))
        .format(out)
        .expect("writing to a Vec cannot fail");
}

/// The close frame a client sends to end normally: code 1000, no reason.
pub fn encode_close(mask: [u8; 4], out: &mut Vec<u8>) {
    encode(CLOSE, &1000u16.to_be_bytes(), mask, out);
}

pub enum Decoded<'a> {
    Incomplete,
    Frame {
        opcode: OpCode,
        payload: &'a [u8],
        consumed: usize,
        /// RSV1: a permessage-deflate message.
        compressed: bool,
    },
    Error(String),
}

/// A frame header read in place: the first two bytes and the length that follows.
/// It rejects what `tungstenite`'s `FrameHeader::parse` rejects (reserved opcodes) and
/// what a server must not send (masks, fragments). tungstenite's parser goes through
/// a `Cursor` and `Read` calls, a visible share of the client's CPU at full fan-out.
pub enum Header {
    Incomplete,
    /// Header bytes, then payload bytes.
    Frame(OpCode, usize, u64),
    Error(String),
}

#[inline]
pub fn header(buf: &[u8]) -> Header {
    let (Some(&first), Some(&second)) = (buf.first(), buf.get(1)) else {
        return Header::Incomplete;
    };
    let (head, len) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Header::Incomplete,
        },
        127 => match buf.get(2..10) {
            Some(b) => (10, u64::from_be_bytes(b.try_into().expect("8 bytes"))),
            None => return Header::Incomplete,
        },
        n => (2, u64::from(n)),
    };
    let opcode = match first & 0x0F {
        1 => TEXT,
        2 => OpCode::Data(Data::Binary),
        8 => CLOSE,
        9 => OpCode::Control(Control::Ping),
        10 => PONG,
        0 => OpCode::Data(Data::Continue),
        n => return Header::Error(format!("bad frame: invalid opcode {n}")),
    };
    if second & 0x80 != 0 {
        return Header::Error("masked frame from the server".into());
    }
    if first & 0x80 == 0 {
        // The protocol promises pushes are never fragmented.
        return Header::Error("fragmented frame from the server".into());
    }
    Header::Frame(opcode, head, len)
}

/// Decodes the first server frame in `buf`.
#[inline]
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    match header(buf) {
        Header::Incomplete => Decoded::Incomplete,
        Header::Error(msg) => Decoded::Error(msg),
        Header::Frame(opcode, start, len) => {
            let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
                return Decoded::Error("frame too long".into());
            };
            if end > buf.len() {
                return Decoded::Incomplete;
            }
            Decoded::Frame {
                opcode,
                payload: &buf[start..end],
                consumed: end,
                compressed: buf[0] & 0x40 != 0,
            }
        }
    }
}

/// Bytes still missing before the first frame of `buf` is complete: at least 1 when
/// even its header is incomplete (more header bytes may then still be missing).
pub fn missing(buf: &[u8]) -> usize {
    match header(buf) {
        Header::Frame(_, head, len) => usize::try_from(len)
            .ok()
            .and_then(|l| head.checked_add(l))
            .map_or(usize::MAX, |end| end.saturating_sub(buf.len())),
        Header::Incomplete => 1,
        Header::Error(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_roundtrip() {
        let (req, accept) = request("/ws", "h", false);
        let text = String::from_utf8(req).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        let mut resp = resp.into_bytes();
        resp.extend_from_slice(&[0x81, 0x01, b'a']);
        let Handshake::Upgraded(n) = check_response(&resp, &accept) else {
            panic!("not upgraded");
        };
        match decode(&resp[n..]) {
            Decoded::Frame { payload, .. } => assert_eq!(payload, b"a"),
            _ => panic!("no frame"),
        }
        let busy = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n";
        assert!(matches!(
            check_response(busy, &accept),
            Handshake::Status(503)
        ));
    }

    /// The in-place header parse agrees with tungstenite's on every first byte, every
    /// length form and every truncation.
    #[test]
    fn header_matches_tungstenite() {
        use std::io::Cursor;
        for first in 0..=255u8 {
            for (second, ext) in [
                (5u8, vec![]),
                (0x85, vec![]),
                (126, vec![1, 0]),
                (127, vec![0, 0, 0, 0, 0, 1, 0, 0]),
            ] {
                let mut frame = vec![first, second];
                frame.extend_from_slice(&ext);
                for cut in 0..=frame.len() {
                    let buf = &frame[..cut];
                    let theirs = FrameHeader::parse(&mut Cursor::new(buf));
                    match (header(buf), theirs) {
                        (Header::Incomplete, Ok(None)) => {}
                        // tungstenite waits for the mask bytes before refusing.
                        (Header::Error(_), Ok(None)) if second & 0x80 != 0 => {}
                        (Header::Error(_), Err(_)) => {}
                        (Header::Error(_), Ok(Some((h, _)))) if h.mask.is_some() || !h.is_final => {
                        }
                        (Header::Frame(op, head, len), Ok(Some((h, l)))) => {
                            assert!(h.is_final && h.mask.is_none());
                            assert_eq!((op, head, len), (h.opcode, cut, l));
                        }
                        (_, t) => panic!("{buf:?}: differs from tungstenite's {t:?}"),
                    }
                }
            }
        }
        assert_eq!(missing(&[0x81]), 1);
        assert_eq!(missing(&[0x81, 5, b'a']), 4);
        assert_eq!(missing(&[0x81, 126, 1]), 1);
        assert_eq!(missing(&[0x81, 126, 1, 0]), 256);
    }

    #[test]
    fn deflate_is_offered_and_compressed_frames_inflate() {
        let (req, _) = request("/ws", "h", true);
        let text = String::from_utf8(req).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate"));
        // RFC 7692 section 7.2.3.1: "Hello", compressed, with RSV1.
        let frame = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        match decode(&frame) {
            Decoded::Frame {
                payload,
                compressed: true,
                ..
            } => {
                assert_eq!(inflate(payload, 100).unwrap(), b"Hello");
                assert_eq!(inflate(payload, 3).unwrap(), b"Hel");
            }
            _ => panic!("no compressed frame"),
        }
        assert!(inflate(&[0xff, 0xff, 0xff], 100).is_err());
    }

    #[test]
    fn masked_frames() {
        let mut out = Vec::new();
        encode(TEXT, b"hi", [1, 2, 3, 4], &mut out);
        assert_eq!(out, [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    }
}
