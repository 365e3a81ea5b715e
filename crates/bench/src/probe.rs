//! Bound uids found through the text port, for servers that have no admin
//! socket to ask (the peer servers `bench/run-peers.sh` runs, `--bind-probe`).
//!
//! A push to a uid answers `ok` once the uid is bound and `fail` before, on
//! every server of the recipe. The probe lines carry no `"t"` field, so the
//! clients' receipt book ignores them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::clients::uid;

/// Waits until every uid `prefix`0 .. `prefix`(n-1) is bound, for at most `limit`.
pub async fn wait_for_uids(
    text: SocketAddr,
    prefix: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let stream = TcpStream::connect(text)
        .await
        .with_context(|| format!("connecting to the text port {text}"))?;
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read).lines();
    let mut unbound: Vec<usize> = (0..n).collect();
    while !unbound.is_empty() {
        let lines: String = unbound
            .iter()
            .map(|&i| format!("{{\"uid\":\"{}\",\"probe\":1}}\n", uid(prefix, i)))
            .collect();
        // Written whole while the replies are read, so neither side's buffer fills.
        let writing = write.write_all(lines.as_bytes());
        let reading = async {
            let mut still = Vec::new();
            for &i in &unbound {
                let reply = replies.next_line().await?.context("the text port closed")?;
                if reply != "ok" {
                    still.push(i);
                }
            }
            anyhow::Ok(still)
        };
        let (written, still) =
            tokio::time::timeout_at(deadline.into(), async { tokio::join!(writing, reading) })
                .await
                .context("the bind probe timed out")?;
        written?;
        unbound = still?;
        if !unbound.is_empty() {
            if Instant::now() > deadline {
                bail!(
                    "{} of {n} uids still unbound after {limit:?}",
                    unbound.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
