//! `pushctl drain`: the node closes its WebSocket connections with 1012,
//! spread over a window, and takes no new ones.

use std::io::Write;
use std::time::Duration;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, print_json};
use crate::client::Client;
use crate::error::CtlError;

/// The longest window pushctl asks for (pushd refuses more).
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How long pushctl waits beyond the window: the last closing handshakes.
const SETTLE: Duration = Duration::from_secs(30);

/// Positive once the last connection is closed.
pub async fn run(
    client: &mut Client,
    over: Option<Duration>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    if over.is_some_and(|over| over > MAX_WINDOW) {
        return Err(CtlError::Usage("--over: at most 1 day".into()));
    }
    let request = Request::Drain {
        over_ms: over.map(|over| over.as_millis() as u64),
    };
    // Without --over the window is pushd's --drain, which pushctl does not know.
    let limit = over.unwrap_or(MAX_WINDOW) + SETTLE;
    let Response::Drained { closed, over_ms } = client.request_within(request, limit).await? else {
        return Err(CtlError::Protocol("expected a drained answer".into()));
    };
    let over = humantime::format_duration(Duration::from_millis(over_ms));
    if json {
        print_json(out, &json!({ "closed": closed, "over_ms": over_ms }))?;
    } else {
        let s = if closed == 1 { "" } else { "s" };
        writeln!(out, "drained: closed {closed} connection{s} over {over}")?;
    }
    Ok(Answer::Positive)
}
