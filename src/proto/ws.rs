//! RFC 6455 framing, server side: decode client frames, reassemble fragmented
//! messages, encode unmasked server frames.
//!
//! The header codec is tungstenite's (`FrameHeader`); this module adds the server's
//! rules (masking required, control-frame limits, size cap, fragmentation, UTF-8)
//! without tungstenite's per-connection buffers. With permessage-deflate negotiated,
//! RSV1 marks a compressed message (RFC 7692 section 6); it is inflated by the
//! worker's one inflater, the size cap applying to the inflated size.

use std::borrow::Cow;
use std::io::Cursor;

use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::deflate::{InflateError, Inflater};

/// Why a connection must be failed, as the close code and reason sent to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn protocol_error(reason: &'static str) -> Violation {
    Violation { code: 1002, reason }
}
const INVALID_UTF8: Violation = Violation {
    code: 1007,
    reason: "invalid UTF-8",
};
const TOO_BIG: Violation = Violation {
    code: 1009,
    reason: "message too big",
};
/// A compressed message past the cap once inflated (a zip bomb, say).
pub const INFLATES_TOO_BIG: Violation = Violation {
    code: 1009,
    reason: "message too big once inflated",
};
/// A compressed message that is not valid DEFLATE data.
pub const CORRUPT_DEFLATE: Violation = protocol_error("invalid compressed data");

/// A text or binary message being reassembled from fragments. Lives only while a
/// fragmented message is in flight.
#[derive(Debug)]
pub struct Fragments {
    text: bool,
    /// RSV1 on the first frame: `payload` is compressed, inflated at the end.
    compressed: bool,
    payload: Vec<u8>,
    /// Bytes of `payload` already known to be valid UTF-8, so each fragment is
    /// checked once and an invalid sequence fails fast.
    utf8_checked: usize,
}

/// One complete event decoded from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Message {
        text: bool,
        payload: Cow<'a, [u8]>,
    },
    Ping(&'a [u8]),
    Pong,
    /// The peer's close: its code (None when the frame had no payload).
    Close(Option<u16>),
}

/// Outcome of decoding from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The buffer does not yet hold a whole frame.
    Incomplete,
    /// `consumed` bytes were used; `event` is None when a non-final fragment was absorbed.
    Frame {
        consumed: usize,
        event: Option<Event<'a>>,
    },
}

/// Decodes the first frame in `buf` (unmasking it in place) under the server's rules.
/// `fragments` carries an unfinished fragmented message between calls.
pub fn decode<'a>(
    buf: &'a mut [u8],
    fragments: &mut Option<Fragments>,
    max_message: usize,
) -> Result<Decoded<'a>, Violation> {
    decode_with(buf, fragments, max_message, None)
}

/// [`decode`] for a connection that negotiated permessage-deflate when `inflater` is
/// given: RSV1 on a message's first frame is then allowed and the message inflated.
pub fn decode_with<'a>(
    buf: &'a mut [u8],
    fragments: &mut Option<Fragments>,
    max_message: usize,
    inflater: Option<&mut Inflater>,
) -> Result<Decoded<'a>, Violation> {
    let mut cursor = Cursor::new(&*buf);
    let (header, length) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(Decoded::Incomplete),
        Err(_) => return Err(protocol_error("reserved opcode")),
    };
    let header_len = cursor.position() as usize;
    if header.rsv2 || header.rsv3 || (header.rsv1 && inflater.is_none()) {
        return Err(protocol_error("reserved bits set"));
    }
    // RSV1 belongs on the first frame of a data message only (RFC 7692 section 6.1).
    let compressed = header.rsv1;
    if compressed && !matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary)) {
        return Err(protocol_error("RSV1 on a control or continuation frame"));
    }
    let Some(mask) = header.mask else {
        return Err(protocol_error("unmasked client frame"));
    };
    let is_control = matches!(header.opcode, OpCode::Control(_));
    if is_control && !header.is_final {
        return Err(protocol_error("fragmented control frame"));
    }
    if is_control && length > 125 {
        return Err(protocol_error("control frame too long"));
    }
    let already = fragments.as_ref().map_or(0, |f| f.payload.len());
    if length > (max_message - already.min(max_message)) as u64 {
        return Err(TOO_BIG);
    }
    let length = length as usize;
    let consumed = header_len + length;
    if buf.len() < consumed {
        return Ok(Decoded::Incomplete);
    }
    let payload = &mut buf[header_len..consumed];
    unmask(payload, mask);
    let payload: &'a [u8] = payload;
    let event = match header.opcode {
        OpCode::Control(Control::Ping) => Some(Event::Ping(payload)),
        OpCode::Control(Control::Pong) => Some(Event::Pong),
        OpCode::Control(Control::Close) => Some(Event::Close(close_code(payload)?)),
        OpCode::Data(Data::Text) | OpCode::Data(Data::Binary) => {
            if fragments.is_some() {
                return Err(protocol_error("new message inside a fragmented one"));
            }
            let text = header.opcode == OpCode::Data(Data::Text);
            if let (true, true, Some(inflater)) = (header.is_final, compressed, inflater) {
                Some(inflated(inflater, text, payload, max_message)?)
            } else if header.is_final {
                if text && std::str::from_utf8(payload).is_err() {
                    return Err(INVALID_UTF8);
                }
                Some(Event::Message {
                    text,
                    payload: Cow::Borrowed(payload),
                })
            } else {
                let mut started = Fragments {
                    text,
                    compressed,
                    payload: payload.to_vec(),
                    utf8_checked: 0,
                };
                started.check_utf8(false)?;
                *fragments = Some(started);
                None
            }
        }
        OpCode::Data(Data::Continue) => {
            let Some(open) = fragments.as_mut() else {
                return Err(protocol_error("continuation without a message"));
            };
            open.payload.extend_from_slice(payload);
            open.check_utf8(header.is_final)?;
            if header.is_final {
                let done = fragments.take().expect("checked above");
                if done.compressed {
                    // Only a connection with an inflater can have started one.
                    let Some(inflater) = inflater else {
                        return Err(protocol_error("reserved bits set"));
                    };
                    return Ok(Decoded::Frame {
                        consumed,
                        event: Some(inflated(inflater, done.text, &done.payload, max_message)?),
                    });
                }
                Some(Event::Message {
                    text: done.text,
                    payload: Cow::Owned(done.payload),
                })
            } else {
                None
            }
        }
        OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
            return Err(protocol_error("reserved opcode"))
        }
    };
    Ok(Decoded::Frame { consumed, event })
}

/// Inflates a whole compressed message under the cap and checks its UTF-8.
fn inflated<'a>(
    inflater: &mut Inflater,
    text: bool,
    payload: &[u8],
    max_message: usize,
) -> Result<Event<'a>, Violation> {
    let message = inflater
        .inflate(payload, max_message)
        .map_err(|e| match e {
            InflateError::TooBig => INFLATES_TOO_BIG,
            InflateError::Corrupt => CORRUPT_DEFLATE,
        })?;
    if text && std::str::from_utf8(&message).is_err() {
        return Err(INVALID_UTF8);
    }
    Ok(Event::Message {
        text,
        payload: Cow::Owned(message),
    })
}

impl Fragments {
    /// Validates the new bytes; an incomplete trailing sequence is fine until the end.
    /// A compressed message is checked once inflated.
    fn check_utf8(&mut self, last: bool) -> Result<(), Violation> {
        if !self.text || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.payload.len(),
            Err(e) if e.error_len().is_none() && !last => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(INVALID_UTF8),
        }
        Ok(())
    }
}

/// Parses a close frame's payload: empty, or a valid code and a UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(protocol_error("close frame of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(protocol_error("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(INVALID_UTF8);
            }
            Ok(Some(code))
        }
    }
}

/// XORs `payload` with the 4-byte mask, eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Server frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Kind {
    fn opcode(self) -> OpCode {
        match self {
            Kind::Text => OpCode::Data(Data::Text),
            Kind::Binary => OpCode::Data(Data::Binary),
            Kind::Close => OpCode::Control(Control::Close),
            Kind::Ping => OpCode::Control(Control::Ping),
            Kind::Pong => OpCode::Control(Control::Pong),
        }
    }
}

/// Appends one final, unmasked frame to `out`. Server messages are never fragmented.
pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(kind, false, payload, out);
}

/// Appends one final data frame whose payload is already compressed (RSV1 set).
pub fn encode_compressed(kind: Kind, compressed: &[u8], out: &mut Vec<u8>) {
    encode_frame(kind, true, compressed, out);
}

fn encode_frame(kind: Kind, rsv1: bool, payload: &[u8], out: &mut Vec<u8>) {
    let header = FrameHeader {
        opcode: kind.opcode(),
        rsv1,
        ..FrameHeader::default()
    };
    out.reserve(header.len(payload.len() as u64) + payload.len());
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
}

/// One frame as a fresh buffer.
pub fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(kind, payload, &mut out);
    out
}

/// A close frame with a code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    frame(Kind::Close, &payload)
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
