//! The default admin socket path: one rule, used by both `pushd` and `pushctl`.
//!
//! 1. `$PUSHD_SOCKET` when set (read by the command-line parsers, not here);
//! 2. else `$XDG_RUNTIME_DIR/pushd.sock` when `XDG_RUNTIME_DIR` is set and not empty;
//! 3. else `/tmp/pushd-EUID.sock`.
//!
//! The uid in the last form keeps two users of one machine from colliding,
//! and the socket is created with mode 0600 wherever it lives.

use std::path::PathBuf;

/// The file name used inside `$XDG_RUNTIME_DIR`.
pub const SOCKET_FILE_NAME: &str = "pushd.sock";

/// Returns the default admin socket path for this process (rules 2 and 3 above).
pub fn default_socket_path() -> PathBuf {
    socket_path_for(std::env::var_os("XDG_RUNTIME_DIR"), effective_uid())
}

/// The rule itself, with its inputs made explicit so it can be tested.
pub fn socket_path_for(runtime_dir: Option<std::ffi::OsString>, euid: u32) -> PathBuf {
    match runtime_dir {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join(SOCKET_FILE_NAME),
        _ => PathBuf::from(format!("/tmp/pushd-{euid}.sock")),
    }
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail (POSIX).
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_runtime_dir() {
        assert_eq!(
            socket_path_for(Some("/run/user/1000".into()), 1000),
            PathBuf::from("/run/user/1000/pushd.sock")
        );
    }

    #[test]
    fn falls_back_to_tmp_with_the_uid() {
        assert_eq!(socket_path_for(None, 0), PathBuf::from("/tmp/pushd-0.sock"));
        assert_eq!(
            socket_path_for(Some("".into()), 7),
            PathBuf::from("/tmp/pushd-7.sock")
        );
    }
}
