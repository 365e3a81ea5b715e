//! `pushctl unban UID...` and `pushctl bans`. (Bans are made by `kick --ban`.)

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, print_json, uid_arguments};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// Lifts bans; positive when at least one uid was banned.
pub async fn unban(
    client: &mut Client,
    uids: &[String],
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let uids = uid_arguments(uids)?;
    let Response::Unbanned { uids } = client.request(Request::Unban { uids }).await? else {
        return Err(CtlError::Protocol("expected an unban result".into()));
    };
    if json {
        print_json(out, &json!({ "unbanned": uids }))?;
    } else if uids.is_empty() {
        writeln!(out, "none of the uids was banned")?;
    } else {
        for uid in &uids {
            writeln!(out, "unbanned {uid}")?;
        }
    }
    Ok(Answer::from_bool(!uids.is_empty()))
}

/// Lists active bans.
pub async fn list(
    client: &mut Client,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let Response::Bans { bans } = client.request(Request::Bans).await? else {
        return Err(CtlError::Protocol("expected a list of bans".into()));
    };
    if json {
        print_json(out, &bans)?;
    } else {
        writeln!(out, "{}", render::ban_table(&bans))?;
    }
    Ok(Answer::Positive)
}
