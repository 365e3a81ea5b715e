//! Every way pushctl can fail, and the one place they become exit statuses.

use std::path::PathBuf;

use thiserror::Error;

/// A failure that ends the command.
#[derive(Debug, Error)]
pub enum CtlError {
    /// The admin socket could not be reached.
    #[error(
        "cannot reach pushd at {}: {source} (is pushd running? start it, or point --socket / PUSHD_SOCKET at its socket)",
        path.display()
    )]
    Unreachable {
        /// The socket path tried.
        path: PathBuf,
        /// Why connecting failed.
        source: std::io::Error,
    },
    /// The admin socket's fallback place is another user's, or open to others:
    /// whatever listens there may not be this user's pushd.
    #[error("refusing the admin socket: {0}")]
    NotPrivate(String),
    /// The daemon did not answer in time.
    #[error("pushd at {} did not answer within {secs} s", path.display())]
    Timeout {
        /// The socket path used.
        path: PathBuf,
        /// The limit that passed.
        secs: u64,
    },
    /// The daemon answered with an error.
    #[error("pushd refused: {0}")]
    Refused(String),
    /// The reply could not be understood (version skew, broken daemon).
    #[error("unexpected reply from pushd: {0}")]
    Protocol(String),
    /// The command line made sense to clap but not to us (bad uid, stdin not UTF-8).
    #[error("{0}")]
    Usage(String),
    /// In cluster mode, the answer (already printed) is not confirmed by every node.
    #[error("not confirmed by the whole cluster: {}", .0.join("; "))]
    Unconfirmed(Vec<String>),
    /// Reading stdin or writing stdout failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CtlError {
    /// The exit status for this failure: 2 for "could not ask" (usage,
    /// unreachable, refused, protocol), 3 for a cluster answer missing nodes; a
    /// broken stdout pipe is not a failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            CtlError::Io(err) if err.kind() == std::io::ErrorKind::BrokenPipe => 0,
            CtlError::Unconfirmed(_) => 3,
            _ => 2,
        }
    }
}
