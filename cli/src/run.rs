//! `uring-tunnel run`: bring a tunnel up from a wg-quick file and keep it up until a signal.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use uring_tunnel_crypto::TimerConfig;
use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};
use uring_tunnel_engine::sys::{CpuList, allowed_cpus, cpus_of_numa_node};
use uring_tunnel_engine::{BackendChoice, Engine, EngineConfig, PeerSpec};
use uring_tunnel_tun::{TunConfig, TunDevice};

use crate::config::Table;

/// Options of `run` beyond the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Interface name; default: the config file's stem.
    pub interface: Option<String>,
    /// Number of shards.
    pub cores: Option<usize>,
    /// CPUs to pin shards to.
    pub cpus: Option<String>,
    /// NUMA node whose CPUs to use.
    pub numa_node: Option<u32>,
    /// Backend.
    pub engine: BackendChoice,
    /// Disable TUN offloads (virtio-net header, TSO/USO).
    pub no_offload: bool,
    /// Disable UDP GSO.
    pub no_gso: bool,
    /// Disable UDP GRO.
    pub no_gro: bool,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    pub metrics: Option<SocketAddr>,
    /// `--user USER[:GROUP]`: drop to this user once the device and sockets exist.
    pub user: Option<String>,
    /// Test only: divide every protocol time by this (see [`scaled_timers`]).
    pub test_timer_scale: Option<u32>,
}

/// The whitepaper's timers with every time divided by `div` (message counts unchanged): a
/// test-only setting (`run --test-timer-scale N`, hidden) so soak tests see many rekeys.
pub fn scaled_timers(div: u32) -> TimerConfig {
    let d = TimerConfig::default();
    let div = div.max(1);
    TimerConfig {
        rekey_after_time: d.rekey_after_time / div,
        reject_after_time: d.reject_after_time / div,
        rekey_attempt_time: d.rekey_attempt_time / div,
        rekey_timeout: d.rekey_timeout / div,
        rekey_timeout_jitter_max: d.rekey_timeout_jitter_max / div,
        keepalive_timeout: d.keepalive_timeout / div,
        zero_keys_after: d.zero_keys_after / div,
        ..d
    }
}

/// Outer IP + UDP + WireGuard transport overhead for a datagram to `ep`: 60 bytes over IPv4
/// (20 + 8 + 32), 80 over IPv6 (40 + 8 + 32).
pub fn outer_overhead(ep: &SocketAddr) -> usize {
    match ep {
        SocketAddr::V4(_) => 60,
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => 60,
        SocketAddr::V6(_) => 80,
    }
}

/// One warning naming every peer endpoint whose route MTU is below the tunnel MTU plus the
/// outer overhead (those datagrams will be fragmented), or `None`.
fn underlay_mtu_warning(name: &str, mtu: usize, endpoints: &[SocketAddr]) -> Option<String> {
    let mut bad = Vec::new();
    for ep in endpoints {
        if let Ok(route) = uring_tunnel_engine::sys::udp::route_mtu(*ep) {
            let need = mtu + outer_overhead(ep);
            if route < need {
                bad.push(format!(
                    "{ep} (route MTU {route} < {mtu} + {} = {need})",
                    outer_overhead(ep)
                ));
            }
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "warning: {name}: MTU mismatch: the tunnel MTU {mtu} does not fit the underlay to {}: outer datagrams will be fragmented; lower the tunnel MTU to avoid it",
            bad.join(", ")
        )
    })
}

/// Picks the shard CPUs: `Some(cpu)` per pinned shard, `None` for unpinned shards.
pub fn shard_cpus(opts: &RunOptions) -> anyhow::Result<Vec<Option<usize>>> {
    let allowed = allowed_cpus().context("reading the process CPU affinity")?;
    let pinned: Option<CpuList> = match (&opts.cpus, opts.numa_node) {
        (Some(_), Some(_)) => bail!("--cpus and --numa-node exclude each other"),
        (Some(list), None) => {
            let l = CpuList::parse(list).with_context(|| format!("--cpus {list}"))?;
            if let Some(bad) = l.as_slice().iter().find(|c| !allowed.contains(**c)) {
                bail!(
                    "--cpus {list}: CPU {bad} is not in this process's affinity mask ({allowed})"
                );
            }
            Some(l)
        }
        (None, Some(node)) => {
            let l = cpus_of_numa_node(node)
                .with_context(|| format!("--numa-node {node}"))?
                .intersection(&allowed);
            if l.is_empty() {
                bail!("--numa-node {node}: none of its CPUs is in this process's affinity mask");
            }
            Some(l)
        }
        (None, None) => None,
    };
    Ok(match (pinned, opts.cores) {
        (Some(l), None) => l.as_slice().iter().map(|c| Some(*c)).collect(),
        (Some(l), Some(n)) => {
            if n == 0 || n > l.len() {
                bail!("--cores {n}: between 1 and the {} CPUs selected", l.len());
            }
            l.as_slice()[..n].iter().map(|c| Some(*c)).collect()
        }
        (None, Some(0)) => bail!("--cores 0: need at least one shard"),
        (None, Some(n)) => vec![None; n],
        (None, None) => vec![None; allowed.len().max(1)],
    })
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// Runs the tunnel until SIGINT/SIGTERM.
pub fn run(config_path: &Path, opts: &RunOptions) -> anyhow::Result<()> {
    let cfg = crate::hygiene::load_private_config(config_path)?;
    let run_as = opts
        .user
        .as_deref()
        .map(crate::hygiene::RunAs::resolve)
        .transpose()?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let name = match &opts.interface {
        Some(n) => n.clone(),
        None => config_path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("cannot derive an interface name from the config file name; pass --interface")?
            .to_owned(),
    };
    if name.is_empty() || name.len() > 15 {
        bail!("interface name `{name}` must be 1 to 15 bytes; pass --interface");
    }
    let shard_cpus = shard_cpus(opts)?;

    let mut peers = Vec::with_capacity(cfg.peers.len());
    let mut routes = Vec::new();
    for p in &cfg.peers {
        let endpoint =
            match &p.endpoint {
                Some(ep) => Some(resolve(&ep.host, ep.port).with_context(|| {
                    format!("{}:{}: Endpoint {ep}", config_path.display(), p.line)
                })?),
                None => None,
            };
        for net in &p.allowed_ips {
            if cfg.interface.table != Table::Off {
                if net.prefix_len() == 0 {
                    tracing::warn!(
                        "AllowedIPs {net}: default routes are not installed (wg-quick's fwmark policy routing is not done by uring-tunnel); add routes yourself"
                    );
                } else {
                    routes.push((net.network(), net.prefix_len()));
                }
            }
        }
        peers.push(PeerSpec {
            public_key: PublicKey::from_bytes(p.public_key.0),
            preshared_key: p
                .preshared_key
                .as_ref()
                .map(|k| PresharedKey::from_bytes(k.0)),
            endpoint,
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p
                .persistent_keepalive
                .map(|s| Duration::from_secs(s.into())),
        });
    }
    if let Table::Id(t) = cfg.interface.table {
        tracing::warn!(
            "Table = {t}: routes go to the main table (numbered tables are not supported yet)"
        );
    }

    // The UAPI socket first: a tunnel already running under this name fails us here, before
    // its interface is touched; a stale socket of a killed one is replaced.
    let uapi = match crate::uapi::UapiListener::bind(&name) {
        Ok(l) => Some(l),
        Err(e @ crate::uapi::UapiStartError::InUse(..)) => return Err(e.into()),
        Err(e) => {
            eprintln!("warning: {e}; `wg` and `uring-tunnel show` will not reach {name}");
            None
        }
    };

    let mut tun_cfg = TunConfig::new(name.clone());
    tun_cfg.queues = shard_cpus.len();
    tun_cfg.offload = !opts.no_offload;
    tun_cfg.nonblocking = true;
    tun_cfg.mtu = Some(u32::from(cfg.interface.mtu));
    tun_cfg.addresses = cfg
        .interface
        .addresses
        .iter()
        .map(|a| (a.addr(), a.prefix_len()))
        .collect();
    tun_cfg.routes = routes;
    let mut dev = TunDevice::open(&tun_cfg)
        .with_context(|| format!("creating TUN device {name} (needs CAP_NET_ADMIN)"))?;
    let caps = dev.caps();
    let queues = dev.take_queues();

    let engine_cfg = EngineConfig {
        private_key: StaticSecret::from_bytes(cfg.interface.private_key.0),
        listen_port: cfg.interface.listen_port.unwrap_or(0),
        fwmark: cfg.interface.fwmark,
        mtu: usize::from(cfg.interface.mtu),
        peers,
        shard_cpus: shard_cpus.clone(),
        backend: opts.engine,
        timers: opts
            .test_timer_scale
            .map_or_else(TimerConfig::default, scaled_timers),
        udp_gso: !opts.no_gso,
        udp_gro: !opts.no_gro,
    };
    // Every log line of the tunnel's threads carries interface=NAME (and shard=N on shards).
    let span = tracing::info_span!("tunnel", interface = %name);
    let _entered = span.enter();
    let engine = Arc::new(Engine::start(engine_cfg, queues, caps).context("starting the engine")?);
    let _metrics = match opts.metrics {
        Some(addr) => {
            let info = crate::metrics::MetricsInfo {
                interface: name.clone(),
                engine: engine.backend().to_string(),
                vnet_hdr: caps.vnet_hdr,
                csum: caps.csum,
                tso: caps.tso,
                uso: caps.uso,
                udp_gso: engine.udp_gso(),
                udp_gro: engine.udp_gro(),
            };
            let handle = engine.stats_handle();
            let srv = crate::metrics::serve(addr, move || {
                crate::metrics::render(&info, &handle.snapshot())
            });
            match srv {
                Ok(srv) => {
                    tracing::info!(addr = %srv.local_addr(), "metrics endpoint: GET /metrics");
                    Some(srv)
                }
                Err(e) => {
                    if let Ok(engine) = Arc::try_unwrap(engine) {
                        engine.stop();
                    }
                    return Err(e).with_context(|| format!("--metrics {addr}"));
                }
            }
        }
        None => None,
    };
    let show_info = crate::show::ShowStatic {
        interface: name.clone(),
        mtu: cfg.interface.mtu,
        caps,
        shard_cpus: shard_cpus.clone(),
    };
    let uapi = match uapi {
        Some(l) => Some(
            l.serve(Arc::new(crate::show::TunnelHandler::new(
                Arc::clone(&engine),
                show_info,
            )))
            .context("serving the UAPI socket")?,
        ),
        None => None,
    };
    if let Some(user) = &run_as {
        if let Err(e) = user.drop_privileges() {
            if let Some(u) = uapi {
                u.stop();
            }
            drop(_metrics);
            if let Ok(engine) = Arc::try_unwrap(engine) {
                let _ = engine.stop();
            }
            drop(dev);
            return Err(e.into());
        }
        eprintln!(
            "uring-tunnel: {name}: running as uid {} gid {} (--user {})",
            user.uid, user.gid, user.spec
        );
    }
    let pinned: Vec<String> = shard_cpus
        .iter()
        .map(|c| c.map_or_else(|| "-".into(), |c| c.to_string()))
        .collect();
    eprintln!(
        "uring-tunnel: {name} up: engine={} [{}] shards={} cpus=[{}] listen={} mtu={} tun: vnet_hdr={} csum={} tso={} uso={} udp: gso={} gro={}",
        engine.backend(),
        engine.backend_note().unwrap_or_default(),
        shard_cpus.len(),
        pinned.join(","),
        engine.local_addr(),
        cfg.interface.mtu,
        caps.vnet_hdr,
        caps.csum,
        caps.tso,
        caps.uso,
        engine.udp_gso(),
        engine.udp_gro(),
    );

    if let Some(div) = opts.test_timer_scale {
        eprintln!(
            "warning: {name}: --test-timer-scale {div}: protocol times divided by {div} (test only)"
        );
    }
    let endpoints: Vec<SocketAddr> = cfg
        .peers
        .iter()
        .filter_map(|p| p.endpoint.as_ref())
        .filter_map(|ep| resolve(&ep.host, ep.port).ok())
        .collect();
    if let Some(w) = underlay_mtu_warning(&name, usize::from(cfg.interface.mtu), &endpoints) {
        eprintln!("{w}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut failure = None;
    let mut gso = engine.udp_gso();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if gso && !engine.udp_gso() {
            gso = false;
            tracing::warn!(
                "the kernel refused UDP GSO (EIO); sending datagrams one by one from now on"
            );
        }
        // The shards follow the device's MTU (`ip link set dev NAME mtu X`) without a restart.
        if let Ok(now) = dev.mtu()
            && now as usize != engine.mtu()
        {
            let old = engine.set_mtu(now as usize);
            eprintln!("uring-tunnel: {name}: MTU changed {old} -> {now}; shards follow");
        }
        if let Some(e) = engine.failed() {
            failure = Some(e);
            break;
        }
    }
    eprintln!("uring-tunnel: {name}: {}", summary(&engine));
    if let Some(u) = uapi {
        u.stop();
    }
    let Ok(engine) = Arc::try_unwrap(engine) else {
        bail!("internal: the engine is still shared after the UAPI server stopped");
    };
    let errors = engine.stop();
    drop(dev);
    if let Some(e) = failure.or_else(|| errors.into_iter().next()) {
        bail!("{e}");
    }
    eprintln!("uring-tunnel: {name} down");
    Ok(())
}

/// One line of totals over all shards, for the log at shutdown.
fn summary(engine: &Engine) -> String {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    use uring_tunnel_engine::stats::DropReason;
    let st = engine.shard_stats();
    let sum = |f: fn(&uring_tunnel_engine::stats::ShardStats) -> &std::sync::atomic::AtomicU64| {
        st.iter().map(|s| f(s).load(Relaxed)).sum::<u64>()
    };
    let snap = engine.stats_snapshot();
    let (t, c) = (&snap.total, &snap.control);
    let mut out = format!(
        "tun_reads={} tun_rx={} tun_tx={} udp_recvs={} udp_rx={} udp_tx={} udp_sends={} tun_writes={} syscalls={} udp_rx_data={} udp_tx_data={} udp_rx_control={} udp_tx_control={} handshakes={} staged_tx={}",
        sum(|s| &s.tun_reads),
        sum(|s| &s.tun_rx_packets),
        sum(|s| &s.tun_tx_packets),
        sum(|s| &s.udp_recvs),
        sum(|s| &s.udp_rx_datagrams),
        sum(|s| &s.udp_tx_datagrams),
        sum(|s| &s.udp_sends),
        sum(|s| &s.tun_writes),
        sum(|s| &s.syscalls),
        t.udp_rx_data_datagrams,
        t.udp_tx_data_datagrams(),
        t.udp_rx_control_datagrams,
        t.udp_tx_control_datagrams,
        c.handshakes_completed,
        c.staged_tx_datagrams,
    );
    let per_shard: Vec<String> = st
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s.tun_rx_packets.load(Relaxed),
                s.udp_rx_datagrams.load(Relaxed)
            )
        })
        .collect();
    let _ = write!(out, " shards_tun_rx/udp_rx=[{}]", per_shard.join(","));
    // Byte counts (for the bench's super-packet sizes), after the older keys.
    let _ = write!(
        out,
        " tun_rx_bytes={} tun_tx_bytes={} udp_rx_bytes={} udp_tx_bytes={}",
        sum(|s| &s.tun_rx_bytes),
        sum(|s| &s.tun_tx_bytes),
        sum(|s| &s.udp_rx_bytes),
        sum(|s| &s.udp_tx_bytes),
    );
    let _ = write!(
        out,
        " control_tx={} cookie_replies_sent={} cookie_replies_received={} gso_fallbacks={}",
        c.tx_datagrams,
        c.cookie_replies_sent,
        c.cookie_replies_received,
        sum(|s| &s.gso_fallbacks),
    );
    for r in DropReason::ALL {
        let n: u64 = st.iter().map(|s| s.drops_of(r)).sum();
        if n > 0 {
            let _ = write!(out, " drop_{}={n}", r.name());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_scale_divides_times_only() {
        let d = TimerConfig::default();
        let t = scaled_timers(60);
        assert_eq!(t.rekey_after_time, Duration::from_secs(2));
        assert_eq!(t.reject_after_time, Duration::from_secs(3));
        assert_eq!(t.rekey_timeout, d.rekey_timeout / 60);
        assert_eq!(t.keepalive_timeout, d.keepalive_timeout / 60);
        assert_eq!(t.rekey_after_messages, d.rekey_after_messages);
        assert_eq!(t.max_handshake_attempts(), d.max_handshake_attempts());
        assert_eq!(scaled_timers(1), d);
    }

    #[test]
    fn overhead_by_outer_family() {
        assert_eq!(outer_overhead(&"198.18.0.1:1".parse().unwrap()), 60);
        assert_eq!(
            outer_overhead(&"[::ffff:198.18.0.1]:1".parse().unwrap()),
            60
        );
        assert_eq!(outer_overhead(&"[fd00::1]:1".parse().unwrap()), 80);
    }
}
