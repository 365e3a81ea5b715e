//! Another process's memory and CPU time, from `/proc`.

use std::time::Duration;

/// Kernel clock ticks per second, the unit of CPU times in `/proc/PID/stat`.
#[allow(unsafe_code)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// A process's resident memory and CPU time at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// Resident set size in bytes (`VmRSS`).
    pub rss_bytes: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// Reads `/proc/PID/status` and `/proc/PID/stat`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_comm = &stat[stat.rfind(')').ok_or_else(|| anyhow::anyhow!("bad stat"))? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ProcSample {
        rss_bytes: rss_kib * 1024,
        cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()),
    })
}
