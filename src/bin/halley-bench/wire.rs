//! The publisher's wire formats, without sockets: the three ways a backend
//! publishes (one HTTP request per message, an HTTP JSON-array batch, a RESP
//! `PUBLISH`), and the answers each gets, counted from the front of a buffer.

/// How messages reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /api/publish`, `batch` messages per request (1 = a single publish;
    /// more = a JSON array, answered once).
    Http { batch: usize },
    /// Pipelined RESP `PUBLISH channel message` on --resp-listen, one per message.
    Resp,
}

impl Via {
    /// Messages one request carries.
    pub fn batch(self) -> usize {
        match self {
            Via::Http { batch } => batch.max(1),
            Via::Resp => 1,
        }
    }
}

/// One message: its channel and its data (JSON text).
pub struct Message<'a> {
    pub channel: &'a str,
    pub data: &'a str,
}

/// Appends one HTTP request carrying `messages` (a single publish for one, an
/// array for more). `auth` is an `Authorization` line or empty.
pub fn http_request(host: &str, auth: &str, messages: &[Message<'_>], out: &mut Vec<u8>) {
    let body = match messages {
        [one] => publish_json(one),
        many => {
            let items: Vec<String> = many.iter().map(publish_json).collect();
            format!("[{}]", items.join(","))
        }
    };
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{auth}\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

fn publish_json(m: &Message<'_>) -> String {
    format!(r#"{{"channel":"{}","data":{}}}"#, m.channel, m.data)
}

/// Appends a RESP command of bulk strings.
pub fn resp_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses complete HTTP responses from the front of `buf`: (bytes used, statuses).
pub fn http_responses(buf: &[u8], statuses: &mut Vec<u16>) -> Result<usize, String> {
    let mut pos = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(pos),
            Err(e) => return Err(format!("bad API response: {e}")),
        };
        let len = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        if buf.len() - pos < head + len {
            return Ok(pos);
        }
        statuses.push(resp.code.unwrap_or(0));
        pos += head + len;
    }
}

/// Parses complete one-line RESP replies (`:N`, `+OK`, `-ERR ...`) from the front
/// of `buf`: (bytes used, and for each reply 200 or, for an error, 500). Any other
/// reply type is an error: PUBLISH and AUTH answer with one line.
pub fn resp_replies(buf: &[u8], statuses: &mut Vec<u16>) -> Result<usize, String> {
    let mut pos = 0;
    while let Some(end) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[pos..pos + end];
        match line.first() {
            Some(b':' | b'+') => statuses.push(200),
            Some(b'-') => statuses.push(500),
            _ => {
                let text = String::from_utf8_lossy(line);
                return Err(format!("unexpected RESP reply: {text}"));
            }
        }
        pos += end + 2;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_publish_and_a_batch() {
        let one = [Message {
            channel: "c-1",
            data: "{\"i\":1}",
        }];
        let mut out = Vec::new();
        http_request("h:1", "", &one, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n{\"channel\":\"c-1\",\"data\":{\"i\":1}}"));
        assert!(text.contains("Content-Length: 32\r\n"));
        let two = [
            Message {
                channel: "a",
                data: "1",
            },
            Message {
                channel: "b",
                data: "2",
            },
        ];
        let mut out = Vec::new();
        http_request("h:1", "", &two, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(r#"[{"channel":"a","data":1},{"channel":"b","data":2}]"#));
    }

    #[test]
    fn a_resp_publish_and_its_replies() {
        let mut out = Vec::new();
        resp_command(&[b"PUBLISH", b"c", b"{}"], &mut out);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\n{}\r\n");
        let mut st = Vec::new();
        let used = resp_replies(b":1\r\n+OK\r\n-ERR no\r\n:2", &mut st).unwrap();
        assert_eq!(st, [200, 200, 500]);
        assert_eq!(used, 18);
        assert!(resp_replies(b"$3\r\nabc\r\n", &mut st).is_err());
    }

    #[test]
    fn pipelined_http_responses() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 400 Bad\r\nContent-Length: 3\r\n\r\nab";
        let mut st = Vec::new();
        let used = http_responses(two, &mut st).unwrap();
        assert_eq!(st, [200]);
        assert_eq!(used, 40);
    }
}
