//! CPU accounting from `/proc`: per process (`/proc/PID/stat` utime+stime, all threads, plus
//! context switches of every thread) and for the whole host (`/proc/stat`, which counts kernel
//! work in softirq and NAPI threads too).

use std::fs;

use serde::Serialize;

/// Clock ticks per second of `/proc` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clk_tck() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// Aggregate host CPU times in ticks (first line of `/proc/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostCpu {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// softirq alone.
    pub softirq: u64,
    /// system alone.
    pub system: u64,
    /// Every field (busy + idle + iowait).
    pub total: u64,
}

impl HostCpu {
    /// Parses the `cpu ` line of `/proc/stat`.
    pub fn parse(text: &str) -> Option<HostCpu> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        if v.len() < 8 {
            return None;
        }
        // user nice system idle iowait irq softirq steal [guest guest_nice] — guest time is
        // already inside user/nice.
        let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        Some(HostCpu {
            busy,
            softirq: v[6],
            system: v[2],
            total: busy + v[3] + v[4],
        })
    }

    /// Reads `/proc/stat`.
    pub fn read() -> Option<HostCpu> {
        HostCpu::parse(&fs::read_to_string("/proc/stat").ok()?)
    }
}

/// utime + stime in ticks from the text of `/proc/PID/stat` (fields 14 and 15; the command
/// name in parentheses may contain spaces and parentheses, so fields are counted after the
/// last `)`).
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ")": field 3 (state) is index 0, so utime (14) is index 11, stime (15) index 12.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks used so far by a process (every thread, live and exited).
pub fn pid_cpu_ticks(pid: u32) -> Option<u64> {
    parse_pid_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// (voluntary, involuntary) context switches from the text of a `/proc/.../status` file.
pub fn parse_ctx_switches(text: &str) -> Option<(u64, u64)> {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        get("voluntary_ctxt_switches:")?,
        get("nonvoluntary_ctxt_switches:")?,
    ))
}

/// Context switches summed over the live threads of a process: voluntary ones are the
/// wake-ups after blocking waits.
pub fn pid_ctx_switches(pid: u32) -> (u64, u64) {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|t| parse_ctx_switches(&t))
        .fold((0, 0), |(a, b), (v, n)| (a + v, b + n))
}

/// One sample of a process: CPU ticks and context switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime, ticks.
    pub ticks: u64,
    /// Voluntary context switches (all threads).
    pub voluntary: u64,
    /// Involuntary context switches (all threads).
    pub involuntary: u64,
}

impl ProcSample {
    /// Samples a process; zeros when it is gone.
    pub fn take(pid: u32) -> ProcSample {
        let (voluntary, involuntary) = pid_ctx_switches(pid);
        ProcSample {
            ticks: pid_cpu_ticks(pid).unwrap_or(0),
            voluntary,
            involuntary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_line() {
        let t = "cpu  100 5 50 1000 20 3 7 2 0 0\ncpu0 50 2 25 500 10 1 3 1 0 0\nintr 1\n";
        let h = HostCpu::parse(t).unwrap();
        assert_eq!(h.busy, 100 + 5 + 50 + 3 + 7 + 2);
        assert_eq!(h.softirq, 7);
        assert_eq!(h.system, 50);
        assert_eq!(h.total, h.busy + 1000 + 20);
        assert_eq!(HostCpu::parse("cpu0 1 2 3\n"), None);
        assert_eq!(HostCpu::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(HostCpu::parse("cpu  1 2 3\n"), None);
    }

    #[test]
    fn pid_stat_with_odd_comm() {
        // Fields after comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime ...
        let t = "1234 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 3 0";
        assert_eq!(parse_pid_stat(t), Some(333));
        assert_eq!(parse_pid_stat("1234 (x) S 1 2"), None);
        assert_eq!(parse_pid_stat("no paren"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        // Burn a little CPU so the counters exist and are plausible.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(pid_cpu_ticks(me).is_some());
        let (v, n) = pid_ctx_switches(me);
        assert!(v + n > 0);
        assert!(HostCpu::read().unwrap().total > 0);
        assert_eq!(
            parse_ctx_switches("voluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t7\n"),
            Some((5, 7))
        );
        assert!(clk_tck() > 0.0);
    }
}
