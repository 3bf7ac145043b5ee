//! Process set-up that is about the operating system, not the protocol.

/// Raises the soft open-file limit to the hard one (the server's own code): each
/// connection is a descriptor, and the usual soft default (1024) would cap a run
/// long before the hard limit.
pub fn raise_nofile() -> Result<u64, String> {
    match halley::limits::raise_open_files() {
        (0, 0) => Err(format!("getrlimit: {}", std::io::Error::last_os_error())),
        (soft, hard) if soft < hard => Err(format!(
            "setrlimit: the open-file limit stays at {soft} (hard {hard}): {}",
            std::io::Error::last_os_error()
        )),
        (soft, _) => Ok(soft),
    }
}
