//! The default admin socket path: one rule, used by both `pushd` and `pushctl`.
//!
//! 1. `$PUSHD_SOCKET` when set (read by the command-line parsers, not here);
//! 2. else `$XDG_RUNTIME_DIR/pushd.sock` when `XDG_RUNTIME_DIR` is set and not empty;
//! 3. else `/tmp/pushd-EUID/pushd.sock`.
//!
//! The uid in the last form keeps two users of one machine from colliding.
//! Its directory is the user's own: pushd creates it with mode 0700, and
//! both programs refuse it (naming it) when it is owned by someone else or
//! open to others, so another local user cannot squat the path before pushd
//! starts (pushd would refuse to start) or stand in for pushd (pushctl would
//! talk to an impostor). The socket itself is created with mode 0600
//! wherever it lives.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
        _ => fallback_dir(euid).join(SOCKET_FILE_NAME),
    }
}

/// The directory of the last rule: `/tmp/pushd-EUID`.
pub fn fallback_dir(euid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/pushd-{euid}"))
}

/// For a socket in the fallback directory of `euid`: that the directory (if
/// it exists) is a directory of that user's that nobody else may enter, and
/// that the socket (if it exists) is that user's. Other paths were chosen
/// by the operator and are not checked. The error names the culprit.
pub fn check_private(socket: &Path, euid: u32) -> Result<(), String> {
    let dir = fallback_dir(euid);
    if socket.parent() != Some(dir.as_path()) {
        return Ok(());
    }
    check_private_in(&dir, socket, euid)
}

/// [`check_private`] for the directory `dir` of `socket`.
fn check_private_in(dir: &Path, socket: &Path, euid: u32) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(format!("{} is not a directory", dir.display()));
        }
        Ok(meta) if meta.uid() != euid => {
            return Err(format!(
                "{} belongs to uid {}, not to this user ({euid})",
                dir.display(),
                meta.uid()
            ));
        }
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            return Err(format!(
                "{} is open to other users (mode {:o}; it must be 0700)",
                dir.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(format!("cannot inspect {}: {err}", dir.display())),
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.uid() != euid => Err(format!(
            "{} belongs to uid {}, not to this user ({euid})",
            socket.display(),
            meta.uid()
        )),
        _ => Ok(()),
    }
}

/// This process's effective user id.
#[allow(unsafe_code)]
pub fn effective_uid() -> u32 {
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
    fn falls_back_to_a_directory_of_the_users_own_in_tmp() {
        assert_eq!(
            socket_path_for(None, 0),
            PathBuf::from("/tmp/pushd-0/pushd.sock")
        );
        assert_eq!(
            socket_path_for(Some("".into()), 7),
            PathBuf::from("/tmp/pushd-7/pushd.sock")
        );
    }

    #[test]
    fn a_directory_of_another_user_or_open_to_others_is_refused_by_name() {
        let me = effective_uid();
        let base =
            std::env::temp_dir().join(format!("pushd-socket-path-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        let socket = base.join(SOCKET_FILE_NAME);
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_private_in(&base, &socket, me), Ok(()));
        let someone_else = check_private_in(&base, &socket, me + 1).unwrap_err();
        assert!(
            someone_else.contains(&base.display().to_string()),
            "{someone_else}"
        );
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let open = check_private_in(&base, &socket, me).unwrap_err();
        assert!(open.contains("755"), "{open}");
        std::fs::remove_dir_all(&base).unwrap();
        // Elsewhere than the fallback place: the operator's choice, not checked.
        assert_eq!(check_private(Path::new("/tmp/elsewhere.sock"), me), Ok(()));
    }
}
