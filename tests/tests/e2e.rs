//! Two uring-tunnel processes in two network namespaces joined by a veth pair: ping, TCP with
//! sha256, UDP payloads of the sizes that matter, per-flow ordering across shards.
//!
//! Root tests: under `CI=true` a missing prerequisite fails them, otherwise they skip.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use uring_tunnel_tests::transfer::tcp_transfer;
use uring_tunnel_tests::tunnel::{TestDir, UringTunnel, genkey, pubkey};
use uring_tunnel_tests::{Netns, VethPair, require, require_netns, serial, tool_exists};

fn keypair() -> (String, String) {
    let private = genkey().expect("genkey");
    let public = pubkey(&private).expect("pubkey");
    (private, public)
}

/// Sends `bytes` through the tunnel and panics unless they arrive intact.
fn transfer(from: &Netns, to: &Netns, dst: SocketAddr, bytes: u64, secs: u64) {
    if let Err(e) = tcp_transfer(from, to, dst, bytes, Duration::from_secs(secs)) {
        panic!("TCP transfer of {bytes} bytes to {dst}: {e}");
    }
}

/// One tunnel between the two sides of a veth pair.
struct Pair {
    veth: VethPair,
    a: Option<UringTunnel>,
    b: Option<UringTunnel>,
    n: u8,
    _dir: TestDir,
}

impl Pair {
    /// Starts side A with `engine_a` and B with `engine_b`; the outer (underlay) family is v6
    /// when `v6_outside`.
    fn start(engine_a: &str, engine_b: &str, v6_outside: bool, extra: &[&str]) -> Pair {
        let veth = VethPair::new().expect("veth pair");
        let n = veth.subnet;
        let (ka, pa) = keypair();
        let (kb, pb) = keypair();
        let ep = |host: u8| {
            if v6_outside {
                format!("[{}]:51820", veth.v6(host))
            } else {
                format!("{}:51820", veth.v4(host))
            }
        };
        let conf = |key: &str, me: u8, peer_pub: &str, peer: u8| {
            format!(
                "[Interface]\nPrivateKey = {key}\nListenPort = 51820\nAddress = 100.64.{n}.{me}/24, fd00:64:{n}::{me}/64\n\n[Peer]\nPublicKey = {peer_pub}\nEndpoint = {}\nAllowedIPs = 100.64.{n}.{peer}/32, fd00:64:{n}::{peer}/128\n",
                ep(peer)
            )
        };
        let ifa = format!("uta{n}");
        let ifb = format!("utb{n}");
        let mut args_a = vec!["--engine", engine_a];
        args_a.extend_from_slice(extra);
        let mut args_b = vec!["--engine", engine_b];
        args_b.extend_from_slice(extra);
        let dir = TestDir::new().expect("test dir");
        let a = UringTunnel::start(&veth.a, &dir, &ifa, &conf(&ka, 1, &pb, 2), &args_a)
            .expect("tunnel A");
        let b = UringTunnel::start(&veth.b, &dir, &ifb, &conf(&kb, 2, &pa, 1), &args_b)
            .expect("tunnel B");
        Pair {
            veth,
            a: Some(a),
            b: Some(b),
            n,
            _dir: dir,
        }
    }

    fn inner(&self, host: u8, v6: bool) -> IpAddr {
        if v6 {
            format!("fd00:64:{}::{host}", self.n).parse().unwrap()
        } else {
            format!("100.64.{}.{host}", self.n).parse().unwrap()
        }
    }

    fn ping(&self, from_a: bool, v6: bool) {
        let (ns, host) = if from_a {
            (&self.veth.a, 2)
        } else {
            (&self.veth.b, 1)
        };
        let dst = self.inner(host, v6).to_string();
        // The first echo may wait for the handshake: allow a few tries.
        let out = ns
            .command("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "3", "-w", "10", &dst])
            .output()
            .expect("ping");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains(" 0 received"),
            "ping {dst} failed: {text}\nA: {}\nB: {}",
            self.a.as_ref().map(|t| t.log_text()).unwrap_or_default(),
            self.b.as_ref().map(|t| t.log_text()).unwrap_or_default()
        );
    }

    /// Stops both sides; both must exit 0 and remove their device. Returns their stats lines.
    fn stop(mut self) -> (String, String) {
        let la = self
            .a
            .take()
            .unwrap()
            .stop()
            .unwrap_or_else(|e| panic!("A: {e}"));
        let lb = self
            .b
            .take()
            .unwrap()
            .stop()
            .unwrap_or_else(|e| panic!("B: {e}"));
        (la, lb)
    }
}

/// Sends `count` UDP datagrams of `size` bytes from `from` to `dst` and checks each arrives
/// whole in `to`. Returns how many arrived (they must be at least `count - 1`: a veth inside
/// a netns does not lose packets, but the first may wait for a handshake).
fn udp_payloads(from: &Netns, to: &Netns, dst: SocketAddr, size: usize, count: usize) -> usize {
    let bind: SocketAddr = match dst {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], dst.port())),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, dst.port())),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let recv = to
        .run_in(move || {
            let s = UdpSocket::bind(bind).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            tx.send(()).unwrap();
            let mut buf = vec![0u8; 70000];
            let mut got = 0;
            while let Ok(n) = s.recv(&mut buf) {
                assert_eq!(n, size, "datagram length");
                let seq = buf[0];
                assert!(
                    buf[1..n].iter().all(|&b| b == seq.wrapping_mul(31)),
                    "payload of datagram {seq} corrupted"
                );
                got += 1;
                if got == count {
                    break;
                }
            }
            got
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    from.run_in(move || {
        let s = UdpSocket::bind(match dst {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        })
        .unwrap();
        let mut buf = vec![0u8; size];
        for i in 0..count {
            let seq = i as u8;
            buf.fill(seq.wrapping_mul(31));
            if size > 0 {
                buf[0] = seq;
            }
            s.send_to(&buf, dst).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .unwrap()
    .join()
    .unwrap();
    let got = recv.join().unwrap();
    assert!(
        got + 1 >= count,
        "{size}-byte UDP to {dst}: {got}/{count} arrived"
    );
    got
}

fn prerequisites() -> bool {
    require_netns() && require(tool_exists("ping"), "ping (iputils-ping)")
}

const GIB: u64 = 1 << 30;

fn full_run(engine_a: &str, engine_b: &str) {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let p = Pair::start(engine_a, engine_b, false, &[]);
    p.ping(true, false);
    p.ping(false, true);
    for (from_a, port) in [(true, 5001u16), (false, 5002)] {
        let (from, to, host) = if from_a {
            (&p.veth.a, &p.veth.b, 2)
        } else {
            (&p.veth.b, &p.veth.a, 1)
        };
        let dst = SocketAddr::new(p.inner(host, false), port);
        let t = tcp_transfer(from, to, dst, GIB, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("1 GiB {engine_a}->{engine_b} (from A: {from_a}): {e}"));
        eprintln!(
            "1 GiB {engine_a}->{engine_b} from A: {from_a}: {:.0} Mbit/s",
            t.mbit_per_s()
        );
    }
    // UDP payloads: 1 byte, the largest unfragmented IPv4 payload at MTU 1420, and a
    // 3000-byte datagram that the sender's kernel fragments inside the tunnel.
    for (size, port) in [(1usize, 6001u16), (1392, 6002), (3000, 6003)] {
        let dst = SocketAddr::new(p.inner(2, false), port);
        udp_payloads(&p.veth.a, &p.veth.b, dst, size, 20);
    }
    // The largest unfragmented IPv6 payload at MTU 1420.
    udp_payloads(
        &p.veth.b,
        &p.veth.a,
        SocketAddr::new(p.inner(1, true), 6004),
        1372,
        20,
    );
    p.stop();
}

#[test]
fn epoll_to_epoll() {
    full_run("epoll", "epoll");
}

#[test]
fn uring_to_uring() {
    full_run("uring", "uring");
}

#[test]
fn uring_to_epoll() {
    full_run("uring", "epoll");
}

#[test]
fn ipv6_underlay() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    for (ea, eb) in [("uring", "uring"), ("epoll", "epoll"), ("uring", "epoll")] {
        let p = Pair::start(ea, eb, true, &[]);
        p.ping(true, false);
        p.ping(false, true);
        let dst = SocketAddr::new(p.inner(2, true), 5003);
        transfer(&p.veth.a, &p.veth.b, dst, 64 << 20, 60);
        let dst = SocketAddr::new(p.inner(1, false), 5008);
        transfer(&p.veth.b, &p.veth.a, dst, 64 << 20, 60);
        udp_payloads(
            &p.veth.a,
            &p.veth.b,
            SocketAddr::new(p.inner(2, true), 6005),
            1372,
            20,
        );
        p.stop();
    }
}

/// A hub with two peers (spokes B and C on separate veth links): AllowedIPs route each
/// destination to its peer, and both sessions carry traffic at the same time.
#[test]
fn hub_with_two_peers() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let ab = VethPair::new().expect("veth A-B");
    // C joins A over a second link.
    let (c, m) = ab.attach_third().expect("netns C joined to A");
    let n = ab.subnet;

    let (ka, pa) = keypair();
    let (kb, pb) = keypair();
    let (kc, pc) = keypair();
    let hub = format!(
        "[Interface]\nPrivateKey = {ka}\nListenPort = 51820\nAddress = 100.64.{n}.1/24\n\n[Peer]\nPublicKey = {pb}\nAllowedIPs = 100.64.{n}.2/32\n\n[Peer]\nPublicKey = {pc}\nAllowedIPs = 100.64.{n}.3/32\n"
    );
    let spoke = |key: &str, me: u8, hub_ip: &str| {
        format!(
            "[Interface]\nPrivateKey = {key}\nListenPort = 51820\nAddress = 100.64.{n}.{me}/24\n\n[Peer]\nPublicKey = {pa}\nEndpoint = {hub_ip}:51820\nAllowedIPs = 100.64.{n}.0/24\n"
        )
    };
    let dir = TestDir::new().unwrap();
    let ta = UringTunnel::start(
        &ab.a,
        &dir,
        &format!("uth{n}"),
        &hub,
        &["--engine", "uring"],
    )
    .unwrap();
    let tb = UringTunnel::start(
        &ab.b,
        &dir,
        &format!("utb{n}"),
        &spoke(&kb, 2, &ab.v4(1)),
        &["--engine", "epoll"],
    )
    .unwrap();
    let tc = UringTunnel::start(
        &c,
        &dir,
        &format!("utc{n}"),
        &spoke(&kc, 3, &format!("198.18.{m}.1")),
        &["--engine", "uring"],
    )
    .unwrap();
    let ping = |ns: &Netns, dst: &str| {
        ns.command("ping")
            .args(["-c", "2", "-i", "0.2", "-W", "2", "-w", "8", dst])
            .output()
            .unwrap()
            .status
            .success()
    };
    // Spokes reach the hub; the hub reaches both spokes (routing by AllowedIPs).
    assert!(
        ping(&ab.b, &format!("100.64.{n}.1")),
        "B -> hub\n{}",
        ta.log_text()
    );
    assert!(
        ping(&c, &format!("100.64.{n}.1")),
        "C -> hub\n{}",
        ta.log_text()
    );
    assert!(ping(&ab.a, &format!("100.64.{n}.2")), "hub -> B");
    assert!(ping(&ab.a, &format!("100.64.{n}.3")), "hub -> C");
    // Both transfers at once, to different peers.
    let b_addr = SocketAddr::new(format!("100.64.{n}.2").parse().unwrap(), 5010);
    let c_addr = SocketAddr::new(format!("100.64.{n}.3").parse().unwrap(), 5011);
    std::thread::scope(|s| {
        let t1 = s.spawn(|| transfer(&ab.a, &ab.b, b_addr, 64 << 20, 60));
        let t2 = s.spawn(|| transfer(&ab.a, &c, c_addr, 64 << 20, 60));
        t1.join().unwrap();
        t2.join().unwrap();
    });
    let la = ta.stop().unwrap();
    tb.stop().unwrap();
    tc.stop().unwrap();
    assert!(stat(&la, "udp_tx") > 2 * 40_000, "{la}");
}

/// One run of [`flows_keep_order_across_two_shards`] with source ports from `src_base`;
/// returns the sending side's TUN packets per shard.
fn flows_once(src_base: u16) -> Vec<u64> {
    let p = Pair::start("uring", "uring", false, &["--cores", "2"]);
    p.ping(true, false);
    const FLOWS: u16 = 8;
    const PER_FLOW: u32 = 2000;
    let base = 7000u16;
    let (tx, rx) = std::sync::mpsc::channel();
    let recv = p
        .veth
        .b
        .run_in(move || {
            let socks: Vec<UdpSocket> = (0..FLOWS)
                .map(|i| {
                    let s = UdpSocket::bind(("0.0.0.0", base + i)).unwrap();
                    s.set_nonblocking(true).unwrap();
                    s
                })
                .collect();
            tx.send(()).unwrap();
            let mut last = vec![None::<u32>; FLOWS as usize];
            let mut got = vec![0u32; FLOWS as usize];
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let mut buf = [0u8; 64];
            let mut idle = 0;
            while std::time::Instant::now() < deadline && idle < 2000 {
                let mut any = false;
                for (i, s) in socks.iter().enumerate() {
                    while let Ok(n) = s.recv(&mut buf) {
                        assert_eq!(n, 64);
                        let seq = u32::from_le_bytes(buf[..4].try_into().unwrap());
                        if let Some(prev) = last[i] {
                            assert!(seq > prev, "flow {i}: {seq} after {prev}");
                        }
                        last[i] = Some(seq);
                        got[i] += 1;
                        any = true;
                    }
                }
                if any {
                    idle = 0;
                } else {
                    idle += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            got
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let dst = p.inner(2, false);
    p.veth
        .a
        .run_in(move || {
            let socks: Vec<UdpSocket> = (0..FLOWS)
                .map(|i| UdpSocket::bind(("0.0.0.0", src_base + i)).unwrap())
                .collect();
            let mut buf = [0u8; 64];
            for seq in 0..PER_FLOW {
                buf[..4].copy_from_slice(&seq.to_le_bytes());
                for (i, s) in socks.iter().enumerate() {
                    s.send_to(&buf, (dst, base + i as u16)).unwrap();
                }
                if seq % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let got = recv.join().unwrap();
    let total: u32 = got.iter().sum();
    assert!(
        total >= FLOWS as u32 * PER_FLOW * 9 / 10,
        "too many lost: {got:?}"
    );
    let (la, _) = p.stop();
    // "shards_tun_rx/udp_rx=[x/y,z/w]": both sending shards read from the TUN.
    let shards = la
        .split("shards_tun_rx/udp_rx=[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or_else(|| panic!("no per-shard counters in: {la}"));
    let tun_rx: Vec<u64> = shards
        .split(',')
        .map(|s| s.split('/').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(tun_rx.len(), 2, "{la}");
    tun_rx
}

/// 8 UDP flows with sequence numbers through two shards: every flow arrives in order, and the
/// sending side's per-shard counters show both shards carried traffic.
#[test]
fn flows_keep_order_across_two_shards() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    // The kernel picks a TUN queue per flow by a hash with a per-boot random seed: 8 flows all
    // land on one queue with probability 2/256. Another set of source ports is another draw.
    let mut spreads = Vec::new();
    for attempt in 0..3u16 {
        let tun_rx = flows_once(20000 + attempt * 1000);
        let spread = tun_rx.iter().all(|&n| n > 100);
        spreads.push(tun_rx);
        if spread {
            return;
        }
    }
    panic!("flows never spread over both shards: {spreads:?}");
}

/// Sum of the `drop_*` counters of a shutdown summary line, except `no_route` (IPv6 neighbour
/// discovery and router solicitations from the kernel have no peer).
fn garbage_drops(log: &str) -> u64 {
    log.split_whitespace()
        .filter_map(|w| w.strip_prefix("drop_"))
        .filter(|w| !w.starts_with("no_route="))
        .filter_map(|w| w.split('=').nth(1)?.parse::<u64>().ok())
        .sum()
}

/// A burst of random datagrams at the listen port: all dropped and counted, none crashes the
/// tunnel, which then still carries a TCP transfer.
#[test]
fn garbage_burst_is_counted_and_harmless() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let p = Pair::start("epoll", "uring", false, &[]);
    p.ping(true, false);
    const N: u64 = 5000;
    let target: SocketAddr = format!("{}:51820", p.veth.v4(2)).parse().unwrap();
    p.veth
        .a
        .run_in(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut x: u64 = 0x1234_5678_9abc_def1;
            let mut buf = [0u8; 1500];
            for i in 0..N {
                for b in buf.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                // Some look like real message types, to reach the deeper parsers.
                buf[0] = (i % 6) as u8;
                buf[1..4].fill(0);
                let len = (x % 1500) as usize;
                s.send_to(&buf[..len], target).unwrap();
                if i % 200 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let dst = SocketAddr::new(p.inner(2, false), 5004);
    transfer(&p.veth.a, &p.veth.b, dst, 64 << 20, 60);
    let (_, lb) = p.stop();
    let drops = garbage_drops(&lb);
    assert!(
        (N * 99 / 100..=N + 10).contains(&drops),
        "{N} garbage datagrams, {drops} counted drops: {lb}"
    );
}

/// One side moves to a new underlay address in the middle of a transfer; the other side learns
/// it from authenticated packets and the transfer completes intact.
#[test]
fn roaming_mid_transfer() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let p = Pair::start("epoll", "epoll", false, &[]);
    p.ping(true, false);
    let dst = SocketAddr::new(p.inner(2, false), 5005);
    let a_name = p.veth.a.name().to_owned();
    let a_dev = p.veth.a_dev.clone();
    let old = format!("{}/24", p.veth.v4(1));
    let new = format!("198.18.{}.3/24", p.veth.subnet);
    // Keep the new (secondary) address when the old primary one is deleted.
    for key in ["all", p.veth.a_dev.as_str()] {
        let out = p
            .veth
            .a
            .command("sysctl")
            .args(["-qw", &format!("net.ipv4.conf.{key}.promote_secondaries=1")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mover = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        let ip = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(["-n", &a_name])
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["addr", "add", &new, "dev", &a_dev]);
        ip(&["addr", "del", &old, "dev", &a_dev]);
    });
    transfer(&p.veth.a, &p.veth.b, dst, 512 << 20, 60);
    mover.join().unwrap();
    // And the other direction reaches A at its new address.
    p.ping(false, false);
    p.stop();
}

/// With TUN offloads refused (`--no-offload`: no virtio-net header), plain packets flow.
#[test]
fn without_tun_offloads() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let p = Pair::start("uring", "epoll", false, &["--no-offload"]);
    p.ping(true, false);
    let dst = SocketAddr::new(p.inner(2, false), 5006);
    transfer(&p.veth.a, &p.veth.b, dst, 64 << 20, 60);
    let log = p.a.as_ref().unwrap().log_text();
    assert!(log.contains("vnet_hdr=false"), "{log}");
    p.stop();
}

/// Reads `name=N` from a stats line.
fn stat(line: &str, name: &str) -> u64 {
    uring_tunnel_tests::tunnel::stat(line, name).unwrap_or_else(|| panic!("no {name} in: {line}"))
}

/// UDP GSO and GRO switched off (the documented knobs; the kernel no longer refuses GSO with
/// EIO when the underlay lacks checksum offload, since 6.11): every datagram is its own send and
/// receive, and data still flows intact. With them on, bulk TCP is coalesced: fewer sends than
/// datagrams.
#[test]
fn udp_gso_and_gro_fallbacks() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    for (engine, knobs) in [("uring", true), ("epoll", true), ("uring", false)] {
        let extra: &[&str] = if knobs {
            &["--no-gso", "--no-gro"]
        } else {
            &[]
        };
        let p = Pair::start(engine, engine, false, extra);
        let up = p.a.as_ref().unwrap().log_text();
        let want = if knobs {
            "udp: gso=false gro=false"
        } else {
            "udp: gso=true gro=true"
        };
        assert!(up.contains(want), "{up}");
        p.ping(true, false);
        let dst = SocketAddr::new(p.inner(2, false), 5007);
        transfer(&p.veth.a, &p.veth.b, dst, 64 << 20, 60);
        let (la, lb) = p.stop();
        let (sends, datagrams) = (stat(&la, "udp_sends"), stat(&la, "udp_tx"));
        let (recvs, received) = (stat(&lb, "udp_recvs"), stat(&lb, "udp_rx"));
        assert!(datagrams > 40_000, "{la}");
        if knobs {
            assert_eq!(
                sends, datagrams,
                "{engine}: GSO off must send one by one: {la}"
            );
            assert_eq!(
                recvs, received,
                "{engine}: GRO off must receive one by one: {lb}"
            );
        } else {
            assert!(sends * 4 < datagrams, "{engine}: GSO should coalesce: {la}");
            assert!(recvs * 2 < received, "{engine}: GRO should coalesce: {lb}");
        }
    }
}
