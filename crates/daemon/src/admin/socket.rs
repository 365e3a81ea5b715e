//! Creating the admin socket without ever displacing a live daemon.
//!
//! interprocess's `try_overwrite` would delete a socket that a running pushd
//! still serves. Instead: if the path exists, try to connect. A connection
//! means something is listening there (refuse to start); a refused connection
//! means a stale file left by a killed daemon (remove it, then bind).

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use tracing::info;

/// How long the liveness probe waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds the admin socket at `path` with mode 0600, replacing a stale file.
pub async fn bind(path: &Path) -> anyhow::Result<Listener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            bail!(
                "{} exists and is not a socket; remove it or pick another --socket",
                path.display()
            )
        }
        Ok(_) => {
            if is_served(path).await? {
                bail!(
                    "another pushd is already serving {} (stop it first, or pick another --socket)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale admin socket {}", path.display()))?;
            info!(socket = %path.display(), "removed stale admin socket");
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot inspect admin socket {}", path.display()));
        }
    }
    let name = path.to_fs_name::<GenericFilePath>()?;
    ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .with_context(|| format!("cannot listen on admin socket {}", path.display()))
}

/// Whether something accepts connections on the socket at `path`.
async fn is_served(path: &Path) -> anyhow::Result<bool> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    match tokio::time::timeout(PROBE_TIMEOUT, Stream::connect(name)).await {
        Ok(Ok(_stream)) => Ok(true),
        Ok(Err(err)) if err.kind() == ErrorKind::ConnectionRefused => Ok(false),
        Ok(Err(err)) => Err(err)
            .with_context(|| format!("cannot probe existing admin socket {}", path.display())),
        // Connecting hangs only when a listener exists but does not accept.
        Err(_) => Ok(true),
    }
}
