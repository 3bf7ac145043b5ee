//! The protocol core: HTTP requests, WebSocket frames, SSE events, long-poll
//! answers and the JSON commands.
//!
//! Nothing here touches a socket or a clock: bytes go in, bytes and decisions come
//! out, so every rule can be tested byte by byte.

pub mod accept_encoding;
pub mod command;
pub mod deflate;
pub mod deflate_offer;
pub mod gzip;
pub mod http;
pub mod poll;
pub mod query;
pub mod sse;
pub mod ws;
