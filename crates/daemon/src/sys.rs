//! The one OS setting pushd adjusts for itself: its open-file limit. Public
//! because pushbench, which opens as many sockets as pushd does, needs the same.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft open-file limit to the hard limit (each connection is a
/// file descriptor; the soft default is often 1,024) and returns the soft
/// limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// File descriptors kept free of WebSocket clients: the `others` that the
/// text port and the HTTP listeners may hold (their caps), and 64 for the
/// admin socket and pushd's own needs; a quarter of a small limit at most.
pub(crate) fn fd_headroom(limit: u64, others: u64) -> u64 {
    (others + 64).min(limit / 4)
}
