//! Creating the admin socket without ever displacing a live daemon.
//!
//! interprocess's `try_overwrite` would delete a socket that a running pushd
//! still serves. Instead: if the path exists, try to connect. A connection
//! means something is listening there (refuse to start); a refused connection
//! means a stale file left by a killed daemon (remove it, then bind).

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use pushd_proto::socket_path;
use tracing::info;

/// How long the liveness probe waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds the admin socket at `path` with mode 0600, replacing a stale file; with `group`,
/// the socket then belongs to that group with mode 0660.
pub(crate) async fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<Listener> {
    // Resolve the group before touching the path, so a typo changes nothing.
    let gid = group.map(resolve_group).transpose()?;
    prepare_fallback_dir(path)?;
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
    // 0600 from the start; widened to the group only after the group owns it.
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .with_context(|| format!("cannot listen on admin socket {}", path.display()))?;
    if let (Some(gid), Some(group)) = (gid, group) {
        std::os::unix::fs::chown(path, None, Some(gid))
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)))
            .with_context(|| {
                format!(
                    "cannot give admin socket {} to group {group} (is pushd a member of it?)",
                    path.display()
                )
            })?;
    }
    Ok(listener)
}

/// The fallback place (`/tmp/pushd-EUID/`): created with mode 0700 if it is
/// missing, and refused, by name, if it is someone else's or open to others.
fn prepare_fallback_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let euid = socket_path::effective_uid();
    let dir = socket_path::fallback_dir(euid);
    if path.parent() != Some(dir.as_path()) {
        return Ok(());
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot create {}", dir.display()));
        }
    }
    socket_path::check_private(path, euid).map_err(|why| anyhow::Error::new(NotPrivate(why)))
}

/// The admin socket's fallback place is another user's, or open to others.
#[derive(Debug, thiserror::Error)]
#[error("refusing the admin socket: {0} (remove it, or pick another --socket)")]
pub struct NotPrivate(String);

/// A group name or numeric gid, as a gid.
fn resolve_group(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => bail!("--socket-group: no group named {group:?}"),
        Err(err) => bail!("--socket-group: cannot look up group {group:?}: {err}"),
    }
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
