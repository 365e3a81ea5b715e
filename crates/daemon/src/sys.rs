//! The one OS setting pushd adjusts for itself: its open-file limit.

/// Raises the soft open-file limit to the hard limit (each connection is a
/// file descriptor; the soft default is often 1,024) and returns the soft
/// limit in force afterwards.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// File descriptors kept free of WebSocket clients, for the text port, the
/// admin socket and pushd's own needs: 64, or a quarter of a small limit.
pub fn fd_headroom(limit: u64) -> u64 {
    64.min(limit / 4)
}
