//! Connection tokens: JWT verification, the rules for `private:` and `user:`
//! channels, and the compact session a worker keeps for a connection. Sans I/O:
//! the wall clock comes in as `now_unix`.

pub mod rules;
pub mod session;
pub mod verify;

pub use rules::may_join;
pub use session::Session;
pub use verify::{Claims, Verifier};
