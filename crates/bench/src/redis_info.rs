//! Redis's own figures, read with redis-cli `INFO` (cluster runs): its CPU
//! time (from `/proc`, by the process id it reports) and its commands.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::sys;

/// Redis at one instant.
#[derive(Debug, Clone, Copy)]
pub struct RedisSample {
    /// User plus system CPU time of the redis-server process.
    pub cpu: Duration,
    /// `PUBLISH` calls, those of scripts included: bus messages.
    pub publishes: u64,
    /// Time spent in scripts (`EVALSHA` and `EVAL`), µs.
    pub script_us: u64,
    /// `XADD` calls (the cluster's events).
    pub xadds: u64,
}

/// Samples the Redis listening on `socket`.
pub fn sample(socket: &Path) -> anyhow::Result<RedisSample> {
    let info = |section: &str| -> anyhow::Result<String> {
        let out = std::process::Command::new("redis-cli")
            .arg("-s")
            .arg(socket)
            .args(["INFO", section])
            .output()
            .context("running redis-cli")?;
        anyhow::ensure!(out.status.success(), "redis-cli INFO {section} failed");
        Ok(String::from_utf8_lossy(&out.stdout).replace('\r', ""))
    };
    let server = info("server")?;
    let pid: u32 = server
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .context("no process_id in INFO server")?
        .trim()
        .parse()?;
    let commands = info("commandstats")?;
    let stat = |command: &str, field: &str| -> u64 {
        let prefix = format!("cmdstat_{command}:");
        (commands.lines())
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| {
                rest.split(',')
                    .find_map(|pair| pair.strip_prefix(&format!("{field}=")))
            })
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Ok(RedisSample {
        cpu: sys::sample(pid)?.cpu,
        publishes: stat("publish", "calls"),
        script_us: stat("evalsha", "usec") + stat("eval", "usec"),
        xadds: stat("xadd", "calls"),
    })
}
