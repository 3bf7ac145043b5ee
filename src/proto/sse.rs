//! Server-Sent Events (the WHATWG `text/event-stream` format), as bytes. The body
//! is close-delimited: no chunk framing, so one encoded event is shared as is by
//! every stream that carries it.

use super::gzip::Coding;

/// A comment line: keeps proxies from timing the stream out, and finds dead peers.
pub const HEARTBEAT: &[u8] = b":\n\n";

/// The first line of every stream: the reconnection delay browsers should use.
pub const RETRY: &[u8] = b"retry: 1000\n\n";

/// The response head, and the reconnection delay: a plain stream.
pub fn response_head(allow_origin: Option<&str>) -> Vec<u8> {
    let mut out = stream_head(allow_origin, Coding::Fixed);
    out.extend_from_slice(RETRY);
    out
}

/// The response head alone, saying how the body is encoded; with gzip the body
/// then starts with the gzip header (`proto::gzip`).
pub fn stream_head(allow_origin: Option<&str>, coding: Coding) -> Vec<u8> {
    let cors = super::http::cors_header(allow_origin);
    let coding = coding.header_lines();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         X-Accel-Buffering: no\r\n{coding}{cors}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Appends one event. `data` may hold line breaks (JSON whitespace): each line
/// becomes a `data:` line, which the browser joins back with `\n`.
pub fn event(out: &mut Vec<u8>, kind: Option<&str>, id: Option<&[u8]>, data: &[u8]) {
    if let Some(kind) = kind {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// An event id naming the position in every channel of the stream, in the order
/// of its URL: `12` for one channel, `12,7` for two.
pub fn id(positions: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    for (i, seq) in positions.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(seq.to_string().as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_by_the_spec() {
        let mut out = Vec::new();
        event(&mut out, None, Some(b"3"), br#"{"a":1}"#);
        event(&mut out, Some("subscribed"), None, b"{\r\n\"b\": 2\n}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id: 3\ndata: {\"a\":1}\n\nevent: subscribed\ndata: {\ndata: \"b\": 2\ndata: }\n\n"
        );
        assert_eq!(id([12, 7]), b"12,7");
        assert_eq!(id([5]), b"5");
    }

    #[test]
    fn the_head_names_the_stream_and_cors_only_when_asked() {
        let plain = String::from_utf8(response_head(None)).unwrap();
        assert!(plain.contains("Content-Type: text/event-stream\r\n"));
        assert!(!plain.contains("Access-Control"));
        assert!(plain.ends_with("\r\n\r\nretry: 1000\n\n"));
        let cors = String::from_utf8(response_head(Some("*"))).unwrap();
        assert!(cors.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(!cors.contains("Vary") && !cors.contains("Content-Encoding"));
        let gzip = String::from_utf8(stream_head(None, Coding::Gzip)).unwrap();
        assert!(gzip.contains("\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n"));
        assert!(
            gzip.ends_with("Connection: close\r\n\r\n"),
            "the body follows"
        );
    }
}
