//! `ping`: is the daemon there? Answered by this node alone.

use pushd_proto::admin::{ReplyLine, Response};

pub(super) fn answer() -> ReplyLine {
    ReplyLine::ok(Response::Pong {
        daemon_version: env!("CARGO_PKG_VERSION").into(),
    })
}
