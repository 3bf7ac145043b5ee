//! RESP replies, appended to a connection's output. RESP2 and RESP3 differ here
//! only in nulls and maps: a RESP2 map is a flat array of keys and values.

use std::io::Write;

/// The protocol a connection speaks, chosen by `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Resp2,
    Resp3,
}

pub fn simple(out: &mut Vec<u8>, text: &str) {
    line(out, b'+', text);
}

/// `-CODE message`: the text is the whole line, its first word the error code.
pub fn error(out: &mut Vec<u8>, text: &str) {
    line(out, b'-', text);
}

/// One line, with any control byte (a client's CR or LF in a quoted name) blanked,
/// so a reply can never split into two.
fn line(out: &mut Vec<u8>, marker: u8, text: &str) {
    out.push(marker);
    out.extend(text.bytes().map(|b| if b < 0x20 { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

pub fn integer(out: &mut Vec<u8>, n: i64) {
    let _ = write!(out, ":{n}\r\n");
}

pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = write!(out, "${}\r\n", bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

pub fn null(out: &mut Vec<u8>, proto: Proto) {
    out.extend_from_slice(match proto {
        Proto::Resp2 => b"$-1\r\n".as_slice(),
        Proto::Resp3 => b"_\r\n",
    });
}

pub fn array(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "*{len}\r\n");
}

/// A map of `pairs` entries; its keys and values follow.
pub fn map(out: &mut Vec<u8>, pairs: usize, proto: Proto) {
    let _ = match proto {
        Proto::Resp2 => write!(out, "*{}\r\n", pairs * 2),
        Proto::Resp3 => write!(out, "%{pairs}\r\n"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn each_type_is_encoded_byte_for_byte() {
        assert_eq!(encoded(|o| simple(o, "OK")), b"+OK\r\n");
        assert_eq!(encoded(|o| error(o, "ERR no")), b"-ERR no\r\n");
        assert_eq!(encoded(|o| integer(o, 42)), b":42\r\n");
        assert_eq!(encoded(|o| integer(o, -1)), b":-1\r\n");
        assert_eq!(encoded(|o| bulk(o, b"a\r\nb")), b"$4\r\na\r\nb\r\n");
        assert_eq!(encoded(|o| bulk(o, b"")), b"$0\r\n\r\n");
        assert_eq!(encoded(|o| array(o, 0)), b"*0\r\n");
    }

    #[test]
    fn nulls_and_maps_follow_the_protocol_version() {
        assert_eq!(encoded(|o| null(o, Proto::Resp2)), b"$-1\r\n");
        assert_eq!(encoded(|o| null(o, Proto::Resp3)), b"_\r\n");
        assert_eq!(encoded(|o| map(o, 3, Proto::Resp2)), b"*6\r\n");
        assert_eq!(encoded(|o| map(o, 3, Proto::Resp3)), b"%3\r\n");
    }

    #[test]
    fn a_line_never_carries_a_line_break() {
        assert_eq!(
            encoded(|o| error(o, "ERR unknown command 'a\r\n+OK'")),
            b"-ERR unknown command 'a  +OK'\r\n"
        );
    }
}
