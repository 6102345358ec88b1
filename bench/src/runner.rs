//! The benchmark run: for each test and repetition, each row (bare veth, the engines, the
//! peers found) gets fresh tunnels, a sink and a generator; CPU is sampled around the
//! measurement window only (after the handshake and the warm-up).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::args::{BenchArgs, Plan, RowKind, TestKind, TrafficMode};
use crate::netns::{Underlay, which};
use crate::procfs::{HostCpu, ProcSample, clk_tck};
use crate::report::{Absent, Machine, Report};
use crate::summary::{Counters, Derived};
use crate::traffic::{RttStats, Snapshot, TrafficProc};
use crate::tunnels::{PrivateDir, StartCtx, TunnelPair, start_pair};
use crate::{BenchError, Result};

const TCP_PORT: u16 = 5201;
const UDP_PORT: u16 = 5202;
/// Interval between RTT probes.
const RTT_INTERVAL_US: u64 = 2_000;

/// One measurement of one test on one row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Test name.
    pub test: String,
    /// Row name.
    pub row: String,
    /// Repetition (0-based).
    pub rep: u32,
    /// Why the run failed, if it did (the other fields are then mostly empty).
    pub error: Option<String>,
    /// Measurement window, seconds.
    pub window_s: f64,
    /// Payload bytes received by the sink in the window.
    pub rx_bytes: u64,
    /// Packets received by the sink in the window (TCP: bytes / MSS).
    pub rx_packets: u64,
    /// Received payload rate, Gb/s.
    pub gbps: f64,
    /// Received packets per second.
    pub pps: f64,
    /// Offered packets per second (UDP generator).
    pub offered_pps: Option<f64>,
    /// UDP loss over the whole run: 1 − unique received / sent.
    pub loss: Option<f64>,
    /// TCP MSS seen by the sink.
    pub mss: Option<u32>,
    /// RTT statistics (`rtt` test).
    pub rtt: Option<RttStats>,
    /// CPU seconds of both tunnel processes in the window.
    pub tunnel_cpu_s: Option<f64>,
    /// CPU seconds of the source-side tunnel.
    pub tunnel_cpu_a_s: Option<f64>,
    /// CPU seconds of the sink-side tunnel.
    pub tunnel_cpu_b_s: Option<f64>,
    /// Busy CPU seconds of the whole host (user+system+irq+softirq+steal).
    pub host_cpu_s: f64,
    /// Softirq CPU seconds of the host.
    pub host_softirq_s: f64,
    /// CPU seconds of the generator and the sink.
    pub traffic_cpu_s: f64,
    /// Tunnel CPU µs per received packet (both ends).
    pub us_per_pkt: Option<f64>,
    /// Tunnel CPU seconds per GB received (both ends).
    pub cpu_s_per_gb: Option<f64>,
    /// Host CPU µs per received packet.
    pub host_us_per_pkt: Option<f64>,
    /// Host CPU seconds per GB received.
    pub host_cpu_s_per_gb: Option<f64>,
    /// Voluntary context switches (wake-ups after blocking) of both tunnels per packet.
    pub wakeups_per_pkt: Option<f64>,
    /// Involuntary context switches of both tunnels per packet.
    pub preemptions_per_pkt: Option<f64>,
    /// Whether the generator used UDP GSO.
    pub gen_gso: Option<bool>,
    /// Counters of the source-side uring-tunnel at shutdown.
    pub counters_a: Option<Counters>,
    /// Counters of the sink-side uring-tunnel at shutdown.
    pub counters_b: Option<Counters>,
    /// Ratios derived from the counters.
    pub derived: Option<Derived>,
    /// Whether both tunnels shut down cleanly.
    pub clean_shutdown: Option<bool>,
}

fn rows(plan: &Plan) -> (Vec<RowKind>, Vec<Absent>) {
    let mut rows = vec![RowKind::Veth];
    rows.extend(plan.engines.iter().map(|e| RowKind::Engine(*e)));
    let mut absent = Vec::new();
    for p in &plan.peers {
        if which(p.program()).is_some() {
            rows.push(RowKind::Peer(*p));
        } else {
            absent.push(Absent {
                peer: p.name().into(),
                why: format!("`{}` not on PATH ({})", p.program(), p.how_to_get()),
            });
        }
    }
    (rows, absent)
}

/// Set by SIGINT/SIGTERM: the run stops at the next check and everything is torn down by the
/// guards' `Drop` (namespaces, processes, UAPI sockets, keys).
static INTERRUPTED: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(BenchError::Setup("interrupted by a signal".into()))
    } else {
        Ok(())
    }
}

/// Sleeps, waking every 50 ms to notice a signal.
fn sleep_checked(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn install_signal_flag() -> Result<()> {
    let flag = INTERRUPTED.get_or_init(Default::default);
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(flag))
            .map_err(BenchError::io("installing signal handlers"))?;
    }
    Ok(())
}

fn require_env() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::Setup(
            "bench needs root (it creates network namespaces and TUN devices); run it with sudo"
                .into(),
        ));
    }
    if which("ip").is_none() {
        return Err(BenchError::Setup(
            "`ip` is not on PATH (Debian package iproute2)".into(),
        ));
    }
    Ok(())
}

/// Runs the whole benchmark. `exe` is the uring-tunnel binary (for `run`, `bench-gen`,
/// `bench-sink`); `progress` receives one line per test run (the CLI prints it on stderr).
pub fn run_bench(args: &BenchArgs, exe: &Path, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    let plan = args.plan()?;
    require_env()?;
    install_signal_flag()?;
    let (mut rows, mut absent) = rows(&plan);
    if rows.iter().any(|r| matches!(r, RowKind::Peer(_))) && which("wg").is_none() {
        for r in rows.iter().filter(|r| matches!(r, RowKind::Peer(_))) {
            absent.push(Absent {
                peer: r.name().into(),
                why: "`wg` (wireguard-tools) not on PATH, needed to configure it".into(),
            });
        }
        rows.retain(|r| !matches!(r, RowKind::Peer(_)));
    }
    let logs = plan.out.join("logs");
    fs::create_dir_all(&logs).map_err(BenchError::io(format!("creating {}", logs.display())))?;
    let private = PrivateDir::new()?;
    let underlay = Underlay::new("")?;
    let started = Instant::now();
    let total = plan.tests.len() * rows.len() * plan.reps as usize;
    let mut samples = Vec::with_capacity(total);
    let mut i = 0;
    for &test in &plan.tests {
        for rep in 0..plan.reps {
            for &row in &rows {
                check_interrupt()?;
                i += 1;
                let tag = format!("{test}-{row}-{rep}");
                progress(&format!(
                    "[{i}/{total}] {test} {row} rep {}/{} ...",
                    rep + 1,
                    plan.reps
                ));
                let ctx = StartCtx {
                    underlay: &underlay,
                    private: private.path(),
                    logs: &logs,
                    tag: &tag,
                    exe,
                    cores: plan.cores,
                };
                let s = match run_one(&plan, test, row, rep, &ctx) {
                    Ok(s) => s,
                    Err(e) => Sample {
                        test: test.name().into(),
                        row: row.name().into(),
                        rep,
                        error: Some(e.to_string()),
                        ..Default::default()
                    },
                };
                progress(&format!(
                    "[{i}/{total}] {test} {row} rep {}/{}: {}",
                    rep + 1,
                    plan.reps,
                    one_line(&s)
                ));
                samples.push(s);
            }
        }
    }
    let report = Report::build(
        plan,
        rows.iter().map(|r| r.name().to_owned()).collect(),
        samples,
        underlay.settings.clone(),
        absent,
        Machine::detect(),
        started.elapsed().as_secs_f64(),
    );
    report.write_files()?;
    Ok(report)
}

/// A short summary for the progress line.
pub fn one_line(s: &Sample) -> String {
    if let Some(e) = &s.error {
        return format!("FAILED: {}", e.lines().next().unwrap_or(""));
    }
    if let Some(r) = &s.rtt {
        return format!(
            "rtt median {:.0} µs p99 {:.0} µs ({} lost)",
            r.median_us, r.p99_us, r.lost
        );
    }
    let mut t = format!("{:.2} Gb/s {:.0} kpps", s.gbps, s.pps / 1e3);
    if let Some(l) = s.loss {
        t.push_str(&format!(" loss {:.1}%", l * 100.0));
    }
    if let Some(c) = s.us_per_pkt {
        t.push_str(&format!(" cpu {c:.2} µs/pkt"));
    }
    if let Some(sc) = s.derived.as_ref().and_then(|d| d.syscalls_per_pkt) {
        t.push_str(&format!(" syscalls/pkt {sc:.3}"));
    }
    t
}

struct CpuPoint {
    at: Instant,
    host: HostCpu,
    a: ProcSample,
    b: ProcSample,
    gen_ticks: u64,
    sink_ticks: u64,
}

fn cpu_point(pair: Option<&TunnelPair>, gen_pid: u32, sink_pid: u32) -> CpuPoint {
    CpuPoint {
        at: Instant::now(),
        host: HostCpu::read().unwrap_or_default(),
        a: pair
            .map(|p| ProcSample::take(p.a.pid()))
            .unwrap_or_default(),
        b: pair
            .map(|p| ProcSample::take(p.b.pid()))
            .unwrap_or_default(),
        gen_ticks: crate::procfs::pid_cpu_ticks(gen_pid).unwrap_or(0),
        sink_ticks: crate::procfs::pid_cpu_ticks(sink_pid).unwrap_or(0),
    }
}

fn traffic_cmd(underlay: &Underlay, a_side: bool, exe: &Path) -> Command {
    let ns = if a_side { &underlay.a } else { &underlay.b };
    ns.command(exe)
}

fn run_one(
    plan: &Plan,
    test: TestKind,
    row: RowKind,
    rep: u32,
    ctx: &StartCtx<'_>,
) -> Result<Sample> {
    let u = ctx.underlay;
    let pair = match row {
        RowKind::Veth => None,
        _ => Some(start_pair(row, ctx)?),
    };
    let dst_ip = if row == RowKind::Veth {
        u.v4(2)
    } else {
        u.overlay(2)
    };
    let mut s = Sample {
        test: test.name().into(),
        row: row.name().into(),
        rep,
        ..Default::default()
    };
    let result = measure(plan, test, ctx, pair.as_ref(), &dst_ip, &mut s);
    if let Some(p) = pair {
        let (ca, cb, clean) = p.stop();
        if let (Some(a), Some(b)) = (&ca, &cb) {
            s.derived = Some(Derived::of(&[a, b]));
        }
        s.counters_a = ca;
        s.counters_b = cb;
        s.clean_shutdown = Some(clean);
    }
    result.map(|()| s)
}

fn measure(
    plan: &Plan,
    test: TestKind,
    ctx: &StartCtx<'_>,
    pair: Option<&TunnelPair>,
    dst_ip: &str,
    s: &mut Sample,
) -> Result<()> {
    let u = ctx.underlay;
    let log = |name: &str| {
        let p = ctx.logs.join(format!("{}-{name}.log", ctx.tag));
        fs::File::create(&p).map_err(BenchError::io(format!("creating {}", p.display())))
    };
    let (mode, port) = match test {
        TestKind::Tcp1 | TestKind::Tcp4 => (TrafficMode::Tcp, TCP_PORT),
        TestKind::Udp1392 | TestKind::Udp64 => (TrafficMode::Udp, UDP_PORT),
        TestKind::Udp64Fixed => (TrafficMode::UdpRate, UDP_PORT),
        TestKind::Rtt => (TrafficMode::Rtt, UDP_PORT),
    };
    let mode_name = match mode {
        TrafficMode::Tcp => "tcp",
        TrafficMode::Udp => "udp",
        TrafficMode::UdpRate => "udp-rate",
        TrafficMode::Rtt => "rtt",
    };
    let sink_mode = if mode == TrafficMode::UdpRate {
        "udp"
    } else {
        mode_name
    };
    let mut sink_cmd = traffic_cmd(u, false, ctx.exe);
    sink_cmd.args([
        "bench-sink",
        "--mode",
        sink_mode,
        "--listen",
        &format!("0.0.0.0:{port}"),
    ]);
    let (mut sink, _) = TrafficProc::spawn(sink_cmd, "bench-sink", log("sink")?, secs(10))?;
    let mut gen_cmd = traffic_cmd(u, true, ctx.exe);
    gen_cmd.args([
        "bench-gen",
        "--mode",
        mode_name,
        "--dst",
        &format!("{dst_ip}:{port}"),
    ]);
    match test {
        TestKind::Tcp1 => gen_cmd.args(["--streams", "1"]),
        TestKind::Tcp4 => gen_cmd.args(["--streams", "4"]),
        TestKind::Udp64Fixed => {
            gen_cmd.args(["--size", "64", "--rate", &plan.fixed_rate.to_string()])
        }
        TestKind::Rtt => {
            let probes = ((plan.duration.as_secs_f64() * 1e6 / RTT_INTERVAL_US as f64) as u32)
                .clamp(20, 1_000);
            gen_cmd.args([
                "--size",
                "64",
                "--probes",
                &probes.to_string(),
                "--interval-us",
                &RTT_INTERVAL_US.to_string(),
            ])
        }
        _ => gen_cmd.args(["--size", &test.udp_payload().unwrap_or(64).to_string()]),
    };
    let (mut generator, ready) = TrafficProc::spawn(gen_cmd, "bench-gen", log("gen")?, secs(15))?;
    s.gen_gso = Some(ready.offload);

    if test == TestKind::Rtt {
        let limit = plan.duration * 3 + secs(10);
        let fin = generator.finish(limit)?;
        let _ = sink.stop();
        s.rtt = fin.rtt;
        s.window_s = fin.t;
        return Ok(());
    }

    sleep_checked(plan.warmup)?;
    let s0 = sink.mark()?;
    let c0 = cpu_point(pair, generator.pid(), sink.pid());
    let g0 = generator.mark()?;
    sleep_checked(plan.duration)?;
    let s1 = sink.mark()?;
    let c1 = cpu_point(pair, generator.pid(), sink.pid());
    let g1 = generator.mark()?;
    let gen_final = generator.stop()?;
    // Let the last datagrams through before counting what arrived.
    std::thread::sleep(Duration::from_millis(300));
    let sink_final = sink.stop()?;

    fill(
        s,
        test,
        &s0,
        &s1,
        &g0,
        &g1,
        &gen_final,
        &sink_final,
        &c0,
        &c1,
    );
    Ok(())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[allow(clippy::too_many_arguments)]
fn fill(
    s: &mut Sample,
    test: TestKind,
    s0: &Snapshot,
    s1: &Snapshot,
    g0: &Snapshot,
    g1: &Snapshot,
    gen_final: &Snapshot,
    sink_final: &Snapshot,
    c0: &CpuPoint,
    c1: &CpuPoint,
) {
    let tck = clk_tck();
    let dt = (s1.t - s0.t).max(1e-6);
    let cpu_dt = c1.at.duration_since(c0.at).as_secs_f64().max(1e-6);
    s.window_s = dt;
    s.rx_bytes = s1.bytes.saturating_sub(s0.bytes);
    if test.is_tcp() {
        let mss = if sink_final.mss > 0 {
            sink_final.mss
        } else {
            1368
        };
        s.mss = Some(mss);
        s.rx_packets = s.rx_bytes.div_ceil(u64::from(mss));
    } else {
        s.rx_packets = s1.packets.saturating_sub(s0.packets);
        let gdt = (g1.t - g0.t).max(1e-6);
        s.offered_pps = Some(g1.packets.saturating_sub(g0.packets) as f64 / gdt);
        if gen_final.packets > 0 {
            s.loss =
                Some((1.0 - sink_final.unique as f64 / gen_final.packets as f64).clamp(0.0, 1.0));
        }
    }
    s.gbps = s.rx_bytes as f64 * 8.0 / dt / 1e9;
    s.pps = s.rx_packets as f64 / dt;
    // CPU deltas are scaled from the CPU sampling interval to the sink's window (they differ
    // by the few ms between the marks).
    let scale = dt / cpu_dt;
    let ticks = |a: u64, b: u64| b.saturating_sub(a) as f64 / tck * scale;
    s.host_cpu_s = ticks(c0.host.busy, c1.host.busy);
    s.host_softirq_s = ticks(c0.host.softirq, c1.host.softirq);
    s.traffic_cpu_s = ticks(c0.gen_ticks, c1.gen_ticks) + ticks(c0.sink_ticks, c1.sink_ticks);
    let pkts = s.rx_packets.max(1) as f64;
    let gb = (s.rx_bytes as f64 / 1e9).max(1e-12);
    if s.row != "veth" {
        let a = ticks(c0.a.ticks, c1.a.ticks);
        let b = ticks(c0.b.ticks, c1.b.ticks);
        s.tunnel_cpu_a_s = Some(a);
        s.tunnel_cpu_b_s = Some(b);
        s.tunnel_cpu_s = Some(a + b);
        if s.rx_packets > 0 {
            s.us_per_pkt = Some((a + b) * 1e6 / pkts);
            s.cpu_s_per_gb = Some((a + b) / gb);
            let vol =
                (c1.a.voluntary + c1.b.voluntary).saturating_sub(c0.a.voluntary + c0.b.voluntary);
            let inv = (c1.a.involuntary + c1.b.involuntary)
                .saturating_sub(c0.a.involuntary + c0.b.involuntary);
            s.wakeups_per_pkt = Some(vol as f64 / pkts);
            s.preemptions_per_pkt = Some(inv as f64 / pkts);
        }
    }
    if s.rx_packets > 0 {
        s.host_us_per_pkt = Some(s.host_cpu_s * 1e6 / pkts);
        s.host_cpu_s_per_gb = Some(s.host_cpu_s / gb);
    }
}
