//! `pushctl` as a library: the clap definition ([`cli`]), the admin client
//! ([`client`]), one module per subcommand ([`cmd`]) and text rendering
//! ([`render`]). The binary's `main` is [`main`]; exit statuses are decided
//! in exactly one place ([`exit_status`]).

pub mod cli;
pub mod client;
pub mod cmd;
pub mod error;
pub mod render;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, GroupCommand};
use crate::client::Client;
use crate::cmd::Answer;
use crate::error::CtlError;

/// Runs pushctl with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::hyphenated_uids_as_values(
        std::env::args_os().collect(),
    ));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pushctl: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let result = runtime.block_on(run(cli, &mut stdout)).and_then(|answer| {
        stdout.flush()?;
        Ok(answer)
    });
    ExitCode::from(exit_status(result))
}

/// Maps a command's outcome to its exit status, printing any error.
pub fn exit_status(result: Result<Answer, CtlError>) -> u8 {
    match result {
        Ok(answer) => answer.exit_status(),
        Err(err) => {
            let status = err.exit_status();
            if status != 0 {
                eprintln!("pushctl: {err}");
            }
            status
        }
    }
}

/// Connects to the daemon and runs one subcommand, writing to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<Answer, CtlError> {
    // The only command that needs no daemon.
    if let Command::Token {
        uid,
        ttl,
        secret_file,
    } = &cli.command
    {
        return cmd::token::run(uid, *ttl, secret_file, cli.json, out);
    }
    let path = cli
        .socket
        .unwrap_or_else(pushd_proto::socket_path::default_socket_path);
    let mut client = Client::connect(&path).await?;
    let json = cli.json;
    let answer = match cli.command {
        Command::List(args) => cmd::list::run(&mut client, args, json, out).await,
        Command::Kick(args) => cmd::kick::run(&mut client, args, json, out).await,
        Command::Send {
            uid,
            message,
            group,
            connection,
            transient,
        } => match (group, connection, message) {
            (Some(group), None, None) => {
                // With --group the one value is the message.
                cmd::group::send(&mut client, &group, uid, transient, json, out).await
            }
            (None, Some(connection), None) => {
                cmd::push::send_connection(&mut client, connection, uid, json, out).await
            }
            (None, None, Some(message)) => {
                cmd::push::send(&mut client, &uid, message, transient, json, out).await
            }
            _ => Err(CtlError::Usage(
                "send: give UID MESSAGE, --group GROUP MESSAGE or --connection ID MESSAGE".into(),
            )),
        },
        Command::Group(GroupCommand::Add { group, uids, ttl }) => {
            cmd::group::add(&mut client, &group, &uids, ttl, json, out).await
        }
        Command::Group(GroupCommand::Remove { group, uids }) => {
            cmd::group::remove(&mut client, &group, &uids, json, out).await
        }
        Command::Group(GroupCommand::Drop { group }) => {
            cmd::group::drop_group(&mut client, &group, json, out).await
        }
        Command::Group(GroupCommand::Members { group, online }) => {
            cmd::group::members(&mut client, &group, online, json, out).await
        }
        Command::Group(GroupCommand::List) => cmd::group::list(&mut client, json, out).await,
        Command::Groups { uid } => cmd::group::of_uid(&mut client, &uid, json, out).await,
        Command::Broadcast { message } => {
            cmd::push::broadcast(&mut client, message, json, out).await
        }
        Command::Online { uid } => cmd::online::run(&mut client, &uid, json, out).await,
        Command::Stats => cmd::stats::run(&mut client, json, out).await,
        Command::Unban { uids } => cmd::ban::unban(&mut client, &uids, json, out).await,
        Command::Bans => cmd::ban::list(&mut client, json, out).await,
        Command::Mailbox { clear: false, .. } => cmd::mailbox::list(&mut client, json, out).await,
        Command::Mailbox { clear: true, uids } => {
            cmd::mailbox::clear(&mut client, &uids, json, out).await
        }
        Command::Reload => cmd::reload::run(&mut client, json, out).await,
        Command::Drain { over } => cmd::drain::run(&mut client, over, json, out).await,
        Command::Upgrade { binary, or_drain } => {
            cmd::upgrade::run(&mut client, binary, or_drain, json, out).await
        }
        Command::Events { types, since } => {
            cmd::events::run(&mut client, types, since, json, out).await
        }
        Command::Token { .. } => unreachable!("handled before connecting"),
        Command::Watch {
            interval,
            iterations,
            top,
        } => cmd::watch::run(&mut client, interval, iterations, top, out).await,
    }?;
    let incomplete = client.take_incomplete();
    if incomplete.is_empty() {
        Ok(answer)
    } else {
        Err(CtlError::Unconfirmed(incomplete))
    }
}
