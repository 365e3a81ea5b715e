//! `pushctl kick UID...` and `pushctl kick --idle-over DUR`.

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, print_json, uid_argument};
use crate::cli::KickArgs;
use crate::client::Client;
use crate::error::CtlError;

/// Kicks; positive when something was kicked (always, for `--idle-over`).
pub async fn run(
    client: &mut Client,
    args: KickArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let by_idle = args.idle_over.is_some();
    let request = match args.idle_over {
        Some(idle) => Request::KickIdle {
            idle_over_ms: idle.as_millis() as u64,
            reason: args.reason,
        },
        None => {
            let uids = args
                .uids
                .iter()
                .map(|uid| uid_argument(uid))
                .collect::<Result<_, _>>()?;
            Request::Kick {
                uids,
                reason: args.reason,
            }
        }
    };
    let Response::Kicked { connections, uids } = client.request(request).await? else {
        return Err(CtlError::Protocol("expected a kick result".into()));
    };
    if json {
        print_json(out, &json!({ "connections": connections, "uids": uids }))?;
    } else {
        for kicked in &uids {
            writeln!(
                out,
                "kicked {} ({} connection{})",
                kicked.uid,
                kicked.connections,
                plural(kicked.connections)
            )?;
        }
        if by_idle {
            writeln!(
                out,
                "{connections} idle connection{} kicked",
                plural(connections)
            )?;
        } else if connections == 0 {
            writeln!(out, "none of the uids was online")?;
        }
    }
    Ok(Answer::from_bool(by_idle || connections > 0))
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
