//! `ping`: is the daemon there? Answered by this node alone.

use pushd_proto::admin::{ReplyLine, Response};

use super::{Answer, Asker};

pub(super) fn handle(asker: Asker) -> Answer {
    let pong = ReplyLine::ok(Response::Pong {
        daemon_version: env!("CARGO_PKG_VERSION").into(),
    });
    super::operator_only(asker, std::future::ready(pong))
}
