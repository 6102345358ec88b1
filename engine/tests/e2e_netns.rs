//! End to end through real TUN devices: two network namespaces joined by a veth pair
//! (underlay 198.18.x.0/24), one `Engine` + TUN device in each (overlay 100.64.x.0/24), then a
//! ping and a 64 MiB TCP transfer checked with sha256 — for uring↔uring and uring↔epoll — and
//! the io_uring fallback when `kernel.io_uring_disabled = 2` refuses ring set-up.
//!
//! Needs root, `ip`, `ping` and `sysctl`: fails under CI=true without them, skips otherwise.
//! The tests of this file run one at a time (they share the global io_uring sysctl).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::root_with_tools;
use sha2::{Digest, Sha256};
use uring_tunnel_crypto::TimerConfig;
use uring_tunnel_crypto::keys::{PublicKey, StaticSecret};
use uring_tunnel_engine::sys::enter_netns;
use uring_tunnel_engine::{Backend, BackendChoice, Engine, EngineConfig, EngineError, PeerSpec};
use uring_tunnel_tun::{TunConfig, TunDevice};

static SERIAL: Mutex<()> = Mutex::new(());

const PORT: u16 = 51820;
const MTU: usize = 1420;

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and a veth pair between them; deleted on drop.
struct Pair {
    ns: [String; 2],
    net: u8,
}

impl Pair {
    fn new(tag: &str, net: u8) -> Self {
        let id = std::process::id();
        let pair = Pair {
            ns: [
                format!("ut-e2e-{tag}-{id}-a"),
                format!("ut-e2e-{tag}-{id}-b"),
            ],
            net,
        };
        let veth = [
            format!("ue{}{net}a", id % 100_000),
            format!("ue{}{net}b", id % 100_000),
        ];
        for ns in &pair.ns {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&[
            "ip",
            "link",
            "add",
            &veth[0],
            "netns",
            &pair.ns[0],
            "type",
            "veth",
            "peer",
            "name",
            &veth[1],
            "netns",
            &pair.ns[1],
        ]);
        for (i, (ns, dev)) in pair.ns.iter().zip(&veth).enumerate() {
            let addr = format!("{}/24", pair.underlay(i));
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    fn underlay(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, side as u8 + 1)
    }

    fn overlay(&self, side: usize) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, self.net, side as u8 + 1)
    }

    /// Runs `f` on a thread inside namespace `side`.
    fn in_ns<T: Send>(&self, side: usize, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.ns[side]);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap();
                enter_netns(ns.as_fd()).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// One tunnel end: the engine, then its TUN device (removed after the engine stopped).
struct Side {
    engine: Option<Engine>,
    dev: Option<TunDevice>,
}

impl Side {
    fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            let errors = e.stop();
            if !std::thread::panicking() {
                assert!(errors.is_empty(), "shard errors: {errors:?}");
            }
        }
        self.dev.take();
    }
}

struct Keys {
    secret: [StaticSecret; 2],
    public: [PublicKey; 2],
}

fn keys() -> Keys {
    let a = StaticSecret::generate(&mut rand_core::OsRng);
    let b = StaticSecret::generate(&mut rand_core::OsRng);
    let public = [a.public_key(), b.public_key()];
    Keys {
        secret: [a, b],
        public,
    }
}

fn start(
    pair: &Pair,
    side: usize,
    keys: &Keys,
    backend: BackendChoice,
) -> Result<Side, EngineError> {
    let other = 1 - side;
    let name = format!("ut{}{}{}", std::process::id() % 100_000, pair.net, side);
    let secret = StaticSecret::from_bytes(*keys.secret[side].to_bytes());
    pair.in_ns(side, || {
        let mut cfg = TunConfig::new(name);
        cfg.nonblocking = true;
        cfg.mtu = Some(MTU as u32);
        cfg.addresses = vec![(IpAddr::V4(pair.overlay(side)), 24)];
        let mut dev = TunDevice::open(&cfg).unwrap();
        let caps = dev.caps();
        let queues = dev.take_queues();
        let peer = PeerSpec {
            public_key: keys.public[other],
            preshared_key: None,
            endpoint: Some(SocketAddr::from((pair.underlay(other), PORT))),
            allowed_ips: vec![format!("{}/32", pair.overlay(other)).parse().unwrap()],
            persistent_keepalive: None,
        };
        let engine = Engine::start(
            EngineConfig {
                private_key: secret,
                listen_port: PORT,
                fwmark: None,
                mtu: MTU,
                peers: vec![peer],
                shard_cpus: vec![None],
                backend,
                timers: TimerConfig::default(),
                udp_gso: true,
                udp_gro: true,
            },
            queues,
            caps,
        )?;
        Ok(Side {
            engine: Some(engine),
            dev: Some(dev),
        })
    })
}

fn ping(pair: &Pair, from: usize) {
    let to = pair.overlay(1 - from).to_string();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.ns[from],
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
        ])
        .args(["-W", "3", "-w", "10", &to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ping {to} from {}: {}{}",
        pair.ns[from],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `bytes` of pseudo-random data over TCP from side 0 to side 1; returns both sha256s.
fn tcp_transfer(pair: &Pair, bytes: usize) -> ([u8; 32], [u8; 32], usize) {
    let server = SocketAddr::from((pair.overlay(1), 5201));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            pair.in_ns(1, || {
                let l = TcpListener::bind(server).unwrap();
                tx.send(()).unwrap();
                let (mut c, _) = l.accept().unwrap();
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0;
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            h.update(&buf[..k]);
                            n += k;
                        }
                        Err(e) => panic!("receiving after {n} bytes: {e}"),
                    }
                }
                (<[u8; 32]>::from(h.finalize()), n)
            })
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let sent = pair.in_ns(0, || {
            let mut c = TcpStream::connect_timeout(&server, Duration::from_secs(10)).unwrap();
            c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut h = Sha256::new();
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let mut chunk = vec![0u8; 1 << 16];
            let mut left = bytes;
            while left > 0 {
                for w in chunk.chunks_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    w.copy_from_slice(&state.to_le_bytes()[..w.len()]);
                }
                let k = left.min(chunk.len());
                c.write_all(&chunk[..k]).unwrap();
                h.update(&chunk[..k]);
                left -= k;
            }
            c.shutdown(std::net::Shutdown::Write).unwrap();
            <[u8; 32]>::from(h.finalize())
        });
        let (got, n) = receiver.join().unwrap();
        (sent, got, n)
    })
}

fn sum(e: &Engine, f: impl Fn(&uring_tunnel_engine::stats::ShardStats) -> u64) -> u64 {
    e.shard_stats().iter().map(|s| f(s)).sum()
}

fn traffic(tag: &str, net: u8, backends: [BackendChoice; 2], mib: usize) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_with_tools(tag, &["ip", "ping"]) {
        return;
    }
    let pair = Pair::new(tag, net);
    let k = keys();
    let a = start(&pair, 0, &k, backends[0]).unwrap();
    let b = start(&pair, 1, &k, backends[1]).unwrap();
    for (side, choice) in [(&a, backends[0]), (&b, backends[1])] {
        let want = match choice {
            BackendChoice::Epoll => Backend::Epoll,
            _ => Backend::Uring,
        };
        assert_eq!(
            side.engine().backend(),
            want,
            "{:?}",
            side.engine().backend_note()
        );
    }
    ping(&pair, 0);
    ping(&pair, 1);
    let t = Instant::now();
    let (sent, got, n) = tcp_transfer(&pair, mib << 20);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, mib << 20, "bytes received");
    assert_eq!(sent, got, "sha256 of the transfer");
    for (name, side) in [("a", &a), ("b", &b)] {
        let e = side.engine();
        let tun_rx = sum(e, |s| s.tun_rx_packets.load(Relaxed));
        let tun_tx = sum(e, |s| s.tun_tx_packets.load(Relaxed));
        let sys = sum(e, |s| s.syscalls.load(Relaxed));
        eprintln!(
            "{tag} {name} ({}): tun_rx={tun_rx} tun_tx={tun_tx} udp_sends={} tun_writes={} syscalls={sys} gso_fallbacks={}",
            e.backend(),
            sum(e, |s| s.udp_sends.load(Relaxed)),
            sum(e, |s| s.tun_writes.load(Relaxed)),
            sum(e, |s| s.gso_fallbacks.load(Relaxed)),
        );
        assert!(
            tun_rx > 0 && tun_tx > 0 && sys > 0,
            "{name}: no traffic counted"
        );
        assert!(e.failed().is_none(), "{name}: {:?}", e.failed());
        let snap = e.stats_snapshot();
        assert!(snap.control.handshakes_completed >= 1, "{name}: {snap:?}");
        assert_eq!(snap.peers.len(), 1);
        assert!(snap.peers[0].last_handshake_unix_secs.is_some());
        assert!(snap.peers[0].rx_bytes + snap.peers[0].tx_bytes > (mib << 20) as u64);
        // Every routed byte read from the TUN went through the read-size histogram first.
        assert!(
            snap.total.tun_read_bytes.sum >= snap.total.tun_rx_bytes,
            "{snap:?}"
        );
    }
    eprintln!(
        "{tag}: {mib} MiB in {secs:.2} s = {:.2} Gb/s",
        (mib << 20) as f64 * 8.0 / secs / 1e9
    );
}

#[test]
fn uring_to_uring_ping_and_tcp() {
    traffic("uu", 61, [BackendChoice::Uring, BackendChoice::Uring], 64);
}

#[test]
fn uring_to_epoll_ping_and_tcp() {
    traffic("ue", 62, [BackendChoice::Uring, BackendChoice::Epoll], 64);
}

/// Restores `kernel.io_uring_disabled` on drop.
struct SysctlGuard(String);

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/io_uring_disabled", &self.0);
    }
}

#[test]
fn io_uring_disabled_falls_back_to_epoll() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_with_tools("io_uring_disabled", &["ip", "ping"]) {
        return;
    }
    let path = "/proc/sys/kernel/io_uring_disabled";
    let old = std::fs::read_to_string(path).unwrap();
    let pair = Pair::new("dis", 63);
    let k = keys();
    let (auto, forced) = {
        // Keep the window short: other processes on the host see the sysctl too.
        let guard = SysctlGuard(old.trim().to_owned());
        std::fs::write(path, "2").unwrap();
        let auto = start(&pair, 0, &k, BackendChoice::Auto);
        let forced = start(&pair, 1, &k, BackendChoice::Uring);
        drop(guard);
        (auto.unwrap(), forced)
    };
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        old,
        "sysctl restored"
    );
    assert_eq!(auto.engine().backend(), Backend::Epoll);
    let note = auto.engine().backend_note().unwrap();
    assert!(
        note.starts_with("epoll") && note.contains("io_uring_disabled = 2"),
        "{note}"
    );
    match forced {
        Err(EngineError::Uring(msg)) => {
            assert!(msg.contains("io_uring_disabled = 2"), "{msg}");
            assert!(msg.contains("not permitted"), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(s) => panic!(
            "uring started with io_uring disabled: {:?}",
            s.engine().backend()
        ),
    }
    // With the sysctl restored, the epoll end works against an io_uring end.
    let b = start(&pair, 1, &k, BackendChoice::Auto).unwrap();
    assert_eq!(b.engine().backend(), Backend::Uring);
    ping(&pair, 0);
    let (sent, got, n) = tcp_transfer(&pair, 4 << 20);
    assert_eq!((n, sent), (4 << 20, got));
}

/// Whether 3 echoes come back (a bounded wait: `-w 6`).
fn ping_ok(pair: &Pair, from: usize) -> bool {
    let to = pair.overlay(1 - from).to_string();
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.ns[from],
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
        ])
        .args(["-W", "2", "-w", "6", &to])
        .output()
        .unwrap()
        .status
        .success()
}

/// Live reconfiguration on a running engine: the snapshot, a new listen port (the shards
/// re-enter their loops on new sockets and the peer roams to them), allowed IPs replaced and
/// restored, a refused change that leaves everything as it was, and peer removal.
#[test]
fn live_reconfiguration_of_a_running_engine() {
    use uring_tunnel_engine::{ConfigError, DeviceUpdate, PeerUpdate};
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_with_tools("rc", &["ip", "ping"]) {
        return;
    }
    let pair = Pair::new("rc", 64);
    let k = keys();
    let a = start(&pair, 0, &k, BackendChoice::Uring).unwrap();
    let b = start(&pair, 1, &k, BackendChoice::Epoll).unwrap();
    ping(&pair, 0);
    ping(&pair, 1);
    let ea = a.engine();
    let cfg = ea.config();
    assert_eq!(cfg.listen_port, PORT);
    assert_eq!(cfg.public_key, k.public[0]);
    assert_eq!(cfg.peers.len(), 1);
    let p = &cfg.peers[0];
    assert_eq!(p.public_key, k.public[1]);
    assert!(
        p.last_handshake.is_some() && p.rx_bytes > 0 && p.tx_bytes > 0,
        "{p:?}"
    );
    assert_eq!(p.allowed_ips.len(), 1);

    // New port: bound in A's namespace (the caller's), shards move, B roams to it.
    pair.in_ns(0, || {
        ea.apply(DeviceUpdate {
            listen_port: Some(PORT + 10),
            ..DeviceUpdate::default()
        })
    })
    .unwrap();
    assert_eq!(ea.local_addr().port(), PORT + 10);
    assert_eq!(ea.config().listen_port, PORT + 10);
    ping(&pair, 1);
    ping(&pair, 0);
    let b_sees = b.engine().config().peers[0].endpoint;
    assert_eq!(b_sees.map(|e| e.port()), Some(PORT + 10), "B did not roam");
    let old_port_free = pair.in_ns(0, || std::net::UdpSocket::bind(("0.0.0.0", PORT)).is_ok());
    assert!(old_port_free, "old port still bound");

    // A refused change (a low-order peer key) changes nothing, not even the part before it.
    let err = ea
        .apply(DeviceUpdate {
            fwmark: Some(Some(7)),
            peers: vec![PeerUpdate::new(PublicKey::from_bytes([0; 32]))],
            ..DeviceUpdate::default()
        })
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidPeerKey(_)), "{err}");
    assert_eq!(ea.config().fwmark, None);
    assert_eq!(ea.config().peers.len(), 1);

    // No allowed IPs: A has no route to B any more; restored, traffic flows again.
    let mut u = PeerUpdate::new(k.public[1]);
    u.replace_allowed_ips = true;
    ea.apply(DeviceUpdate {
        peers: vec![u],
        ..DeviceUpdate::default()
    })
    .unwrap();
    assert!(ea.config().peers[0].allowed_ips.is_empty());
    assert!(!ping_ok(&pair, 0), "ping went through without allowed IPs");
    let mut u = PeerUpdate::new(k.public[1]);
    u.allowed_ips = vec![format!("{}/32", pair.overlay(1)).parse().unwrap()];
    ea.apply(DeviceUpdate {
        peers: vec![u],
        ..DeviceUpdate::default()
    })
    .unwrap();
    ping(&pair, 0);

    // Removed: no peer, no sessions, traffic stops both ways.
    let mut u = PeerUpdate::new(k.public[1]);
    u.remove = true;
    ea.apply(DeviceUpdate {
        peers: vec![u],
        ..DeviceUpdate::default()
    })
    .unwrap();
    assert!(ea.config().peers.is_empty());
    assert!(ea.shared().indices.load().is_empty(), "sessions left");
    assert!(!ping_ok(&pair, 1), "B still reaches A after removal");
    assert!(ea.failed().is_none() && b.engine().failed().is_none());
}
