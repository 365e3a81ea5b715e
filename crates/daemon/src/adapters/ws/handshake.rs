//! The WebSocket opening handshake (RFC 6455 §4.2), server side.
//!
//! tungstenite parses the request and checks it (`create_response`), and
//! writes the answer; this file only moves the bytes, so that the connection
//! comes out of it as a bare stream that pushd frames itself (`frame`, `io`).
//! As in tungstenite, a request followed by more bytes before the answer is
//! refused: a client must wait for the 101.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response, create_response, write_response,
};

use super::stream::ClientStream;

/// Largest handshake request; past it the connection is dropped, counted
/// as a failed handshake. nginx's default for a request's headers is the same.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;

/// What a handshake opened.
#[derive(Debug)]
pub(super) enum Opened {
    /// A WebSocket: the 101 went out.
    WebSocket,
    /// A page's event stream (`GET` without `Upgrade`, accepting
    /// `text/event-stream`): nothing was answered yet (`sse` does).
    EventStream(Box<Request>),
}

/// Why a handshake did not open a WebSocket.
#[derive(Debug)]
pub(super) enum Failure {
    /// `verdict` refused it; the client got its HTTP answer.
    Refused,
    /// The request was not a WebSocket handshake, or the stream failed.
    Broken(String),
}

/// Reads the request, lets `verdict` accept it (adding to the 101) or refuse
/// it (with its answer), and writes the answer. A page's event stream is
/// returned as it came, unanswered.
pub(super) async fn accept(
    stream: &mut ClientStream,
    verdict: impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse>,
) -> Result<Opened, Failure> {
    let broken = |err: &dyn std::fmt::Display| Failure::Broken(err.to_string());
    let mut buf = Vec::with_capacity(1024);
    let request = loop {
        if buf.len() >= MAX_REQUEST {
            return Err(Failure::Broken(format!("request over {MAX_REQUEST} bytes")));
        }
        let mut chunk = (&mut *stream).take((MAX_REQUEST - buf.len()) as u64);
        if chunk.read_buf(&mut buf).await.map_err(|e| broken(&e))? == 0 {
            return Err(Failure::Broken("stream ended in the request".into()));
        }
        if let Some((len, request)) = Request::try_parse(&buf).map_err(|e| broken(&e))? {
            if len != buf.len() {
                return Err(Failure::Broken("bytes after the request".into()));
            }
            break request;
        }
    };
    if is_event_stream(&request) {
        return Ok(Opened::EventStream(Box::new(request)));
    }
    let response = create_response(&request).map_err(|e| broken(&e))?;
    let mut answer = Vec::new();
    let outcome = match verdict(&request, response) {
        Ok(response) => {
            write_response(&mut answer, &response).map_err(|e| broken(&e))?;
            Ok(Opened::WebSocket)
        }
        Err(refusal) => {
            write_response(&mut answer, &refusal).map_err(|e| broken(&e))?;
            answer.extend_from_slice(refusal.body().as_deref().unwrap_or("").as_bytes());
            Err(Failure::Refused)
        }
    };
    stream.write_all(&answer).await.map_err(|e| broken(&e))?;
    stream.flush().await.map_err(|e| broken(&e))?;
    outcome
}

/// A `GET` that does not ask to upgrade and accepts `text/event-stream`.
fn is_event_stream(request: &Request) -> bool {
    let headers = request.headers();
    request.method() == "GET"
        && !headers.contains_key("upgrade")
        && (headers.get_all("accept").iter())
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.contains("text/event-stream"))
}
