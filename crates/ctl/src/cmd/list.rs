//! `pushctl list`.

use std::io::Write;

use pushd_proto::admin::{Request, Response};

use super::{Answer, print_json};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// Prints every online uid (a table, or a JSON array with `--json`).
pub async fn run(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<Answer, CtlError> {
    let Response::List { uids } = client.request(Request::List).await? else {
        return Err(CtlError::Protocol("expected a list".into()));
    };
    if json {
        print_json(out, &uids)?;
    } else {
        writeln!(out, "{}", render::uid_table(&uids))?;
    }
    Ok(Answer::Positive)
}
