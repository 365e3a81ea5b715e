//! The clap definition of `pushctl`, shared with the completion and man-page
//! generators so that they document exactly what the binary parses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pushd_proto::admin::MAX_CLOSE_REASON;

/// `pushctl`: look at and act on a running pushd.
#[derive(Debug, Parser)]
#[command(
    name = "pushctl",
    version,
    about = "Control a running pushd: list online uids, kick, send, broadcast, stats",
    after_help = "Exit status: 0 done, 1 negative answer (offline, nothing kicked), \
                  2 usage error or pushd unreachable, 3 (cluster mode) answer not confirmed \
                  by every node (stderr names what is missing)."
)]
pub struct Cli {
    /// Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID.sock].
    #[arg(long, global = true, env = "PUSHD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show online uids: connections, idle time, time online, address.
    #[command(
        after_help = "Examples:\n  pushctl list --sort idle --limit 20   # the 20 most idle uids\n  \
                            pushctl --json list | jq length"
    )]
    List(ListArgs),
    /// Close every connection of the given uids (close code 4000).
    ///
    /// When this returns, the uids are offline: `online`, `send` and the text
    /// port say so at once, even if a client has not finished closing.
    #[command(
        after_help = "Examples:\n  pushctl kick 42 --reason 'account suspended'\n  \
                            pushctl kick 42 --ban 1h\n  \
                            # cron: drop connections idle for over 10 minutes\n  \
                            */5 * * * * pushctl kick --idle-over 10m"
    )]
    Kick(KickArgs),
    /// Push MESSAGE as one text frame to every connection of UID.
    #[command(
        after_help = "Examples:\n  pushctl send 42 '{\"type\":\"notice\",\"text\":\"hello\"}'\n  \
                            render-report | pushctl send 42 -\n  \
                            pushctl send 42 ping || echo 'user 42 is offline'"
    )]
    Send {
        /// The addressed uid.
        uid: String,
        /// The message; `-` reads it from stdin (one trailing newline is dropped).
        message: String,
    },
    /// Push MESSAGE as one text frame to every bound connection.
    #[command(
        after_help = "Example:\n  pushctl broadcast '{\"type\":\"maintenance\",\"at\":\"22:00\"}'"
    )]
    Broadcast {
        /// The message; `-` reads it from stdin (one trailing newline is dropped).
        message: String,
    },
    /// Is UID online? Exit status 0 if so, 1 if not.
    #[command(after_help = "Example:\n  pushctl online 42 && echo 'user 42 has a page open'")]
    Online {
        /// The uid asked about.
        uid: String,
    },
    /// Version, uptime, bound addresses, connections, uids and counters.
    #[command(
        after_help = "Examples:\n  pushctl stats\n  pushctl --json stats | jq .counters.slow_consumers"
    )]
    Stats,
    /// A live view, refreshed every --interval: connections, uids, message
    /// rates and the most recently active uids (like `top`). On a terminal
    /// it redraws the screen; on a pipe it prints one snapshot after another.
    #[command(
        after_help = "Examples:\n  pushctl watch\n  pushctl watch --interval 5s --iterations 12 > five-minutes.log"
    )]
    Watch {
        /// Time between refreshes.
        #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after N refreshes (default: until interrupted).
        #[arg(long, value_name = "N")]
        iterations: Option<u64>,
        /// Uids shown, most recently active first.
        #[arg(long, value_name = "N", default_value_t = 20)]
        top: usize,
    },
    /// Lift the ban on each UID. Exit status 0 if one was banned, 1 if none.
    #[command(after_help = "Example:\n  pushctl unban 42")]
    Unban {
        /// The uids to unban.
        #[arg(required = true, value_name = "UID")]
        uids: Vec<String>,
    },
    /// Show active bans and the time left on each.
    #[command(after_help = "Example:\n  pushctl --json bans | jq -r '.[].uid'")]
    Bans,
    /// Mint a token for UID (for `pushd --auth token`), signed with the
    /// secret in --secret-file. Needs no running daemon.
    #[command(
        after_help = "Example:\n  PUSHD_AUTH_SECRET_FILE=/etc/pushd/secret pushctl token 42 --ttl 10m"
    )]
    Token {
        /// The uid the token carries.
        uid: String,
        /// How long the token is valid.
        #[arg(long, value_name = "DUR", default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// File holding the shared secret (the same as pushd's --auth-secret-file).
        #[arg(long, env = "PUSHD_AUTH_SECRET_FILE", value_name = "PATH")]
        secret_file: PathBuf,
    },
}

/// Arguments of `pushctl list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Order of the rows: by uid, most idle first, or most connections first.
    #[arg(long, value_enum, default_value_t = SortKey::Uid)]
    pub sort: SortKey,
    /// Show at most N uids (after sorting).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// How `pushctl list` orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// By uid.
    Uid,
    /// Most idle first (by the uid's least idle connection).
    Idle,
    /// Most connections first.
    Conns,
}

/// Arguments of `pushctl kick`.
#[derive(Debug, Args)]
pub struct KickArgs {
    /// The uids to kick.
    #[arg(
        value_name = "UID",
        required_unless_present = "idle_over",
        conflicts_with = "idle_over"
    )]
    pub uids: Vec<String>,

    /// Kick every connection (bound or not) idle for longer than DUR (e.g. 10m).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub idle_over: Option<Duration>,

    /// Also ban the uids for DUR (e.g. 1h): they cannot bind again until it
    /// ends (close code 4003), even if they were not online.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, conflicts_with = "idle_over")]
    pub ban: Option<Duration>,

    /// Reason text sent in the close frame (at most 123 bytes).
    #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: Option<String>,
}

fn parse_reason(reason: &str) -> Result<String, String> {
    if reason.len() > MAX_CLOSE_REASON {
        return Err(format!(
            "a close reason holds at most {MAX_CLOSE_REASON} bytes, this one has {}",
            reason.len()
        ));
    }
    Ok(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kick_needs_uids_or_idle_over_but_not_both() {
        assert!(Cli::try_parse_from(["pushctl", "kick"]).is_err());
        assert!(Cli::try_parse_from(["pushctl", "kick", "1", "--idle-over", "5m"]).is_err());
        assert!(Cli::try_parse_from(["pushctl", "kick", "1", "2", "--reason", "bye"]).is_ok());
        assert!(Cli::try_parse_from(["pushctl", "kick", "--idle-over", "5m"]).is_ok());
    }

    #[test]
    fn long_reasons_are_a_usage_error() {
        let long = "x".repeat(MAX_CLOSE_REASON + 1);
        assert!(Cli::try_parse_from(["pushctl", "kick", "1", "--reason", &long]).is_err());
    }
}
