//! gzip (RFC 1952) for the HTTP transports, made with the worker's one
//! [`Deflater`], which keeps no context between uses: nothing is kept per connection.
//!
//! - A long-poll answer is one complete member: header, raw DEFLATE, CRC-32, ISIZE.
//! - An SSE stream is one member that never ends: the header once after the
//!   response head, then every write is a raw DEFLATE segment of its own, ended by a
//!   sync flush (`00 00 ff ff` kept), so the browser decodes each event as it
//!   arrives and the segments concatenate into one valid DEFLATE stream. The stream
//!   ends by closing; no trailer is ever sent.

use flate2::Crc;

use super::deflate::Deflater;

/// A member's header: no name, no mtime, "unknown" OS.
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// The SSE heartbeat `:\n\n` as a sync-flushed segment (fixed Huffman), the same
/// for every stream, so it costs no compression (tested below).
pub const HEARTBEAT: &[u8] = &[0xb2, 0xe2, 0xe2, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff];

/// The largest stored block DEFLATE allows.
const MAX_STORED: usize = 0xffff;

/// What a `/sse` or `/poll` answer's head says about its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `--compression off`: the encoding never depends on the request.
    Fixed,
    /// Plain, though another request might have been answered in gzip.
    Identity,
    /// The body is gzip.
    Gzip,
}

impl Coding {
    /// The plain coding of a server with or without compression.
    pub fn plain(compression: bool) -> Coding {
        if compression {
            Coding::Identity
        } else {
            Coding::Fixed
        }
    }

    /// The head's lines for this coding. `Vary` tells caches that another
    /// `Accept-Encoding` may get other bytes.
    pub fn header_lines(self) -> &'static str {
        match self {
            Coding::Fixed => "",
            Coding::Identity => "Vary: Accept-Encoding\r\n",
            Coding::Gzip => "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
        }
    }
}

/// Appends `body` as one complete gzip member.
pub fn member(deflater: &mut Deflater, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&HEADER);
    deflater.finished(body, out);
    let mut crc = Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
}

/// Appends `data` as one segment of a gzip'd stream: compressed when it has at
/// least `min_size` bytes, else in stored blocks (no CPU spent on a few bytes).
/// Either way it ends byte-aligned after a complete block, so segments concatenate.
/// Returns how many times it compressed (0 or 1), for the counter.
pub fn segment(deflater: &mut Deflater, data: &[u8], min_size: usize, out: &mut Vec<u8>) -> u64 {
    if data.len() >= min_size {
        deflater.segment(data, out);
        1
    } else {
        stored(data, out);
        0
    }
}

/// Appends `data` in non-final stored blocks. Starts byte-aligned, as every
/// segment ends so.
pub fn stored(data: &[u8], out: &mut Vec<u8>) {
    let mut chunks = data.chunks(MAX_STORED).peekable();
    if chunks.peek().is_none() {
        return;
    }
    for chunk in chunks {
        let len = chunk.len() as u16;
        // BFINAL 0, BTYPE 00, then padding to the byte.
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::{GzDecoder, MultiGzDecoder};
    use flate2::{Decompress, FlushDecompress};

    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn a_member_is_valid_gzip_and_json_shrinks() {
        let body = br#"{"messages":[{"channel":"a","seq":1,"data":"hello hello hello hello"}],"last_seq":1,"epoch":"k3","recovered":true}"#;
        let mut out = Vec::new();
        member(&mut Deflater::default(), body, &mut out);
        assert_eq!(out[..10], HEADER);
        assert_eq!(gunzip(&out), body);
        assert!(out.len() < body.len(), "{} bytes", out.len());
        // The trailer: CRC-32 and the length, little-endian.
        let n = out.len();
        assert_eq!(out[n - 4..], (body.len() as u32).to_le_bytes());
        let mut crc = Crc::new();
        crc.update(body);
        assert_eq!(out[n - 8..n - 4], crc.sum().to_le_bytes());
        // An empty body is a valid member too, and the compressor keeps no context.
        let mut empty = Vec::new();
        member(&mut Deflater::default(), b"", &mut empty);
        assert_eq!(gunzip(&empty), b"");
        let mut again = Vec::new();
        let mut deflater = Deflater::default();
        member(&mut deflater, body, &mut again);
        member(&mut deflater, body, &mut again);
        assert_eq!(again[..again.len() / 2], out[..]);
    }

    /// Inflates a stream of segments after the gzip header, as a browser does:
    /// everything received so far, with no trailer ever.
    fn inflate_stream(segments: &[u8]) -> Vec<u8> {
        let mut inflater = Decompress::new(false);
        let mut out = Vec::with_capacity(1 << 20);
        inflater
            .decompress_vec(segments, &mut out, FlushDecompress::Sync)
            .expect("valid deflate");
        assert_eq!(inflater.total_in() as usize, segments.len(), "all consumed");
        out
    }

    #[test]
    fn segments_concatenate_into_one_stream() {
        let mut deflater = Deflater::default();
        let mut stream = Vec::new();
        let big = "id: 1\ndata: {\"channel\":\"a\",\"seq\":1,\"data\":\"x\"}\n\n".repeat(20);
        segment(&mut deflater, b"retry: 1000\n\n", 256, &mut stream);
        segment(&mut deflater, big.as_bytes(), 256, &mut stream);
        stream.extend_from_slice(HEARTBEAT);
        segment(&mut deflater, big.as_bytes(), 0, &mut stream);
        segment(&mut deflater, b"", 256, &mut stream);
        let expected = format!("retry: 1000\n\n{big}:\n\n{big}");
        assert_eq!(inflate_stream(&stream), expected.as_bytes());
        // A GzDecoder reads the same, once the stream is ended for it.
        let mut whole = HEADER.to_vec();
        whole.extend_from_slice(&stream);
        whole.extend_from_slice(&[0x03, 0x00]); // a final empty fixed block
        let mut crc = Crc::new();
        crc.update(expected.as_bytes());
        whole.extend_from_slice(&crc.sum().to_le_bytes());
        whole.extend_from_slice(&(expected.len() as u32).to_le_bytes());
        let mut read = Vec::new();
        GzDecoder::new(&whole[..]).read_to_end(&mut read).unwrap();
        assert_eq!(read, expected.as_bytes());
    }

    #[test]
    fn each_segment_decodes_as_soon_as_it_arrives() {
        let mut deflater = Deflater::default();
        let mut inflater = Decompress::new(false);
        let event =
            "id: 7\ndata: {\"channel\":\"a\",\"seq\":7,\"data\":[1,2,3,4,5,6,7,8]}\n\n".repeat(8);
        for _ in 0..3 {
            let mut one = Vec::new();
            segment(&mut deflater, event.as_bytes(), 16, &mut one);
            assert!(one.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(event.len() + 64);
            inflater
                .decompress_vec(&one, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, event.as_bytes(), "all of it, with nothing more read");
        }
    }

    #[test]
    fn the_heartbeat_constant_is_what_the_compressor_makes() {
        let mut made = Vec::new();
        Deflater::default().segment(b":\n\n", &mut made);
        assert_eq!(made, HEARTBEAT);
        assert_eq!(inflate_stream(HEARTBEAT), b":\n\n");
    }

    #[test]
    fn stored_blocks_carry_small_and_large_data() {
        let mut out = Vec::new();
        stored(b"Hello", &mut out);
        assert_eq!(
            out,
            [0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o']
        );
        let large: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        stored(&large, &mut out);
        assert_eq!(out.len(), large.len() + 3 * 5);
        assert_eq!(inflate_stream(&out), large);
        let mut none = Vec::new();
        stored(b"", &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn codings_name_themselves_in_the_head() {
        assert_eq!(Coding::plain(false), Coding::Fixed);
        assert_eq!(Coding::plain(true), Coding::Identity);
        assert_eq!(Coding::Fixed.header_lines(), "");
        assert_eq!(Coding::Identity.header_lines(), "Vary: Accept-Encoding\r\n");
        assert!(Coding::Gzip
            .header_lines()
            .starts_with("Content-Encoding: gzip\r\n"));
    }
}
