//! The old process of a live upgrade, in the order things happen:
//!
//! 1. start the new binary with this process's arguments and environment,
//!    and `PUSHD_UPGRADE_FD` naming its end of a socket pair; wait for its
//!    hello and check the format it speaks;
//! 2. stop accepting (the kernel keeps new clients in the backlog for the new
//!    process); the text-port, HTTP and admin connections end after their
//!    request in flight, and the text-port and HTTP ones are waited for;
//! 3. TLS connections, whose state cannot travel, are closed with 1012, each
//!    at a random moment over [`TLS_DRAIN`];
//! 4. every WebSocket session stops where it is and reports; then the
//!    registry freezes (a push answers `fail` from here) and its state is
//!    taken, final;
//! 5. send the listeners, the state and the connections; wait for `Ready`.
//!
//! Anything that fails before `Ready` undoes 2–4 (the registry thaws, the
//! sessions go on, accepting starts again on the kept listeners) and kills
//! the new process: the old one keeps serving, nothing closed but what step
//! 2 and 3 ended.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use tracing::{info, warn};

use super::new::UPGRADE_FD;
use super::wire::{self, FORMAT, HandedConn, MAX_FDS, Message};
use crate::Serving;
use crate::adapters::ws::Frozen;
use crate::config::Config;
use crate::core::saved::Saved;

/// How long the old process stays after the new one serves: its answer to
/// `pushctl upgrade` is written meanwhile.
pub(crate) const LINGER: Duration = Duration::from_millis(200);

/// Over how long TLS connections are closed with 1012.
pub(crate) const TLS_DRAIN: Duration = Duration::from_secs(2);

/// How long the new process may take to say hello, and then to take over.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long sessions may take to stop and report.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// A live upgrade that happened.
#[derive(Debug, Clone)]
pub(crate) struct Upgraded {
    pub(crate) old_pid: u32,
    pub(crate) new_pid: u32,
    pub(crate) old_version: String,
    pub(crate) new_version: String,
    /// WebSocket connections handed over.
    pub(crate) connections: u64,
    /// From the new process's start to its `Ready`.
    pub(crate) took: Duration,
}

/// Why an upgrade did not happen (this process serves on).
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    /// For a person.
    pub(crate) reason: String,
    /// The new binary speaks another hand-over format: a drain, then a
    /// restart, is the way to it.
    pub(crate) refused: bool,
}

impl From<String> for Failed {
    fn from(reason: String) -> Self {
        Failed {
            reason,
            refused: false,
        }
    }
}

/// Carries out one upgrade; `Err` says why the new process did not take
/// over (and this one serves on).
pub(crate) async fn run(
    serving: &Serving,
    config: &Config,
    binary: Option<PathBuf>,
) -> Result<Upgraded, Failed> {
    let binary = match binary {
        Some(binary) => binary,
        None => started_from().map_err(|err| format!("cannot find pushd's own binary: {err}"))?,
    };
    let started = Instant::now();
    let (channel, mut child) =
        spawn(&binary).map_err(|err| format!("cannot start {}: {err}", binary.display()))?;
    let new_pid = child.id();
    info!(binary = %binary.display(), new_pid, "upgrade: the new pushd started");
    let (channel, hello) = blocking(channel, |channel| {
        channel.set_read_timeout(Some(HELLO_TIMEOUT))?;
        let hello = wire::receive(channel)?.0;
        Ok(hello)
    })
    .await
    .map_err(|err| {
        give_up(
            &mut child,
            format!("the new pushd did not say hello: {err}"),
        )
    })?;
    let other_format = matches!(hello, Message::Hello { format, .. } if format != FORMAT);
    let new_version = match greeted(hello) {
        Ok(version) => version,
        Err(reason) => {
            // Told why, so that it exits saying so, before it is stopped.
            let refused = Message::Refused {
                reason: reason.clone(),
            };
            let _ = wire::send(&channel, &refused, &[]);
            return Err(Failed {
                reason: give_up(&mut child, reason),
                refused: other_format,
            });
        }
    };

    // From here on, a failure undoes what was stopped.
    serving.stop_accepting().await;
    let requests = serving.requests.clone();
    requests.close();
    let _ = tokio::time::timeout(config.handshake_timeout, requests.wait()).await;
    requests.reopen();
    if serving.node.secrets.tls().is_some() {
        drain_tls(serving).await;
    }
    // Cluster mode: off the bus, without leaving (pushes routed here meanwhile
    // find no subscriber: a confirmed one answers fail, a pushd.v2 one is in its
    // uid's stream, where the new process catches its connections up).
    serving.pause_cluster().await;
    let ws = &serving.ws_server;
    let frozen = freeze(serving).await;
    let saved = serving.node.registry.freeze();
    let handed = frozen.len() as u64;
    let sent = send_everything(channel, serving, saved, frozen).await;
    let outcome = match sent {
        Ok(Message::Ready { .. }) => Ok(()),
        Ok(Message::Failed { reason }) => {
            Err(format!("the new pushd could not take over: {reason}"))
        }
        Ok(other) => Err(format!("the new pushd said {other:?}")),
        Err(err) => Err(format!("the new pushd did not take over: {err}")),
    };
    match outcome {
        Ok(()) => {
            ws.handover.let_go();
            reap(child);
            Ok(Upgraded {
                old_pid: std::process::id(),
                new_pid,
                old_version: env!("CARGO_PKG_VERSION").to_owned(),
                new_version,
                connections: handed,
                took: started.elapsed(),
            })
        }
        Err(why) => {
            serving.node.registry.thaw();
            ws.handover.thaw();
            serving.resume_cluster();
            if let Err(err) = serving.accept_again() {
                warn!(%err, "cannot accept again after a failed upgrade");
            }
            Err(give_up(&mut child, why).into())
        }
    }
}

/// The new process's version, if its hello is one this process can hand over
/// to: the same hand-over format. Else why not, for a person.
fn greeted(hello: Message) -> Result<String, String> {
    match hello {
        Message::Hello {
            format, version, ..
        } if format == FORMAT => Ok(version),
        Message::Hello {
            format, version, ..
        } => Err(format!(
            "pushd {version} takes over in hand-over format {format}; this pushd ({}) \
             speaks format {FORMAT}: stop it and start the new one (drain first)",
            env!("CARGO_PKG_VERSION")
        )),
        other => Err(format!("the new pushd said {other:?} instead of hello")),
    }
}

/// The path this process was started from, read again: after a package
/// upgrade it holds the new binary (Linux marks the old one "(deleted)").
fn started_from() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Starts `binary` with this process's arguments and environment, and its
/// end of a new socket pair in `PUSHD_UPGRADE_FD`.
fn spawn(binary: &Path) -> io::Result<(UnixStream, Child)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    // Theirs crosses exec; ours does not.
    fcntl(theirs.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))?;
    let child = Command::new(binary)
        .args(std::env::args_os().skip(1))
        .env(UPGRADE_FD, theirs.as_raw_fd().to_string())
        .spawn()?;
    drop(theirs);
    Ok((UnixStream::from(ours), child))
}

/// Kills the new process (if it still runs), reaps it, and returns `why`.
fn give_up(child: &mut Child, why: String) -> String {
    let _ = child.kill();
    let _ = child.wait();
    why
}

/// Reaps the new process when it ends (it outlives this one unless it fails).
fn reap(mut child: Child) {
    std::thread::spawn(move || child.wait());
}

/// Runs `work` on the channel in a blocking thread; gives the channel back.
async fn blocking<T: Send + 'static>(
    channel: UnixStream,
    work: impl FnOnce(&UnixStream) -> io::Result<T> + Send + 'static,
) -> io::Result<(UnixStream, T)> {
    tokio::task::spawn_blocking(move || {
        let result = work(&channel)?;
        Ok((channel, result))
    })
    .await
    .map_err(io::Error::other)?
}

/// Closes every TLS connection with 1012 at a random moment over
/// [`TLS_DRAIN`], and waits (bounded) until they are gone.
async fn drain_tls(serving: &Serving) {
    let registry = &serving.node.registry;
    let handles = registry.open_connections();
    info!(
        connections = handles.len(),
        "upgrade: closing the TLS connections with 1012"
    );
    for handle in handles {
        let at = TLS_DRAIN.mul_f64(fastrand::f64());
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            handle.request_close(crate::core::conn::CloseRequest::Restart);
        });
    }
    let until = Instant::now() + TLS_DRAIN + crate::config::CLOSE_TIMEOUT;
    while registry.sizes().connections > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops every session where it is; returns their reports (bounded wait:
/// a connection closing meanwhile never reports).
async fn freeze(serving: &Serving) -> Vec<Frozen> {
    let ws = &serving.ws_server;
    let mut reports = ws.handover.freeze(ws);
    let expected = serving.node.registry.open_connections().len();
    let mut frozen = Vec::with_capacity(expected);
    let until = tokio::time::Instant::now() + FREEZE_TIMEOUT;
    while frozen.len() < expected {
        match tokio::time::timeout_at(until, reports.recv()).await {
            Ok(Some(report)) => frozen.push(report),
            _ => break,
        }
    }
    frozen
}

/// Sends the listeners, `saved` and the frozen connections (each with what
/// its handle holds now that nothing is pushed), then waits for the answer.
async fn send_everything(
    channel: UnixStream,
    serving: &Serving,
    saved: Saved,
    frozen: Vec<Frozen>,
) -> io::Result<Message> {
    let listening: Vec<(wire::ListenerKind, OwnedFd)> = (serving.listening.iter())
        .map(|(kind, fd)| Ok((*kind, fd.try_clone()?)))
        .collect::<io::Result<_>>()?;
    let registry = &serving.node.registry;
    let node_id = serving.node.cluster.as_ref().map(|c| c.id().to_owned());
    let now_ms = serving.node.clock.now_ms();
    // Each socket goes as its handle's descriptor (the message carries a copy).
    let connections: Vec<(HandedConn, Frozen)> = frozen
        .into_iter()
        .filter_map(|mut frozen| {
            frozen.handle.socket()?;
            let parts = std::mem::take(&mut frozen.parts);
            let handle = &frozen.handle;
            let (unwritten, queued) = handle.outbound_copy();
            let conn = HandedConn {
                peer: handle.peer,
                v2: handle.v2,
                uid: (handle.uid())
                    .filter(|_| registry.is_listed(handle.id))
                    .map(|uid| uid.to_string()),
                since: frozen.since,
                connected_ms_ago: now_ms.saturating_sub(handle.connected_ms),
                idle_ms: now_ms.saturating_sub(handle.last_activity_ms()),
                next_ping_in_ms: frozen.next_ping_in.map(|d| d.as_millis() as u64),
                ping_due: parts.ping_due,
                unread: parts.unread,
                fragments: parts.fragments,
                control: parts.control,
                unwritten,
                queued,
                last_number: handle.last_number(),
            };
            Some((conn, frozen))
        })
        .collect();
    blocking(channel, move |channel| {
        let kinds = listening.iter().map(|(kind, _)| *kind).collect();
        let fds: Vec<RawFd> = listening.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        wire::send(channel, &Message::Listeners(kinds), &fds)?;
        wire::send(channel, &Message::State(saved), &[])?;
        if let Some(id) = node_id {
            wire::send(channel, &Message::NodeId(id), &[])?;
        }
        let mut connections = connections;
        while !connections.is_empty() {
            let rest = connections.split_off(connections.len().min(MAX_FDS));
            let batch = std::mem::replace(&mut connections, rest);
            let (conns, frozen): (Vec<HandedConn>, Vec<Frozen>) = batch.into_iter().unzip();
            let fds: Vec<RawFd> = (frozen.iter())
                .filter_map(|f| f.handle.socket().map(|tcp| tcp.as_raw_fd()))
                .collect();
            wire::send(channel, &Message::Connections(conns), &fds)?;
        }
        wire::send(channel, &Message::Done, &[])?;
        channel.set_read_timeout(Some(TAKE_OVER_TIMEOUT))?;
        Ok(wire::receive(channel)?.0)
    })
    .await
    .map(|(_, answer)| answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_process_of_another_format_is_refused_with_a_reason() {
        let hello = |format| Message::Hello {
            format,
            version: "9.9.9".into(),
            pid: 1,
        };
        assert_eq!(greeted(hello(FORMAT)), Ok("9.9.9".to_owned()));
        let refused = greeted(hello(FORMAT + 1)).unwrap_err();
        assert!(refused.contains("9.9.9") && refused.contains(&format!("format {}", FORMAT + 1)));
        assert!(greeted(Message::Done).is_err());
    }
}
