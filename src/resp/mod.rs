//! Publishing over the Redis protocol (`--resp-listen`): RESP2 and RESP3 `HELLO`,
//! enough for `redis-cli` and the client libraries to `PUBLISH`. Its own thread and
//! mio loop, so RESP publishers run beside the HTTP API's on another core; both go
//! through `api::publish::publish_one`.

pub mod command;
pub mod encode;
pub mod parse;
mod server;

pub use server::{RespServer, MAX_CONNECTIONS, TOO_MANY_CLIENTS};
