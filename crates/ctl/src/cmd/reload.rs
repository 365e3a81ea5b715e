//! `pushctl reload`: the daemon reads its TLS and auth key files again.

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, print_json};
use crate::client::Client;
use crate::error::CtlError;

/// Positive when every key file loaded; a file that did not load comes back
/// as the daemon's refusal (exit 2) naming it.
pub async fn run(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<Answer, CtlError> {
    let Response::Reloaded { loaded } = client.request(Request::Reload).await? else {
        return Err(CtlError::Protocol("expected a reloaded answer".into()));
    };
    if json {
        print_json(out, &json!({ "loaded": loaded }))?;
    } else if loaded.is_empty() {
        writeln!(
            out,
            "nothing to reload: pushd reads no key files (no --tls-cert, no --auth token)"
        )?;
    } else {
        writeln!(out, "reloaded: {}", loaded.join(", "))?;
    }
    Ok(Answer::Positive)
}
