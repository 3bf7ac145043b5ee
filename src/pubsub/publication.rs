//! A publication as it travels from the hub to the workers: transport-neutral.
//! The payload is the push JSON `{"channel":"C","seq":N,"data":...}`, which every
//! transport carries unchanged; each worker wraps it once per transport per turn
//! (WebSocket frame, SSE event, long-poll answer).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::hub::Channel;

#[derive(Debug, Clone)]
pub struct Publication {
    /// The channel itself, not only its id: a worker compares identities, so a
    /// publication of a removed channel never reaches a newer one.
    pub channel: Arc<Channel>,
    pub seq: u64,
    pub payload: Bytes,
}

/// Where the hub delivers: one outlet per worker (its inbox). A trait, so that the
/// hub does not depend on the worker and dependencies run one way.
pub trait Outlet: Send + Sync + fmt::Debug {
    fn deliver(&self, publication: Publication);
}
