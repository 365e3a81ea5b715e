//! The HTTP API's group endpoints (docs/http-api.md, "Groups"): each becomes
//! the admin request pushctl would send, as every route does.

use hyper::StatusCode;
use hyper::body::Incoming;
use pushd_proto::admin::{Request as AdminRequest, Response as AdminResponse};
use pushd_proto::uid::Uid;
use serde::Deserialize;
use serde_json::json;

use super::routes::{found, path_uid, read_body, text_body};
use super::{Body, HttpServer, Refusal, json_response, unexpected};

/// Largest membership body: a bulk change of some thousands of uids.
const MEMBERS_BODY: usize = 1 << 20;

/// `{"ttl": "1h"}`, optional, of `PUT .../members/{uid}`, and the bulk
/// change's `{"add": [...], "remove": [...], "ttl": ...}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Change {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    ttl: Option<String>,
}

impl HttpServer {
    /// `GET /v1/groups`.
    pub(super) async fn groups(&self) -> Result<hyper::Response<Body>, Refusal> {
        let (result, incomplete) = self.ask(AdminRequest::GroupList).await?;
        let AdminResponse::Groups { groups } = result else {
            return Err(unexpected(&result));
        };
        Ok(json_response(StatusCode::OK, groups, incomplete))
    }

    /// `GET /v1/groups/{group}`: 404 without members.
    pub(super) async fn group(&self, group: &str) -> Result<hyper::Response<Body>, Refusal> {
        let group = path_uid(group)?;
        let request = AdminRequest::GroupMembers {
            group: group.clone(),
        };
        let (result, incomplete) = self.ask(request).await?;
        let AdminResponse::GroupMembers { members } = result else {
            return Err(unexpected(&result));
        };
        let status = found(!members.is_empty());
        let answer = json!({ "group": group, "members": members });
        Ok(json_response(status, answer, incomplete))
    }

    /// `DELETE /v1/groups/{group}`: 404 when it had no members.
    pub(super) async fn drop_group(&self, group: &str) -> Result<hyper::Response<Body>, Refusal> {
        let group = path_uid(group)?;
        let removed = self.removed(AdminRequest::GroupDrop { group }).await?;
        Ok(json_response(
            found(removed > 0),
            json!({ "removed": removed }),
            Vec::new(),
        ))
    }

    /// `POST /v1/groups/{group}/members`: adds and removes in one request.
    pub(super) async fn change_members(
        &self,
        group: &str,
        body: Incoming,
    ) -> Result<hyper::Response<Body>, Refusal> {
        let group = path_uid(group)?;
        let change = self.change(body, true).await?;
        let (add, remove) = (uids(&change.add)?, uids(&change.remove)?);
        let (added, refused) = self.add(&group, add, change.ttl.as_deref()).await?;
        let removed = match remove.is_empty() {
            true => 0,
            false => {
                self.removed(AdminRequest::GroupRemove {
                    group,
                    uids: remove,
                })
                .await?
            }
        };
        refused_or(refused, json!({ "added": added, "removed": removed }))
    }

    /// `PUT /v1/groups/{group}/members/{uid}`: `{"added": false}` for a member
    /// already (its TTL refreshed when one is given).
    pub(super) async fn add_member(
        &self,
        group: &str,
        uid: &str,
        body: Incoming,
    ) -> Result<hyper::Response<Body>, Refusal> {
        let (group, uid) = (path_uid(group)?, path_uid(uid)?);
        let change = self.change(body, false).await?;
        let (added, refused) = self.add(&group, vec![uid], change.ttl.as_deref()).await?;
        refused_or(refused, json!({ "added": added == 1 }))
    }

    /// `DELETE /v1/groups/{group}/members/{uid}`: 404 when not a member.
    pub(super) async fn remove_member(
        &self,
        group: &str,
        uid: &str,
    ) -> Result<hyper::Response<Body>, Refusal> {
        let (group, uid) = (path_uid(group)?, path_uid(uid)?);
        let request = AdminRequest::GroupRemove {
            group,
            uids: vec![uid],
        };
        let removed = self.removed(request).await?;
        Ok(json_response(
            found(removed > 0),
            json!({ "removed": removed > 0 }),
            Vec::new(),
        ))
    }

    /// `POST /v1/groups/{group}/send`: 404, with the same body, when nothing
    /// was delivered or queued.
    pub(super) async fn send_group(
        &self,
        group: &str,
        body: Incoming,
        transient: bool,
    ) -> Result<hyper::Response<Body>, Refusal> {
        let group = path_uid(group)?;
        let message = text_body(body, self.node.max_message_size, self.request_timeout).await?;
        let request = AdminRequest::SendGroup {
            group,
            message,
            transient,
        };
        let (result, incomplete) = self.ask(request).await?;
        let AdminResponse::GroupSent {
            delivered,
            queued,
            members,
        } = result
        else {
            return Err(unexpected(&result));
        };
        let answer = json!({ "delivered": delivered, "queued": queued, "members": members });
        Ok(json_response(
            found(delivered > 0 || queued > 0),
            answer,
            incomplete,
        ))
    }

    /// `GET /v1/uids/{uid}/groups`.
    pub(super) async fn uid_groups(&self, uid: &str) -> Result<hyper::Response<Body>, Refusal> {
        let uid = path_uid(uid)?;
        let request = AdminRequest::UidGroups { uid: uid.clone() };
        let (result, incomplete) = self.ask(request).await?;
        let AdminResponse::UidGroups { groups } = result else {
            return Err(unexpected(&result));
        };
        let answer = json!({ "uid": uid, "groups": groups });
        Ok(json_response(StatusCode::OK, answer, incomplete))
    }

    /// A membership body; empty is no change. `bulk`: `add` and `remove` allowed.
    async fn change(&self, body: Incoming, bulk: bool) -> Result<Change, Refusal> {
        let body = read_body(body, MEMBERS_BODY, self.request_timeout).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Change::default());
        }
        let shape = if bulk {
            "{\"add\": [...], \"remove\": [...], \"ttl\": ...}"
        } else {
            "{\"ttl\": ...}"
        };
        let change: Change = serde_json::from_slice(&body).map_err(|err| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not {shape}: {err}"),
            )
        })?;
        if !(bulk || change.add.is_empty() && change.remove.is_empty()) {
            let why = format!("the body is not {shape}");
            return Err(Refusal::new(StatusCode::BAD_REQUEST, why));
        }
        Ok(change)
    }

    /// Adds `uids` to `group`; how many were new, and those refused.
    async fn add(
        &self,
        group: &Uid,
        uids: Vec<Uid>,
        ttl: Option<&str>,
    ) -> Result<(u64, Vec<pushd_proto::admin::RefusedMember>), Refusal> {
        if uids.is_empty() {
            return Ok((0, Vec::new()));
        }
        let ttl_ms = match ttl {
            Some(ttl) => {
                let ttl = humantime::parse_duration(ttl).map_err(|err| {
                    Refusal::new(StatusCode::BAD_REQUEST, format!("ttl {ttl:?}: {err}"))
                })?;
                Some(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            }
            None => None,
        };
        let request = AdminRequest::GroupAdd {
            group: group.clone(),
            uids,
            ttl_ms,
        };
        let (result, _) = self.ask(request).await?;
        let AdminResponse::GroupAdded { added, refused, .. } = result else {
            return Err(unexpected(&result));
        };
        Ok((added, refused))
    }

    /// Carries out a remove or a drop; the memberships it ended.
    async fn removed(&self, request: AdminRequest) -> Result<u64, Refusal> {
        let (result, _) = self.ask(request).await?;
        match result {
            AdminResponse::GroupRemoved { removed } => Ok(removed),
            other => Err(unexpected(&other)),
        }
    }
}

/// `answer`, or 429 naming the uids a limit refused (the others were added).
fn refused_or(
    refused: Vec<pushd_proto::admin::RefusedMember>,
    answer: serde_json::Value,
) -> Result<hyper::Response<Body>, Refusal> {
    if refused.is_empty() {
        return Ok(json_response(StatusCode::OK, answer, Vec::new()));
    }
    let reasons: Vec<String> = (refused.iter())
        .map(|refused| format!("{}: {}", refused.uid, refused.reason))
        .collect();
    let why = format!("refused: {}", reasons.join("; "));
    Err(Refusal::new(StatusCode::TOO_MANY_REQUESTS, why))
}

/// Uids from a body, each checked.
fn uids(uids: &[String]) -> Result<Vec<Uid>, Refusal> {
    (uids.iter())
        .map(|uid| {
            Uid::parse(uid).map_err(|err| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid uid {uid:?}: {err}"),
                )
            })
        })
        .collect()
}
