//! The admin-socket client: one request, one reply, bounded in time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName};
use pushd_proto::admin::{MAX_LINE, PROTOCOL_VERSION, ReplyLine, Request, RequestLine, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::error::CtlError;

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take from write to reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a daemon's admin socket.
pub struct Client {
    path: PathBuf,
    stream: BufReader<Stream>,
    /// What the cluster could not confirm, gathered over every reply so far.
    incomplete: Vec<String>,
}

impl Client {
    /// Connects to the admin socket at `path`.
    pub async fn connect(path: &Path) -> Result<Self, CtlError> {
        let euid = pushd_proto::socket_path::effective_uid();
        pushd_proto::socket_path::check_private(path, euid).map_err(CtlError::NotPrivate)?;
        let unreachable = |source| CtlError::Unreachable {
            path: path.to_owned(),
            source,
        };
        let name = path.to_fs_name::<GenericFilePath>().map_err(unreachable)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, Stream::connect(name))
            .await
            .map_err(|_| CtlError::Timeout {
                path: path.to_owned(),
                secs: CONNECT_TIMEOUT.as_secs(),
            })?
            .map_err(unreachable)?;
        Ok(Client {
            path: path.to_owned(),
            stream: BufReader::new(stream),
            incomplete: Vec::new(),
        })
    }

    /// Sends one request and waits for its reply.
    pub async fn request(&mut self, request: Request) -> Result<Response, CtlError> {
        self.request_within(request, REQUEST_TIMEOUT).await
    }

    /// Sends one request and waits for its reply, at most `limit`.
    pub async fn request_within(
        &mut self,
        request: Request,
        limit: Duration,
    ) -> Result<Response, CtlError> {
        let timeout = CtlError::Timeout {
            path: self.path.clone(),
            secs: limit.as_secs(),
        };
        tokio::time::timeout(limit, self.exchange(request))
            .await
            .map_err(|_| timeout)?
    }

    async fn exchange(&mut self, request: Request) -> Result<Response, CtlError> {
        let mut line = serde_json::to_vec(&RequestLine {
            version: PROTOCOL_VERSION,
            request,
        })
        .expect("requests always serialize");
        line.push(b'\n');
        self.stream.get_mut().write_all(&line).await?;

        let mut reply = Vec::new();
        let limit = MAX_LINE as u64 + 1;
        (&mut self.stream)
            .take(limit)
            .read_until(b'\n', &mut reply)
            .await?;
        if reply.last() != Some(&b'\n') {
            return Err(CtlError::Protocol(if reply.is_empty() {
                "the daemon closed the connection without answering".into()
            } else {
                "the reply was cut short or too long".into()
            }));
        }
        let reply: ReplyLine = serde_json::from_slice(&reply).map_err(|err| {
            CtlError::Protocol(format!(
                "{err} (pushctl speaks admin protocol version {PROTOCOL_VERSION})"
            ))
        })?;
        if let Some(message) = reply.error {
            return Err(CtlError::Refused(message));
        }
        if reply.version != PROTOCOL_VERSION {
            return Err(CtlError::Protocol(format!(
                "pushd speaks admin protocol version {}, pushctl speaks {PROTOCOL_VERSION}",
                reply.version
            )));
        }
        self.incomplete.extend(reply.incomplete);
        reply
            .result
            .ok_or_else(|| CtlError::Protocol("reply has neither result nor error".into()))
    }

    /// The next line the daemon sends on a stream (after `events`), without
    /// its newline; `None` when the daemon closed the connection. No time
    /// limit: a stream may be quiet for as long as nothing happens.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, CtlError> {
        let mut line = Vec::new();
        let limit = MAX_LINE as u64 + 1;
        (&mut self.stream)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?;
        if line.pop() != Some(b'\n') {
            return Ok(None);
        }
        Ok(Some(line))
    }

    /// Takes the notes of what the cluster could not confirm (empty on a single node).
    pub fn take_incomplete(&mut self) -> Vec<String> {
        std::mem::take(&mut self.incomplete)
    }
}
