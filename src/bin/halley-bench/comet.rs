//! Server-Sent Events and long-polling wire formats for the load connections: the
//! requests, the HTTP response head, one `text/event-stream` event at a time and a
//! poll answer's JSON body. Like `ws`, nothing here owns a buffer: every function reads
//! a slice and says how much of it it used.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// `since` of the first poll of a fresh subscriber: past any channel's last seq, so the
/// resume is "not recovered" and the server answers at once with what history holds
/// and the channel's `last_seq` and `epoch`, which the next poll starts from. Without
/// it the first poll would be held until the next message, and a subscriber could not
/// tell when it is in place. 2^53 - 1: a valid integer for any JSON reader.
pub const PROBE_SINCE: u64 = (1 << 53) - 1;

/// `GET /sse?...` as an EventSource sends it.
pub fn sse_request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n"
    )
    .into_bytes()
}

/// `GET PATH` on a keep-alive HTTP/1.1 connection.
pub fn poll_request(path: &str, host: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// The query of a one-channel `/poll` or `/sse` request: `channel=C`, then `since` and
/// `epoch` when given (see `position`).
pub fn query(channel: &str, since: Option<u64>, epoch: Option<&str>) -> String {
    format!("channel={channel}{}", position(since, epoch))
}

/// `&since=S&epoch=E`, or less. The epoch goes only with a `since` above 0: position 0
/// names no message, so nothing can be lost whatever the epoch is now, and a channel
/// that holds nothing (no history, no subscriber) is removed between two polls of the
/// same client and comes back with a new epoch: `since=0&epoch=OLD` would then be
/// answered at once with `recovered:false`, again and again.
pub fn position(since: Option<u64>, epoch: Option<&str>) -> String {
    match (since, epoch) {
        (None, _) => String::new(),
        (Some(s), Some(e)) if s > 0 => format!("&since={s}&epoch={e}"),
        (Some(s), _) => format!("&since={s}"),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub code: u16,
    /// Bytes of the head (the body follows).
    pub len: usize,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub event_stream: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    Head(Head),
    Bad(String),
}

/// Parses an HTTP/1.1 response head at the start of `buf`.
pub fn response_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 24];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 8192 => {
            return Parsed::Bad("response head over 8 KiB".into())
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(e) => return Parsed::Bad(format!("bad HTTP response: {e}")),
    };
    let mut head = Head {
        code: resp.code.unwrap_or(0),
        len,
        content_length: None,
        chunked: false,
        event_stream: false,
    };
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(n) => head.content_length = Some(n),
                Err(_) => return Parsed::Bad(format!("bad Content-Length {value:?}")),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked |= value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("content-type") {
            head.event_stream |= value
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"));
        }
    }
    Parsed::Head(head)
}

/// One dispatched event of a `text/event-stream`.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; empty for the default "message".
    pub name: &'a [u8],
    pub id: Option<&'a [u8]>,
    /// The `data:` lines joined with `\n`; borrowed when there is one line.
    pub data: Cow<'a, [u8]>,
}

/// Reads the first block (lines up to a blank line) of `buf`: `None` while it is
/// incomplete, else the bytes used and the event. A block with no `data:` line (a
/// comment heartbeat `:\n\n`, `retry: 1000\n\n`) dispatches nothing, as in an
/// EventSource. Lines end in LF or CRLF.
pub fn sse_event(buf: &[u8]) -> Option<(usize, Option<Event<'_>>)> {
    let mut pos = 0;
    let mut name: &[u8] = b"";
    let mut id = None;
    let mut data: Option<Cow<'_, [u8]>> = None;
    loop {
        let nl = buf[pos..].iter().position(|&b| b == b'\n')? + pos;
        let mut line = &buf[pos..nl];
        pos = nl + 1;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.is_empty() {
            let event = data.map(|data| Event { name, id, data });
            return Some((pos, event));
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.push(b'\n');
                        joined.extend_from_slice(value);
                        Cow::Owned(joined)
                    }
                })
            }
            b"id" => id = Some(value),
            b"event" => name = value,
            _ => {}
        }
    }
}

/// A one-channel poll answer:
/// `{"messages":[...],"last_seq":N,"epoch":"E","recovered":true}`.
#[derive(Debug, Deserialize)]
pub struct Answer<'a> {
    #[serde(borrow)]
    pub messages: Vec<&'a RawValue>,
    pub last_seq: u64,
    #[serde(default, borrow)]
    pub epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    pub recovered: Option<bool>,
}

pub fn poll_answer(body: &[u8]) -> Result<Answer<'_>, String> {
    serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        format!("bad poll answer ({e}): {text}")
    })
}

/// The fields of a `subscribed` reply (WebSocket frame or SSE event) we use.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Subscribed {
    pub seq: u64,
    #[serde(default)]
    pub epoch: Option<String>,
    #[serde(default)]
    pub recovered: Option<bool>,
}

/// Reads a `{"op":"subscribed",...}` reply; `None` for anything else.
pub fn subscribed(text: &[u8]) -> Option<Subscribed> {
    #[derive(Deserialize)]
    struct Reply {
        op: String,
        #[serde(flatten)]
        rest: Subscribed,
    }
    let r: Reply = serde_json::from_slice(text).ok()?;
    (r.op == "subscribed").then_some(r.rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\nretry";
        let Parsed::Head(head) = response_head(h) else {
            panic!()
        };
        assert_eq!(
            (head.code, head.event_stream, head.chunked),
            (200, true, false)
        );
        assert_eq!(&h[head.len..], b"retry");
        let p = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n";
        let Parsed::Head(head) = response_head(p) else {
            panic!()
        };
        assert_eq!((head.content_length, head.event_stream), (Some(12), false));
        assert_eq!(response_head(b"HTTP/1.1 200 OK\r\n"), Parsed::Incomplete);
        assert!(matches!(response_head(b"nonsense\r\n\r\n"), Parsed::Bad(_)));
    }

    #[test]
    fn events() {
        let s = b"retry: 1000\n\nevent: subscribed\ndata: {\"op\":\"subscribed\"}\n\n:\n\nid: 7\ndata: a\r\ndata: b\r\n\r\nid: 8\nda";
        let (n, ev) = sse_event(s).unwrap();
        assert_eq!(ev, None);
        let rest = &s[n..];
        let (n, ev) = sse_event(rest).unwrap();
        let ev = ev.unwrap();
        assert_eq!(ev.name, b"subscribed");
        assert!(matches!(ev.data, Cow::Borrowed(b"{\"op\":\"subscribed\"}")));
        let rest = &rest[n..];
        let (n, ev) = sse_event(rest).unwrap();
        assert_eq!(ev, None);
        let rest = &rest[n..];
        let (n, ev) = sse_event(rest).unwrap();
        let ev = ev.unwrap();
        assert_eq!((ev.id, &ev.data[..]), (Some(&b"7"[..]), &b"a\nb"[..]));
        assert_eq!(sse_event(&rest[n..]), None);
        let (_, ev) = sse_event(b"data\n\n").unwrap();
        assert_eq!(&ev.unwrap().data[..], b"");
    }

    #[test]
    fn answers_and_replies() {
        let body = br#"{"messages":[{"channel":"c","seq":3,"data":{"t":1,"i":2}}],"last_seq":3,"epoch":"k3x9","recovered":true}"#;
        let a = poll_answer(body).unwrap();
        assert_eq!(a.messages.len(), 1);
        assert_eq!(
            a.messages[0].get(),
            r#"{"channel":"c","seq":3,"data":{"t":1,"i":2}}"#
        );
        assert_eq!(
            (a.last_seq, a.epoch.as_deref(), a.recovered),
            (3, Some("k3x9"), Some(true))
        );
        assert!(poll_answer(b"{}").is_err());
        let r = subscribed(
            br#"{"op":"subscribed","channel":"c","seq":5,"epoch":"e1","recovered":false}"#,
        );
        assert_eq!(
            r,
            Some(Subscribed {
                seq: 5,
                epoch: Some("e1".into()),
                recovered: Some(false)
            })
        );
        assert_eq!(
            subscribed(br#"{"op":"subscribed","channel":"c","seq":0}"#).map(|s| s.seq),
            Some(0)
        );
        assert_eq!(subscribed(br#"{"op":"error","reason":"x"}"#), None);
        assert_eq!(query("c", Some(4), Some("e")), "channel=c&since=4&epoch=e");
        assert_eq!(query("c", Some(0), Some("e")), "channel=c&since=0");
        assert_eq!(query("c", None, Some("e")), "channel=c");
        let mut req = Vec::new();
        poll_request("/poll?channel=c", "h:1", &mut req);
        assert_eq!(req, b"GET /poll?channel=c HTTP/1.1\r\nHost: h:1\r\n\r\n");
    }
}
