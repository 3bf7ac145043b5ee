//! Halley: a pub/sub push server.
