//! `pushctl events`: presence events as they happen, until interrupted.

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::Value;

use super::Answer;
use crate::client::Client;
use crate::error::CtlError;

/// Prints each event as it comes: its JSON line with `--json`, else one
/// aligned line for people. Ends when pushd does (exit 0).
pub async fn run(
    client: &mut Client,
    types: Vec<String>,
    since: Option<String>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let Response::Events = client.request(Request::Events { types, since }).await? else {
        return Err(CtlError::Protocol("expected the events stream".into()));
    };
    while let Some(line) = client.next_line().await? {
        if json {
            out.write_all(&line)?;
            writeln!(out)?;
        } else {
            let event: Value = serde_json::from_slice(&line)
                .map_err(|err| CtlError::Protocol(format!("an event that is not JSON: {err}")))?;
            writeln!(out, "{}", render(&event))?;
        }
        // Each event is seen when it happens, also through a pipe.
        out.flush()?;
    }
    Ok(Answer::Positive)
}

/// `TIME TYPE UID [node=NODE conn=N peer=ADDR] [reason=R] [seq=N data=TEXT]`, the
/// time in UTC, a message's text JSON-quoted (it may hold newlines); a gap
/// as `TIME gap after=ID`.
fn render(event: &Value) -> String {
    let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
    let at = event["at_ms"].as_u64().unwrap_or_default();
    let time = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(at),
    );
    if event["type"] == "gap" {
        return format!(
            "{time}  gap        after={}: some events are gone",
            text("after")
        );
    }
    let mut line = format!("{time}  {:<10} {}", text("type"), text("uid"));
    if let Some(conn) = event["conn"].as_u64() {
        line.push_str(&format!(
            "  node={} conn={conn} peer={}",
            text("node"),
            text("peer")
        ));
    }
    if let Some(reason) = event["reason"].as_str() {
        line.push_str(&format!(" reason={reason}"));
    }
    if let Some(seq) = event["seq"].as_u64() {
        line.push_str(&format!(" seq={seq} data={}", event["data"]));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn events_read_as_one_line_each() {
        let event = serde_json::json!({
            "id": "1-2", "type": "disconnect", "uid": "42", "node": "n",
            "at_ms": 1_764_684_000_123u64, "conn": 3, "peer": "127.0.0.1:5000", "reason": "client"
        });
        assert_eq!(
            render(&event),
            "2025-12-02T14:00:00.123Z  disconnect 42  node=n conn=3 peer=127.0.0.1:5000 reason=client"
        );
        let message = serde_json::json!({
            "type": "message", "uid": "42", "node": "n", "at_ms": 1_764_684_000_123u64, "conn": 3,
            "peer": "127.0.0.1:5000", "seq": 2, "data": "hi\nthere"
        });
        assert_eq!(
            render(&message),
            "2025-12-02T14:00:00.123Z  message    42  node=n conn=3 peer=127.0.0.1:5000 seq=2 data=\"hi\\nthere\""
        );
        let online = serde_json::json!({"type": "online", "uid": "42", "at_ms": 0});
        assert_eq!(render(&online), "1970-01-01T00:00:00.000Z  online     42");
    }
}
