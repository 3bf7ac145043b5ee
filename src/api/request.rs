//! The publish API's HTTP/1.1, sans I/O: request heads with bodies, keep-alive
//! (HTTP/1.0's `Connection: Keep-Alive` too), `Expect: 100-continue`, the API key,
//! and the publish body rules.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use super::publish::{self, INVALID_CHANNEL, TOO_LARGE};
use crate::proto::command::valid_channel;
use crate::proto::http::MAX_HEAD;
use crate::proto::query::param;

const MAX_HEADERS: usize = 32;

#[derive(Debug, PartialEq, Eq)]
pub enum ApiRequest {
    Publish {
        channel: String,
        data: String,
    },
    /// A JSON array or NDJSON body of messages, answered with one result each.
    PublishBatch {
        messages: Vec<BatchMessage>,
    },
    /// `GET /api/history?channel=C&since=S&limit=L`.
    History {
        channel: String,
        since: u64,
        limit: usize,
    },
    /// `GET /api/presence?channel=C`.
    Presence {
        channel: String,
    },
    /// `POST /api/drop-connections`: close every client connection.
    DropConnections,
    Stats,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /api/stats/stream`: the stats as Server-Sent Events, once a second.
    StatsStream,
    /// `GET /dashboard`: the live page that charts the stream.
    Dashboard,
    Health,
    /// Answer with this status and a JSON `{"error": reason}`.
    Refuse {
        status: u16,
        reason: Cow<'static, str>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum ApiParsed {
    /// Need more bytes, at least until the buffer holds `wants` (so a body that
    /// trickles in is not re-parsed byte by byte); `expects_continue` when the client
    /// waits for `100 Continue`.
    Partial {
        expects_continue: bool,
        wants: usize,
    },
    /// One request of `consumed` bytes; `keep_alive` false ends the connection.
    Done {
        consumed: usize,
        request: ApiRequest,
        keep_alive: Persistence,
    },
}

/// Whether the connection outlives the answer, and how the answer says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1's default: no header needed.
    KeepAlive,
    /// HTTP/1.0 that asked for it: the answer must say `Connection: keep-alive`,
    /// or the client waits for a close that never comes (`ab -k`).
    KeepAlive10,
    /// Answer with `Connection: close`, then close.
    Close,
}

impl Persistence {
    pub fn keeps(self) -> bool {
        self != Persistence::Close
    }
}

/// What the parser checks beyond syntax.
#[derive(Debug, Clone, Copy)]
pub struct ApiRules<'a> {
    /// Largest body (413 past it).
    pub max_body: usize,
    /// `--api-key-file`'s key: every request but `/health` needs `Authorization: Bearer KEY`.
    pub api_key: Option<&'a [u8]>,
}

fn refuse(status: u16, reason: &'static str) -> ApiRequest {
    ApiRequest::Refuse {
        status,
        reason: Cow::Borrowed(reason),
    }
}

/// A request that leaves the stream unusable: answer, then close.
fn fatal(consumed: usize, status: u16, reason: &'static str) -> ApiParsed {
    ApiParsed::Done {
        consumed,
        request: refuse(status, reason),
        keep_alive: Persistence::Close,
    }
}

/// Parses one request from the start of `buf`. A partial request never needs more
/// than `MAX_HEAD + max_body` bytes: past that the answer is a refusal.
pub fn parse(buf: &[u8], rules: ApiRules<'_>) -> ApiParsed {
    let max_body = rules.max_body;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => {
            return fatal(buf.len(), 431, "request head too large")
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
            return ApiParsed::Partial {
                expects_continue: false,
                wants: buf.len() + 1,
            }
        }
        Ok(httparse::Status::Partial) => return fatal(buf.len(), 431, "request head too large"),
        Err(_) => return fatal(buf.len(), 400, "malformed request"),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value))
    };
    let connection = header("connection")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let keep_alive = match req.version {
        Some(1) if connection.contains("close") => Persistence::Close,
        Some(1) => Persistence::KeepAlive,
        _ if connection.contains("keep-alive") => Persistence::KeepAlive10,
        _ => Persistence::Close,
    };
    if header("transfer-encoding").is_some() {
        return fatal(
            buf.len(),
            411,
            "chunked bodies are not supported; send Content-Length",
        );
    }
    let body_len = match content_length(req.headers) {
        Ok(n) => n,
        Err(()) => return fatal(buf.len(), 400, "invalid Content-Length"),
    };
    if body_len > max_body {
        return fatal(buf.len(), 413, TOO_LARGE);
    }
    if buf.len() < head_len + body_len {
        let expects_continue =
            header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        return ApiParsed::Partial {
            expects_continue,
            wants: head_len + body_len,
        };
    }
    let body = &buf[head_len..head_len + body_len];
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let authorized = match rules.api_key {
        None => true,
        Some(key) => {
            // Constant time in the key's bytes: the length alone can leak.
            let matches = |given: &str| bool::from(given.as_bytes().ct_eq(key));
            bearer(header("authorization").as_deref()).is_some_and(matches)
                || (key_in_query_allowed(path) && param(query, "key").is_some_and(|k| matches(&k)))
        }
    };
    let request = match (req.method.unwrap_or(""), path) {
        ("GET", "/health") => ApiRequest::Health,
        _ if !authorized => refuse(401, "missing or wrong API key (Authorization: Bearer KEY)"),
        ("POST", "/api/publish") => publish(query, body, header("content-type").as_deref()),
        ("GET", "/api/stats") => ApiRequest::Stats,
        ("GET", "/metrics") => ApiRequest::Metrics,
        ("GET", "/api/stats/stream") => ApiRequest::StatsStream,
        ("GET", "/dashboard") => ApiRequest::Dashboard,
        ("GET", "/api/history") => history(query),
        ("GET", "/api/presence") => presence(query),
        ("POST", "/api/drop-connections") => ApiRequest::DropConnections,
        (
            _,
            "/api/publish"
            | "/api/stats"
            | "/api/history"
            | "/api/presence"
            | "/api/drop-connections"
            | "/metrics"
            | "/api/stats/stream"
            | "/dashboard"
            | "/health",
        ) => refuse(405, "method not allowed"),
        _ => refuse(404, "not found"),
    };
    ApiParsed::Done {
        consumed: head_len + body_len,
        request,
        keep_alive,
    }
}

/// A browser cannot set `Authorization` on a page load or an `EventSource`, so the
/// dashboard and its stream also take the key as `?key=` (which then shows in URLs).
fn key_in_query_allowed(path: &str) -> bool {
    matches!(path, "/dashboard" | "/api/stats/stream")
}

/// The body length: 0 without the header; digits only (no sign, as RFC 9110 says);
/// several headers must agree, or one hop could read another request than the next.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, ()> {
    let mut found = None;
    for h in headers {
        if !h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let text = std::str::from_utf8(h.value).map_err(|_| ())?.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let n = text.parse::<usize>().map_err(|_| ())?;
        if found.is_some_and(|m| m != n) {
            return Err(());
        }
        found = Some(n);
    }
    Ok(found.unwrap_or(0))
}

/// The token of `Authorization: Bearer TOKEN` (the scheme is case-insensitive).
fn bearer(value: Option<&str>) -> Option<&str> {
    let value = value?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn publish(query: &str, body: &[u8], content_type: Option<&str>) -> ApiRequest {
    let ndjson = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(NDJSON))
    });
    let (channel, data) = match param(query, "channel") {
        Some(channel) => match publish::data_from_raw(body) {
            // A JSON body goes out as is; anything else becomes a JSON string.
            Ok(data) => (channel.into_owned(), data),
            Err(reason) => return refuse(400, reason),
        },
        None if ndjson => return batch(body.split(|&b| b == b'\n'), BatchFormat::Ndjson),
        None if body.trim_ascii_start().starts_with(b"[") => {
            return match serde_json::from_slice::<Vec<&RawValue>>(body) {
                Ok(items) => batch(items.iter().map(|m| m.get().as_bytes()), BatchFormat::Array),
                Err(_) => refuse(400, BATCH_SHAPE),
            };
        }
        None => match serde_json::from_slice::<PublishBody<'_>>(body) {
            Ok(parsed) => (parsed.channel.into_owned(), parsed.data.get().to_owned()),
            Err(_) => return refuse(400, "body must be {\"channel\":\"C\",\"data\":ANY}"),
        },
    };
    if !valid_channel(&channel) {
        return refuse(400, INVALID_CHANNEL);
    }
    ApiRequest::Publish { channel, data }
}

/// `Content-Type` of a batch with one message per line.
pub const NDJSON: &str = "application/x-ndjson";
/// Messages one batch may carry (the body cap, --max-message-size, applies too).
pub const MAX_BATCH: usize = 1000;
const BATCH_SHAPE: &str = "a batch must be a JSON array of {\"channel\":\"C\",\"data\":ANY}";

/// One message of a batch, checked as a single publish is.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchMessage {
    pub channel: String,
    pub data: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BatchFormat {
    Array,
    /// Blank lines (and the last newline) are skipped.
    Ndjson,
}

/// A batch is refused whole (400, naming the first bad message) before anything of
/// it is published, so a client never has to find out which half went out.
fn batch<'b>(items: impl Iterator<Item = &'b [u8]>, format: BatchFormat) -> ApiRequest {
    let mut messages = Vec::new();
    for (index, item) in items.enumerate() {
        if format == BatchFormat::Ndjson && item.trim_ascii().is_empty() {
            continue;
        }
        if messages.len() == MAX_BATCH {
            return refuse(413, "a batch may carry at most 1000 messages");
        }
        let Ok(parsed) = serde_json::from_slice::<PublishBody<'_>>(item) else {
            return ApiRequest::Refuse {
                status: 400,
                reason: Cow::Owned(format!("message {index}: {BATCH_SHAPE_ITEM}")),
            };
        };
        if !valid_channel(&parsed.channel) {
            return ApiRequest::Refuse {
                status: 400,
                reason: Cow::Owned(format!("message {index}: {INVALID_CHANNEL}")),
            };
        }
        messages.push(BatchMessage {
            channel: parsed.channel.into_owned(),
            data: parsed.data.get().to_owned(),
        });
    }
    if messages.is_empty() {
        return refuse(400, "a batch must carry at least one message");
    }
    ApiRequest::PublishBatch { messages }
}

const BATCH_SHAPE_ITEM: &str = "must be {\"channel\":\"C\",\"data\":ANY}";

fn presence(query: &str) -> ApiRequest {
    match param(query, "channel") {
        Some(channel) if valid_channel(&channel) => ApiRequest::Presence {
            channel: channel.into_owned(),
        },
        _ => refuse(400, INVALID_CHANNEL),
    }
}

fn history(query: &str) -> ApiRequest {
    let channel = param(query, "channel").unwrap_or_default();
    if !valid_channel(&channel) {
        return refuse(400, INVALID_CHANNEL);
    }
    let number = |key: &str| param(query, key).map(|v| v.parse::<u64>());
    let since = match number("since") {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return refuse(400, "invalid since"),
    };
    let limit = match number("limit") {
        None => usize::MAX,
        Some(Ok(n)) => n.min(usize::MAX as u64) as usize,
        Some(Err(_)) => return refuse(400, "invalid limit"),
    };
    ApiRequest::History {
        channel: channel.into_owned(),
        since,
        limit,
    }
}

impl ApiRequest {
    /// The answer's `Content-Type`: JSON but for /metrics.
    pub fn content_type(&self) -> &'static str {
        match self {
            ApiRequest::Metrics => crate::stats::prometheus::CONTENT_TYPE,
            _ => "application/json",
        }
    }
}

/// A complete JSON response, its `Connection` header as `keep_alive` needs.
pub fn response(status: u16, json_body: &str, keep_alive: Persistence) -> Vec<u8> {
    response_as(status, "application/json", json_body, keep_alive)
}

/// A complete response of `content_type`.
pub fn response_as(
    status: u16,
    content_type: &str,
    body: &str,
    keep_alive: Persistence,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 96);
    write_response(&mut out, status, content_type, body, keep_alive);
    out
}

/// Appends the answer to `out` (a connection's pending output), which saves a
/// buffer per answer on the publish path.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &str,
    keep_alive: Persistence,
) {
    use std::io::Write;
    let connection = match keep_alive {
        Persistence::KeepAlive => "",
        Persistence::KeepAlive10 => "Connection: keep-alive\r\n",
        Persistence::Close => "Connection: close\r\n",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{connection}{challenge}\r\n",
        crate::proto::http::status_text(status),
        body.len()
    );
    out.extend_from_slice(body.as_bytes());
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
