//! Starting and stopping the shards.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Release},
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use uring_tunnel_crypto::TimerConfig;
use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};
use uring_tunnel_crypto::peer::{Device, PeerConfig};
use uring_tunnel_tun::{TunCaps, TunQueue};

use crate::allowed_ips::AllowedIpsBuilder;
use crate::control::ControlPlane;
use crate::datapath::Datapath;
use crate::peers::{IndexTable, PeerState, Shared};
use crate::stats::{EngineStats, ShardStats, StatsHandle};
use crate::sys::udp::{UdpConfig, UdpSocket};
use crate::sys::uring::{Uring, UringError, UringFeatures};

/// Which I/O backend drives the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One io_uring per shard.
    Uring,
    /// epoll + plain syscalls (`read`/`write`, `recvmmsg`, `sendmsg` with GSO).
    Epoll,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// The backend requested by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring when the kernel has what we need, else epoll.
    #[default]
    Auto,
    /// io_uring or a clear error.
    Uring,
    /// epoll.
    Epoll,
}

/// One peer of the configuration.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Its static public key.
    pub public_key: PublicKey,
    /// Optional preshared key (zeroized on drop, redacted in `Debug`).
    pub preshared_key: Option<PresharedKey>,
    /// Initial endpoint (resolved).
    pub endpoint: Option<SocketAddr>,
    /// Inner prefixes routed to and accepted from it.
    pub allowed_ips: Vec<IpNet>,
    /// Persistent keepalive interval.
    pub persistent_keepalive: Option<Duration>,
}

/// Everything [`Engine::start`] needs besides the TUN queues.
#[derive(Debug)]
pub struct EngineConfig {
    /// Our static private key.
    pub private_key: StaticSecret,
    /// UDP port; 0 = pick one.
    pub listen_port: u16,
    /// fwmark for outgoing UDP.
    pub fwmark: Option<u32>,
    /// Tunnel MTU.
    pub mtu: usize,
    /// Peers.
    pub peers: Vec<PeerSpec>,
    /// One entry per shard: the CPU to pin it to, if any.
    pub shard_cpus: Vec<Option<usize>>,
    /// Backend.
    pub backend: BackendChoice,
    /// Protocol timers (tests compress them).
    pub timers: TimerConfig,
    /// Use UDP GSO (`UDP_SEGMENT`) when the kernel allows it; false sends one datagram per
    /// syscall/SQE (a knob for tests and comparisons: since Linux 6.11 the kernel no longer
    /// refuses GSO on devices without checksum offload, so this is how the fallback is forced).
    pub udp_gso: bool,
    /// Ask for UDP GRO (`UDP_GRO`); false receives one datagram per receive.
    pub udp_gro: bool,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Socket set-up failed.
    #[error("UDP socket: {0}")]
    Udp(#[from] crate::sys::udp::UdpError),
    /// A peer was refused by the protocol core.
    #[error("peer {key}: {source}")]
    Peer {
        /// The peer's key (base64).
        key: String,
        /// Why.
        source: uring_tunnel_crypto::Error,
    },
    /// The number of TUN queues does not match the number of shards.
    #[error("{queues} TUN queues for {shards} shards")]
    QueueCount {
        /// Queues given.
        queues: usize,
        /// Shards asked for.
        shards: usize,
    },
    /// io_uring was asked for but is not usable.
    #[error("io_uring backend unavailable: {0}")]
    Uring(String),
    /// Some other OS error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running tunnel: shard threads plus the timer thread.
#[derive(Debug)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    pub(crate) control: Arc<ControlPlane>,
    stats: Vec<Arc<ShardStats>>,
    threads: Vec<JoinHandle<()>>,
    backend: Backend,
    backend_note: String,
    /// The shard sockets, one per shard; replaced as a whole when the listen port changes.
    pub(crate) sockets: Arc<ArcSwap<Vec<Arc<UdpSocket>>>>,
    /// Per shard: leave the shard loop (stop, or re-enter it with a new socket).
    pub(crate) leaves: Arc<Vec<AtomicBool>>,
    pub(crate) origin: Instant,
    /// What live reconfiguration needs beyond the device (serialises changes).
    pub(crate) reconf: Mutex<crate::reconfig::ReconfState>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Engine {
    /// Starts one shard per TUN queue.
    pub fn start(
        cfg: EngineConfig,
        queues: Vec<TunQueue>,
        caps: TunCaps,
    ) -> Result<Engine, EngineError> {
        let shards = cfg.shard_cpus.len().max(1);
        if queues.len() != shards {
            return Err(EngineError::QueueCount {
                queues: queues.len(),
                shards,
            });
        }
        let (backend, backend_note) = match cfg.backend {
            BackendChoice::Epoll => (Backend::Epoll, "epoll: requested".to_owned()),
            BackendChoice::Auto => match probe_uring() {
                Ok(f) => (Backend::Uring, format!("io_uring: usable ({f})")),
                Err(e) => (
                    Backend::Epoll,
                    format!("epoll: io_uring not usable: {}", describe_uring_error(&e)),
                ),
            },
            BackendChoice::Uring => match probe_uring() {
                Ok(f) => (Backend::Uring, format!("io_uring: requested ({f})")),
                Err(e) => return Err(EngineError::Uring(describe_uring_error(&e))),
            },
        };
        let origin = Instant::now();
        let private_copy = StaticSecret::from_bytes(*cfg.private_key.to_bytes());
        let mut device = Device::new(cfg.private_key, cfg.timers);
        let mut allowed = AllowedIpsBuilder::new();
        let mut states = Vec::with_capacity(cfg.peers.len());
        for (i, p) in cfg.peers.iter().enumerate() {
            let mut pc = PeerConfig::new(p.public_key);
            if let Some(psk) = &p.preshared_key {
                pc.preshared_key = psk.clone();
            }
            pc.endpoint = p.endpoint;
            pc.persistent_keepalive = p.persistent_keepalive;
            let id = device
                .add_peer(pc, origin.elapsed())
                .map_err(|source| EngineError::Peer {
                    key: p.public_key.to_base64(),
                    source,
                })?;
            debug_assert_eq!(id.0 as usize, i);
            for net in &p.allowed_ips {
                allowed.insert(*net, i as u32);
            }
            states.push(Some(Arc::new(PeerState::new(
                i as u32,
                p.public_key,
                p.endpoint,
            ))));
        }
        let shared = Arc::new(Shared {
            peers: ArcSwap::from_pointee(states),
            allowed: ArcSwap::from_pointee(allowed.build()),
            indices: ArcSwap::from_pointee(IndexTable::new()),
            mtu: cfg.mtu.into(),
            stop: AtomicBool::new(false),
        });
        let udp_cfg = UdpConfig {
            port: cfg.listen_port,
            fwmark: cfg.fwmark,
            gro: cfg.udp_gro,
            ..UdpConfig::default()
        };
        let sockets: Vec<Arc<UdpSocket>> = UdpSocket::bind_shards(&udp_cfg, shards)?
            .into_iter()
            .map(Arc::new)
            .collect();
        if !cfg.udp_gso {
            for s in &sockets {
                s.disable_gso();
            }
        }
        let sockets_swap = Arc::new(ArcSwap::from_pointee(sockets.clone()));
        let leaves: Arc<Vec<AtomicBool>> =
            Arc::new((0..shards).map(|_| AtomicBool::new(false)).collect());
        let reconf = crate::reconfig::ReconfState {
            private_key: private_copy,
            allowed,
            udp_cfg: udp_cfg.clone(),
            udp_gso: cfg.udp_gso,
        };
        let control = Arc::new(ControlPlane::new(
            device,
            Arc::clone(&shared),
            Arc::clone(&sockets[0]),
            origin,
        ));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut stats = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards + 1);
        for (i, (queue, cpu)) in queues
            .into_iter()
            .zip(
                cfg.shard_cpus
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(None)),
            )
            .enumerate()
        {
            let st = Arc::new(ShardStats::default());
            stats.push(Arc::clone(&st));
            let shared = Arc::clone(&shared);
            let control = Arc::clone(&control);
            let errors = Arc::clone(&errors);
            let sockets = Arc::clone(&sockets_swap);
            let leaves = Arc::clone(&leaves);
            let gro = caps.gro_config();
            // Log lines of the shard carry shard=i inside the caller's span (e.g. interface).
            let span = tracing::info_span!("shard", shard = i);
            let t = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    let _span = span.entered();
                    if let Some(cpu) = cpu
                        && let Err(e) = crate::sys::pin_to_cpu(cpu)
                    {
                        push_err(&errors, format!("shard {i}: pinning to CPU {cpu}: {e}"));
                    }
                    // Buffers are allocated here, after pinning, so they are NUMA-local.
                    let mut dp = Datapath::new(Arc::clone(&shared), st, gro);
                    if let Err(e) = queue.set_nonblocking(true) {
                        push_err(&errors, format!("shard {i}: TUN nonblocking: {e}"));
                        return;
                    }
                    let clock = || origin.elapsed();
                    let leave = &leaves[i];
                    // The loop is left on stop, or to re-enter it with a new socket (listen
                    // port changed). `leave` is cleared before `stop` is read, and `stop` is
                    // set before `leave`, so a stop is never missed.
                    loop {
                        leave.store(false, Release);
                        if shared.stop.load(Acquire) {
                            break;
                        }
                        let sock = Arc::clone(&sockets.load()[i]);
                        let res = match backend {
                            Backend::Epoll => crate::shard_epoll::run(
                                &mut dp,
                                queue.as_fd(),
                                &sock,
                                &*control,
                                &clock,
                                leave,
                            ),
                            // The ring is created inside, on this (pinned) thread.
                            Backend::Uring => crate::shard_uring::run(
                                &mut dp,
                                queue.as_fd(),
                                &sock,
                                &*control,
                                &clock,
                                leave,
                                crate::shard_uring::Params::default(),
                            ),
                        };
                        if let Err(e) = res {
                            push_err(&errors, format!("shard {i}: {e}"));
                            shared.stop.store(true, Release);
                            for l in leaves.iter() {
                                l.store(true, Release);
                            }
                            break;
                        }
                    }
                })
                .map_err(|source| EngineError::Io {
                    what: "spawning a shard thread",
                    source,
                })?;
            threads.push(t);
        }
        let c = Arc::clone(&control);
        let span = tracing::info_span!("control");
        threads.push(
            std::thread::Builder::new()
                .name("timers".into())
                .spawn(move || {
                    let _span = span.entered();
                    c.run_timers()
                })
                .map_err(|source| EngineError::Io {
                    what: "spawning the timer thread",
                    source,
                })?,
        );
        // Initiate right away to peers with an endpoint, like wg-quick's first packet would.
        for state in shared.peers.load().iter().flatten() {
            if state.endpoint.load().is_some() {
                state.wants_handshake.store(true, Release);
            }
        }
        control.wake();
        Ok(Engine {
            shared,
            control,
            stats,
            threads,
            backend,
            backend_note,
            sockets: sockets_swap,
            leaves,
            origin,
            reconf: Mutex::new(reconf),
            errors,
        })
    }

    /// Whether every shard socket still sends with UDP GSO (false once the kernel refused it
    /// with `EIO`, or when it was switched off).
    pub fn udp_gso(&self) -> bool {
        self.sockets.load().iter().all(|s| s.gso_enabled())
    }

    /// Whether the kernel granted UDP GRO on the shard sockets.
    pub fn udp_gro(&self) -> bool {
        self.sockets.load().iter().all(|s| s.info().gro)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Which engine runs and why, for one log line: e.g. `io_uring: usable (sq=512 …)` or
    /// `epoll: io_uring not usable: … (kernel.io_uring_disabled = 2)`.
    pub fn backend_note(&self) -> Option<String> {
        Some(self.backend_note.clone())
    }

    /// The bound UDP address (port chosen by the kernel when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.sockets.load()[0].local_addr()
    }

    /// Per-shard counters.
    pub fn shard_stats(&self) -> &[Arc<ShardStats>] {
        &self.stats
    }

    /// A cloneable handle on every counter (shards, control plane, peers) for another thread,
    /// e.g. the metrics endpoint or `show`.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle::new(
            self.stats.clone(),
            Arc::clone(&self.control),
            Arc::clone(&self.shared),
        )
    }

    /// Every counter at this moment: per shard, their sum, the control plane, the peers.
    pub fn stats_snapshot(&self) -> EngineStats {
        self.stats_handle().snapshot()
    }

    /// The tunnel MTU the shards use now.
    pub fn mtu(&self) -> usize {
        self.shared.mtu()
    }

    /// Makes the shards use `mtu` from their next packet on (the TUN device's MTU changed at
    /// run time). Returns the previous value.
    pub fn set_mtu(&self, mtu: usize) -> usize {
        self.shared.set_mtu(mtu)
    }

    /// Shared tables (peers, sessions).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether a shard stopped on an error.
    pub fn failed(&self) -> Option<String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned()
    }

    /// Stops all threads and waits for them. Returns the errors they reported.
    pub fn stop(self) -> Vec<String> {
        self.shared.stop.store(true, Release);
        for l in self.leaves.iter() {
            l.store(true, Release);
        }
        self.control.wake();
        for t in self.threads {
            let _ = t.join();
        }
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Checks that io_uring can drive a shard on this kernel, as a shard would set it up: a
/// throw-away ring with the shard's flags, the opcode probe, and one provided-buffer ring.
/// Returns the features granted.
pub fn probe_uring() -> Result<UringFeatures, UringError> {
    let ring = Uring::new(&crate::shard_uring::ring_config())?;
    let features = *ring.features();
    let bufs = ring.register_buf_ring(0, 1, 4096)?;
    drop(bufs);
    Ok(features)
}

/// The error, plus the sysctl that explains a refused set-up when it is set.
fn describe_uring_error(e: &UringError) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|v| v != "0");
    match (e, sysctl) {
        (UringError::Unavailable(_), Some(v)) => format!("{e} (kernel.io_uring_disabled = {v})"),
        _ => e.to_string(),
    }
}

fn push_err(errors: &Mutex<Vec<String>>, msg: String) {
    errors.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
}
