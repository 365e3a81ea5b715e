//! `pushctl stats`.

use std::io::Write;

use pushd_proto::admin::{Request, Response};

use super::{Answer, print_json};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// Prints the daemon's figures.
pub async fn run(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<Answer, CtlError> {
    let Response::Stats(stats) = client.request(Request::Stats).await? else {
        return Err(CtlError::Protocol("expected stats".into()));
    };
    if json {
        print_json(out, &stats)?;
    } else {
        writeln!(out, "{}", render::stats(&stats))?;
    }
    Ok(Answer::Positive)
}
