//! The new process of a live upgrade: started by the old one with
//! `PUSHD_UPGRADE_FD` naming its end of a socket pair, it says hello, takes
//! the listeners, the registry's state and the connections, and once it
//! serves says it is ready (the old process then goes).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, bail};

use super::wire::{self, HandedConn, ListenerKind, Message};
use crate::core::saved::Saved;

/// The variable that tells a pushd it is the new process of an upgrade.
pub(crate) const UPGRADE_FD: &str = "PUSHD_UPGRADE_FD";

/// What the old process handed over.
#[derive(Debug)]
pub struct Inherited {
    pub(crate) listeners: Vec<(ListenerKind, OwnedFd)>,
    pub(crate) saved: Saved,
    pub(crate) connections: Vec<(HandedConn, OwnedFd)>,
    /// Cluster mode: the node id to go on with.
    pub(crate) cluster_id: Option<String>,
    channel: UnixStream,
}

impl Inherited {
    /// Tells the old process this one could not take over (it keeps serving).
    pub(crate) fn failed(&self, reason: &str) {
        let failed = Message::Failed {
            reason: reason.to_owned(),
        };
        let _ = wire::send(&self.channel, &failed, &[]);
    }

    /// Tells the old process this one serves.
    pub(crate) fn ready(&self) -> std::io::Result<()> {
        let ready = Message::Ready {
            pid: std::process::id(),
        };
        wire::send(&self.channel, &ready, &[])
    }
}

/// Started by a live upgrade: takes everything from the old process (blocking,
/// before the runtime starts). `None` for an ordinary start.
pub fn take_over() -> Option<anyhow::Result<Inherited>> {
    let fd: RawFd = std::env::var(UPGRADE_FD).ok()?.parse().ok()?;
    let channel = UnixStream::from(inherited(fd));
    Some(receive(channel).context("taking over from the running pushd"))
}

fn receive(channel: UnixStream) -> anyhow::Result<Inherited> {
    let hello = Message::Hello {
        format: wire::FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
    };
    wire::send(&channel, &hello, &[])?;
    let mut inherited = Inherited {
        listeners: Vec::new(),
        saved: Saved::default(),
        connections: Vec::new(),
        cluster_id: None,
        channel,
    };
    loop {
        let (message, fds) = wire::receive(&inherited.channel)?;
        match message {
            Message::Refused { reason } => bail!("the running pushd refused: {reason}"),
            Message::Listeners(kinds) if kinds.len() == fds.len() => {
                inherited.listeners.extend(kinds.into_iter().zip(fds));
            }
            Message::State(saved) => inherited.saved = saved,
            Message::NodeId(id) => inherited.cluster_id = Some(id),
            Message::Connections(connections) if connections.len() == fds.len() => {
                inherited
                    .connections
                    .extend(connections.into_iter().zip(fds));
            }
            Message::Done => return Ok(inherited),
            other => bail!("unexpected in a hand-over: {other:?}"),
        }
    }
}

/// The descriptor the old process left open for this one.
#[allow(unsafe_code)]
fn inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: the old process opened this descriptor for this process alone
    // and named it in PUSHD_UPGRADE_FD; nothing else here owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
