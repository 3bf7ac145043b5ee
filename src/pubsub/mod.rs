//! Channels: the shared hub that numbers each publish and keeps its history once,
//! and each worker's own index of which of its connections listen to which channel.

pub mod channel;
mod channel_ids;
mod channel_ref;
mod channel_table;
pub mod epoch;
pub mod history;
pub mod hub;
mod names;
pub mod presence;
pub mod publication;
pub mod sequence;
pub mod subscribers;
pub mod topics;
