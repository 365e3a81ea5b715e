//! Talking to pushd's admin socket through pushctl's own client library.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use pushd_ctl::client::Client;
use pushd_proto::admin::{Request, Response, Stats};

/// Connects to the admin socket.
pub async fn connect(socket: &Path) -> anyhow::Result<Client> {
    Ok(Client::connect(socket).await?)
}

/// The daemon's stats.
pub async fn stats(client: &mut Client) -> anyhow::Result<Stats> {
    match client.request(Request::Stats).await? {
        Response::Stats(stats) => Ok(*stats),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// Waits until at least `uids` uids are bound, for at most `limit`.
pub async fn wait_for_uids(client: &mut Client, uids: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let bound = stats(client).await?.uids;
        if bound >= uids {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {bound} of {uids} uids bound after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The connection id of each uid's (first) connection, by uid.
pub async fn connection_ids(
    client: &mut Client,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    match client.request(Request::List).await? {
        Response::List { uids } => Ok(uids
            .into_iter()
            .filter_map(|row| Some((row.connections.first()?.connection.clone(), row.uid)))
            .map(|(connection, uid)| (uid, connection))
            .collect()),
        other => bail!("unexpected reply {other:?}"),
    }
}
