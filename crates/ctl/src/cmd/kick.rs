//! `pushctl kick UID...`, `pushctl kick --connection ID` and `pushctl kick
//! --idle-over DUR`.

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, print_json, uid_arguments};
use crate::cli::KickArgs;
use crate::client::Client;
use crate::error::CtlError;
use crate::render::connections;

/// Kicks; positive when something was kicked (always, for `--idle-over`).
pub async fn run(
    client: &mut Client,
    args: KickArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let by_idle = args.idle_over.is_some();
    let ban = args.ban;
    let mut banned = Vec::new();
    let request = match (args.idle_over, args.connection) {
        (Some(idle), _) => Request::KickIdle {
            idle_over_ms: idle.as_millis() as u64,
            reason: args.reason,
        },
        (None, Some(connection)) => Request::KickConnection {
            connection,
            reason: args.reason,
        },
        (None, None) => {
            let listed = match &args.group {
                Some(group) => {
                    let members = super::group::member_uids(client, group).await?;
                    if members.is_empty() {
                        if json {
                            print_json(out, &json!({ "connections": 0, "uids": [] }))?;
                        } else {
                            writeln!(out, "{group} has no members")?;
                        }
                        return Ok(Answer::Negative);
                    }
                    members
                }
                None => args.uids.clone(),
            };
            let uids = uid_arguments(&listed)?;
            if ban.is_some() {
                banned.clone_from(&uids);
            }
            Request::Kick {
                uids,
                reason: args.reason,
                ban_ms: args.ban.map(|ban| ban.as_millis() as u64),
            }
        }
    };
    let Response::Kicked {
        connections: total,
        uids,
    } = client.request(request).await?
    else {
        return Err(CtlError::Protocol("expected a kick result".into()));
    };
    if json {
        print_json(out, &json!({ "connections": total, "uids": uids }))?;
    } else {
        for kicked in &uids {
            writeln!(
                out,
                "kicked {} ({})",
                kicked.uid,
                connections(kicked.connections)
            )?;
        }
        if let Some(ban) = ban {
            for uid in &banned {
                writeln!(out, "banned {uid} for {}", humantime::format_duration(ban))?;
            }
        }
        if by_idle {
            writeln!(out, "{} kicked for being idle", connections(total))?;
        } else if total == 0 {
            writeln!(out, "none of the uids was online")?;
        }
    }
    Ok(Answer::from_bool(by_idle || total > 0))
}
