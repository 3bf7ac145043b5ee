//! What every mio loop here shares.

use std::io;
use std::time::Duration;

use mio::{Events, Poll};

/// Waits for readiness; a signal interrupting the wait is not an error, the wait
/// simply returns with no events.
pub fn wait(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        other => other,
    }
}
