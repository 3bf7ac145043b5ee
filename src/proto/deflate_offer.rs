//! permessage-deflate negotiation (RFC 7692 section 7.1): reads the client's
//! `Sec-WebSocket-Extensions` offers and picks the first one Halley can honour.
//!
//! Halley keeps no compression state per connection, so every agreement says
//! `server_no_context_takeover` (7.1.1.1: the server may always add it) and
//! `client_no_context_takeover` (7.1.1.2: likewise), which lets one inflater per
//! worker, reset per message, read every client. `client_max_window_bits` needs no
//! answer: the inflater's 32 KiB window reads any smaller one (7.1.2.2). A
//! `server_max_window_bits` below 15 is accepted and echoed (7.1.2.1 requires the
//! same or a smaller value), and honoured by sending that connection plain frames
//! only: RSV1 is per message, so a sender may always leave a message uncompressed.
//! A malformed offer, an unknown or repeated parameter, or a bad value declines
//! that offer only (7.1: "the server MUST decline"), never the upgrade.

/// What a connection agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The offer's `server_max_window_bits`, echoed in the answer.
    pub server_max_window_bits: Option<u8>,
}

impl Agreement {
    /// True when the shared frames (compressed with a 32 KiB window) may go to it.
    pub fn takes_compressed(&self) -> bool {
        self.server_max_window_bits.is_none_or(|bits| bits == 15)
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 answer.
    pub fn response(&self) -> String {
        let mut out = String::from(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        out
    }
}

/// The first acceptable permessage-deflate offer among every header value, in order.
pub fn negotiate<'v>(values: impl IntoIterator<Item = &'v [u8]>) -> Option<Agreement> {
    values
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| split_outside_quotes(v, ','))
        .find_map(accept_offer)
}

/// Reads one extension offer; None declines it (another name, or bad parameters).
fn accept_offer(offer: &str) -> Option<Agreement> {
    let mut parts = split_outside_quotes(offer, ';');
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreement = Agreement {
        server_max_window_bits: None,
    };
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        let slot = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                agreement.server_max_window_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(agreement)
}

/// 8 to 15, in decimal without a leading zero (7.1.2.1's ABNF).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// A token, or a quoted-string (RFC 7230) whose content is then returned unescaped
/// only when it needs no unescaping (no valid parameter value does).
fn unquote(value: &str) -> Option<&str> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    let token = !inner.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    token.then_some(inner)
}

/// Splits at `sep` where it is not inside a quoted string (backslash escapes).
fn split_outside_quotes(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&str]) -> Option<Agreement> {
        negotiate(values.iter().map(|v| v.as_bytes()))
    }

    const PLAIN: Option<Agreement> = Some(Agreement {
        server_max_window_bits: None,
    });

    #[test]
    fn a_browser_offer_is_accepted_without_window_bits() {
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits"]),
            PLAIN
        );
        assert_eq!(offer(&["permessage-deflate"]), PLAIN);
        assert_eq!(
            offer(&["Permessage-Deflate ; Client_No_Context_Takeover"]),
            PLAIN
        );
        let agreed = PLAIN.unwrap();
        assert!(agreed.takes_compressed());
        assert_eq!(
            agreed.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn no_offer_or_another_extension_agrees_nothing() {
        assert_eq!(offer(&[]), None);
        assert_eq!(offer(&[""]), None);
        assert_eq!(offer(&["x-webkit-deflate-frame"]), None);
        assert_eq!(offer(&["deflate-stream, foo; bar=1"]), None);
    }

    #[test]
    fn server_window_bits_are_echoed_and_turn_compressed_sends_off() {
        let agreed = offer(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert_eq!(agreed.server_max_window_bits, Some(10));
        assert!(!agreed.takes_compressed());
        assert!(agreed.response().ends_with("; server_max_window_bits=10"));
        let quoted = offer(&["permessage-deflate; server_max_window_bits=\"8\""]).unwrap();
        assert_eq!(quoted.server_max_window_bits, Some(8));
        let full = offer(&["permessage-deflate; server_max_window_bits=15"]).unwrap();
        assert!(full.takes_compressed());
    }

    #[test]
    fn a_bad_offer_is_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown_param",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
            let then_good = format!("{bad}, permessage-deflate; client_max_window_bits=12");
            assert_eq!(offer(&[&then_good]), PLAIN, "{then_good}");
        }
    }

    #[test]
    fn offers_span_headers_and_quoted_commas_do_not_split() {
        let agreed = offer(&[
            "foo; bar=\"a,b\"",
            "permessage-deflate; server_max_window_bits=12, permessage-deflate",
        ]);
        assert_eq!(agreed.unwrap().server_max_window_bits, Some(12));
        // The quoted comma keeps the bad value in the first offer, which is declined.
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits=\"9,permessage-deflate\""]),
            None
        );
        assert_eq!(offer(&[" , permessage-deflate ,"]), PLAIN);
        // An unterminated quote runs to the end of the header value.
        let open_quote = "permessage-deflate; server_max_window_bits=\"9, permessage-deflate";
        assert_eq!(offer(&[open_quote]), None);
    }

    #[test]
    fn window_bits_accept_exactly_8_to_15() {
        let accepted: Vec<u8> = (0..=20)
            .filter_map(|n| window_bits(&n.to_string()))
            .collect();
        assert_eq!(accepted, (8..=15).collect::<Vec<u8>>());
    }
}
