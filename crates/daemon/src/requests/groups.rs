//! Groups: membership changes and queries, and the push to a group. A single
//! node keeps the memberships in its registry; in cluster mode they live in
//! Redis and any node answers for the whole cluster.

use std::sync::Arc;
use std::time::Duration;

use pushd_proto::admin::{GroupInfo, MemberInfo, RefusedMember, ReplyLine, Request, Response};
use pushd_proto::uid::Uid;

use super::{Answer, Asker};
use crate::cluster::{Cluster, Confirm};
use crate::core::counters::Counter;
use crate::core::registry::{GroupAdded, Member, Registry};
use crate::node::Node;
use crate::push;

/// Answers a group request (`request` is one of the group ones).
pub(super) fn handle(node: Arc<Node>, asker: Asker, request: Request) -> Answer {
    super::operator_only(asker, async move {
        let store = match &node.cluster {
            Some(cluster) => Memberships::Redis(cluster),
            None => Memberships::Here(&node.registry),
        };
        let response = match request {
            Request::GroupAdd {
                group,
                uids,
                ttl_ms,
            } => {
                let ttl = ttl_ms.map(Duration::from_millis);
                let added = match store.add(&group, &uids, ttl).await {
                    Ok(added) => added,
                    Err(why) => return ReplyLine::error(why),
                };
                (node.counters).add(Counter::GroupsRefused, added.refused.len() as u64);
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
            Request::GroupRemove { group, uids } => match store.remove(&group, &uids).await {
                Ok(removed) => Response::GroupRemoved { removed },
                Err(why) => return ReplyLine::error(why),
            },
            Request::GroupDrop { group } => match store.drop_group(&group).await {
                Ok(removed) => Response::GroupRemoved { removed },
                Err(why) => return ReplyLine::error(why),
            },
            Request::GroupMembers { group } => match store.members(&group).await {
                Ok(members) => Response::GroupMembers {
                    members: (members.into_iter())
                        .map(|member| MemberInfo {
                            uid: member.uid.to_string(),
                            connections: member.connections,
                            expires_ms: member.expires_in.map(|d| d.as_millis() as u64),
                        })
                        .collect(),
                },
                Err(why) => return ReplyLine::error(why),
            },
            Request::GroupList => match store.list().await {
                Ok(list) => Response::Groups {
                    groups: (list.into_iter())
                        .map(|(group, members, online)| GroupInfo {
                            group: group.to_string(),
                            members,
                            online,
                        })
                        .collect(),
                },
                Err(why) => return ReplyLine::error(why),
            },
            Request::UidGroups { uid } => match store.of_uid(&uid).await {
                Ok(groups) => Response::UidGroups {
                    groups: groups.iter().map(ToString::to_string).collect(),
                },
                Err(why) => return ReplyLine::error(why),
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
                // pushctl waits for delivery, also on other nodes.
                let pushed =
                    push::to_group(&node, &group, &message, transient, Confirm::Delivered).await;
                let response = Response::GroupSent {
                    delivered: pushed.value.delivered,
                    queued: pushed.value.queued,
                    members: pushed.value.members,
                };
                return ReplyLine::partial(response, pushed.incomplete);
            }
            _ => return ReplyLine::error("not a group request"),
        };
        ReplyLine::ok(response)
    })
}

/// Where the memberships are: this node's registry, or Redis.
enum Memberships<'a> {
    Here(&'a Registry),
    Redis(&'a Cluster),
}

impl Memberships<'_> {
    async fn add(
        &self,
        group: &Uid,
        uids: &[Uid],
        ttl: Option<Duration>,
    ) -> Result<GroupAdded, String> {
        match self {
            Memberships::Here(registry) => Ok(registry.group_add(group, uids, ttl)),
            Memberships::Redis(cluster) => cluster.group_add(group, uids, ttl).await,
        }
    }

    async fn remove(&self, group: &Uid, uids: &[Uid]) -> Result<u64, String> {
        match self {
            Memberships::Here(registry) => Ok(registry.group_remove(group, uids)),
            Memberships::Redis(cluster) => cluster.group_remove(group, uids).await,
        }
    }

    async fn drop_group(&self, group: &Uid) -> Result<u64, String> {
        match self {
            Memberships::Here(registry) => Ok(registry.group_drop(group)),
            Memberships::Redis(cluster) => cluster.group_drop(group).await,
        }
    }

    async fn members(&self, group: &Uid) -> Result<Vec<Member>, String> {
        match self {
            Memberships::Here(registry) => Ok(registry.group_members(group)),
            Memberships::Redis(cluster) => cluster.group_members(group).await,
        }
    }

    async fn list(&self) -> Result<Vec<(Uid, u64, u64)>, String> {
        match self {
            Memberships::Here(registry) => Ok(registry.group_list()),
            Memberships::Redis(cluster) => cluster.group_list().await,
        }
    }

    async fn of_uid(&self, uid: &Uid) -> Result<Vec<Uid>, String> {
        match self {
            Memberships::Here(registry) => Ok(registry.uid_groups(uid)),
            Memberships::Redis(cluster) => cluster.uid_groups(uid).await,
        }
    }
}
