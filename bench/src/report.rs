//! Aggregation (median/min/max over repetitions, ratios against veth and epoll, the issue's
//! speed targets) and the three outputs: a Markdown table, `results.json` and an SVG chart.

use std::fmt::Write as _;
use std::fs;

use serde::Serialize;

use crate::args::{Plan, TestKind};
use crate::netns::Setting;
use crate::runner::Sample;
use crate::{BenchError, Result};

/// A peer that was asked for but could not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Absent {
    /// Peer name.
    pub peer: String,
    /// Why.
    pub why: String,
}

/// The machine the run was on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// CPUs online.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Date and time (UTC) of the run.
    pub date_utc: String,
}

impl Machine {
    /// Reads `/proc/cpuinfo`, `uname` and the clock.
    pub fn detect() -> Machine {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            date_utc: utc(secs),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time (civil-from-days).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Median, min and max over repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Stat {
    /// Statistics of the values; `None` when there are none.
    pub fn of(mut v: Vec<f64>) -> Option<Stat> {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One test on one row, over its repetitions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Agg {
    /// Test.
    pub test: String,
    /// Row.
    pub row: String,
    /// Successful repetitions.
    pub ok: usize,
    /// Failures, with their reasons.
    pub errors: Vec<String>,
    /// Received Gb/s.
    pub gbps: Option<Stat>,
    /// Received packets/s.
    pub pps: Option<Stat>,
    /// Offered packets/s.
    pub offered_pps: Option<Stat>,
    /// UDP loss (fraction).
    pub loss: Option<Stat>,
    /// RTT median, µs.
    pub rtt_median_us: Option<Stat>,
    /// RTT p99, µs.
    pub rtt_p99_us: Option<Stat>,
    /// Tunnel CPU µs per packet (both ends).
    pub us_per_pkt: Option<Stat>,
    /// Tunnel CPU seconds per GB.
    pub cpu_s_per_gb: Option<Stat>,
    /// Host CPU µs per packet.
    pub host_us_per_pkt: Option<Stat>,
    /// Host CPU seconds per GB.
    pub host_cpu_s_per_gb: Option<Stat>,
    /// Syscalls per datagram on the wire.
    pub syscalls_per_pkt: Option<Stat>,
    /// Voluntary context switches per packet.
    pub wakeups_per_pkt: Option<Stat>,
    /// Datagrams per UDP send.
    pub gso_segs_per_send: Option<Stat>,
    /// Datagrams per UDP receive.
    pub gro_segs_per_recv: Option<Stat>,
    /// Packets per TUN read.
    pub tun_segs_per_read: Option<Stat>,
    /// Packets per TUN write.
    pub tun_segs_per_write: Option<Stat>,
    /// Bytes per TUN read (super-packet size).
    pub tun_bytes_per_read: Option<Stat>,
    /// Bytes per UDP send.
    pub udp_bytes_per_send: Option<Stat>,
    /// The test's primary metric (Gb/s for TCP, packets/s for full-rate UDP, tunnel CPU
    /// µs/packet at the fixed rate, median RTT µs), median.
    pub primary: Option<f64>,
    /// Primary metric / veth's (for the fixed-rate test: host CPU per packet / veth's).
    pub vs_veth: Option<f64>,
    /// Primary metric / epoll's.
    pub vs_epoll: Option<f64>,
}

/// One of the issue's speed targets, evaluated on this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The goal as text.
    pub goal: String,
    /// The measured ratio, when both sides ran.
    pub measured: Option<f64>,
    /// `met`, `NOT met`, or `n/a (...)`.
    pub status: String,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The plan that ran.
    pub plan: Plan,
    /// The machine.
    pub machine: Machine,
    /// Underlay settings applied and their outcome.
    pub underlay: Vec<Setting>,
    /// Rows in order.
    pub rows: Vec<String>,
    /// Peers asked for but absent.
    pub absent: Vec<Absent>,
    /// Per test and row.
    pub results: Vec<Agg>,
    /// The speed targets.
    pub targets: Vec<Target>,
    /// io_uring against epoll, in words.
    pub uring_vs_epoll: Vec<String>,
    /// Every measurement.
    pub samples: Vec<Sample>,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
}

fn stat_by(samples: &[&Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<Stat> {
    Stat::of(samples.iter().filter_map(|s| f(s)).collect())
}

fn primary(test: TestKind, a: &Agg) -> Option<f64> {
    match test {
        TestKind::Tcp1 | TestKind::Tcp4 => a.gbps.map(|s| s.median),
        TestKind::Udp1392 | TestKind::Udp64 => a.pps.map(|s| s.median),
        TestKind::Udp64Fixed => a.us_per_pkt.map(|s| s.median),
        TestKind::Rtt => a.rtt_median_us.map(|s| s.median),
    }
}

fn aggregate(test: TestKind, row: &str, samples: &[Sample]) -> Agg {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.test == test.name() && s.row == row)
        .collect();
    let ok: Vec<&Sample> = mine.iter().copied().filter(|s| s.error.is_none()).collect();
    let d = |f: fn(&crate::summary::Derived) -> Option<f64>| {
        stat_by(&ok, |s| s.derived.as_ref().and_then(f))
    };
    let bulk = test != TestKind::Rtt;
    let mut a = Agg {
        test: test.name().into(),
        row: row.into(),
        ok: ok.len(),
        errors: mine.iter().filter_map(|s| s.error.clone()).collect(),
        gbps: bulk.then(|| stat_by(&ok, |s| Some(s.gbps))).flatten(),
        pps: bulk.then(|| stat_by(&ok, |s| Some(s.pps))).flatten(),
        offered_pps: stat_by(&ok, |s| s.offered_pps),
        loss: stat_by(&ok, |s| s.loss),
        rtt_median_us: stat_by(&ok, |s| s.rtt.as_ref().map(|r| r.median_us)),
        rtt_p99_us: stat_by(&ok, |s| s.rtt.as_ref().map(|r| r.p99_us)),
        us_per_pkt: stat_by(&ok, |s| s.us_per_pkt),
        cpu_s_per_gb: stat_by(&ok, |s| s.cpu_s_per_gb),
        host_us_per_pkt: stat_by(&ok, |s| s.host_us_per_pkt),
        host_cpu_s_per_gb: stat_by(&ok, |s| s.host_cpu_s_per_gb),
        syscalls_per_pkt: d(|d| d.syscalls_per_pkt),
        wakeups_per_pkt: stat_by(&ok, |s| s.wakeups_per_pkt),
        gso_segs_per_send: d(|d| d.gso_segs_per_send),
        gro_segs_per_recv: d(|d| d.gro_segs_per_recv),
        tun_segs_per_read: d(|d| d.tun_segs_per_read),
        tun_segs_per_write: d(|d| d.tun_segs_per_write),
        tun_bytes_per_read: d(|d| d.tun_bytes_per_read),
        udp_bytes_per_send: d(|d| d.udp_bytes_per_send),
        ..Default::default()
    };
    a.primary = primary(test, &a);
    a
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Report {
    /// Aggregates the samples and evaluates the targets.
    pub fn build(
        plan: Plan,
        rows: Vec<String>,
        samples: Vec<Sample>,
        underlay: Vec<Setting>,
        absent: Vec<Absent>,
        machine: Machine,
        elapsed_s: f64,
    ) -> Report {
        let mut results = Vec::new();
        for &t in &plan.tests {
            let aggs: Vec<Agg> = rows.iter().map(|r| aggregate(t, r, &samples)).collect();
            let find = |name: &str| aggs.iter().find(|a| a.row == name);
            let veth = find("veth").cloned();
            let epoll = find("epoll").and_then(|a| a.primary);
            for mut a in aggs.clone() {
                a.vs_veth = if t == TestKind::Udp64Fixed {
                    ratio(
                        a.host_us_per_pkt.map(|s| s.median),
                        veth.as_ref()
                            .and_then(|v| v.host_us_per_pkt.map(|s| s.median)),
                    )
                } else {
                    ratio(a.primary, veth.as_ref().and_then(|v| v.primary))
                };
                a.vs_epoll = ratio(a.primary, epoll);
                results.push(a);
            }
        }
        let mut r = Report {
            plan,
            machine,
            underlay,
            rows,
            absent,
            results,
            targets: Vec::new(),
            uring_vs_epoll: Vec::new(),
            samples,
            elapsed_s,
        };
        r.targets = r.eval_targets();
        r.uring_vs_epoll = r.explain_uring();
        r
    }

    /// The aggregate of one test and row.
    pub fn get(&self, test: TestKind, row: &str) -> Option<&Agg> {
        self.results
            .iter()
            .find(|a| a.test == test.name() && a.row == row)
    }

    fn med(&self, test: TestKind, row: &str, f: impl Fn(&Agg) -> Option<Stat>) -> Option<f64> {
        self.get(test, row).and_then(f).map(|s| s.median)
    }

    fn eval_targets(&self) -> Vec<Target> {
        use TestKind::*;
        let mut out = Vec::new();
        let wgo = "wireguard-go-offload";
        let mut push =
            |what: &str, goal: &str, m: Option<f64>, pass: fn(f64) -> bool, why: String| {
                out.push(Target {
                    what: what.into(),
                    goal: goal.into(),
                    measured: m,
                    status: match m {
                        Some(v) if pass(v) => "met".into(),
                        Some(_) => "NOT met".into(),
                        None => format!("n/a ({why})"),
                    },
                })
            };
        let absent_or = |row: &str, test: TestKind| -> String {
            if !self.plan.tests.contains(&test) {
                format!("{test} not run")
            } else if !self.rows.iter().any(|r| r == row) {
                format!("{row} not run")
            } else {
                "no result".into()
            }
        };
        let gb = |a: &Agg| a.gbps;
        let pps = |a: &Agg| a.pps;
        let cpu = |a: &Agg| a.us_per_pkt;
        push(
            "TCP 1 stream, uring / wireguard-go-offload",
            "≥ 1.5×",
            ratio(self.med(Tcp1, "uring", gb), self.med(Tcp1, wgo, gb)),
            |v| v >= 1.5,
            absent_or(wgo, Tcp1),
        );
        push(
            "TCP 1 stream, uring / bare veth",
            "≥ 0.28×",
            ratio(self.med(Tcp1, "uring", gb), self.med(Tcp1, "veth", gb)),
            |v| v >= 0.28,
            absent_or("uring", Tcp1),
        );
        push(
            "TCP 4 streams, uring / wireguard-go-offload",
            "≥ 1.5×",
            ratio(self.med(Tcp4, "uring", gb), self.med(Tcp4, wgo, gb)),
            |v| v >= 1.5,
            absent_or(wgo, Tcp4),
        );
        push(
            "TCP 1 stream CPU-s/GB, uring / wireguard-go-offload",
            "≤ 0.6×",
            ratio(
                self.med(Tcp1, "uring", |a| a.cpu_s_per_gb),
                self.med(Tcp1, wgo, |a| a.cpu_s_per_gb),
            ),
            |v| v <= 0.6,
            absent_or(wgo, Tcp1),
        );
        push(
            "UDP 1392 B pps, uring / gotatun",
            "≥ 4×",
            ratio(
                self.med(Udp1392, "uring", pps),
                self.med(Udp1392, "gotatun", pps),
            ),
            |v| v >= 4.0,
            absent_or("gotatun", Udp1392),
        );
        push(
            "UDP 64 B pps, uring / gotatun",
            "≥ 2×",
            ratio(
                self.med(Udp64, "uring", pps),
                self.med(Udp64, "gotatun", pps),
            ),
            |v| v >= 2.0,
            absent_or("gotatun", Udp64),
        );
        push(
            "CPU µs/pkt at the fixed rate, uring / gotatun",
            "≤ 0.25×",
            ratio(
                self.med(Udp64Fixed, "uring", cpu),
                self.med(Udp64Fixed, "gotatun", cpu),
            ),
            |v| v <= 0.25,
            absent_or("gotatun", Udp64Fixed),
        );
        push(
            "UDP 64 B pps, uring / epoll",
            "≥ 1.25× (or the CPU target below)",
            ratio(self.med(Udp64, "uring", pps), self.med(Udp64, "epoll", pps)),
            |v| v >= 1.25,
            absent_or("epoll", Udp64),
        );
        push(
            "CPU µs/pkt at the fixed rate, uring / epoll",
            "≤ 0.8× (or the pps target above)",
            ratio(
                self.med(Udp64Fixed, "uring", cpu),
                self.med(Udp64Fixed, "epoll", cpu),
            ),
            |v| v <= 0.8,
            absent_or("epoll", Udp64Fixed),
        );
        for t in [Tcp1, Tcp4] {
            push(
                &format!("{t}: uring syscalls per packet"),
                "≤ 0.05",
                self.med(t, "uring", |a| a.syscalls_per_pkt),
                |v| v <= 0.05,
                absent_or("uring", t),
            );
        }
        push(
            "RTT median, uring / bare veth",
            "≤ 2×",
            ratio(
                self.med(Rtt, "uring", |a| a.rtt_median_us),
                self.med(Rtt, "veth", |a| a.rtt_median_us),
            ),
            |v| v <= 2.0,
            absent_or("uring", Rtt),
        );
        out
    }

    fn explain_uring(&self) -> Vec<String> {
        let mut out = Vec::new();
        for &t in &self.plan.tests {
            let (Some(u), Some(e)) = (self.get(t, "uring"), self.get(t, "epoll")) else {
                continue;
            };
            let (Some(up), Some(ep)) = (u.primary, e.primary) else {
                continue;
            };
            let lower_better = matches!(t, TestKind::Udp64Fixed | TestKind::Rtt);
            let wins = if lower_better { up < ep } else { up > ep };
            let m = |s: Option<Stat>| s.map_or("-".into(), |s| fmt_num(s.median));
            let detail = format!(
                "CPU µs/pkt {} vs {}, syscalls (enters) per packet {} vs {}, wake-ups per packet {} vs {}",
                m(u.us_per_pkt),
                m(e.us_per_pkt),
                m(u.syscalls_per_pkt),
                m(e.syscalls_per_pkt),
                m(u.wakeups_per_pkt),
                m(e.wakeups_per_pkt),
            );
            let what = match t {
                TestKind::Tcp1 | TestKind::Tcp4 => "Gb/s",
                TestKind::Udp1392 | TestKind::Udp64 => "packets/s",
                TestKind::Udp64Fixed => "tunnel CPU µs per packet",
                TestKind::Rtt => "median RTT µs",
            };
            out.push(format!(
                "{t}: io_uring {} epoll on {what} ({} vs {}, ×{:.2}); {detail}.",
                if wins { "beats" } else { "does NOT beat" },
                fmt_num(up),
                fmt_num(ep),
                up / ep,
            ));
        }
        out
    }

    /// The Markdown report (what `bench` prints on stdout).
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(o, "# uring-tunnel bench — {} UTC\n", m.date_utc);
        let _ = writeln!(
            o,
            "Machine: {} ({} CPUs), Linux {}. Window {:.1} s after {:.1} s warm-up, {} repetition(s), cores per tunnel: {}, fixed rate {} pps, run time {:.0} s.\n",
            m.cpu,
            m.cpus,
            m.kernel,
            self.plan.duration.as_secs_f64(),
            self.plan.warmup.as_secs_f64(),
            self.plan.reps,
            self.plan
                .cores
                .map_or_else(|| "default".to_string(), |c| c.to_string()),
            self.plan.fixed_rate,
            self.elapsed_s
        );
        let _ = writeln!(
            o,
            "Underlay (veth between two netns, MTU 1500; tunnels MTU 1420):"
        );
        for s in &self.underlay {
            let _ = writeln!(o, "- {}: `{}`: {}", s.side, s.what, s.result);
        }
        if !self.absent.is_empty() {
            let _ = writeln!(o, "\nAbsent peers:");
            for a in &self.absent {
                let _ = writeln!(o, "- {}: {}", a.peer, a.why);
            }
        }
        let _ = writeln!(
            o,
            "\n| test | tunnel | Gb/s | kpps | loss | RTT µs med/p99 | CPU µs/pkt | CPU-s/GB | host µs/pkt | host CPU-s/GB | syscalls/pkt | wake-ups/pkt | UDP segs/send | UDP segs/recv | TUN segs/read | TUN segs/write | ×veth | ×epoll | min–max (Gb/s, kpps, µs) |"
        );
        let _ = writeln!(o, "|{}", "---|".repeat(19));
        let f = |s: Option<Stat>| s.map_or("-".into(), |s| fmt_num(s.median));
        let fk = |s: Option<Stat>| s.map_or("-".into(), |s| fmt_num(s.median / 1e3));
        for a in &self.results {
            if a.ok == 0 {
                let _ = writeln!(
                    o,
                    "| {} | {} | FAILED: {} |{}",
                    a.test,
                    a.row,
                    a.errors
                        .first()
                        .and_then(|e| e.lines().next())
                        .unwrap_or("")
                        .replace('|', "/"),
                    " |".repeat(16)
                );
                continue;
            }
            let rtt = match (a.rtt_median_us, a.rtt_p99_us) {
                (Some(m), Some(p)) => format!("{:.0} / {:.0}", m.median, p.median),
                _ => "-".into(),
            };
            let loss = a
                .loss
                .map_or("-".into(), |l| format!("{:.2}%", l.median * 100.0));
            let range = match TestKind::parse(&a.test) {
                Some(TestKind::Tcp1 | TestKind::Tcp4) => a.gbps,
                Some(TestKind::Udp1392 | TestKind::Udp64) => a.pps,
                Some(TestKind::Udp64Fixed) => a.us_per_pkt,
                _ => a.rtt_median_us,
            }
            .map_or("-".into(), |s| {
                let k = if matches!(
                    TestKind::parse(&a.test),
                    Some(TestKind::Udp1392 | TestKind::Udp64)
                ) {
                    1e-3
                } else {
                    1.0
                };
                format!("{}–{}", fmt_num(s.min * k), fmt_num(s.max * k))
            });
            let x = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}"));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                a.test,
                a.row,
                f(a.gbps),
                fk(a.pps),
                loss,
                rtt,
                f(a.us_per_pkt),
                f(a.cpu_s_per_gb),
                f(a.host_us_per_pkt),
                f(a.host_cpu_s_per_gb),
                f(a.syscalls_per_pkt),
                f(a.wakeups_per_pkt),
                f(a.gso_segs_per_send),
                f(a.gro_segs_per_recv),
                f(a.tun_segs_per_read),
                f(a.tun_segs_per_write),
                x(a.vs_veth),
                x(a.vs_epoll),
                range
            );
        }
        let _ = writeln!(
            o,
            "\nCPU: tunnel processes' utime+stime (`/proc/PID/stat`), both ends, in the window; host: busy time from `/proc/stat` (softirq and NAPI threads included, the generator and sink too). Packets: received by the sink (TCP: bytes / MSS). syscalls/pkt: both ends' syscalls (io_uring: enters) per UDP datagram on the wire. ×veth/×epoll compare the primary metric (TCP Gb/s, UDP packets/s, CPU µs/pkt at the fixed rate — host CPU for ×veth —, median RTT)."
        );
        let _ = writeln!(
            o,
            "\n## Targets\n\n| target | goal | measured | status |\n|---|---|---|---|"
        );
        for t in &self.targets {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                t.what,
                t.goal,
                t.measured.map_or("-".into(), |v| format!("{v:.3}")),
                t.status
            );
        }
        if !self.uring_vs_epoll.is_empty() {
            let _ = writeln!(o, "\n## io_uring against epoll\n");
            for l in &self.uring_vs_epoll {
                let _ = writeln!(o, "- {l}");
            }
        }
        let failures: Vec<&Sample> = self.samples.iter().filter(|s| s.error.is_some()).collect();
        if !failures.is_empty() {
            let _ = writeln!(o, "\n## Failures\n");
            for s in failures {
                let _ = writeln!(
                    o,
                    "- {} {} rep {}: {}",
                    s.test,
                    s.row,
                    s.rep,
                    s.error
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("")
                );
            }
        }
        o
    }

    /// An SVG chart: one panel per test, one bar per row (primary metric, median, with the
    /// min–max range as a whisker).
    pub fn svg(&self) -> String {
        const W: f64 = 960.0;
        const PANEL_W: f64 = 470.0;
        const BAR_H: f64 = 18.0;
        const LABEL_W: f64 = 150.0;
        let colors = [
            "#888888", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
        ];
        let panel_h = (40.0 + BAR_H * 1.3 * self.rows.len() as f64 + 10.0).round();
        let ncols = 2usize;
        let nrows = self.plan.tests.len().div_ceil(ncols);
        let h = 40.0 + panel_h * nrows as f64;
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(
            o,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">uring-tunnel bench, {} — {} ({} CPUs)</text>"#,
            xml(&self.machine.date_utc),
            xml(&self.machine.cpu),
            self.machine.cpus
        );
        for (i, &t) in self.plan.tests.iter().enumerate() {
            let x0 = 10.0 + (i % ncols) as f64 * (PANEL_W + 10.0);
            let y0 = 40.0 + (i / ncols) as f64 * panel_h;
            let unit = match t {
                TestKind::Tcp1 | TestKind::Tcp4 => "Gb/s (higher is better)",
                TestKind::Udp1392 | TestKind::Udp64 => "kpps (higher is better)",
                TestKind::Udp64Fixed => "tunnel CPU µs/pkt (lower is better)",
                TestKind::Rtt => "median RTT µs (lower is better)",
            };
            let scale = if matches!(t, TestKind::Udp1392 | TestKind::Udp64) {
                1e-3
            } else {
                1.0
            };
            let _ = writeln!(
                o,
                r#"<text x="{x0}" y="{}" font-weight="bold">{t}: {unit}</text>"#,
                y0 + 16.0
            );
            let aggs: Vec<&Agg> = self.results.iter().filter(|a| a.test == t.name()).collect();
            let stat = |a: &Agg| match t {
                TestKind::Tcp1 | TestKind::Tcp4 => a.gbps,
                TestKind::Udp1392 | TestKind::Udp64 => a.pps,
                TestKind::Udp64Fixed => a.us_per_pkt,
                TestKind::Rtt => a.rtt_median_us,
            };
            let maxv = aggs
                .iter()
                .filter_map(|a| stat(a).map(|s| s.max * scale))
                .fold(0.0f64, f64::max)
                .max(1e-9);
            let bar_w = PANEL_W - LABEL_W - 70.0;
            for (j, a) in aggs.iter().enumerate() {
                let y = ((y0 + 28.0 + j as f64 * BAR_H * 1.3) * 10.0).round() / 10.0;
                let color =
                    colors[self.rows.iter().position(|r| *r == a.row).unwrap_or(0) % colors.len()];
                let _ = writeln!(
                    o,
                    r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                    x0 + LABEL_W - 6.0,
                    y + BAR_H * 0.75,
                    xml(&a.row)
                );
                match stat(a) {
                    Some(s) => {
                        let w = s.median * scale / maxv * bar_w;
                        let _ = writeln!(
                            o,
                            r#"<rect x="{}" y="{y}" width="{w:.1}" height="{BAR_H}" fill="{color}"/>"#,
                            x0 + LABEL_W
                        );
                        let (lo, hi) = (
                            x0 + LABEL_W + s.min * scale / maxv * bar_w,
                            x0 + LABEL_W + s.max * scale / maxv * bar_w,
                        );
                        let ym = y + BAR_H / 2.0;
                        let _ = writeln!(
                            o,
                            r#"<line x1="{lo:.1}" y1="{ym}" x2="{hi:.1}" y2="{ym}" stroke="black"/>"#
                        );
                        let _ = writeln!(
                            o,
                            r#"<text x="{:.1}" y="{}">{}</text>"#,
                            x0 + LABEL_W + w.max(hi - x0 - LABEL_W) + 4.0,
                            y + BAR_H * 0.75,
                            fmt_num(s.median * scale)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            o,
                            r#"<text x="{}" y="{}" fill="gray">{}</text>"#,
                            x0 + LABEL_W + 4.0,
                            y + BAR_H * 0.75,
                            if a.ok == 0 { "failed" } else { "n/a" }
                        );
                    }
                }
            }
        }
        o.push_str("</svg>\n");
        o
    }

    /// Writes `results.json`, `results.md` and `chart.svg` into the output directory.
    pub fn write_files(&self) -> Result<()> {
        let dir = &self.plan.out;
        fs::create_dir_all(dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::Setup(format!("serialising results: {e}")))?;
        for (name, text) in [
            ("results.json", json),
            ("results.md", self.markdown()),
            ("chart.svg", self.svg()),
        ] {
            let p = dir.join(name);
            fs::write(&p, text).map_err(BenchError::io(format!("writing {}", p.display())))?;
        }
        Ok(())
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Three significant digits or so.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::BenchArgs;
    use crate::summary::{Counters, Derived};
    use crate::traffic::RttStats;

    fn sample(test: &str, row: &str, rep: u32, gbps: f64, pps: f64, cpu: Option<f64>) -> Sample {
        let ca = Counters::parse("tun_reads=10 tun_rx=400 udp_tx=400 udp_sends=10 syscalls=8");
        let cb = Counters::parse("udp_recvs=10 udp_rx=400 tun_tx=400 tun_writes=10 syscalls=12");
        Sample {
            test: test.into(),
            row: row.into(),
            rep,
            window_s: 1.0,
            rx_bytes: (gbps * 1e9 / 8.0) as u64,
            rx_packets: pps as u64,
            gbps,
            pps,
            us_per_pkt: cpu,
            cpu_s_per_gb: cpu.map(|c| c / 10.0),
            host_us_per_pkt: Some(cpu.unwrap_or(1.0) * 2.0),
            loss: test.starts_with("udp").then_some(0.01),
            rtt: (test == "rtt").then(|| RttStats {
                answered: 10,
                median_us: gbps * 10.0,
                p99_us: gbps * 20.0,
                ..Default::default()
            }),
            derived: (row != "veth").then(|| Derived::of(&[&ca, &cb])),
            ..Default::default()
        }
    }

    fn report() -> Report {
        let args = BenchArgs {
            engines: vec!["uring".into(), "epoll".into()],
            fixed_rate: 39_000,
            out: "/nonexistent".into(),
            quick: true,
            tests: Some(vec![
                "tcp1".into(),
                "udp64".into(),
                "udp64fixed".into(),
                "rtt".into(),
            ]),
            ..Default::default()
        };
        let plan = args.plan().unwrap();
        let mut samples = Vec::new();
        for (row, k) in [("veth", 10.0), ("uring", 3.0), ("epoll", 2.0)] {
            samples.push(sample("tcp1", row, 0, k, k * 1e5, Some(1.0 / k)));
            samples.push(sample("udp64", row, 0, k / 10.0, k * 1e5, Some(2.0 / k)));
            samples.push(sample("udp64fixed", row, 0, 0.02, 39_000.0, Some(4.0 / k)));
            samples.push(sample("rtt", row, 0, 11.0 - k, 0.0, None));
        }
        samples.push(Sample {
            test: "udp64".into(),
            row: "uring".into(),
            rep: 1,
            error: Some("boom".into()),
            ..Default::default()
        });
        Report::build(
            plan,
            vec!["veth".into(), "uring".into(), "epoll".into()],
            samples,
            Vec::new(),
            vec![Absent {
                peer: "gotatun".into(),
                why: "not on PATH".into(),
            }],
            Machine::default(),
            1.0,
        )
    }

    #[test]
    fn stats_median_min_max() {
        assert_eq!(
            Stat::of(vec![3.0, 1.0, 2.0]),
            Some(Stat {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(Stat::of(vec![4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(vec![f64::NAN]), None);
        assert_eq!(Stat::of(vec![]), None);
    }

    #[test]
    fn ratios_against_veth_and_epoll() {
        let r = report();
        let u = r.get(TestKind::Tcp1, "uring").unwrap();
        assert!((u.vs_veth.unwrap() - 0.3).abs() < 1e-9);
        assert!((u.vs_epoll.unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(u.syscalls_per_pkt.unwrap().median, 20.0 / 400.0);
        let failed = r.get(TestKind::Udp64, "uring").unwrap();
        assert_eq!(failed.ok, 1);
        assert_eq!(failed.errors, vec!["boom".to_string()]);
        let t = r
            .targets
            .iter()
            .find(|t| t.what == "TCP 1 stream, uring / bare veth")
            .unwrap();
        assert_eq!(t.status, "met");
        let t = r
            .targets
            .iter()
            .find(|t| t.what.starts_with("UDP 64 B pps, uring / gotatun"))
            .unwrap();
        assert!(t.status.starts_with("n/a"), "{}", t.status);
        let t = r
            .targets
            .iter()
            .find(|t| t.what == "RTT median, uring / bare veth")
            .unwrap();
        // uring 80 µs vs veth 10 µs.
        assert_eq!(t.status, "NOT met");
        assert!(
            r.uring_vs_epoll
                .iter()
                .any(|l| l.starts_with("rtt: io_uring beats epoll on median RTT µs (80.0 vs 90.0"))
        );
        assert!(
            r.uring_vs_epoll
                .iter()
                .any(|l| l.starts_with("tcp1: io_uring beats"))
        );
    }

    #[test]
    fn json_markdown_and_svg_shapes() {
        let r = report();
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["plan"]["tests"][0], "tcp1");
        assert_eq!(v["results"].as_array().unwrap().len(), 12);
        assert_eq!(v["results"][1]["row"], "uring");
        assert!(v["results"][1]["gbps"]["median"].as_f64().unwrap() > 0.0);
        assert_eq!(v["absent"][0]["peer"], "gotatun");
        assert!(v["samples"].as_array().unwrap().len() == 13);
        let md = r.markdown();
        assert!(md.contains("| tcp1 | uring | 3.00 |"), "{md}");
        assert!(md.contains("gotatun: not on PATH"));
        assert!(md.contains("## Targets"));
        let header = md.lines().find(|l| l.starts_with("| test |")).unwrap();
        let row = md
            .lines()
            .find(|l| l.starts_with("| tcp1 | uring"))
            .unwrap();
        assert_eq!(header.matches('|').count(), row.matches('|').count());
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 1 + 12);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    }
}
