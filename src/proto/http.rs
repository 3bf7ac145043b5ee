//! The client listener's HTTP/1.1: the WebSocket upgrade, the SSE and long-poll
//! requests, the browser client's files, their routing and every answer, as bytes
//! in and bytes out.

use super::accept_encoding;
use super::command::valid_channel;
use super::deflate_offer::{self, Agreement};
use super::query::{self, Wanted};

/// A request head larger than this is refused (431): nobody needs more to upgrade.
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// What the listener serves beyond `/health` and `/halley.js`.
#[derive(Debug, Clone, Copy)]
pub struct Routes {
    pub echo: bool,
    pub demo: bool,
    pub transports: Transports,
    pub max_subscriptions: usize,
}

/// The transports this server offers (`--transports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    pub ws: bool,
    pub sse: bool,
    pub poll: bool,
}

impl Transports {
    pub const ALL: Transports = Transports {
        ws: true,
        sse: true,
        poll: true,
    };

    /// `ws,sse,poll`, any subset, in any order.
    pub fn parse(list: &str) -> Result<Transports, String> {
        let mut set = Transports {
            ws: false,
            sse: false,
            poll: false,
        };
        for name in list.split(',').map(str::trim) {
            match name {
                "ws" => set.ws = true,
                "sse" => set.sse = true,
                "poll" => set.poll = true,
                other => return Err(format!("unknown transport {other:?} (ws, sse, poll)")),
            }
        }
        Ok(set)
    }
}

/// Files the client listener serves, compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    ClientJs,
    DemoPage,
}

impl Asset {
    pub fn content_type(self) -> &'static str {
        match self {
            Asset::ClientJs => "application/javascript; charset=utf-8",
            Asset::DemoPage => "text/html; charset=utf-8",
        }
    }

    pub fn body(self) -> &'static [u8] {
        match self {
            Asset::ClientJs => include_bytes!("../../www/halley.js"),
            Asset::DemoPage => include_bytes!("../../www/demo.html"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Pub/sub commands and pushes.
    PubSub,
    /// Echo every message (conformance testing).
    Echo,
}

/// An HTTP error answer: status and a plain-text reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> ClientRequest {
    ClientRequest::Refuse(Refusal { status, reason })
}

#[derive(Debug, PartialEq, Eq)]
pub enum ClientRequest {
    Upgrade {
        endpoint: Endpoint,
        accept_key: String,
        subscribe: Vec<Wanted>,
        /// `?token=`, checked by the worker (it has the clock and the key).
        token: Option<String>,
        /// The permessage-deflate offer it would accept; the worker uses it only
        /// with `--compression on`.
        deflate: Option<Agreement>,
    },
    /// `GET /sse`: an event stream of these channels.
    Sse {
        channels: Vec<Wanted>,
        token: Option<String>,
        /// `Accept-Encoding` takes gzip; the worker uses it only with compression.
        gzip: bool,
    },
    /// `GET /poll`: one long-poll of these channels.
    Poll {
        channels: Vec<Wanted>,
        keep_alive: bool,
        token: Option<String>,
        gzip: bool,
    },
    Asset {
        asset: Asset,
        keep_alive: bool,
    },
    /// `POST /demo/publish` (only with `--demo`): publish `data` (a JSON string).
    DemoPublish {
        channel: String,
        data: String,
    },
    Health,
    Refuse(Refusal),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet; read more.
    Partial,
    /// The head ends at `head_len`; bytes after it belong to the WebSocket stream.
    Done {
        head_len: usize,
        request: ClientRequest,
    },
}

/// Parses and routes one request head from the start of `buf`.
pub fn parse_client_request(buf: &[u8], routes: Routes) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => {
            return Parsed::Done {
                head_len: buf.len(),
                request: refuse(431, "request head too large"),
            }
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Parsed::Done {
                head_len: buf.len(),
                request: refuse(431, "request head too large"),
            }
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Done {
                head_len: buf.len(),
                request: refuse(431, "too many headers"),
            }
        }
        Err(_) => {
            return Parsed::Done {
                head_len: buf.len(),
                request: refuse(400, "malformed request"),
            }
        }
    };
    Parsed::Done {
        head_len,
        request: route(&request, routes),
    }
}

fn route(request: &httparse::Request<'_, '_>, routes: Routes) -> ClientRequest {
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = &*request.headers;
    let get = request.method == Some("GET");
    let keep_alive = match request.version {
        Some(1) => !header_has_token(headers, "connection", "close"),
        _ => header_has_token(headers, "connection", "keep-alive"),
    };
    let max = routes.max_subscriptions;
    let endpoint = match path {
        "/ws" if routes.transports.ws => Endpoint::PubSub,
        "/echo" if routes.echo => Endpoint::Echo,
        "/ws" | "/sse" | "/poll" if !get => return refuse(405, "method not allowed"),
        "/sse" if routes.transports.sse => {
            let last_event_id =
                header(headers, "last-event-id").and_then(|v| std::str::from_utf8(v).ok());
            return match query::wanted(query, "channel", last_event_id, max) {
                Ok(channels) if channels.is_empty() => refuse(400, "missing channel"),
                Ok(channels) => ClientRequest::Sse {
                    channels,
                    token: query::token(query),
                    gzip: accepts_gzip(headers),
                },
                Err(refusal) => ClientRequest::Refuse(refusal),
            };
        }
        "/poll" if routes.transports.poll => {
            return match query::wanted(query, "channel", None, max) {
                Ok(channels) if channels.is_empty() => refuse(400, "missing channel"),
                Ok(channels) => ClientRequest::Poll {
                    channels,
                    keep_alive,
                    token: query::token(query),
                    gzip: accepts_gzip(headers),
                },
                Err(refusal) => ClientRequest::Refuse(refusal),
            };
        }
        "/ws" | "/sse" | "/poll" => return refuse(404, "transport disabled"),
        "/halley.js" if get => {
            return ClientRequest::Asset {
                asset: Asset::ClientJs,
                keep_alive,
            }
        }
        "/demo" if routes.demo && get => {
            return ClientRequest::Asset {
                asset: Asset::DemoPage,
                keep_alive,
            }
        }
        "/demo/publish" if routes.demo && request.method == Some("POST") => {
            return demo_publish(query)
        }
        "/health" if get => return ClientRequest::Health,
        "/health" | "/halley.js" => return refuse(405, "method not allowed"),
        _ => return refuse(404, "not found"),
    };
    if !header_has_token(headers, "upgrade", "websocket") {
        return refuse(426, "this endpoint needs a WebSocket upgrade");
    }
    if !get || request.version != Some(1) {
        return refuse(400, "a WebSocket upgrade needs GET and HTTP/1.1");
    }
    if !header_has_token(headers, "connection", "upgrade") {
        return refuse(400, "missing Connection: Upgrade");
    }
    if header(headers, "sec-websocket-version") != Some(b"13") {
        return refuse(400, "unsupported Sec-WebSocket-Version (13 only)");
    }
    let Some(key) = header(headers, "sec-websocket-key").filter(|k| is_websocket_key(k)) else {
        return refuse(400, "missing or malformed Sec-WebSocket-Key");
    };
    let subscribe = match query::wanted(query, "subscribe", None, max) {
        Ok(channels) => channels,
        Err(refusal) => return ClientRequest::Refuse(refusal),
    };
    let offers = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| h.value);
    ClientRequest::Upgrade {
        endpoint,
        accept_key: tungstenite::handshake::derive_accept_key(key),
        subscribe,
        token: query::token(query),
        deflate: deflate_offer::negotiate(offers),
    }
}

/// The demo page's publish: the channel and the text both come in the query, so
/// the request has no body to read.
fn demo_publish(query: &str) -> ClientRequest {
    let channel = query::param(query, "channel").unwrap_or_default();
    if !valid_channel(&channel) {
        return refuse(400, "invalid channel name");
    }
    let text = query::param(query, "data").unwrap_or_default();
    ClientRequest::DemoPublish {
        channel: channel.into_owned(),
        data: serde_json::to_string(&*text).expect("strings serialise"),
    }
}

fn accepts_gzip(headers: &[httparse::Header<'_>]) -> bool {
    accept_encoding::accepts_gzip(
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("accept-encoding"))
            .map(|h| h.value),
    )
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| trim(h.value))
}

/// True when any header `name` lists `token` (comma-separated, any case).
fn header_has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|item| trim(item).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// A key is 16 random bytes in base64: 22 alphabet characters and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The CORS header line for `--allow-origin`, or nothing.
pub fn cors_header(allow_origin: Option<&str>) -> String {
    allow_origin
        .map(|o| format!("Access-Control-Allow-Origin: {o}\r\n"))
        .unwrap_or_default()
}

/// A `200` answer with a body that leaves the connection open when `keep_alive`.
pub fn ok_response(content_type: &str, body: &[u8], keep_alive: bool, extra: &str) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The 101 answer, written in one piece, with the agreed extension if any.
pub fn switching_protocols(accept_key: &str, deflate: Option<&Agreement>) -> Vec<u8> {
    let extensions = deflate
        .map(|a| format!("Sec-WebSocket-Extensions: {}\r\n", a.response()))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n{extensions}\r\n"
    )
    .into_bytes()
}

/// An answer that ends the connection, with a plain-text body. A 426 names the
/// protocol to upgrade to (RFC 9110), and 400/426 name the WebSocket version this
/// server speaks (RFC 6455 section 4.4).
pub fn closing_response(status: u16, body: &str, retry_after_s: Option<u32>) -> Vec<u8> {
    let retry = retry_after_s
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let upgrade = match status {
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        400 => "Sec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{retry}{upgrade}\
         Connection: close\r\n\r\n{body}",
        status_text(status),
        body.len()
    )
    .into_bytes()
}

pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
