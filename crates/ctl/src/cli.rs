//! The clap definition of `pushctl`, shared with the completion and man-page
//! generators so that they document exactly what the binary parses.

use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsString;

use clap::{Arg, Args, CommandFactory, Parser, Subcommand};
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
    /// Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock].
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
    /// Push MESSAGE as one text frame to every connection of UID; while UID has
    /// none, it waits in UID's mailbox for its next connection (pushd --mailbox-ttl).
    ///
    /// Exit status 0 when delivered or queued, 1 when neither.
    #[command(
        after_help = "Examples:\n  pushctl send 42 '{\"type\":\"notice\",\"text\":\"hello\"}'\n  \
                            render-report | pushctl send 42 -\n  \
                            pushctl send --transient 42 typing || echo 'user 42 is offline'"
    )]
    Send {
        /// The addressed uid (with --group or --connection, the message instead).
        #[arg(allow_hyphen_values = true)]
        uid: String,
        /// The message; `-` reads it from stdin (one trailing newline is dropped).
        #[arg(allow_hyphen_values = true, required_unless_present_any = ["group", "connection"])]
        message: Option<String>,
        /// Push to every member of GROUP instead of one uid: `pushctl send --group
        /// GROUP MESSAGE` (exit 0 when delivered or queued for any member).
        #[arg(long, value_name = "GROUP", conflicts_with = "connection")]
        group: Option<String>,
        /// Push to exactly one connection (its `connection` id in `list --json` or
        /// events), on any node: `pushctl send --connection ID MESSAGE` (exit 0 when
        /// it took it; nothing is kept for later).
        #[arg(long, value_name = "ID", conflicts_with = "transient")]
        connection: Option<String>,
        /// Deliver now or not at all: never keep it in the mailbox of an offline uid.
        #[arg(long)]
        transient: bool,
    },
    /// Groups of uids: membership belongs to the uid and outlives its
    /// connections; a push to a group reaches every connection of every member.
    #[command(
        subcommand,
        after_help = "Examples:\n  pushctl group add team-7 42 43 44\n  \
                      pushctl group add trial 42 --ttl 1h\n  \
                      pushctl send --group team-7 '{\"text\":\"standup\"}'"
    )]
    Group(GroupCommand),
    /// The groups UID belongs to (exit 1 when none).
    Groups {
        /// The uid.
        #[arg(allow_hyphen_values = true)]
        uid: String,
    },
    /// Push MESSAGE as one text frame to every bound connection.
    #[command(
        after_help = "Example:\n  pushctl broadcast '{\"type\":\"maintenance\",\"at\":\"22:00\"}'"
    )]
    Broadcast {
        /// The message; `-` reads it from stdin (one trailing newline is dropped).
        #[arg(allow_hyphen_values = true)]
        message: String,
    },
    /// Is UID online? Exit status 0 if so, 1 if not.
    #[command(after_help = "Example:\n  pushctl online 42 && echo 'user 42 has a page open'")]
    Online {
        /// The uid asked about.
        #[arg(allow_hyphen_values = true)]
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
    /// Show the uids with messages waiting for their next connection (UID,
    /// MESSAGES, BYTES, OLDEST), or with --clear empty the mailboxes of UIDs.
    #[command(
        after_help = "Examples:\n  pushctl mailbox\n  pushctl mailbox --clear 42 43   # exit 1 if none had messages"
    )]
    Mailbox {
        /// Drop the waiting messages of UIDs instead of listing.
        #[arg(long, requires = "uids")]
        clear: bool,
        /// With --clear, the uids whose mailboxes are emptied.
        #[arg(value_name = "UID", requires = "clear")]
        uids: Vec<String>,
    },
    /// Show active bans and the time left on each.
    #[command(after_help = "Example:\n  pushctl --json bans | jq -r '.[].uid'")]
    Bans,
    /// Print presence events as they happen (connect, disconnect, online,
    /// offline; message with --upstream), one line each, until interrupted;
    /// `--json`: one JSON object per line. In cluster mode, every node's.
    #[command(after_help = "Examples:\n  pushctl events --type online,offline\n  \
                      pushctl --json events | jq -c 'select(.uid == \"42\")'\n  \
                      pushctl events --since 1765000000000-41   # what came after event 1765000000000-41")]
    Events {
        /// Only these types (comma-separated or repeated): connect, disconnect, online, offline, message.
        #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
        types: Vec<String>,
        /// First every event pushd still holds after this event id (a `gap`
        /// event first when some of them are gone), then new ones.
        #[arg(long, value_name = "ID")]
        since: Option<String>,
    },
    /// Make pushd read its TLS certificate and key and its token secret or
    /// public key again, without closing a connection. Exit status 2, with
    /// the reason, when a file did not load: pushd keeps its previous key.
    #[command(
        after_help = "Examples:\n  pushctl reload    # after renewing the certificate\n  \
                      systemctl kill -s HUP pushd   # the same, through SIGHUP"
    )]
    Reload,
    /// Drain this node before a deploy: it stops taking WebSocket clients
    /// (503), /v1/ready answers 503, and every connection is closed with 1012
    /// at a random moment within the window, after what it was sent is
    /// written, so clients come back spread out. Returns when the last one is
    /// closed. The text port, HTTP API and admin socket keep serving.
    #[command(after_help = "Examples:\n  pushctl drain --over 30s && systemctl restart pushd")]
    Drain {
        /// The window [default: pushd's --drain, or 30s when that is 0]; at most 1 day.
        #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
        over: Option<std::time::Duration>,
    },
    /// Upgrade pushd in place, no client disconnected: pushd starts the new
    /// binary with its own arguments and environment and hands it the
    /// listeners and every plain WebSocket connection with its state (TLS
    /// ones are closed with 1012); the old process then exits. Exit 0 once the
    /// new process serves, 1 if it did not take over (the old one serves on).
    #[command(after_help = "Examples:
  install -m 0755 target/release/pushd /usr/bin/pushd && pushctl upgrade
                        pushctl upgrade --binary /opt/pushd-0.2.0/pushd")]
    Upgrade {
        /// The new binary [default: the path pushd was started from, read again].
        #[arg(long, value_name = "PATH")]
        binary: Option<std::path::PathBuf>,
        /// If the new binary speaks another hand-over format (it cannot take
        /// this one's connections), drain this node over DUR instead, as
        /// `pushctl drain` does; then restart it with the new binary. At most 1 day.
        #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
        or_drain: Option<std::time::Duration>,
    },
    /// Mint a token for UID (for `pushd --auth token`), signed with the
    /// secret in --secret-file. Needs no running daemon.
    #[command(
        after_help = "Example:\n  PUSHD_AUTH_SECRET_FILE=/etc/pushd/secret pushctl token 42 --ttl 10m"
    )]
    Token {
        /// The uid the token carries.
        #[arg(allow_hyphen_values = true)]
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

/// `pushctl group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Make the UIDs members of GROUP (a member's TTL is refreshed). Exit 1 when
    /// a uid was refused (--max-groups-per-uid, --max-memberships).
    Add {
        /// The group (named like a uid).
        group: String,
        /// The uids.
        #[arg(required = true)]
        uids: Vec<String>,
        /// The memberships end after DUR (e.g. 1h).
        #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// End the UIDs' memberships of GROUP (exit 1 when none was a member).
    Remove {
        /// The group.
        group: String,
        /// The uids.
        #[arg(required = true)]
        uids: Vec<String>,
    },
    /// Remove GROUP with all its members (exit 1 when it had none).
    Drop {
        /// The group.
        group: String,
    },
    /// GROUP's members: UID, CONNS, EXPIRES (exit 1 when it has none).
    Members {
        /// The group.
        group: String,
        /// Only the members with a connection.
        #[arg(long)]
        online: bool,
    },
    /// Every group: GROUP, MEMBERS, ONLINE.
    List,
}

/// Arguments of `pushctl kick`.
#[derive(Debug, Args)]
pub struct KickArgs {
    /// The uids to kick.
    #[arg(
        value_name = "UID",
        required_unless_present_any = ["idle_over", "group", "connection"],
        conflicts_with_all = ["idle_over", "group", "connection"]
    )]
    pub uids: Vec<String>,

    /// Kick every member of GROUP.
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["idle_over", "connection"])]
    pub group: Option<String>,

    /// Kick exactly one connection: ID is its `connection` in `list --json` or
    /// in events (that tab, not every tab of its uid), on any node.
    #[arg(long, value_name = "ID", conflicts_with_all = ["idle_over", "ban"])]
    pub connection: Option<String>,

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

/// The arguments as clap should see them. A uid or a message may begin with `-`
/// (`-5` is the uid of the integer -5). Where it is a command's only value of its
/// kind, clap's `allow_hyphen_values` takes it; but on a list of uids (`kick`,
/// `unban`) that setting would swallow every option after the first uid, so
/// there a hyphenated token that is not one of the command's options is moved
/// behind a `--`, where clap reads it as a uid.
pub fn hyphenated_uids_as_values(args: Vec<OsString>) -> Vec<OsString> {
    let command = Cli::command();
    let globals: Vec<&Arg> = command.get_arguments().collect();
    let mut at = 1;
    // Skip global options (and their values) before the subcommand's name.
    while let Some(arg) = args.get(at).and_then(|a| a.to_str()) {
        match option(&globals, arg) {
            Some(takes_value) => at += if takes_value { 2 } else { 1 },
            None => break,
        }
    }
    let Some(sub) = (args.get(at).and_then(|a| a.to_str()))
        .filter(|name| ["kick", "unban", "mailbox"].contains(name))
        .and_then(|name| command.find_subcommand(name))
    else {
        return args;
    };
    let known: Vec<&Arg> = sub.get_arguments().chain(globals).collect();
    let (mut kept, mut moved) = (args[..=at].to_vec(), Vec::new());
    let mut rest = args[at + 1..].iter();
    while let Some(token) = rest.next() {
        let text = token.to_str().unwrap_or_default();
        if text == "--" {
            kept.push(token.clone());
            kept.extend(rest.cloned());
            break;
        }
        match option(&known, text) {
            Some(takes_value) => {
                kept.push(token.clone());
                if takes_value {
                    kept.extend(rest.next().cloned());
                }
            }
            None if text.len() > 1 && text.starts_with('-') => moved.push(token.clone()),
            None => kept.push(token.clone()),
        }
    }
    if moved.is_empty() {
        return kept;
    }
    match kept.iter().position(|t| t == "--") {
        Some(dashes) => {
            kept.splice(dashes + 1..dashes + 1, moved);
        }
        None => {
            kept.push("--".into());
            kept.extend(moved);
        }
    }
    kept
}

/// Whether `token` names one of `args`' options: `Some(true)` when its value is
/// the next token, `Some(false)` for a flag or an inline `--name=value`.
fn option(args: &[&Arg], token: &str) -> Option<bool> {
    let (name, inline) = match token.split_once('=') {
        Some((name, _)) => (name, true),
        None => (token, false),
    };
    let found = args.iter().find(|arg| {
        let long = arg
            .get_long()
            .is_some_and(|l| name.strip_prefix("--") == Some(l));
        let short = arg
            .get_short()
            .is_some_and(|s| name.strip_prefix('-') == Some(s.encode_utf8(&mut [0; 4])));
        long || short
    });
    match found {
        Some(arg) => Some(!inline && arg.get_action().takes_values()),
        // clap's own --help and --version are not in the list before it builds.
        None if ["--help", "-h", "--version", "-V"].contains(&name) => Some(false),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Regression: `pushctl online -5` was "unexpected argument '-5'" (uids and
    /// messages may begin with `-`).
    #[test]
    fn uids_and_messages_may_begin_with_a_hyphen() {
        let parse = |args: &[&str]| {
            let args = [&["pushctl"], args]
                .concat()
                .into_iter()
                .map(OsString::from)
                .collect();
            Cli::try_parse_from(hyphenated_uids_as_values(args)).unwrap_or_else(|e| panic!("{e}"))
        };
        let Command::Online { uid } = parse(&["online", "-5"]).command else {
            panic!()
        };
        assert_eq!(uid, "-5");
        let Command::Send { uid, message, .. } = parse(&["send", "-5", "-x"]).command else {
            panic!()
        };
        assert_eq!((uid.as_str(), message.as_deref()), ("-5", Some("-x")));
        let Command::Send { message, .. } = parse(&["send", "42", "--", "-x"]).command else {
            panic!()
        };
        assert_eq!(message.as_deref(), Some("-x"));
        let Command::Send {
            uid,
            message,
            group,
            ..
        } = parse(&["send", "--group", "g", "-x"]).command
        else {
            panic!()
        };
        assert_eq!(
            (uid.as_str(), message, group.as_deref()),
            ("-x", None, Some("g"))
        );
        let cli = parse(&["kick", "-5", "-6", "--reason", "bye", "--json"]);
        let Command::Kick(kick) = cli.command else {
            panic!()
        };
        assert_eq!(kick.uids, ["-5", "-6"]);
        assert_eq!(kick.reason.as_deref(), Some("bye"));
        assert!(cli.json);
        let Command::Unban { uids } = parse(&["--socket", "s", "unban", "-5", "7", "-x"]).command
        else {
            panic!()
        };
        assert_eq!(uids, ["7", "-5", "-x"]);
        let cli = parse(&["kick", "--reason=-x", "-5", "--ban", "1h", "--", "-6"]);
        let Command::Kick(kick) = cli.command else {
            panic!()
        };
        assert_eq!(kick.uids, ["-5", "-6"]);
        assert_eq!(kick.reason.as_deref(), Some("-x"));
        assert!(kick.ban.is_some());
        let cli = parse(&["--json", "send", "-5", "-"]);
        let Command::Send { uid, message, .. } = cli.command else {
            panic!()
        };
        assert_eq!(
            (uid.as_str(), message.as_deref(), cli.json),
            ("-5", Some("-"), true)
        );
        let Command::Token { uid, .. } = parse(&["token", "-5", "--secret-file", "s"]).command
        else {
            panic!()
        };
        assert_eq!(uid, "-5");
    }

    #[test]
    fn long_reasons_are_a_usage_error() {
        let long = "x".repeat(MAX_CLOSE_REASON + 1);
        assert!(Cli::try_parse_from(["pushctl", "kick", "1", "--reason", &long]).is_err());
    }
}
