//! `pushctl send UID MESSAGE` and `pushctl broadcast MESSAGE`.

use std::io::Write;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, message_argument, print_json, uid_argument};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// `pushctl send --connection ID MESSAGE`: positive when the connection took it.
pub async fn send_connection(
    client: &mut Client,
    connection: String,
    message: String,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let message = message_argument(message)?;
    let request = Request::SendConnection {
        connection: connection.clone(),
        message,
    };
    let Response::Delivered { connections, .. } = client.request(request).await? else {
        return Err(CtlError::Protocol("expected a delivery count".into()));
    };
    if json {
        print_json(
            out,
            &json!({ "connection": connection, "delivered": connections }),
        )?;
    } else if connections > 0 {
        writeln!(out, "delivered to connection {connection}")?;
    } else {
        writeln!(out, "no node has connection {connection}")?;
    }
    Ok(Answer::from_bool(connections > 0))
}

/// Pushes to one uid; positive when a connection took it or it waits in the
/// uid's mailbox.
pub async fn send(
    client: &mut Client,
    uid: &str,
    message: String,
    transient: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let uid = uid_argument(uid)?;
    let message = message_argument(message)?;
    let request = Request::Send {
        uid: uid.clone(),
        message,
        transient,
    };
    let Response::Delivered {
        connections,
        queued,
    } = client.request(request).await?
    else {
        return Err(CtlError::Protocol("expected a delivery count".into()));
    };
    if json {
        print_json(
            out,
            &json!({ "uid": uid, "delivered": connections, "queued": queued, "connections": connections }),
        )?;
    } else if connections > 0 {
        writeln!(
            out,
            "delivered to {} of {uid}",
            render::connections(connections)
        )?;
    } else if queued {
        writeln!(out, "{uid} is offline; queued for its next connection")?;
    } else {
        writeln!(out, "{uid} is offline")?;
    }
    Ok(Answer::from_bool(connections > 0 || queued))
}

/// Pushes to every bound connection; always positive.
pub async fn broadcast(
    client: &mut Client,
    message: String,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let message = message_argument(message)?;
    let connections = delivered(client.request(Request::Broadcast { message }).await?)?;
    if json {
        print_json(out, &json!({ "connections": connections }))?;
    } else {
        writeln!(out, "delivered to {}", render::connections(connections))?;
    }
    Ok(Answer::Positive)
}

fn delivered(response: Response) -> Result<u64, CtlError> {
    match response {
        Response::Delivered { connections, .. } => Ok(connections),
        _ => Err(CtlError::Protocol("expected a delivery count".into())),
    }
}
