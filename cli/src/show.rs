//! `uring-tunnel show`: what `wg show` prints, plus the engine: backend, offloads, per-shard
//! counters, coalescing ratios, syscalls per packet and drops by reason.
//!
//! The running tunnel builds one [`ShowData`] ([`collect`]) and sends it as JSON over its UAPI
//! socket (`show=1`); `show` prints it as text ([`render`]) or passes the JSON through. New
//! counters are a field in [`ShardCounters`] (or [`ShowData`]) and a line in [`collect`] and
//! [`render`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uring_tunnel_engine::Engine;
use uring_tunnel_engine::stats::{HistogramSnapshot, StatsSnapshot};
use uring_tunnel_tun::TunCaps;

use crate::uapi::canonical_endpoint;

/// What the tunnel knows at start and does not change (besides the engine).
#[derive(Debug, Clone)]
pub struct ShowStatic {
    /// Interface name.
    pub interface: String,
    /// Tunnel MTU.
    pub mtu: u16,
    /// TUN offloads granted.
    pub caps: TunCaps,
    /// Per shard: the CPU it is pinned to.
    pub shard_cpus: Vec<Option<usize>>,
}

/// Everything `show` prints for one interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShowData {
    /// Interface name.
    pub interface: String,
    /// Our public key (base64).
    pub public_key: String,
    /// Bound UDP port.
    pub listen_port: u16,
    /// fwmark, if set.
    pub fwmark: Option<u32>,
    /// Peers, in the order they were added.
    pub peers: Vec<ShowPeer>,
    /// Engine, kernel features and counters.
    pub engine: ShowEngine,
}

/// One peer, as `wg show` has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShowPeer {
    /// Public key (base64).
    pub public_key: String,
    /// Whether a pre-shared key is set.
    pub preshared_key: bool,
    /// Current endpoint.
    pub endpoint: Option<String>,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Last handshake, seconds since the Unix epoch.
    pub latest_handshake: Option<u64>,
    /// Inner bytes received.
    pub rx_bytes: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive, seconds.
    pub persistent_keepalive: Option<u64>,
}

/// The engine part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShowEngine {
    /// `uring` or `epoll`.
    pub backend: String,
    /// Why this backend (probe result).
    pub backend_note: String,
    /// Tunnel MTU.
    pub mtu: u16,
    /// Shard CPUs (`None` = not pinned).
    pub shard_cpus: Vec<Option<usize>>,
    /// TUN: virtio-net header in use.
    pub tun_vnet_hdr: bool,
    /// TUN: checksum offload granted.
    pub tun_csum: bool,
    /// TUN: TSO granted.
    pub tun_tso: bool,
    /// TUN: USO granted.
    pub tun_uso: bool,
    /// UDP GSO in use.
    pub udp_gso: bool,
    /// UDP GRO granted.
    pub udp_gro: bool,
    /// Sum over the shards (every engine counter and histogram; drops by reason).
    pub total: StatsSnapshot,
    /// Per shard.
    pub shards: Vec<StatsSnapshot>,
    /// Ratios derived from `total`.
    pub derived: Derived,
    /// Handshake and cookie messages, completed handshakes and failures by reason.
    pub handshakes: ShowHandshakes,
}

/// The control plane's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShowHandshakes {
    /// Initiations sent.
    pub initiations_sent: u64,
    /// Initiations received (before validation).
    pub initiations_received: u64,
    /// Responses sent.
    pub responses_sent: u64,
    /// Responses received (before validation).
    pub responses_received: u64,
    /// Cookie replies sent (under load).
    pub cookie_replies_sent: u64,
    /// Cookie replies received.
    pub cookie_replies_received: u64,
    /// Handshakes completed (either role).
    pub completed: u64,
    /// Handshake messages refused, by reason (non-zero only).
    pub failed: BTreeMap<String, u64>,
    /// Keepalives sent.
    pub keepalives_sent: u64,
}

/// Coalescing and cost ratios.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Derived {
    /// UDP datagrams per send call (GSO segments per send).
    pub segments_per_gso_send: f64,
    /// UDP datagrams per receive completion (GRO segments per receive).
    pub segments_per_gro_receive: f64,
    /// Inner packets per TUN read (TSO/USO split factor).
    pub packets_per_tun_read: f64,
    /// Inner packets per TUN write (coalescing factor).
    pub packets_per_tun_write: f64,
    /// Average bytes per TUN read (super-packet size).
    pub bytes_per_tun_read: f64,
    /// Syscalls per packet (TUN + UDP packets, both directions).
    pub syscalls_per_packet: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Ratios from totals.
pub fn derive(t: &StatsSnapshot) -> Derived {
    Derived {
        segments_per_gso_send: ratio(t.udp_tx_datagrams, t.udp_sends),
        segments_per_gro_receive: ratio(t.udp_rx_datagrams, t.udp_recvs),
        packets_per_tun_read: ratio(t.tun_rx_packets, t.tun_reads),
        packets_per_tun_write: ratio(t.tun_tx_packets, t.tun_writes),
        bytes_per_tun_read: ratio(t.tun_rx_bytes, t.tun_reads),
        syscalls_per_packet: ratio(t.syscalls, t.tun_rx_packets + t.udp_rx_datagrams),
    }
}

/// Builds the `show` data of a running tunnel: the one place that reads the engine for it.
pub fn collect(engine: &Engine, st: &ShowStatic) -> ShowData {
    let cfg = engine.config();
    let snap = engine.stats_snapshot();
    let c = &snap.control;
    let handshakes = ShowHandshakes {
        initiations_sent: c.initiations_sent,
        initiations_received: c.initiations_received,
        responses_sent: c.responses_sent,
        responses_received: c.responses_received,
        cookie_replies_sent: c.cookie_replies_sent,
        cookie_replies_received: c.cookie_replies_received,
        completed: c.handshakes_completed,
        failed: c
            .handshake_failures
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.name().to_owned(), n))
            .collect(),
        keepalives_sent: c.keepalives_sent,
    };
    ShowData {
        interface: st.interface.clone(),
        public_key: cfg.public_key.to_base64(),
        listen_port: cfg.listen_port,
        fwmark: cfg.fwmark,
        peers: cfg
            .peers
            .iter()
            .map(|p| ShowPeer {
                public_key: p.public_key.to_base64(),
                preshared_key: !p.preshared_key.is_none(),
                endpoint: p.endpoint.map(|e| canonical_endpoint(e).to_string()),
                allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
                latest_handshake: p
                    .last_handshake
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                persistent_keepalive: p.persistent_keepalive.map(|d| d.as_secs()),
            })
            .collect(),
        engine: ShowEngine {
            backend: engine.backend().to_string(),
            backend_note: engine.backend_note().unwrap_or_default(),
            mtu: st.mtu,
            shard_cpus: st.shard_cpus.clone(),
            tun_vnet_hdr: st.caps.vnet_hdr,
            tun_csum: st.caps.csum,
            tun_tso: st.caps.tso,
            tun_uso: st.caps.uso,
            udp_gso: engine.udp_gso(),
            udp_gro: engine.udp_gro(),
            derived: derive(&snap.total),
            total: snap.total,
            shards: snap.shards,
            handshakes,
        },
    }
}

/// The UAPI handler of a running tunnel: `get`/`set` on the engine, `show` from [`collect`].
#[derive(Debug)]
pub struct TunnelHandler {
    engine: std::sync::Arc<Engine>,
    info: ShowStatic,
}

impl TunnelHandler {
    /// A handler for `engine`.
    pub fn new(engine: std::sync::Arc<Engine>, info: ShowStatic) -> Self {
        TunnelHandler { engine, info }
    }
}

impl crate::uapi::Handler for TunnelHandler {
    fn get(&self) -> uring_tunnel_engine::DeviceConfig {
        self.engine.config()
    }

    fn set(&self, update: uring_tunnel_engine::DeviceUpdate) -> Result<(), i32> {
        self.engine.apply(update).map_err(|e| {
            eprintln!(
                "uring-tunnel: {}: UAPI set refused: {e}",
                self.info.interface
            );
            e.errno()
        })
    }

    fn show(&self) -> String {
        serde_json::to_string(&collect(&self.engine, &self.info)).unwrap_or_default()
    }
}

/// `uring-tunnel show [INTERFACE] [--json]`: the text (or JSON) to print.
pub fn run_show(interface: Option<&str>, json: bool) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let fetch = |path: &std::path::Path| -> anyhow::Result<Option<ShowData>> {
        let Some(text) = crate::uapi::query_show(path)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: unexpected show answer", path.display())
        })?))
    };
    if let Some(name) = interface {
        let path = crate::uapi::socket_path(name);
        let data = fetch(&path)
            .with_context(|| format!("asking {} (is the tunnel running?)", path.display()))?
            .with_context(|| {
                format!(
                    "{}: not a uring-tunnel socket (try `wg show {name}`)",
                    path.display()
                )
            })?;
        return Ok(if json {
            format!("{}\n", serde_json::to_string_pretty(&data)?)
        } else {
            render(&data)
        });
    }
    let dir = crate::uapi::socket_dir();
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sock"))
            .collect();
        paths.sort();
        for p in paths {
            // Sockets that do not answer (stale, another implementation) are skipped.
            if let Ok(Some(d)) = fetch(&p) {
                all.push(d);
            }
        }
    }
    Ok(if json {
        format!("{}\n", serde_json::to_string_pretty(&all)?)
    } else {
        all.iter().map(render).collect::<Vec<_>>().join("\n")
    })
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.2} {}", UNITS[i])
}

fn ago(secs: u64, now: u64) -> String {
    let d = now.saturating_sub(secs);
    let (h, m, s) = (d / 3600, d / 60 % 60, d % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h} hour{}", if h == 1 { "" } else { "s" }));
    }
    if m > 0 {
        parts.push(format!("{m} minute{}", if m == 1 { "" } else { "s" }));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s} second{}", if s == 1 { "" } else { "s" }));
    }
    format!("{} ago", parts.join(", "))
}

fn yes(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Text like `wg show`, then the engine section.
pub fn render(d: &ShowData) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut s = String::new();
    let _ = writeln!(s, "interface: {}", d.interface);
    let _ = writeln!(s, "  public key: {}", d.public_key);
    let _ = writeln!(s, "  private key: (hidden)");
    let _ = writeln!(s, "  listening port: {}", d.listen_port);
    if let Some(m) = d.fwmark {
        let _ = writeln!(s, "  fwmark: {m:#x}");
    }
    for p in &d.peers {
        let _ = writeln!(s, "\npeer: {}", p.public_key);
        if p.preshared_key {
            let _ = writeln!(s, "  preshared key: (hidden)");
        }
        if let Some(ep) = &p.endpoint {
            let _ = writeln!(s, "  endpoint: {ep}");
        }
        let ips = if p.allowed_ips.is_empty() {
            "(none)".to_owned()
        } else {
            p.allowed_ips.join(", ")
        };
        let _ = writeln!(s, "  allowed ips: {ips}");
        if let Some(t) = p.latest_handshake {
            let _ = writeln!(s, "  latest handshake: {}", ago(t, now));
        }
        if p.rx_bytes > 0 || p.tx_bytes > 0 {
            let _ = writeln!(
                s,
                "  transfer: {} received, {} sent",
                human_bytes(p.rx_bytes),
                human_bytes(p.tx_bytes)
            );
        }
        if let Some(k) = p.persistent_keepalive {
            let _ = writeln!(s, "  persistent keepalive: every {k} seconds");
        }
    }
    let e = &d.engine;
    let _ = writeln!(
        s,
        "\nengine: {} ({}), {} shard(s), mtu {}",
        e.backend,
        e.backend_note,
        e.shards.len(),
        e.mtu
    );
    let _ = writeln!(
        s,
        "  tun offloads: vnet_hdr {} csum {} tso {} uso {}",
        yes(e.tun_vnet_hdr),
        yes(e.tun_csum),
        yes(e.tun_tso),
        yes(e.tun_uso)
    );
    let _ = writeln!(s, "  udp: gso {} gro {}", yes(e.udp_gso), yes(e.udp_gro));
    let mut shard_line = |name: &str, c: &StatsSnapshot| {
        let _ = writeln!(
            s,
            "  {name}: tun rx {} pkts {} / tx {} pkts {}; udp rx {} dgrams {} / tx {} dgrams {}; syscalls {}; drops {}",
            c.tun_rx_packets,
            human_bytes(c.tun_rx_bytes),
            c.tun_tx_packets,
            human_bytes(c.tun_tx_bytes),
            c.udp_rx_datagrams,
            human_bytes(c.udp_rx_bytes),
            c.udp_tx_datagrams,
            human_bytes(c.udp_tx_bytes),
            c.syscalls,
            c.drops.total()
        );
    };
    for (i, c) in e.shards.iter().enumerate() {
        let cpu = e
            .shard_cpus
            .get(i)
            .copied()
            .flatten()
            .map_or_else(String::new, |c| format!(" (cpu {c})"));
        shard_line(&format!("shard {i}{cpu}"), c);
    }
    if e.shards.len() > 1 {
        shard_line("total", &e.total);
    }
    let x = &e.derived;
    let _ = writeln!(
        s,
        "  coalescing: {:.1} segments per GSO send, {:.1} per GRO receive; {:.1} packets per TUN read ({:.0} B average), {:.1} per TUN write",
        x.segments_per_gso_send,
        x.segments_per_gro_receive,
        x.packets_per_tun_read,
        x.bytes_per_tun_read,
        x.packets_per_tun_write
    );
    let _ = writeln!(
        s,
        "  syscalls per packet: {:.3}{}",
        x.syscalls_per_packet,
        if e.backend == "uring" {
            " (io_uring_enter)"
        } else {
            ""
        }
    );
    let h = &e.handshakes;
    let failed: u64 = h.failed.values().sum();
    let _ = write!(
        s,
        "  handshakes: {} completed; initiations {} sent / {} received; responses {} sent / {} received; cookie replies {} sent / {} received; keepalives {} sent; {} refused",
        h.completed,
        h.initiations_sent,
        h.initiations_received,
        h.responses_sent,
        h.responses_received,
        h.cookie_replies_sent,
        h.cookie_replies_received,
        h.keepalives_sent,
        failed
    );
    if failed > 0 {
        let list: Vec<String> = h.failed.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(s, " ({})", list.join(" "));
    }
    s.push('\n');
    for (key, title, unit) in [
        ("gso_segments", "datagrams per GSO send", ""),
        ("gro_datagrams", "datagrams per GRO receive", ""),
        ("tun_read_bytes", "TUN read sizes", " B"),
        ("tun_write_bytes", "TUN write sizes", " B"),
    ] {
        let h = match key {
            "gso_segments" => &e.total.gso_segments,
            "gro_datagrams" => &e.total.gro_datagrams,
            "tun_read_bytes" => &e.total.tun_read_bytes,
            _ => &e.total.tun_write_bytes,
        };
        if let Some(line) = histogram_line(h, unit) {
            let _ = writeln!(s, "  {title}: {line}");
        }
    }
    if e.total.drops.total() == 0 {
        let _ = writeln!(s, "  drops: none");
    } else {
        let list: Vec<String> = e
            .total
            .drops
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{}={v}", k.name()))
            .collect();
        let _ = writeln!(s, "  drops: {}", list.join(" "));
    }
    s
}

/// Non-empty buckets as `<=BOUND: COUNT`, or `None` when nothing was observed.
fn histogram_line(h: &HistogramSnapshot, unit: &str) -> Option<String> {
    if h.count == 0 {
        return None;
    }
    let mut parts = Vec::new();
    for (i, &n) in h.counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let label = match h.bounds.get(i) {
            Some(b) => format!("<={b}{unit}"),
            None => format!(">{}{unit}", h.bounds.last().copied().unwrap_or(0)),
        };
        parts.push(format!("{label}: {n}"));
    }
    Some(format!(
        "{} (average {:.1}{unit} over {})",
        parts.join(", "),
        h.sum as f64 / h.count as f64,
        h.count
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ShowData {
        let mut drops = uring_tunnel_engine::stats::DropCounts::default();
        drops.0[uring_tunnel_engine::stats::DropReason::NoRoute as usize] = 3;
        let c = StatsSnapshot {
            tun_reads: 10,
            tun_rx_packets: 100,
            tun_rx_bytes: 140_000,
            udp_sends: 5,
            udp_tx_datagrams: 100,
            udp_recvs: 4,
            udp_rx_datagrams: 40,
            syscalls: 14,
            drops,
            gso_segments: HistogramSnapshot {
                bounds: vec![1, 2, 4],
                counts: vec![1, 0, 3, 1],
                sum: 20,
                count: 5,
            },
            ..StatsSnapshot::default()
        };
        ShowData {
            interface: "wg9".into(),
            public_key: "pub".into(),
            listen_port: 51820,
            fwmark: None,
            peers: vec![ShowPeer {
                public_key: "peerkey".into(),
                preshared_key: false,
                endpoint: Some("198.18.0.2:51820".into()),
                allowed_ips: vec!["100.64.0.2/32".into()],
                latest_handshake: Some(1),
                rx_bytes: 2048,
                tx_bytes: 5,
                persistent_keepalive: None,
            }],
            engine: ShowEngine {
                backend: "uring".into(),
                backend_note: "io_uring: usable".into(),
                mtu: 1420,
                shard_cpus: vec![Some(0), None],
                tun_vnet_hdr: true,
                tun_csum: true,
                tun_tso: true,
                tun_uso: false,
                udp_gso: true,
                udp_gro: true,
                derived: derive(&c),
                total: c.clone(),
                shards: vec![c, StatsSnapshot::default()],
                handshakes: ShowHandshakes {
                    initiations_sent: 2,
                    responses_received: 1,
                    completed: 1,
                    failed: BTreeMap::from([("invalid_mac".to_owned(), 4)]),
                    ..ShowHandshakes::default()
                },
            },
        }
    }

    #[test]
    fn ratios() {
        let d = derive(&sample().engine.total);
        assert_eq!(d.segments_per_gso_send, 20.0);
        assert_eq!(d.segments_per_gro_receive, 10.0);
        assert_eq!(d.packets_per_tun_read, 10.0);
        assert_eq!(d.bytes_per_tun_read, 14_000.0);
        assert_eq!(d.syscalls_per_packet, 0.1);
        assert_eq!(derive(&StatsSnapshot::default()), Derived::default());
    }

    #[test]
    fn json_round_trips_and_text_has_every_section() {
        let d = sample();
        let json = serde_json::to_string(&d).unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<ShowData>(&json).unwrap(), d);
        let text = render(&d);
        for want in [
            "interface: wg9",
            "listening port: 51820",
            "peer: peerkey",
            "endpoint: 198.18.0.2:51820",
            "allowed ips: 100.64.0.2/32",
            "latest handshake: ",
            "transfer: 2.00 KiB received, 5 B sent",
            "engine: uring",
            "tso on uso off",
            "udp: gso on gro on",
            "shard 0 (cpu 0): tun rx 100 pkts",
            "shard 1: ",
            "total: ",
            "20.0 segments per GSO send, 10.0 per GRO receive",
            "syscalls per packet: 0.100 (io_uring_enter)",
            "drops: no_route=3",
            "handshakes: 1 completed; initiations 2 sent / 0 received",
            "4 refused (invalid_mac=4)",
            "datagrams per GSO send: <=1: 1, <=4: 3, >4: 1 (average 4.0 over 5)",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn ago_reads_like_wg() {
        assert_eq!(ago(100, 100), "0 seconds ago");
        assert_eq!(ago(99, 100), "1 second ago");
        assert_eq!(ago(0, 3725), "1 hour, 2 minutes, 5 seconds ago");
    }
}
