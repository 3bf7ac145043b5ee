//! Channels: the shared hub that numbers and encodes each publish once, and each
//! worker's own index of which of its connections listen to which channel.

pub mod hub;
pub mod topics;
