//! `pushctl online UID`.

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, print_json, uid_argument};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// Positive when the uid has at least one connection.
pub async fn run(
    client: &mut Client,
    uid: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let uid = uid_argument(uid)?;
    let Response::Online { uid, connections } = client.request(Request::Online { uid }).await?
    else {
        return Err(CtlError::Protocol("expected an online answer".into()));
    };
    if json {
        print_json(
            out,
            &json!({ "uid": uid, "online": connections > 0, "connections": connections }),
        )?;
    } else if connections > 0 {
        writeln!(
            out,
            "{uid} is online ({})",
            render::connections(connections)
        )?;
    } else {
        writeln!(out, "{uid} is offline")?;
    }
    Ok(Answer::from_bool(connections > 0))
}
