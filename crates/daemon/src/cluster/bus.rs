//! What nodes say to each other over Redis pub/sub.
//!
//! A bus message is one JSON header line, `\n`, then the raw payload bytes (a pushed
//! message exactly as the backend sent it, or nothing); a push routed by the route
//! script has its id and a space in front of the header. So `redis-cli
//! SUBSCRIBE` shows something a person can read and pushed bytes are never re-encoded.

use pushd_proto::admin::{Request, Response};
use pushd_proto::uid::Uid;
use serde::{Deserialize, Serialize};

/// The header of a bus message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Header {
    /// To a node's inbox: push the payload to `uid`'s connections there. With
    /// `reply`, answer [`Header::Reply`] with [`Response::Delivered`].
    Send {
        /// Sender node id.
        from: String,
        /// The uid.
        uid: Uid,
        /// Request id to confirm delivery under.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<u64>,
        /// On the uid's own channel (`P:u:<uid>`): the pusher's connections took
        /// it already, so the pusher, which hears its own push there when it
        /// holds the uid too, passes it over.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        here: bool,
        /// The message's id, `MS-N`, that the route script puts in front of the
        /// header line (`ID {header}`): what `pushd.v2` connections get before the
        /// payload. Never in the JSON.
        #[serde(skip)]
        id: Option<String>,
    },
    /// To a node's inbox: push the payload to these members of a group, every
    /// connection of each here. Always answered when this node sent it (to
    /// itself, without the bus); by the others with `confirm`.
    SendGroup {
        /// Sender node id.
        from: String,
        /// Request id to answer under.
        reply: u64,
        /// The other nodes answer [`Header::Reply`] with [`Response::Delivered`].
        confirm: bool,
        /// The push's id, as in [`Header::Send`]. Never in the JSON.
        #[serde(skip)]
        id: Option<String>,
        /// How many members this node holds: the lines after the header, one
        /// uid each (uids have no control characters), before the payload.
        /// Last, so that the group push script appends it to the JSON
        /// ([`group_header_start`]) and no uid is ever JSON-encoded in Lua.
        members: usize,
        /// Those members, read from their lines. Never in the JSON.
        #[serde(skip)]
        uids: Vec<Uid>,
    },
    /// On `P:all`: carry out an admin request on this node's own connections and
    /// answer [`Header::Reply`] to the sender's inbox.
    Request {
        /// Sender node id.
        from: String,
        /// Request id.
        id: u64,
        /// What to do (list, stats, kick, kick_idle, broadcast, unban, bans).
        request: Request,
    },
    /// To a node's inbox: one node's answer to a request.
    Reply {
        /// Replying node id.
        from: String,
        /// The request's id.
        id: u64,
        /// The replying node's `--node-name`.
        node: String,
        /// Its answer, or its error message.
        result: Result<Response, String>,
    },
    /// On `P:all`: a cluster-wide kick of these uids is over; lift the holds.
    KickDone {
        /// Sender node id.
        from: String,
        /// The uids kicked.
        uids: Vec<Uid>,
    },
    /// To the sender's own inbox: the bus health check's probe (`health`).
    Probe {
        /// Sender node id (the receiver).
        from: String,
        /// Which probe.
        nonce: u64,
    },
    /// On `P:all`: the sender is shutting down; do not wait for its replies.
    Leave {
        /// Sender node id.
        from: String,
    },
}

impl Header {
    /// The sending node's id.
    pub fn from(&self) -> &str {
        match self {
            Header::Send { from, .. }
            | Header::SendGroup { from, .. }
            | Header::Request { from, .. }
            | Header::Reply { from, .. }
            | Header::KickDone { from, .. }
            | Header::Probe { from, .. }
            | Header::Leave { from } => from,
        }
    }
}

/// A bus message: the header line, then `payload`.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).expect("headers always serialize");
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// The header of a group push up to its member count (`...,"members":`),
/// which the group push script completes for each node: the count, `}`, the
/// line's end, then one line per member.
pub fn group_header_start(from: &str, reply: u64, confirm: bool) -> String {
    let header = Header::SendGroup {
        from: from.to_owned(),
        reply,
        confirm,
        id: None,
        members: 0,
        uids: Vec::new(),
    };
    let mut json = serde_json::to_string(&header).expect("headers always serialize");
    let end = json.len() - "0}".len();
    debug_assert_eq!(&json[end..], "0}");
    json.truncate(end);
    json
}

/// Splits a bus message into its header and payload.
pub fn decode(message: &[u8]) -> Result<(Header, &[u8]), String> {
    let end = message
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let (routed_id, json) = match message.iter().position(|&b| b == b' ') {
        // A push numbered by the route script: `ID {header}`.
        Some(space) if space < end && message[0] != b'{' => {
            let id = std::str::from_utf8(&message[..space]).map_err(|e| e.to_string())?;
            (Some(id.to_owned()), &message[space + 1..end])
        }
        _ => (None, &message[..end]),
    };
    let mut header = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    if let (Header::Send { id, .. } | Header::SendGroup { id, .. }, Some(routed)) =
        (&mut header, routed_id)
    {
        *id = Some(routed);
    }
    let mut payload = &message[end + 1..];
    if let Header::SendGroup { members, uids, .. } = &mut header {
        uids.reserve(*members);
        for _ in 0..*members {
            let line_end = (payload.iter().position(|&b| b == b'\n'))
                .ok_or("a group push with fewer member lines than it says")?;
            let uid = std::str::from_utf8(&payload[..line_end]).map_err(|e| e.to_string())?;
            uids.push(Uid::parse(uid).map_err(|e| e.to_string())?);
            payload = &payload[line_end + 1..];
        }
    }
    Ok((header, payload))
}

/// For a request this node cannot read (a newer node's, during a rolling upgrade):
/// who asked and under which id, so it can be answered with an error at once
/// instead of making the asker wait for its timeout.
pub fn unreadable_request(message: &[u8]) -> Option<(String, u64)> {
    let end = message.iter().position(|&b| b == b'\n')?;
    let header: serde_json::Value = serde_json::from_slice(&message[..end]).ok()?;
    if header.get("op")?.as_str()? != "request" {
        return None;
    }
    Some((
        header.get("from")?.as_str()?.to_owned(),
        header.get("id")?.as_u64()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_survive_untouched() {
        let line = br#"{"uid": 42, "b":1,  "a":"\n"}"#;
        let header = Header::Send {
            from: "n1".into(),
            uid: Uid::parse("42").unwrap(),
            reply: None,
            here: false,
            id: None,
        };
        let message = encode(&header, line);
        assert!(message.starts_with(br#"{"op":"send","from":"n1","uid":"42"}"#));
        assert_eq!(decode(&message).unwrap(), (header, &line[..]));
    }

    #[test]
    fn the_id_the_route_script_writes_in_front_is_read() {
        // What the script does: the id and a space in front of the header.
        let sent = encode(
            &Header::Send {
                from: "n1".into(),
                uid: Uid::parse("42").unwrap(),
                reply: Some(3),
                here: false,
                id: None,
            },
            b"hi",
        );
        let routed = [&b"1733-9 "[..], &sent].concat();
        let (header, payload) = decode(&routed).unwrap();
        assert_eq!(payload, b"hi");
        assert!(
            matches!(header, Header::Send { id: Some(id), reply: Some(3), .. } if id == "1733-9")
        );
    }

    #[test]
    fn a_group_header_completed_as_the_script_does_reads_back() {
        // The script appends the count, `}`, the line's end, a line per
        // member, then the payload, behind the push's id.
        let start = group_header_start("n1", 7, true);
        let message = format!("1733-9 {start}3}}\na\né\"x\n/y\nhi\nthere");
        let (header, payload) = decode(message.as_bytes()).unwrap();
        assert_eq!(payload, b"hi\nthere");
        let Header::SendGroup {
            from,
            reply,
            confirm,
            id,
            uids,
            ..
        } = header
        else {
            panic!("not a group push: {header:?}");
        };
        assert_eq!((from.as_str(), reply, confirm), ("n1", 7, true));
        assert_eq!(id.as_deref(), Some("1733-9"));
        let uids: Vec<&str> = uids.iter().map(Uid::as_str).collect();
        assert_eq!(uids, ["a", "é\"x", "/y"]);
        let cut = format!("1733-9 {start}3}}\na\nb");
        assert!(decode(cut.as_bytes()).is_err());
    }

    #[test]
    fn replies_carry_results_and_errors() {
        let reply = Header::Reply {
            from: "n2".into(),
            id: 7,
            node: "web-2".into(),
            result: Err("no".into()),
        };
        assert_eq!(decode(&encode(&reply, b"")).unwrap().0, reply);
        assert!(decode(b"garbage").is_err());
    }

    #[test]
    fn an_unknown_request_still_says_whom_to_answer() {
        let newer = br#"{"op":"request","from":"n9","id":4,"request":{"cmd":"rebalance"}}"#;
        let message = [&newer[..], b"\n"].concat();
        assert!(decode(&message).is_err());
        assert_eq!(unreadable_request(&message), Some(("n9".into(), 4)));
        assert_eq!(unreadable_request(b"{\"op\":\"leave\"}\n"), None);
    }
}
