//! `Accept-Encoding` (RFC 9110 section 12.5.3): does the request take gzip?
//!
//! A list of codings, each with an optional weight `;q=`. `gzip` (or its alias
//! `x-gzip`) named with a weight above 0 accepts; named with `q=0` refuses, whatever
//! `*` says; not named, `*` decides; neither means no. Names are case-insensitive.
//! An element whose weight is malformed is ignored, as if it were not sent.

/// True when the request's `Accept-Encoding` lines (in order) accept gzip.
pub fn accepts_gzip<'v>(values: impl IntoIterator<Item = &'v [u8]>) -> bool {
    let (mut gzip, mut any) = (None, None);
    for value in values {
        for element in value.split(|&b| b == b',') {
            let mut parts = element.split(|&b| b == b';');
            let coding = trim(parts.next().unwrap_or_default());
            if coding.is_empty() {
                continue;
            }
            let Some(weight) = weight(parts) else {
                continue;
            };
            let slot =
                if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                    &mut gzip
                } else if coding == b"*" {
                    &mut any
                } else {
                    continue;
                };
            // Named twice: a refusal anywhere wins (the careful reading).
            *slot = Some(slot.unwrap_or(true) && weight > 0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// The weight in thousandths (1000 without `q`), or None when malformed.
fn weight<'p>(params: impl Iterator<Item = &'p [u8]>) -> Option<u16> {
    let mut weight = 1000;
    for param in params {
        let param = trim(param);
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => return None,
        };
        if trim(name).eq_ignore_ascii_case(b"q") {
            weight = qvalue(value)?;
        }
        // Other parameters mean nothing for a content coding: skipped.
    }
    Some(weight)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(value: &[u8]) -> Option<u16> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        let digit = fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn takes(lines: &[&str]) -> bool {
        accepts_gzip(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn what_browsers_send_accepts() {
        assert!(takes(&["gzip, deflate, br, zstd"]));
        assert!(takes(&["gzip"]));
        assert!(takes(&["GZip"]));
        assert!(takes(&["x-gzip"]));
        assert!(takes(&["br;q=1.0, gzip;q=0.8, *;q=0.1"]));
        assert!(takes(&["deflate", "gzip"]), "several lines combine");
    }

    #[test]
    fn absent_or_refused_is_plain() {
        assert!(!takes(&[]));
        assert!(!takes(&[""]));
        assert!(!takes(&["identity"]));
        assert!(!takes(&["deflate, br"]));
        assert!(!takes(&["gzip;q=0"]));
        assert!(!takes(&["gzip; q=0.000"]));
        assert!(!takes(&["GZIP;Q=0"]));
        assert!(!takes(&["*, gzip;q=0"]), "named wins over *");
        assert!(!takes(&["gzip, gzip;q=0"]), "a refusal anywhere wins");
    }

    #[test]
    fn the_wildcard_decides_for_an_unnamed_gzip() {
        assert!(takes(&["*"]));
        assert!(takes(&["br, *;q=0.5"]));
        assert!(!takes(&["*;q=0"]));
        assert!(takes(&["*;q=0, gzip"]), "named wins over *");
    }

    #[test]
    fn weights_follow_the_grammar() {
        assert!(takes(&["gzip;q=0.001"]));
        assert!(takes(&["gzip;q=1"]));
        assert!(takes(&["gzip;q=1.000"]));
        assert!(takes(&["gzip ; q=0.5 "]));
        assert!(takes(&["gzip;level=9"]), "an unknown parameter is skipped");
        // Malformed weights: the element is ignored.
        for bad in [
            "gzip;q=1.5",
            "gzip;q=2",
            "gzip;q=0.0001",
            "gzip;q=",
            "gzip;q=.5",
            "gzip;q=0.5x",
            "gzip;q=-1",
            "gzip;q",
            "gzip;q = 0.5",
        ] {
            assert!(!takes(&[bad]), "{bad}");
        }
        assert!(takes(&["gzip;q=abc, *"]), "ignored, so * decides");
        assert!(!takes(&["gzip;q=abc, *;q=0"]));
    }

    #[test]
    fn odd_bytes_are_no_trouble() {
        assert!(!takes(&[",,,;;;==="]));
        assert!(takes(&[" , gzip ,"]));
        assert!(!accepts_gzip([&[0xff, 0xfe, b';', b'q', b'=', 0x80][..]]));
        // Every prefix of a real header is parsed without a panic.
        let line = b"br;q=1.0, gzip;q=0.8, *;q=0.1";
        for cut in 0..=line.len() {
            let _ = accepts_gzip([&line[..cut]]);
        }
    }
}
