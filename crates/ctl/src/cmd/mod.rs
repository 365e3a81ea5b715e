//! One module per subcommand. Each asks the daemon, prints the answer (text
//! or `--json`) and says whether the answer was positive.

pub mod ban;
pub mod drain;
pub mod events;
pub mod group;
pub mod kick;
pub mod list;
pub mod mailbox;
pub mod online;
pub mod push;
pub mod reload;
pub mod stats;
pub mod token;
pub mod upgrade;
pub mod watch;

use std::io::{Read, Write};

use pushd_proto::uid::Uid;
use serde::Serialize;

use crate::error::CtlError;

/// How a successful command ended, as an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Done, or yes (exit 0).
    Positive,
    /// Nothing matched: offline, nothing kicked (exit 1).
    Negative,
}

impl Answer {
    /// `Positive` when `yes`.
    pub fn from_bool(yes: bool) -> Self {
        if yes {
            Answer::Positive
        } else {
            Answer::Negative
        }
    }

    /// The exit status.
    pub fn exit_status(self) -> u8 {
        match self {
            Answer::Positive => 0,
            Answer::Negative => 1,
        }
    }
}

/// Writes `value` as one line of JSON.
pub fn print_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), CtlError> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// The message argument of `send` and `broadcast`: itself, or stdin for `-`
/// with one trailing newline (`\n` or `\r\n`) removed.
pub fn message_argument(arg: String) -> Result<String, CtlError> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| CtlError::Usage("the message on stdin is not valid UTF-8".into()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Checks every uid argument, as [`uid_argument`] does.
pub fn uid_arguments(uids: &[String]) -> Result<Vec<Uid>, CtlError> {
    uids.iter().map(|uid| uid_argument(uid)).collect()
}

/// Checks a uid argument like the daemon will, so a typo is a usage error.
pub fn uid_argument(uid: &str) -> Result<Uid, CtlError> {
    Uid::parse(uid).map_err(|err| CtlError::Usage(format!("invalid uid {uid:?}: {err}")))
}
