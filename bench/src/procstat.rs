//! What the kernel says about a process: CPU time (utime + stime from `/proc/PID/stat`, all threads, including
//! ones that have exited) and memory (`VmRSS`, `VmHWM` from `/proc/PID/status`). The peak can be reset between
//! scenarios by writing `5` to `/proc/PID/clear_refs`, so each scenario reports its own peak.

use std::time::Duration;

use anyhow::{Context as _, bail};

/// `/proc` reports CPU time in USER_HZ ticks, which the Linux ABI fixes at 100 per second.
const TICKS_PER_SEC: u64 = 100;

/// CPU time the process has used so far (user + system, every thread).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading stat of {pid}"))?;
    // The command name (field 2) may contain spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at offsets 11 and 12.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("short /proc stat for {pid}");
    };
    let ticks = utime.parse::<u64>()? + stime.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident now, bytes.
    pub rss: u64,
    /// Peak resident since start or since the last [`reset_peak`], bytes.
    pub hwm: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading status of {pid}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("{name} missing"))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse()?;
        Ok(kb * 1024)
    };
    Ok(Memory { rss: field("VmRSS:")?, hwm: field("VmHWM:")? })
}

/// Resets the peak RSS to the current RSS. Needs to own the process (or root); failing that the peak stays
/// cumulative, which is reported rather than hidden.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// A process to watch during a run, by role.
#[derive(Debug, Clone)]
pub struct Watched {
    pub role: String,
    pub pid: u32,
}

/// CPU used by each watched process between two instants.
pub struct CpuWindow {
    start: Vec<Option<Duration>>,
}

impl CpuWindow {
    pub fn begin(procs: &[Watched]) -> Self {
        Self { start: procs.iter().map(|p| cpu_time(p.pid).ok()).collect() }
    }

    pub fn end(self, procs: &[Watched]) -> Vec<Option<Duration>> {
        procs.iter().zip(self.start).map(|(p, s)| Some(cpu_time(p.pid).ok()?.saturating_sub(s?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let m = memory(me).unwrap();
        assert!(m.rss > 0 && m.hwm >= m.rss / 2);
        // Burn a little CPU so the counter moves past zero on any tick boundary.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(me).unwrap() > Duration::ZERO);
    }
}
