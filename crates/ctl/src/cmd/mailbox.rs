//! `pushctl mailbox` and `pushctl mailbox --clear UID...`.

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, print_json, uid_arguments};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// Lists the uids with waiting messages; always positive.
pub async fn list(
    client: &mut Client,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let Response::Mailboxes { uids } = client.request(Request::Mailboxes).await? else {
        return Err(CtlError::Protocol("expected a list of mailboxes".into()));
    };
    if json {
        print_json(out, &uids)?;
    } else {
        writeln!(out, "{}", render::mailbox_table(&uids))?;
    }
    Ok(Answer::Positive)
}

/// Empties mailboxes; positive when at least one had messages.
pub async fn clear(
    client: &mut Client,
    uids: &[String],
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let uids = uid_arguments(uids)?;
    let Response::Cleared { uids } = client.request(Request::ClearMailboxes { uids }).await? else {
        return Err(CtlError::Protocol("expected a clear result".into()));
    };
    if json {
        print_json(out, &json!({ "cleared": uids }))?;
    } else if uids.is_empty() {
        writeln!(out, "none of the uids had waiting messages")?;
    } else {
        for info in &uids {
            let plural = if info.messages == 1 { "" } else { "s" };
            writeln!(
                out,
                "cleared {} ({} message{plural})",
                info.uid, info.messages
            )?;
        }
    }
    Ok(Answer::from_bool(!uids.is_empty()))
}
