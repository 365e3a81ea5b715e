//! `pushctl list`.

use std::cmp::Reverse;
use std::io::Write;

use pushd_proto::admin::{Request, Response, UidInfo};

use super::{Answer, print_json};
use crate::cli::{ListArgs, SortKey};
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// Prints the online uids (a table, or a JSON array with `--json`), sorted
/// and limited as asked.
pub async fn run(
    client: &mut Client,
    args: ListArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    let Response::List { mut uids } = client.request(Request::List).await? else {
        return Err(CtlError::Protocol("expected a list".into()));
    };
    sort(&mut uids, args.sort);
    uids.truncate(args.limit.unwrap_or(usize::MAX));
    if json {
        print_json(out, &uids)?;
    } else {
        writeln!(out, "{}", render::uid_table(&uids))?;
    }
    Ok(Answer::Positive)
}

/// Orders the uids; ties keep uid order (the daemon sends them sorted by uid).
fn sort(uids: &mut [UidInfo], key: SortKey) {
    match key {
        SortKey::Uid => uids.sort_by(|a, b| a.uid.cmp(&b.uid)),
        SortKey::Idle => uids.sort_by_key(|info| Reverse(info.least_idle_ms())),
        SortKey::Conns => uids.sort_by_key(|info| Reverse(info.connections.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushd_proto::admin::ConnInfo;

    fn uid(name: &str, idles: &[u64]) -> UidInfo {
        let conn = |idle_ms| ConnInfo {
            id: 1,
            peer: "127.0.0.1:1".into(),
            idle_ms,
            connected_ms: 0,
            node: None,
            kind: None,
            connection: "n.1".into(),
        };
        UidInfo {
            uid: name.into(),
            connections: idles.iter().copied().map(conn).collect(),
        }
    }

    fn names(uids: &[UidInfo]) -> Vec<&str> {
        uids.iter().map(|u| u.uid.as_str()).collect()
    }

    #[test]
    fn sorts_by_each_key() {
        let mut uids = vec![uid("a", &[5]), uid("b", &[90, 1]), uid("c", &[50])];
        sort(&mut uids, SortKey::Idle);
        assert_eq!(
            names(&uids),
            ["c", "a", "b"],
            "b's least idle connection is 1 ms"
        );
        sort(&mut uids, SortKey::Conns);
        assert_eq!(names(&uids)[0], "b");
        sort(&mut uids, SortKey::Uid);
        assert_eq!(names(&uids), ["a", "b", "c"]);
    }
}
