//! This node's answer to each admin request: synchronous, on the local registry.
//!
//! Without a cluster this is the whole answer; in cluster mode
//! [`crate::directory`] adds the other nodes' answers, and a node asked by
//! another one over Redis answers with this too.

use std::time::Duration;

use pushd_proto::admin::{BanInfo, ClusterInfo, NodeStats, Request, Response, Stats, UidCount};
use pushd_proto::uid::normalize_uid;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::Daemon;

/// Close reason used when `pushctl kick` gives none.
pub(crate) const DEFAULT_KICK_REASON: &str = "kicked";

/// Carries out one request on this node; `Err` is a message for the operator.
pub(crate) fn local(daemon: &Daemon, request: Request) -> Result<Response, String> {
    match request {
        Request::Ping => Ok(Response::Pong {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
        }),
        Request::List => {
            let mut uids = daemon.registry.list();
            if let Some(cluster) = &daemon.cluster {
                for conn in uids.iter_mut().flat_map(|uid| uid.connections.iter_mut()) {
                    conn.node = Some(cluster.name().to_owned());
                }
            }
            Ok(Response::List { uids })
        }
        Request::Kick {
            uids,
            reason,
            ban_ms,
        } => kick(
            daemon,
            &uids,
            reason.as_deref(),
            ban_ms.map(Duration::from_millis),
        ),
        Request::Unban { uids } => {
            let uids = uids
                .iter()
                .map(|uid| valid_uid(uid))
                .collect::<Result<Vec<_>, _>>()?;
            let unbanned = uids.into_iter().filter(|uid| daemon.registry.unban(uid));
            Ok(Response::Unbanned {
                uids: unbanned.map(str::to_owned).collect(),
            })
        }
        Request::Bans => Ok(Response::Bans {
            bans: (daemon.registry.bans().into_iter())
                .map(|(uid, remaining_ms)| BanInfo { uid, remaining_ms })
                .collect(),
        }),
        Request::KickIdle {
            idle_over_ms,
            reason,
        } => {
            let reason = reason.as_deref().unwrap_or(DEFAULT_KICK_REASON);
            let (connections, uids) = daemon.registry.kick_idle(idle_over_ms, reason);
            Ok(Response::Kicked { connections, uids })
        }
        Request::Send { uid, message } => {
            let uid = valid_uid(&uid)?;
            let message = pushable(daemon, message)?;
            Ok(Response::Delivered {
                connections: daemon.registry.push_to_uid(uid, &message),
            })
        }
        Request::Broadcast { message } => {
            let message = pushable(daemon, message)?;
            Ok(Response::Delivered {
                connections: daemon.registry.broadcast(&message),
            })
        }
        Request::Online { uid } => {
            let uid = valid_uid(&uid)?;
            Ok(Response::Online {
                uid: uid.to_owned(),
                connections: daemon.registry.online(uid),
            })
        }
        Request::Stats => Ok(Response::Stats(Box::new(stats(daemon)))),
    }
}

fn kick(
    daemon: &Daemon,
    uids: &[String],
    reason: Option<&str>,
    ban: Option<Duration>,
) -> Result<Response, String> {
    let uids = uids
        .iter()
        .map(|uid| valid_uid(uid))
        .collect::<Result<Vec<_>, _>>()?;
    let reason = reason.unwrap_or(DEFAULT_KICK_REASON);
    let mut kicked = Vec::new();
    for uid in uids {
        let connections = daemon.registry.kick(uid, reason, ban);
        if connections > 0 {
            kicked.push(UidCount {
                uid: uid.to_owned(),
                connections,
            });
        }
    }
    let connections = kicked.iter().map(|k| k.connections).sum();
    Ok(Response::Kicked {
        connections,
        uids: kicked,
    })
}

fn stats(daemon: &Daemon) -> Stats {
    let (connections, uids) = daemon.registry.sizes();
    Stats {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_ms: daemon.started.elapsed().as_millis() as u64,
        ws_listen: daemon.ws_addr.to_string(),
        text_listen: daemon.text_addr.to_string(),
        socket: daemon.config.socket.display().to_string(),
        connections,
        uids,
        bans: daemon.registry.bans().len() as u64,
        text_connections: daemon
            .text_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        counters: daemon.registry.counters.snapshot(),
        cluster: daemon.cluster.as_ref().map(|cluster| ClusterInfo {
            node: cluster.name().to_owned(),
            node_id: cluster.id().to_owned(),
            redis: cluster.redis_display().to_owned(),
            redis_up: cluster.is_up(),
            nodes: vec![NodeStats {
                name: cluster.name().to_owned(),
                id: cluster.id().to_owned(),
                ws_listen: daemon.ws_addr.to_string(),
                uptime_ms: daemon.started.elapsed().as_millis() as u64,
                connections,
                uids,
            }],
        }),
    }
}

pub(crate) fn valid_uid(uid: &str) -> Result<&str, String> {
    normalize_uid(uid).map_err(|err| format!("invalid uid {uid:?}: {err}"))
}

fn pushable(daemon: &Daemon, message: String) -> Result<Utf8Bytes, String> {
    let limit = daemon.config.max_message_size;
    if message.len() > limit {
        return Err(format!(
            "message is {} bytes, over the {limit}-byte limit (--max-message-size)",
            message.len()
        ));
    }
    Ok(Utf8Bytes::from(message))
}
