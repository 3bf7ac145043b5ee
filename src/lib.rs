//! Halley: a pub/sub push server. One accept thread, one worker reactor per core,
//! an HTTP publish API, and a protocol core free of sockets and clocks.

pub mod accept;
pub mod admission;
pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod fail_point;
pub mod limits;
pub mod paged;
pub mod proto;
pub mod pubsub;
pub mod reactor;
pub mod resp;
pub mod server;
pub mod stats;
pub mod worker;
