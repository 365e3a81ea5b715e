//! `pushctl upgrade`: pushd hands everything to a new process of itself.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use pushd_proto::admin::{Request, Response, UpgradeInfo};
use serde_json::json;

use super::{Answer, print_json};
use crate::client::Client;
use crate::error::CtlError;

/// How long pushctl waits: the new process's start and hello (10 s), the
/// TLS connections' 1012 (2 s and their closes), and its taking over (30 s).
const LIMIT: Duration = Duration::from_secs(60);

/// Positive once the new process serves; negative when it did not take over.
pub async fn run(
    client: &mut Client,
    binary: Option<PathBuf>,
    or_drain: Option<Duration>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    if or_drain.is_some_and(|over| over > super::drain::MAX_WINDOW) {
        return Err(CtlError::Usage("--or-drain: at most 1 day".into()));
    }
    let binary = match binary {
        // pushd starts it from its own directory: a relative path would mislead.
        Some(binary) => Some(
            std::path::absolute(&binary)
                .map_err(|err| CtlError::Usage(format!("--binary {}: {err}", binary.display())))?,
        ),
        None => None,
    };
    let request = Request::Upgrade {
        binary: binary.map(|path| path.to_string_lossy().into_owned()),
        drain_if_refused_ms: or_drain.map(|over| over.as_millis() as u64),
    };
    match client
        .request_within(request, LIMIT + or_drain.unwrap_or_default())
        .await?
    {
        Response::Upgraded(upgraded) => {
            let UpgradeInfo {
                old_pid,
                old_version,
                new_pid,
                new_version,
                connections,
                took_ms,
            } = *upgraded;
            if json {
                let upgraded = json!({
                    "old_pid": old_pid, "old_version": old_version, "new_pid": new_pid,
                    "new_version": new_version, "connections": connections, "took_ms": took_ms,
                });
                print_json(out, &upgraded)?;
            } else {
                let took = humantime::format_duration(Duration::from_millis(took_ms));
                let s = if connections == 1 { "" } else { "s" };
                writeln!(
                    out,
                    "upgraded: pushd {old_version} (pid {old_pid}) -> {new_version} (pid {new_pid}), \
                     {connections} connection{s} handed over in {took}"
                )?;
            }
            Ok(Answer::Positive)
        }
        Response::UpgradeFailed { reason, drained } => {
            if json {
                let failed = json!({ "upgraded": false, "reason": reason, "drained": drained });
                print_json(out, &failed)?;
            }
            match drained {
                Some(closed) => {
                    eprintln!("pushctl: upgrade refused: {reason}");
                    let s = if closed == 1 { "" } else { "s" };
                    writeln!(
                        out,
                        "drained instead: closed {closed} connection{s}; restart pushd"
                    )?;
                }
                None => eprintln!("pushctl: upgrade failed: {reason}; pushd serves on"),
            }
            Ok(Answer::Negative)
        }
        _ => Err(CtlError::Protocol("expected an upgrade answer".into())),
    }
}
