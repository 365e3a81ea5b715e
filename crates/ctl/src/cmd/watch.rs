//! `pushctl watch`: a live view of the daemon, refreshed on an interval.

use std::cmp::Reverse;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use pushd_proto::admin::{Request, Response, Stats, UidInfo};

use super::Answer;
use crate::client::Client;
use crate::error::CtlError;
use crate::render;

/// Clears the screen and moves the cursor home (terminals only).
const CLEAR: &str = "\x1b[2J\x1b[H";
/// Bold on and off, for the header line (terminals only).
const BOLD: (&str, &str) = ("\x1b[1m", "\x1b[0m");

/// Refreshes every `interval`, `iterations` times or until interrupted.
pub async fn run(
    client: &mut Client,
    interval: Duration,
    iterations: Option<u64>,
    top: usize,
    out: &mut dyn Write,
) -> Result<Answer, CtlError> {
    // Control codes only when a person is looking at a terminal.
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<(Instant, Stats)> = None;
    let mut count = 0;
    loop {
        let stats = stats(client).await?;
        let Response::List { mut uids } = client.request(Request::List).await? else {
            return Err(CtlError::Protocol("expected a list".into()));
        };
        let now = Instant::now();
        let rates = previous
            .as_ref()
            .map(|(at, before)| Rates::between(before, &stats, now - *at));
        write!(out, "{}", screen(&stats, rates, &mut uids, top, terminal))?;
        out.flush()?;
        previous = Some((now, stats));
        count += 1;
        if iterations.is_some_and(|n| count >= n) {
            return Ok(Answer::Positive);
        }
        tokio::time::sleep(interval).await;
    }
}

async fn stats(client: &mut Client) -> Result<Stats, CtlError> {
    match client.request(Request::Stats).await? {
        Response::Stats(stats) => Ok(*stats),
        _ => Err(CtlError::Protocol("expected stats".into())),
    }
}

/// Per-second rates between two snapshots.
struct Rates {
    delivered: f64,
    opened: f64,
    closed: f64,
    text: f64,
}

impl Rates {
    fn between(before: &Stats, after: &Stats, elapsed: Duration) -> Rates {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let (b, a) = (&before.counters, &after.counters);
        Rates {
            delivered: per_second(b.messages_delivered, a.messages_delivered),
            opened: per_second(b.connections_opened, a.connections_opened),
            closed: per_second(b.connections_closed, a.connections_closed),
            text: per_second(b.text_ok + b.text_fail, a.text_ok + a.text_fail),
        }
    }
}

/// One refresh: a header, the rates, and the most recently active uids.
fn screen(
    stats: &Stats,
    rates: Option<Rates>,
    uids: &mut Vec<UidInfo>,
    top: usize,
    terminal: bool,
) -> String {
    let (bold, plain) = if terminal { BOLD } else { ("", "") };
    let mut text = String::new();
    if terminal {
        text.push_str(CLEAR);
    }
    text.push_str(&format!(
        "{bold}pushd {} up {}  connections {}  uids {}  text {}  bans {}{plain}\n",
        stats.version,
        render::duration_ms(stats.uptime_ms),
        stats.connections,
        stats.uids,
        stats.text_connections,
        stats.bans,
    ));
    match rates {
        Some(r) => text.push_str(&format!(
            "delivered {:.0}/s  text requests {:.0}/s  opened {:.0}/s  closed {:.0}/s\n\n",
            r.delivered, r.text, r.opened, r.closed
        )),
        None => text.push_str("rates from the next refresh on\n\n"),
    }
    uids.sort_by_key(|info| (info.least_idle_ms(), Reverse(info.connections.len())));
    uids.truncate(top);
    text.push_str(&render::uid_table(uids));
    text.push_str("\n\n");
    text
}
