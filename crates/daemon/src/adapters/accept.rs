//! The accept loop shared by every listener (TCP and the admin socket), and its
//! error handling.
//!
//! Out of file descriptors, `accept` fails and the pending connection stays
//! in the kernel's backlog, where its client waits for nothing. pushd keeps
//! one spare descriptor per listener (an open `/dev/null`) for that moment:
//! it closes the spare, accepts the pending connection, closes it at once
//! (the client sees the connection end instead of hanging), and reopens the
//! spare. Existing connections are not affected, and accepting resumes by
//! itself as soon as descriptors are free again.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::counters::{Counter, Counters};
use crate::logging::Throttled;

/// A listener the loop can accept from.
pub(crate) trait Acceptor {
    /// An accepted connection.
    type Stream: Send + 'static;
    /// Who connected (a TCP address; nothing for the admin socket).
    type Peer: Send + 'static;

    /// The next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Peer)>> + Send;
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;
    type Peer = SocketAddr;

    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

impl Acceptor for interprocess::local_socket::tokio::Listener {
    type Stream = interprocess::local_socket::tokio::Stream;
    type Peer = ();

    async fn accept(&self) -> io::Result<(Self::Stream, ())> {
        Ok((
            interprocess::local_socket::traits::tokio::Listener::accept(self).await?,
            (),
        ))
    }
}

/// The most connections a listener serves at once; one more is closed as
/// soon as it is accepted, and counted.
#[derive(Debug, Clone)]
pub(crate) struct Cap {
    slots: Arc<Semaphore>,
    refused: Counter,
}

impl Cap {
    /// `max` connections at once; the ones refused are counted in `refused`.
    pub(crate) fn new(max: usize, refused: Counter) -> Self {
        Cap {
            slots: Arc::new(Semaphore::new(max)),
            refused,
        }
    }
}

/// Accepts connections until shutdown and runs `connection` for each in its own
/// tracked task, with the listener's shared `state` and the shutdown token.
/// `name` names the listener in log messages; connections closed unserved for
/// lack of file descriptors, or over `cap`, are counted in `counters`. (The
/// WebSocket listener has no `cap`: its admission does more, see `ws::admission`.)
#[allow(clippy::too_many_arguments)] // one per thing a listener has of its own
pub(crate) async fn serve<L, S, F, Fut>(
    listener: L,
    name: &'static str,
    counters: &Counters,
    cap: Option<&Cap>,
    state: &Arc<S>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    connection: F,
) where
    L: Acceptor,
    S: Send + Sync + 'static,
    F: Fn(L::Stream, L::Peer, Arc<S>, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut errors = Throttled::new(name, "new connections are refused until it recovers");
    let mut spare = File::open("/dev/null").ok();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let served = connection(stream, peer, state.clone(), shutdown.clone());
                match cap.map(|cap| (cap.slots.clone().try_acquire_owned(), cap.refused)) {
                    None => {
                        tracker.spawn(served);
                    }
                    Some((Ok(slot), _)) => {
                        tracker.spawn(async move {
                            served.await;
                            drop(slot);
                        });
                    }
                    // Counted first, so that whoever sees it closed sees it counted;
                    // dropped unpolled, the stream closes now.
                    Some((Err(_), refused)) => {
                        counters.bump(refused);
                        drop(served);
                    }
                }
            }
            Err(err) if is_out_of_descriptors(&err) => {
                errors.warn(&format_args!("accept failed: {err}"));
                if let Some(file) = spare.take() {
                    drop(file);
                    if let Ok(Ok((stream, _))) =
                        tokio::time::timeout(SPARE_ACCEPT, listener.accept()).await
                    {
                        drop(stream);
                        counters.bump(Counter::ConnectionsRefused);
                    }
                }
                // Another thread may take the descriptor freed above before the
                // spare is reopened; trying again at every failure rearms the
                // spare once one is free, instead of leaving the backlog to hang.
                spare = File::open("/dev/null").ok();
                if spare.is_none() {
                    tokio::time::sleep(BACKOFF).await;
                }
            }
            Err(err) => {
                errors.warn(&format_args!("accept failed: {err}"));
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// How long to wait for the pending connection once the spare is closed.
const SPARE_ACCEPT: Duration = Duration::from_millis(10);

/// EMFILE (this process) or ENFILE (the whole system).
fn is_out_of_descriptors(err: &io::Error) -> bool {
    let errno = err.raw_os_error().map(Errno::from_raw);
    matches!(errno, Some(Errno::EMFILE | Errno::ENFILE))
}

/// How long to pause accepting after a failure that the spare descriptor
/// cannot absorb, so the loop does not spin while nothing can be accepted.
const BACKOFF: Duration = Duration::from_millis(100);
