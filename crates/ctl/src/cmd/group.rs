//! `pushctl group ...`, `pushctl groups UID`, `pushctl send --group`: groups
//! of uids, managed by the backend or an operator.

use std::io::Write;
use std::time::Duration;

use pushd_proto::admin::{Request, Response};
use serde_json::json;

use super::{Answer, message_argument, print_json, uid_argument, uid_arguments};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// `group add GROUP UID... [--ttl]`: positive unless a uid was refused.
pub async fn add(
    client: &mut Client,
    group: &str,
    uids: &[String],
    ttl: Option<Duration>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let request = Request::GroupAdd {
        group: group_argument(group)?,
        uids: uid_arguments(uids)?,
        ttl_ms: ttl.map(|ttl| ttl.as_millis() as u64),
    };
    let Response::GroupAdded {
        added,
        already,
        refused,
    } = client.request(request).await?
    else {
        return Err(CtlError::Protocol("expected a group add result".into()));
    };
    if json {
        print_json(
            out,
            &json!({ "added": added, "already": already, "refused": refused }),
        )?;
    } else {
        writeln!(out, "{group}: {added} added, {already} already members")?;
    }
    for refused in &refused {
        eprintln!("pushctl: {} not added: {}", refused.uid, refused.reason);
    }
    Ok(Answer::from_bool(refused.is_empty()))
}

/// `group remove GROUP UID...`: positive when any was a member.
pub async fn remove(
    client: &mut Client,
    group: &str,
    uids: &[String],
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let request = Request::GroupRemove {
        group: group_argument(group)?,
        uids: uid_arguments(uids)?,
    };
    let removed = removed(client.request(request).await?)?;
    report_removed(group, removed, json, out)
}

/// `group drop GROUP`: positive when it had members.
pub async fn drop_group(
    client: &mut Client,
    group: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let request = Request::GroupDrop {
        group: group_argument(group)?,
    };
    let removed = removed(client.request(request).await?)?;
    report_removed(group, removed, json, out)
}

fn removed(response: Response) -> Result<u64, CtlError> {
    match response {
        Response::GroupRemoved { removed } => Ok(removed),
        _ => Err(CtlError::Protocol("expected a group remove result".into())),
    }
}

fn report_removed(
    group: &str,
    removed: u64,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    if json {
        print_json(out, &json!({ "removed": removed }))?;
    } else {
        let s = if removed == 1 { "" } else { "s" };
        writeln!(out, "{group}: {removed} member{s} removed")?;
    }
    Ok(Answer::from_bool(removed > 0))
}

/// `group members GROUP [--online]`: positive when the group has members.
pub async fn members(
    client: &mut Client,
    group: &str,
    online: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let request = Request::GroupMembers {
        group: group_argument(group)?,
    };
    let Response::GroupMembers { mut members } = client.request(request).await? else {
        return Err(CtlError::Protocol("expected a list of members".into()));
    };
    let any = !members.is_empty();
    if online {
        members.retain(|member| member.connections > 0);
    }
    if json {
        print_json(out, &members)?;
    } else {
        writeln!(out, "{}", render::members_table(&members))?;
    }
    Ok(Answer::from_bool(any))
}

/// `group list`: always positive.
pub async fn list(
    client: &mut Client,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let Response::Groups { groups } = client.request(Request::GroupList).await? else {
        return Err(CtlError::Protocol("expected a list of groups".into()));
    };
    if json {
        print_json(out, &groups)?;
    } else {
        writeln!(out, "{}", render::groups_table(&groups))?;
    }
    Ok(Answer::Positive)
}

/// `groups UID`: positive when the uid is in any group.
pub async fn of_uid(
    client: &mut Client,
    uid: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let request = Request::UidGroups {
        uid: uid_argument(uid)?,
    };
    let Response::UidGroups { groups } = client.request(request).await? else {
        return Err(CtlError::Protocol("expected a list of groups".into()));
    };
    if json {
        print_json(out, &json!({ "uid": uid, "groups": groups }))?;
    } else {
        for group in &groups {
            writeln!(out, "{group}")?;
        }
    }
    Ok(Answer::from_bool(!groups.is_empty()))
}

/// `send --group GROUP MESSAGE`: positive when delivered or queued for any member.
pub async fn send(
    client: &mut Client,
    group: &str,
    message: String,
    transient: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let request = Request::SendGroup {
        group: group_argument(group)?,
        message: message_argument(message)?,
        transient,
    };
    let Response::GroupSent {
        delivered,
        queued,
        members,
    } = client.request(request).await?
    else {
        return Err(CtlError::Protocol("expected a group delivery count".into()));
    };
    if json {
        let sent = json!({ "delivered": delivered, "queued": queued, "members": members });
        print_json(out, &sent)?;
    } else if members == 0 {
        writeln!(out, "{group} has no members")?;
    } else {
        let s = if members == 1 { "" } else { "s" };
        writeln!(
            out,
            "delivered to {} of {members} member{s}; queued for {queued}",
            render::connections(delivered)
        )?;
    }
    Ok(Answer::from_bool(delivered > 0 || queued > 0))
}

/// The members of `group`, for `kick --group`.
pub async fn member_uids(client: &mut Client, group: &str) -> Result<Vec<String>, CtlError> {
    let request = Request::GroupMembers {
        group: group_argument(group)?,
    };
    let Response::GroupMembers { members } = client.request(request).await? else {
        return Err(CtlError::Protocol("expected a list of members".into()));
    };
    Ok(members.into_iter().map(|member| member.uid).collect())
}

/// A group name follows the uid rules.
fn group_argument(group: &str) -> Result<pushd_proto::uid::Uid, CtlError> {
    pushd_proto::uid::Uid::parse(group)
        .map_err(|err| CtlError::Usage(format!("invalid group name {group:?}: {err}")))
}
