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
    /// `--user USER[:GROUP]`: drop to this user once the device and sockets exist.
    pub user: Option<String>,
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
        eprintln!("warning: {w}");
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
                    eprintln!(
                        "warning: AllowedIPs {net}: default routes are not installed (wg-quick's fwmark policy routing is not done by uring-tunnel); add routes yourself"
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
        eprintln!(
            "warning: Table = {t}: routes go to the main table (numbered tables are not supported yet)"
        );
    }

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
        timers: TimerConfig::default(),
        udp_gso: !opts.no_gso,
        udp_gro: !opts.no_gro,
    };
    let engine = Engine::start(engine_cfg, queues, caps).context("starting the engine")?;
    if let Some(user) = &run_as {
        if let Err(e) = user.drop_privileges() {
            let _ = engine.stop();
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
            eprintln!(
                "warning: {name}: the kernel refused UDP GSO (EIO); sending datagrams one by one from now on"
            );
        }
        if let Some(e) = engine.failed() {
            failure = Some(e);
            break;
        }
    }
    eprintln!("uring-tunnel: {name}: {}", summary(&engine));
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
    let mut out = format!(
        "tun_reads={} tun_rx={} tun_tx={} udp_recvs={} udp_rx={} udp_tx={} udp_sends={} tun_writes={} syscalls={}",
        sum(|s| &s.tun_reads),
        sum(|s| &s.tun_rx_packets),
        sum(|s| &s.tun_tx_packets),
        sum(|s| &s.udp_recvs),
        sum(|s| &s.udp_rx_datagrams),
        sum(|s| &s.udp_tx_datagrams),
        sum(|s| &s.udp_sends),
        sum(|s| &s.tun_writes),
        sum(|s| &s.syscalls),
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
    for r in DropReason::ALL {
        let n: u64 = st.iter().map(|s| s.drops_of(r)).sum();
        if n > 0 {
            let _ = write!(out, " drop_{}={n}", r.name());
        }
    }
    out
}
