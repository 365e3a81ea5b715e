//! Live upgrade: the running pushd starts the new binary and hands it its
//! listening sockets, every plain WebSocket connection with its state, and
//! what the registry holds; clients see nothing. `old` is the process that
//! goes, `new` the one that takes over, `wire` what they say to each other.

pub(crate) mod new;
pub(crate) mod old;
pub(crate) mod wire;

use std::path::PathBuf;

use tokio::sync::oneshot;

pub(crate) use old::{Failed, Upgraded};

/// An upgrade asked for (`pushctl upgrade`, or SIGUSR2 with no one to answer).
#[derive(Debug)]
pub(crate) struct Request {
    /// The binary to start; by default the one this process was started from.
    pub(crate) binary: Option<PathBuf>,
    answer: Option<oneshot::Sender<Result<Upgraded, Failed>>>,
}

impl Request {
    /// An upgrade whose outcome `answer` receives.
    pub(crate) fn new(
        binary: Option<PathBuf>,
    ) -> (Self, oneshot::Receiver<Result<Upgraded, Failed>>) {
        let (answer, outcome) = oneshot::channel();
        let request = Request {
            binary,
            answer: Some(answer),
        };
        (request, outcome)
    }

    /// SIGUSR2's: the default binary, the outcome in the log only.
    pub(crate) fn from_signal() -> Self {
        Request {
            binary: None,
            answer: None,
        }
    }

    /// Tells whoever asked.
    pub(crate) fn answer(self, outcome: Result<Upgraded, Failed>) {
        if let Some(answer) = self.answer {
            let _ = answer.send(outcome);
        }
    }
}
