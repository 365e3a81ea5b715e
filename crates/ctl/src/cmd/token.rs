//! `pushctl token UID`: mint a token for `pushd --auth token`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use pushd_proto::token::{self, TokenError};
use serde_json::json;

use super::{Answer, print_json, uid_argument};
use crate::error::CtlError;

/// Prints a token for `uid` valid for `ttl`, signed with the secret in `secret_file`.
pub fn run(
    uid: &str,
    ttl: Duration,
    secret_file: &Path,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let uid = uid_argument(uid)?;
    let secret = token::read_secret_file(secret_file).map_err(usage)?;
    let exp = token::now_secs() + ttl.as_secs().max(1);
    let token = token::mint(&secret, &uid, exp).map_err(usage)?;
    if json {
        print_json(out, &json!({ "uid": uid, "exp": exp, "token": token }))?;
    } else {
        writeln!(out, "{token}")?;
    }
    Ok(Answer::Positive)
}

fn usage(err: TokenError) -> CtlError {
    CtlError::Usage(err.to_string())
}
