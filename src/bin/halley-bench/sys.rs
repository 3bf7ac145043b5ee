//! Process set-up that is about the operating system, not the protocol.

// getrlimit and setrlimit have no safe wrapper in libc.
#![allow(unsafe_code)]

/// Raises the soft open-file limit to the hard one: each connection is a descriptor,
/// and the usual soft default (1024) would cap a run long before the hard limit.
pub fn raise_nofile() -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
            }
        }
    }
    Ok(lim.rlim_cur)
}
