//! A publication as it travels from the hub to the workers: transport-neutral.
//! The payload is the push JSON `{"channel":"C","seq":N,"data":...}`, which every
//! transport carries unchanged; each worker wraps it once per transport per turn
//! (WebSocket frame, SSE event, long-poll answer).

use std::fmt;

use bytes::Bytes;

use super::hub::ChannelRef;

#[derive(Debug, Clone)]
pub struct Publication {
    /// The channel itself, not only its id: a worker compares identities, so a
    /// publication of a removed channel never reaches a newer one.
    pub channel: ChannelRef,
    pub seq: u64,
    pub payload: Bytes,
}

/// Where the hub delivers: one outlet per worker (its inbox). A trait, so that the
/// hub does not depend on the worker and dependencies run one way.
pub trait Outlet: Send + Sync + fmt::Debug {
    fn deliver(&self, publication: Publication);
    /// A channel this worker waited on (`AttachError::Syncing`) may be attached now.
    fn ready(&self, channel: ChannelRef);
    /// The broker's answer to connection `key`'s `publish` command.
    fn published(&self, key: usize, answer: String);
    /// The worker has more publications waiting than a turn should carry:
    /// publishers wait before they add more (`Hub::workers_behind`).
    fn behind(&self) -> bool {
        false
    }
}

/// The broker, as the hub sees it (`--broker`): it numbers and relays messages
/// between nodes. A trait, so that the hub does not depend on Redis.
pub trait Upstream: Send + Sync + fmt::Debug {
    /// Reachable now. When it is not, the hub numbers and delivers locally.
    fn is_up(&self) -> bool;
    /// Start relaying `channel` to this node, then tell the hub where it stands
    /// (`Hub::synced`).
    fn hold(&self, channel: &str);
    /// This node no longer holds `channel`.
    fn release(&self, channel: &str);
    /// Publish `data` (a presence event, `hub::remote::presence_data`) to `channel`
    /// through Redis.
    fn publish_event(&self, channel: &str, data: String);
    /// Who is connected to `channel` on this node changed.
    fn presence_changed(&self, channel: &str);
}
