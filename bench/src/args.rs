//! Command-line arguments of `bench` (and its hidden generator/sink) and their validation into
//! a [`Plan`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::{BenchError, Result};

/// `uring-tunnel bench` options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BenchArgs {
    /// Short run (under a minute): 1 s windows, 1 repetition, engines and bare veth only
    /// (peers only when --peers names them).
    #[arg(long)]
    pub quick: bool,
    /// uring-tunnel engines to run, comma-separated: `uring`, `epoll`.
    #[arg(long, value_delimiter = ',', default_value = "uring,epoll")]
    pub engines: Vec<String>,
    /// Other implementations to compare, comma-separated: `wireguard-go-offload`, `gotatun`,
    /// `boringtun`, `wireguard-go`, or `all` / `none` (default: `all` found on PATH; `none`
    /// with --quick). Named peers missing from PATH are listed as absent in the report.
    #[arg(long, value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Tests, comma-separated: tcp1, tcp4, udp1392, udp64, udp64fixed, rtt (default: all).
    #[arg(long, value_delimiter = ',')]
    pub tests: Option<Vec<String>>,
    /// Measurement window per test in seconds (default 3; 1 with --quick).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up before each window in seconds (default 1; 0.4 with --quick).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Repetitions of each test and tunnel (default 3; 1 with --quick).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Shards per uring-tunnel process (`run --cores N`; default: the tunnel's own default,
    /// one per CPU).
    #[arg(long)]
    pub cores: Option<usize>,
    /// Offered rate of the `udp64fixed` test in packets per second.
    #[arg(long, default_value_t = 39_000)]
    pub fixed_rate: u64,
    /// Directory for results.json, chart.svg, results.md and the tunnels' logs.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// One benchmark test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// TCP, one stream.
    Tcp1,
    /// TCP, four streams.
    Tcp4,
    /// UDP, 1392-byte payload (1420-byte inner packets), full rate.
    Udp1392,
    /// UDP, 64-byte payload, full rate.
    Udp64,
    /// UDP, 64-byte payload at a fixed offered rate (CPU per packet at equal load).
    Udp64Fixed,
    /// UDP ping-pong round-trip time on an idle tunnel.
    Rtt,
}

impl TestKind {
    /// Every test in report order.
    pub const ALL: [TestKind; 6] = [
        TestKind::Tcp1,
        TestKind::Tcp4,
        TestKind::Udp1392,
        TestKind::Udp64,
        TestKind::Udp64Fixed,
        TestKind::Rtt,
    ];

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            TestKind::Tcp1 => "tcp1",
            TestKind::Tcp4 => "tcp4",
            TestKind::Udp1392 => "udp1392",
            TestKind::Udp64 => "udp64",
            TestKind::Udp64Fixed => "udp64fixed",
            TestKind::Rtt => "rtt",
        }
    }

    /// Parses a test name.
    pub fn parse(s: &str) -> Option<TestKind> {
        TestKind::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Whether throughput is the metric (TCP and full-rate UDP).
    pub const fn is_bulk(self) -> bool {
        matches!(
            self,
            TestKind::Tcp1 | TestKind::Tcp4 | TestKind::Udp1392 | TestKind::Udp64
        )
    }

    /// Whether this is a TCP test.
    pub const fn is_tcp(self) -> bool {
        matches!(self, TestKind::Tcp1 | TestKind::Tcp4)
    }

    /// UDP payload size, for UDP tests.
    pub const fn udp_payload(self) -> Option<usize> {
        match self {
            TestKind::Udp1392 => Some(1392),
            TestKind::Udp64 | TestKind::Udp64Fixed => Some(64),
            TestKind::Rtt => Some(64),
            _ => None,
        }
    }
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A uring-tunnel backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// io_uring shards.
    Uring,
    /// epoll shards.
    Epoll,
}

impl EngineKind {
    /// `--engine` value and row name.
    pub const fn name(self) -> &'static str {
        match self {
            EngineKind::Uring => "uring",
            EngineKind::Epoll => "epoll",
        }
    }
}

/// Another WireGuard implementation run as a peer pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PeerKind {
    /// wireguard-go 0.0.20250522 with TUN TSO/USO and UDP GSO/GRO, built by hand, on PATH as
    /// `wireguard-go-offload`.
    WireguardGoOffload,
    /// Mullvad's boringtun fork (`cargo install gotatun-cli`).
    Gotatun,
    /// `boringtun-cli`.
    Boringtun,
    /// `wireguard-go` (distribution package).
    WireguardGo,
}

impl PeerKind {
    /// Every peer in report order (strongest first).
    pub const ALL: [PeerKind; 4] = [
        PeerKind::WireguardGoOffload,
        PeerKind::Gotatun,
        PeerKind::Boringtun,
        PeerKind::WireguardGo,
    ];

    /// Row name.
    pub const fn name(self) -> &'static str {
        match self {
            PeerKind::WireguardGoOffload => "wireguard-go-offload",
            PeerKind::Gotatun => "gotatun",
            PeerKind::Boringtun => "boringtun",
            PeerKind::WireguardGo => "wireguard-go",
        }
    }

    /// The program looked up on PATH.
    pub const fn program(self) -> &'static str {
        match self {
            PeerKind::WireguardGoOffload => "wireguard-go-offload",
            PeerKind::Gotatun => "gotatun",
            PeerKind::Boringtun => "boringtun-cli",
            PeerKind::WireguardGo => "wireguard-go",
        }
    }

    /// How to get it, for the report when it is absent.
    pub const fn how_to_get(self) -> &'static str {
        match self {
            PeerKind::WireguardGoOffload => {
                "build wireguard-go 0.0.20250522 (Go >= 1.23) and put it on PATH as wireguard-go-offload"
            }
            PeerKind::Gotatun => "cargo install gotatun-cli",
            PeerKind::Boringtun => "cargo install boringtun-cli",
            PeerKind::WireguardGo => "apt-get install wireguard-go",
        }
    }

    /// Parses a peer name (the program name is accepted too).
    pub fn parse(s: &str) -> Option<PeerKind> {
        PeerKind::ALL
            .into_iter()
            .find(|p| p.name() == s || p.program() == s)
    }
}

/// One row of the report: what carries the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum RowKind {
    /// No tunnel: the generator talks to the sink over the veth (the ceiling).
    Veth,
    /// uring-tunnel with one backend.
    Engine(EngineKind),
    /// Another implementation.
    Peer(PeerKind),
}

impl RowKind {
    /// The row name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            RowKind::Veth => "veth",
            RowKind::Engine(e) => e.name(),
            RowKind::Peer(p) => p.name(),
        }
    }
}

impl fmt::Display for RowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Validated benchmark plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Tests in order.
    pub tests: Vec<TestKind>,
    /// Engines.
    pub engines: Vec<EngineKind>,
    /// Peers asked for (found or not).
    pub peers: Vec<PeerKind>,
    /// Whether the peers were named explicitly (absent ones are then reported as such).
    pub peers_named: bool,
    /// Measurement window.
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Warm-up before the window.
    #[serde(serialize_with = "ser_secs")]
    pub warmup: Duration,
    /// Repetitions.
    pub reps: u32,
    /// `run --cores` for uring-tunnel.
    pub cores: Option<usize>,
    /// Offered rate of `udp64fixed`, packets/s.
    pub fixed_rate: u64,
    /// Output directory.
    pub out: PathBuf,
    /// `--quick`.
    pub quick: bool,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn secs(name: &str, v: f64, min: f64, max: f64) -> Result<Duration> {
    if !v.is_finite() || v < min || v > max {
        return Err(BenchError::Args(format!(
            "--{name} {v}: must be between {min} and {max} seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl BenchArgs {
    /// Checks the arguments and fills in the defaults.
    pub fn plan(&self) -> Result<Plan> {
        let mut engines = Vec::new();
        for e in &self.engines {
            let k = match e.trim() {
                "uring" => EngineKind::Uring,
                "epoll" => EngineKind::Epoll,
                "none" => continue,
                other => {
                    return Err(BenchError::Args(format!(
                        "--engines: unknown engine `{other}` (uring, epoll)"
                    )));
                }
            };
            if !engines.contains(&k) {
                engines.push(k);
            }
        }
        let (peers, peers_named) = match &self.peers {
            None if self.quick => (Vec::new(), false),
            None => (PeerKind::ALL.to_vec(), false),
            Some(list) => {
                let mut v = Vec::new();
                for p in list {
                    match p.trim() {
                        "all" => v = PeerKind::ALL.to_vec(),
                        "none" | "" => {}
                        name => {
                            let k = PeerKind::parse(name).ok_or_else(|| {
                                BenchError::Args(format!(
                                    "--peers: unknown peer `{name}` (wireguard-go-offload, gotatun, boringtun, wireguard-go, all, none)"
                                ))
                            })?;
                            if !v.contains(&k) {
                                v.push(k);
                            }
                        }
                    }
                }
                (v, true)
            }
        };
        let tests = match &self.tests {
            None => TestKind::ALL.to_vec(),
            Some(list) => {
                let mut v = Vec::new();
                for t in list {
                    let k = TestKind::parse(t.trim()).ok_or_else(|| {
                        BenchError::Args(format!(
                            "--tests: unknown test `{t}` (tcp1, tcp4, udp1392, udp64, udp64fixed, rtt)"
                        ))
                    })?;
                    if !v.contains(&k) {
                        v.push(k);
                    }
                }
                if v.is_empty() {
                    return Err(BenchError::Args("--tests: no test named".into()));
                }
                v
            }
        };
        let duration = secs(
            "duration",
            self.duration.unwrap_or(if self.quick { 1.0 } else { 3.0 }),
            0.2,
            600.0,
        )?;
        let warmup = secs(
            "warmup",
            self.warmup.unwrap_or(if self.quick { 0.4 } else { 1.0 }),
            0.0,
            60.0,
        )?;
        let reps = self.reps.unwrap_or(if self.quick { 1 } else { 3 });
        if reps == 0 || reps > 100 {
            return Err(BenchError::Args(format!(
                "--reps {reps}: between 1 and 100"
            )));
        }
        if let Some(c) = self.cores
            && (c == 0 || c > 1024)
        {
            return Err(BenchError::Args(format!("--cores {c}: between 1 and 1024")));
        }
        if self.fixed_rate == 0 || self.fixed_rate > 10_000_000 {
            return Err(BenchError::Args(format!(
                "--fixed-rate {}: between 1 and 10000000 packets/s",
                self.fixed_rate
            )));
        }
        Ok(Plan {
            tests,
            engines,
            peers,
            peers_named,
            duration,
            warmup,
            reps,
            cores: self.cores,
            fixed_rate: self.fixed_rate,
            out: self.out.clone(),
            quick: self.quick,
        })
    }
}

/// Traffic pattern of the generator and the sink.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficMode {
    /// TCP streams (generator writes, sink reads).
    Tcp,
    /// UDP datagrams with sequence numbers, as fast as possible (generator) / counted (sink).
    Udp,
    /// UDP at a fixed rate (generator only).
    UdpRate,
    /// UDP ping-pong: the generator probes, the sink echoes.
    Rtt,
}

/// Hidden `bench-gen`: the traffic generator. Controlled on stdin (`mark`, `stop`), reports
/// JSON lines on stdout.
#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// Traffic pattern.
    #[arg(long, value_enum)]
    pub mode: TrafficMode,
    /// Destination `IP:PORT`.
    #[arg(long)]
    pub dst: std::net::SocketAddr,
    /// TCP streams.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// UDP payload bytes (at least 8: the sequence number).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Packets per second (`udp-rate`).
    #[arg(long, default_value_t = 39_000)]
    pub rate: u64,
    /// Number of probes (`rtt`).
    #[arg(long, default_value_t = 200)]
    pub probes: u32,
    /// Interval between probes in microseconds (`rtt`).
    #[arg(long, default_value_t = 5_000)]
    pub interval_us: u64,
}

/// Hidden `bench-sink`: the traffic sink (or echo server for `rtt`). Controlled on stdin
/// (`mark`, `stop`), reports JSON lines on stdout.
#[derive(clap::Args, Debug, Clone)]
pub struct SinkArgs {
    /// Traffic pattern.
    #[arg(long, value_enum)]
    pub mode: TrafficMode,
    /// Listen `IP:PORT`.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BenchArgs {
        BenchArgs {
            engines: vec!["uring".into(), "epoll".into()],
            fixed_rate: 39_000,
            out: "o".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let p = args().plan().unwrap();
        assert_eq!(p.tests, TestKind::ALL.to_vec());
        assert_eq!(p.engines, vec![EngineKind::Uring, EngineKind::Epoll]);
        assert_eq!(p.peers, PeerKind::ALL.to_vec());
        assert!(!p.peers_named);
        assert_eq!(p.reps, 3);
        assert_eq!(p.duration, Duration::from_secs(3));
    }

    #[test]
    fn quick_has_no_peers_unless_named() {
        let mut a = args();
        a.quick = true;
        let p = a.plan().unwrap();
        assert!(p.peers.is_empty());
        assert_eq!(p.reps, 1);
        assert_eq!(p.duration, Duration::from_secs(1));
        a.peers = Some(vec!["boringtun-cli".into(), "gotatun".into()]);
        let p = a.plan().unwrap();
        assert_eq!(p.peers, vec![PeerKind::Boringtun, PeerKind::Gotatun]);
        assert!(p.peers_named);
    }

    #[test]
    fn rejects_bad_values() {
        let mut a = args();
        a.tests = Some(vec!["tcp9".into()]);
        assert!(matches!(a.plan(), Err(BenchError::Args(m)) if m.contains("tcp9")));
        let mut a = args();
        a.engines = vec!["kqueue".into()];
        assert!(a.plan().is_err());
        let mut a = args();
        a.peers = Some(vec!["openvpn".into()]);
        assert!(a.plan().is_err());
        let mut a = args();
        a.duration = Some(-1.0);
        assert!(a.plan().is_err());
        let mut a = args();
        a.duration = Some(f64::NAN);
        assert!(a.plan().is_err());
        let mut a = args();
        a.reps = Some(0);
        assert!(a.plan().is_err());
        let mut a = args();
        a.cores = Some(0);
        assert!(a.plan().is_err());
    }

    #[test]
    fn tests_dedup_and_keep_order() {
        let mut a = args();
        a.tests = Some(vec!["rtt".into(), "tcp1".into(), "rtt".into()]);
        assert_eq!(a.plan().unwrap().tests, vec![TestKind::Rtt, TestKind::Tcp1]);
        assert_eq!(TestKind::parse("udp64fixed"), Some(TestKind::Udp64Fixed));
    }
}
