//! WebSocket wire format for the load connections: the client handshake, built and
//! checked by hand (it is two short texts), and frames through tungstenite's public
//! frame codec. tungstenite's `WebSocket` is not used: it allocates 128 KiB per
//! connection, which would dominate the memory of 10,000 connections.

use std::io::Cursor;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};
use tungstenite::Bytes;

/// The upgrade request and the `Sec-WebSocket-Accept` value the 101 must carry.
pub fn request(path: &str, host: &str) -> (Vec<u8>, String) {
    let key = tungstenite::handshake::client::generate_key();
    let accept = derive_accept_key(key.as_bytes());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    (req.into_bytes(), accept)
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
    },
    Error(String),
}

/// Decodes the first server frame in `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let mut cur = Cursor::new(buf);
    match FrameHeader::parse(&mut cur) {
        Ok(None) => Decoded::Incomplete,
        Err(e) => Decoded::Error(format!("bad frame: {e}")),
        Ok(Some((header, len))) => {
            if header.mask.is_some() {
                return Decoded::Error("masked frame from the server".into());
            }
            if !header.is_final {
                // The protocol promises pushes are never fragmented.
                return Decoded::Error("fragmented frame from the server".into());
            }
            let start = cur.position() as usize;
            let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
                return Decoded::Error("frame too long".into());
            };
            if end > buf.len() {
                return Decoded::Incomplete;
            }
            Decoded::Frame {
                opcode: header.opcode,
                payload: &buf[start..end],
                consumed: end,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_roundtrip() {
        let (req, accept) = request("/ws", "h");
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

    #[test]
    fn masked_frames() {
        let mut out = Vec::new();
        encode(TEXT, b"hi", [1, 2, 3, 4], &mut out);
        assert_eq!(out, [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    }
}
