//! permessage-deflate's codec (RFC 7692 section 7.2): raw DEFLATE, one message at a
//! time, no context kept between messages. A worker owns one [`Deflater`] and one
//! [`Inflater`] for all its connections; both are reset after every message, which
//! is what `server_no_context_takeover` and `client_no_context_takeover` allow.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block a sync flush ends with; stripped on send (7.2.1) and put
/// back before inflating (7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// How much the inflater writes at a time before checking the cap.
const INFLATE_CHUNK: usize = 16 * 1024;

/// Compresses whole messages, one at a time.
pub struct Deflater {
    compress: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Default for Deflater {
    fn default() -> Deflater {
        Deflater {
            // Level 6 (zlib's default): compressed once per worker, not per
            // subscriber, so the better ratio is worth its CPU.
            compress: Compress::new(Compression::default(), false),
        }
    }
}

impl Deflater {
    /// Appends `message`'s compressed payload (without the 4-byte tail) to `out`.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        self.segment(message, out);
        debug_assert!(out[start..].ends_with(&TAIL));
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }

    /// Appends `message` as a raw DEFLATE segment ended by a sync flush, the
    /// 4-byte tail kept: such segments concatenate into one valid stream (gzip'd
    /// SSE), and each can be decoded as soon as it arrives.
    pub fn segment(&mut self, message: &[u8], out: &mut Vec<u8>) {
        self.run(message, out, FlushCompress::Sync);
    }

    /// Appends `message` as a complete raw DEFLATE stream (its last block final),
    /// for a gzip member.
    pub fn finished(&mut self, message: &[u8], out: &mut Vec<u8>) {
        self.run(message, out, FlushCompress::Finish);
    }

    fn run(&mut self, message: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
        let before_in = self.compress.total_in();
        loop {
            // Worst case is a little over the input (stored blocks) plus the flush.
            out.reserve(message.len() / 2 + 64);
            let consumed = (self.compress.total_in() - before_in) as usize;
            let status = self
                .compress
                .compress_vec(&message[consumed..], out, flush)
                .expect("deflate on a valid stream cannot fail");
            let consumed = (self.compress.total_in() - before_in) as usize;
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                // Done when all input is in and the flush did not fill the buffer.
                _ => consumed == message.len() && out.len() < out.capacity(),
            };
            if done {
                break;
            }
        }
        self.compress.reset();
    }
}

/// Why a compressed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the message cap (a zip bomb, or just too big).
    TooBig,
    /// It is not valid DEFLATE data.
    Corrupt,
}

/// Decompresses whole messages, one at a time, under a size cap.
pub struct Inflater {
    decompress: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater {
            decompress: Decompress::new(false),
        }
    }
}

impl Inflater {
    /// Inflates one message's payload (as received, without the tail). Stops as soon
    /// as the output would pass `cap` bytes, so a bomb costs at most `cap` of memory.
    pub fn inflate(&mut self, payload: &[u8], cap: usize) -> Result<Vec<u8>, InflateError> {
        let result = self.run(payload, cap);
        self.decompress.reset(false);
        result
    }

    fn run(&mut self, payload: &[u8], cap: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; INFLATE_CHUNK];
        for input in [payload, &TAIL[..]] {
            let mut used = 0;
            loop {
                let (in0, out0) = (self.decompress.total_in(), self.decompress.total_out());
                let status = self
                    .decompress
                    .decompress(&input[used..], &mut chunk, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let took = (self.decompress.total_in() - in0) as usize;
                let made = (self.decompress.total_out() - out0) as usize;
                used += took;
                if out.len() + made > cap {
                    return Err(InflateError::TooBig);
                }
                out.extend_from_slice(&chunk[..made]);
                // A final block ends the message; the tail after it is not read.
                if status == Status::StreamEnd {
                    return Ok(out);
                }
                if used == input.len() && made < chunk.len() {
                    break;
                }
                if took == 0 && made == 0 {
                    if used == input.len() {
                        break;
                    }
                    return Err(InflateError::Corrupt);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: &[u8]) -> Vec<u8> {
        let mut deflater = Deflater::default();
        let mut packed = Vec::new();
        deflater.compress(message, &mut packed);
        Inflater::default()
            .inflate(&packed, message.len())
            .expect("inflates")
    }

    #[test]
    fn messages_round_trip_and_json_shrinks() {
        let json = br#"{"channel":"news","seq":1,"data":{"title":"hello","body":"hello hello hello hello hello"}}"#;
        assert_eq!(round_trip(json), json);
        assert_eq!(round_trip(b""), b"");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(round_trip(&big), big);
        let mut packed = Vec::new();
        Deflater::default().compress(&json.repeat(10), &mut packed);
        assert!(packed.len() < json.len(), "{} bytes", packed.len());
    }

    #[test]
    fn no_context_is_kept_between_messages() {
        let mut deflater = Deflater::default();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        deflater.compress(b"the same message", &mut first);
        deflater.compress(b"the same message", &mut second);
        assert_eq!(first, second, "a reset compressor gives the same bytes");
        let mut inflater = Inflater::default();
        assert_eq!(inflater.inflate(&first, 100).unwrap(), b"the same message");
        assert_eq!(inflater.inflate(&second, 100).unwrap(), b"the same message");
    }

    #[test]
    fn the_rfc_sample_inflates() {
        // RFC 7692 section 7.2.3.1: "Hello" compressed.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(Inflater::default().inflate(&hello, 5).unwrap(), b"Hello");
        assert_eq!(
            Inflater::default().inflate(&hello, 4),
            Err(InflateError::TooBig)
        );
        // 7.2.3.3: the same with no compression (a stored block).
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(Inflater::default().inflate(&stored, 5).unwrap(), b"Hello");
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = Vec::new();
        Deflater::default().compress(&zeros, &mut bomb);
        assert!(bomb.len() < 20_000, "{} bytes", bomb.len());
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater.inflate(&bomb, 64 * 1024),
            Err(InflateError::TooBig)
        );
        // The inflater is usable again after a refusal.
        let mut ok = Vec::new();
        Deflater::default().compress(b"fine", &mut ok);
        assert_eq!(inflater.inflate(&ok, 64 * 1024).unwrap(), b"fine");
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater.inflate(&[0xff, 0xff, 0xff, 0xff], 1000),
            Err(InflateError::Corrupt)
        );
        for n in 0..=255u8 {
            let _ = inflater.inflate(&[n, n ^ 0x5a, 0x13], 1000);
        }
        assert_eq!(
            inflater
                .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5)
                .unwrap(),
            b"Hello"
        );
    }
}
