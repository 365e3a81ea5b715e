//! `pushbench`: a load generator for pushd that speaks only its public
//! protocols (WebSocket, the text port, the admin socket), so it can target
//! any server that speaks them. Method and figures: `docs/PERFORMANCE.md`.

mod admin;
mod clients;
mod drain;
mod navigate;
mod probe;
mod receipts;
mod redis_info;
mod scenarios;
mod upgrade;
mod upstream;

// Shared with the end-to-end tests, through the library.
use pushbench::{promise, report, sys};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Load generator for pushd.
#[derive(Debug, Parser)]
#[command(
    name = "pushbench",
    version,
    about = "Load generator for pushd (see docs/PERFORMANCE.md)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Options shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// pushd's WebSocket address.
    #[arg(long, global = true, default_value = "127.0.0.1:1234")]
    ws: SocketAddr,
    /// pushd's text-port address.
    #[arg(long, global = true, default_value = "127.0.0.1:5678")]
    text: SocketAddr,
    /// pushd's admin socket [default: the pushd/pushctl rule].
    #[arg(long, global = true, env = "PUSHD_SOCKET", default_value_os_t = pushd_proto::socket_path::default_socket_path())]
    socket: PathBuf,
    /// pushd's process id, for RSS and CPU figures.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// More WebSocket addresses (a cluster's other nodes): the clients are
    /// spread over --ws and these in turn.
    #[arg(long = "also-ws", global = true, value_name = "ADDR")]
    also_ws: Vec<SocketAddr>,
    /// More server processes (a cluster's other nodes) whose CPU time counts
    /// with --pid's in the CPU figures (`broadcast`).
    #[arg(long = "also-pid", global = true, value_name = "PID")]
    also_pid: Vec<u32>,
    /// Clients are pages' event streams (Server-Sent Events) instead of
    /// WebSockets (plain HTTP; `idle`, `push`, `broadcast`).
    #[arg(long, global = true)]
    sse: bool,
    /// Redis's Unix socket, in cluster mode: Redis's CPU time and its
    /// commands per push (`broadcast`), read with redis-cli `INFO`.
    #[arg(long, global = true, value_name = "PATH")]
    redis_socket: Option<PathBuf>,
    /// Client i binds uid PREFIX + i.
    #[arg(long, global = true, default_value = "b")]
    uid_prefix: String,
    /// Handshakes in flight while connecting.
    #[arg(long, global = true, default_value_t = 256)]
    concurrency: usize,
    /// Upper bound for each phase (connecting, sending).
    #[arg(long, global = true, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Connect with wss:// (pushd with --tls-cert), trusting the certificates in
    /// this PEM file and checking the name `localhost`.
    #[arg(long, global = true, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Learn that the clients are bound by pushing to them over the text port
    /// (`ok` once bound), not from the admin socket: for the peer servers,
    /// which have none (`idle` and `push` only). Not for pushd, whose mailbox
    /// answers `ok` for an offline uid.
    #[arg(long, global = true)]
    bind_probe: bool,
}

impl Common {
    /// Where clients connect: --ws, then every --also-ws, in turn.
    fn ws_targets(&self) -> Vec<SocketAddr> {
        std::iter::once(self.ws)
            .chain(self.also_ws.iter().copied())
            .collect()
    }

    /// CPU time of --pid and every --also-pid together; `None` without --pid.
    fn servers_cpu(&self) -> anyhow::Result<Option<Duration>> {
        let Some(pid) = self.pid else {
            return Ok(None);
        };
        let mut cpu = sys::sample(pid)?.cpu;
        for pid in &self.also_pid {
            cpu += sys::sample(*pid)?.cpu;
        }
        Ok(Some(cpu))
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open and bind N connections; report connect rate, server RSS per
    /// connection, and server CPU while they sit idle.
    Idle {
        /// Connections to open.
        #[arg(long, short = 'n', default_value_t = 1000)]
        connections: usize,
        /// How long to hold them idle while measuring CPU.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// Push M messages through K text connections to N clients; report rate,
    /// ok/fail, lost messages and latency from write to receipt.
    Push {
        /// Bound clients.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// Messages in all.
        #[arg(long, short = 'm', default_value_t = 100_000)]
        messages: u64,
        /// Text-port connections.
        #[arg(long, short = 'k', default_value_t = 4)]
        text_connections: usize,
        /// Requests in flight per text connection.
        #[arg(long, short = 'p', default_value_t = 64)]
        in_flight: usize,
        /// Total send rate in messages/s (default: as fast as replies allow).
        #[arg(long)]
        rate: Option<f64>,
        /// Extra payload bytes per message.
        #[arg(long, default_value_t = 0)]
        padding: usize,
        /// Push through pushd's HTTP API at ADDR (`--http-listen`): K connections,
        /// each POSTing /v1/push bodies of P lines, one at a time, keep-alive.
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Push to each client by its connection id (`{"connection": ID}`,
        /// read from `pushctl list`) instead of its uid.
        #[arg(long)]
        by_connection: bool,
    },
    /// Send B broadcasts to N clients; report the time until the last client has each.
    Broadcast {
        /// Bound clients.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// Broadcasts, one after another.
        #[arg(long, short = 'b', default_value_t = 20)]
        broadcasts: usize,
        /// Make every client's uid a member of one group first, and push to the
        /// group instead of broadcasting: the same connections, through the
        /// group push (reports the membership changes' CPU too, with --pid).
        #[arg(long)]
        group: bool,
        /// Push the group line through the text port, as a backend does,
        /// instead of `pushctl send --group` over the admin socket.
        #[arg(long, requires = "group")]
        text_port: bool,
        /// While the group pushes flow, add and remove this many other
        /// memberships per second (offline uids, 100 per request) through
        /// another admin connection; every client must still get every push.
        #[arg(long, requires = "group", default_value_t = 0)]
        churn: u64,
    },
    /// Push M messages to U uids that have no connection, so that they wait in
    /// their mailboxes; report the answers, server RSS per waiting message and
    /// the RSS at the end.
    Mailbox {
        /// Offline uids the messages are spread over.
        #[arg(long, short = 'u', default_value_t = 10_000)]
        uids: usize,
        /// Messages in all.
        #[arg(long, short = 'm', default_value_t = 100_000)]
        messages: u64,
        /// Extra payload bytes per message.
        #[arg(long, default_value_t = 0)]
        padding: usize,
    },
    /// P pushes to each of N clients through the text port, as one group line
    /// per push (--group: the clients are one group) or one uid line per client
    /// and push: server CPU per delivered message (with --pid) and rate.
    Fanout {
        /// Bound clients.
        #[arg(long, short = 'n', default_value_t = 10)]
        clients: usize,
        /// Pushes to each.
        #[arg(long, short = 'p', default_value_t = 20_000)]
        pushes: usize,
        /// One group line per push instead of one uid line per client.
        #[arg(long)]
        group: bool,
    },
    /// Pages talking back (pushd with --upstream): P pages each send M text
    /// messages at once; a consumer counts the `message` events (the HTTP
    /// API's stream with --events, or a webhook receiver on --webhook-port);
    /// reports the rate, server CPU per message and what pushd told and dropped.
    Upstream {
        /// Pages.
        #[arg(long, short = 'n', default_value_t = 1000)]
        pages: usize,
        /// Messages each page sends.
        #[arg(long, short = 'm', default_value_t = 10)]
        messages: usize,
        /// The HTTP API's address, to read `GET /v1/events?type=message`
        /// (repeat it for several nodes' streams).
        #[arg(long, value_name = "ADDR", conflicts_with = "webhook_port")]
        events: Vec<SocketAddr>,
        /// Event streams read from each --events address.
        #[arg(long, default_value_t = 1, value_name = "N")]
        readers: usize,
        /// Messages per second from all pages together (each page paced);
        /// as fast as they can without it.
        #[arg(long, value_name = "N")]
        rate: Option<f64>,
        /// Receive the events as pushd's webhook on this loopback port.
        #[arg(long, value_name = "PORT")]
        webhook_port: Option<u16>,
    },
    /// Group memberships: M uids (offline) added to G groups through the admin
    /// socket, a thousand per request, then removed; reports changes per
    /// second, server CPU per change (with --pid) and RSS per membership.
    Memberships {
        /// Memberships in all.
        #[arg(long, short = 'm', default_value_t = 1_000_000)]
        memberships: usize,
        /// Groups they are spread over.
        #[arg(long, short = 'g', default_value_t = 100)]
        groups: usize,
        /// Through the HTTP API's bulk endpoint at this address (`POST
        /// /v1/groups/{group}/members`, one connection, keep-alive) instead
        /// of the admin socket.
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
    },
    /// N pages that navigate all the time (stay, leave, the next page loads)
    /// while M pushes flow to their uids; report lost and duplicated messages,
    /// for raw pages or, with --v2, pages that resume with `?since=`.
    Navigate {
        /// Pages, one uid each.
        #[arg(long, short = 'n', default_value_t = 100)]
        pages: usize,
        /// Messages in all.
        #[arg(long, short = 'm', default_value_t = 10_000)]
        messages: u64,
        /// Total push rate in messages/s.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// How long a page stays.
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        stay: Duration,
        /// How long the next page takes to load.
        #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
        gap: Duration,
        /// Speak pushd.v2 and resume with since.
        #[arg(long)]
        v2: bool,
    },
    /// pushd's promise under faults: starts pushd itself (with --nodes 2 or
    /// more, a cluster and its redis-server), pages of many uids navigate
    /// (pushd.v2 ones resume with since) while numbered pushes flow, faults
    /// come in turn (--faults); then every push is accounted for. Exits 1 on a silent loss, a duplicate or a push
    /// out of order for pushd.v2 pages (rules: docs/RELIABILITY.md).
    Promise {
        /// The pushd binary [default: next to pushbench].
        #[arg(long)]
        pushd: Option<PathBuf>,
        /// Uids, one page at a time each.
        #[arg(long, short = 'n', default_value_t = 50)]
        uids: usize,
        /// Every this many uids, one has raw pages (0: none).
        #[arg(long, default_value_t = 5)]
        raw_every: usize,
        /// How long pushes flow.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Pushes per second, in all.
        #[arg(long, default_value_t = 300.0)]
        rate: f64,
        /// pushd nodes; 2 or more run a cluster through a redis-server of the checker's own.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// The redis-server binary, for cluster mode.
        #[arg(long, default_value = "redis-server")]
        redis_server: PathBuf,
        /// A fault this often (0: none).
        #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
        fault_every: Duration,
        /// The faults, in turn: term, kill, drain (a node: SIGTERM, SIGKILL, or
        /// `pushctl drain` then SIGTERM; started again each time), upgrade (a live
        /// upgrade), and in cluster mode pause, redis-restart, subscriber-kill
        /// [default: term,kill,drain,upgrade on one node,
        /// and in cluster mode every kind].
        #[arg(long, value_delimiter = ',', value_parser = promise::Fault::parse)]
        faults: Vec<promise::Fault>,
        /// How long a page stays before it leaves.
        #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
        stay: Duration,
        /// pushd's --mailbox-ttl; now and then a page is away for twice as long.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        mailbox_ttl: Duration,
    },
    /// How a drained node's clients come back: N clients on --ws (node A),
    /// `pushctl drain --over DUR` on A (--socket), each client reconnecting
    /// at its close to --to (node B); reports the reconnects per second B
    /// sees (busiest second against the mean) and the drain's time.
    Drain {
        /// Bound clients.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// The drain's window.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        over: Duration,
        /// Node B's WebSocket address, where the clients come back.
        #[arg(long)]
        to: SocketAddr,
    },
    /// A live upgrade under load: N plain clients on --ws, pushes at --rate
    /// through the text port, `pushctl upgrade` (through --socket) after
    /// --before; reports closes, pushes lost, doubled or out of order, the
    /// longest pause in the stream of receipts and the hand-over's duration.
    Upgrade {
        /// Bound clients.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// Pushes per second, in all.
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Pushing before the upgrade.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        before: Duration,
        /// Pushing after it.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        after: Duration,
        /// The new binary [default: the one pushd was started from].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// `list` and `kick` latency with N clients online.
    Admin {
        /// Bound clients.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// Repetitions of each request.
        #[arg(long, short = 'r', default_value_t = 20)]
        repeat: usize,
        /// The pushctl binary [default: next to pushbench].
        #[arg(long)]
        pushctl: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = pushd_daemon::sys::raise_nofile_limit();
    let needed = match &cli.scenario {
        Scenario::Idle { connections: n, .. }
        | Scenario::Push { clients: n, .. }
        | Scenario::Broadcast { clients: n, .. }
        | Scenario::Admin { clients: n, .. }
        | Scenario::Drain { clients: n, .. }
        | Scenario::Upgrade { clients: n, .. }
        | Scenario::Fanout { clients: n, .. } => *n as u64 + 64,
        Scenario::Upstream {
            pages: n,
            events,
            readers,
            ..
        } => (*n + events.len() * readers) as u64 + 64,
        Scenario::Mailbox { .. } | Scenario::Memberships { .. } => 64,
        Scenario::Navigate { pages, .. } => *pages as u64 + 64,
        Scenario::Promise { uids, .. } => *uids as u64 + 64,
    };
    if needed > limit {
        eprintln!(
            "pushbench: {needed} file descriptors needed but the limit is {limit}; \
             run several pushbench processes with different --uid-prefix"
        );
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(run(&cli));
    match result {
        Ok((report, kept)) => {
            if cli.json {
                println!("{}", serde_json::to_string(&report).expect("serializable"));
            } else {
                print!("{}", report.to_text());
            }
            if kept {
                ExitCode::SUCCESS
            } else {
                eprintln!("pushbench: the promise was broken (see the report)");
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("pushbench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario: its report, and whether what it checks held (only
/// `promise` checks anything; the others measure).
async fn run(cli: &Cli) -> anyhow::Result<(report::Report, bool)> {
    let common = &cli.common;
    let report = match &cli.scenario {
        Scenario::Idle { connections, hold } => scenarios::idle(common, *connections, *hold).await,
        Scenario::Drain { clients, over, to } => drain::drain(common, *clients, *over, *to).await,
        Scenario::Upgrade {
            clients,
            rate,
            before,
            after,
            binary,
        } => upgrade::upgrade(common, *clients, *rate, *before, *after, binary.clone()).await,
        Scenario::Push {
            clients,
            messages,
            text_connections,
            in_flight,
            rate,
            padding,
            http,
            by_connection,
        } => {
            let params = scenarios::PushParams {
                http: *http,
                connections: None,
                clients: *clients,
                messages: *messages,
                text_connections: *text_connections,
                in_flight: *in_flight,
                rate: *rate,
                padding: *padding,
            };
            scenarios::push(common, params, *by_connection).await
        }
        Scenario::Broadcast {
            clients,
            broadcasts,
            group,
            text_port,
            churn,
        } => {
            let how = scenarios::GroupPush {
                text_port: *text_port,
                churn: *churn,
            };
            let how = group.then_some(how);
            scenarios::broadcast(common, *clients, *broadcasts, how).await
        }
        Scenario::Mailbox {
            uids,
            messages,
            padding,
        } => scenarios::mailbox(common, *uids, *messages, *padding).await,
        Scenario::Memberships {
            memberships,
            groups,
            http,
        } => scenarios::memberships(common, *memberships, *groups, *http).await,
        Scenario::Upstream {
            pages,
            messages,
            events,
            readers,
            rate,
            webhook_port,
        } => {
            let consumer = match (events.is_empty(), webhook_port) {
                (false, _) => upstream::Consumer::Streams(
                    events
                        .iter()
                        .flat_map(|addr| std::iter::repeat_n(*addr, *readers))
                        .collect(),
                ),
                (true, Some(port)) => upstream::Consumer::Webhook(*port),
                (true, None) => {
                    anyhow::bail!("upstream needs --events ADDR or --webhook-port PORT")
                }
            };
            upstream::upstream(common, *pages, *messages, consumer, *rate).await
        }
        Scenario::Fanout {
            clients,
            pushes,
            group,
        } => scenarios::fanout(common, *clients, *pushes, *group).await,
        Scenario::Navigate {
            pages,
            messages,
            rate,
            stay,
            gap,
            v2,
        } => {
            let params = navigate::NavigateParams {
                pages: *pages,
                messages: *messages,
                rate: *rate,
                stay: *stay,
                gap: *gap,
                v2: *v2,
            };
            navigate::navigate(common, params).await
        }
        Scenario::Admin {
            clients,
            repeat,
            pushctl,
        } => {
            let pushctl = match pushctl {
                Some(path) => path.clone(),
                None => std::env::current_exe()?.with_file_name("pushctl"),
            };
            scenarios::admin(common, *clients, *repeat, &pushctl).await
        }
        Scenario::Promise {
            pushd,
            nodes,
            redis_server,
            uids,
            raw_every,
            duration,
            rate,
            fault_every,
            faults,
            stay,
            mailbox_ttl,
        } => {
            let pushd = match pushd {
                Some(path) => path.clone(),
                None => std::env::current_exe()?.with_file_name("pushd"),
            };
            let params = promise::PromiseParams {
                pushd,
                nodes: *nodes,
                redis_server: redis_server.clone(),
                faults: match faults.as_slice() {
                    [] if *nodes > 1 => promise::Fault::ALL.map(|(_, f)| f).into(),
                    [] => vec![
                        promise::Fault::Term,
                        promise::Fault::Kill,
                        promise::Fault::Drain,
                        promise::Fault::Upgrade,
                    ],
                    chosen => chosen.to_vec(),
                },
                uids: *uids,
                raw_every: *raw_every,
                duration: *duration,
                rate: *rate,
                fault_every: *fault_every,
                stay: *stay,
                mailbox_ttl: *mailbox_ttl,
            };
            return promise::promise(params).await;
        }
    };
    report.map(|report| (report, true))
}
