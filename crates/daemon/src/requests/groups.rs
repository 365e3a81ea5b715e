//! Groups: membership changes and queries, and the push to a group. Single
//! node for now (`push::groups_here`: refused in cluster mode, where the
//! memberships are to live in Redis).

use std::sync::Arc;
use std::time::Duration;

use pushd_proto::admin::{GroupInfo, MemberInfo, RefusedMember, ReplyLine, Request, Response};

use super::{Answer, Asker};
use crate::node::Node;
use crate::push;

/// Answers a group request (`request` is one of the group ones).
pub(super) fn handle(node: Arc<Node>, asker: Asker, request: Request) -> Answer {
    super::operator_only(asker, async move {
        if let Err(why) = push::groups_here(&node) {
            return ReplyLine::error(why);
        }
        let registry = &node.registry;
        let response = match request {
            Request::GroupAdd {
                group,
                uids,
                ttl_ms,
            } => {
                let added = registry.group_add(&group, &uids, ttl_ms.map(Duration::from_millis));
                Response::GroupAdded {
                    added: added.added,
                    already: added.already,
                    refused: (added.refused.into_iter())
                        .map(|(uid, reason)| RefusedMember {
                            uid: uid.to_string(),
                            reason: reason.to_owned(),
                        })
                        .collect(),
                }
            }
            Request::GroupRemove { group, uids } => Response::GroupRemoved {
                removed: registry.group_remove(&group, &uids),
            },
            Request::GroupDrop { group } => Response::GroupRemoved {
                removed: registry.group_drop(&group),
            },
            Request::GroupMembers { group } => Response::GroupMembers {
                members: (registry.group_members(&group).into_iter())
                    .map(|member| MemberInfo {
                        uid: member.uid.to_string(),
                        connections: member.connections,
                        expires_ms: member.expires_in.map(|d| d.as_millis() as u64),
                    })
                    .collect(),
            },
            Request::GroupList => Response::Groups {
                groups: (registry.group_list().into_iter())
                    .map(|(group, members, online)| GroupInfo {
                        group: group.to_string(),
                        members,
                        online,
                    })
                    .collect(),
            },
            Request::UidGroups { uid } => Response::UidGroups {
                groups: registry
                    .uid_groups(&uid)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
            Request::SendGroup {
                group,
                message,
                transient,
            } => {
                let message = match push::frame(&node, message) {
                    Ok(message) => message,
                    Err(why) => return ReplyLine::error(why),
                };
                let pushed = registry.push_group(&group, &message, transient);
                Response::GroupSent {
                    delivered: pushed.delivered,
                    queued: pushed.queued,
                    members: pushed.members,
                }
            }
            _ => return ReplyLine::error("not a group request"),
        };
        ReplyLine::ok(response)
    })
}
