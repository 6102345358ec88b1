//! Root tests with real TUN devices in network namespaces made by the test.
//!
//! Each namespace is an anonymous one entered by a thread with
//! `unshare(CLONE_NEWNET)`; sockets and TUN fds created there stay in it, and
//! it disappears when the last of them closes (devices are also deleted by
//! `TunDevice`'s `Drop`). Tests run serially under one lock. Under `CI=true`
//! a missing prerequisite (root, `/dev/net/tun`) fails the test; otherwise it
//! is skipped with a message.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::assert_checksums;
use sha2::{Digest, Sha256};
use uring_tunnel_tun::{
    Coalescer, GSO_NONE, GsoSplit, TunConfig, TunDevice, TunIo, TunQueue, VNET_HDR_LEN,
    VirtioNetHdr,
};

static LOCK: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(role: &str) -> String {
    format!(
        "ut{role}{}x{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run `f` on a new thread inside a new network namespace.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        f()
    })
}

/// `Err(reason)` when the prerequisites are missing.
fn prerequisites() -> Result<(), String> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun missing".into());
    }
    let r = thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "unshare panicked".to_string())?;
    r.map_err(|e| format!("cannot create a network namespace (need root): {e}"))
}

/// Take the lock; `None` (skip) when prerequisites are missing outside CI.
fn setup(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    match prerequisites() {
        Ok(()) => Some(g),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("{test}: {why}"),
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Split every read into MTU-sized packets, write each with a plain header.
    Split,
    /// Split, then coalesce each batch of reads before writing.
    Coalesce,
    /// No vnet header anywhere: plain packets.
    Plain,
}

#[derive(Default, Debug)]
struct Stats {
    reads: AtomicU64,
    gso_reads: AtomicU64,
    max_gso_size: AtomicU64,
    segments: AtomicU64,
    writes: AtomicU64,
    gso_writes: AtomicU64,
    kernel_compared: AtomicU64,
}

/// A router namespace: super-packets written into `input` (vnet hdr) are
/// forwarded by the kernel out of `output` (no offloads), i.e. segmented by
/// the kernel's own software GSO.
struct Router {
    input: TunQueue,
    output: TunQueue,
    _devs: (TunDevice, TunDevice),
}

struct StopOnDrop(Arc<AtomicBool>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Check the segments of one super-packet: checksums, contiguous sequence
/// numbers and lengths, consecutive IPv4 ids, flags only where the kernel puts them.
fn check_segments(sup: &[u8], segs: &[Vec<u8>]) {
    let v6 = sup[0] >> 4 == 6;
    let iph = if v6 { 40 } else { usize::from(sup[0] & 15) * 4 };
    let th = usize::from(sup[iph + 12] >> 4) * 4;
    let mut seq = be32(sup, iph + 4);
    let mut payload = 0;
    for (i, s) in segs.iter().enumerate() {
        assert_checksums(s);
        assert_eq!(be32(s, iph + 4), seq, "sequence not contiguous");
        if !v6 {
            assert_eq!(be16(s, 4), be16(sup, 4).wrapping_add(i as u16), "IPv4 id");
        }
        let last = i + 1 == segs.len();
        let flags = s[iph + 13];
        assert_eq!(
            flags & 0x09 != 0,
            last && sup[iph + 13] & 0x09 != 0,
            "FIN/PSH only on the last"
        );
        let n = s.len() - iph - th;
        seq = seq.wrapping_add(n as u32);
        payload += n;
    }
    assert_eq!(
        payload,
        sup.len() - iph - th,
        "segment lengths do not add up"
    );
}

/// The kernel's segments of `raw` (vnet hdr + super-packet) via the router,
/// compared with ours after the forwarding changes (TTL/hop limit − 1).
fn compare_with_kernel(router: &Router, raw: &[u8], ours: &[Vec<u8>], stats: &Stats) {
    router
        .input
        .write(raw)
        .expect("write super-packet to router");
    let sup = &raw[VNET_HDR_LEN..];
    let v6 = sup[0] >> 4 == 6;
    let iph = if v6 { 40 } else { usize::from(sup[0] & 15) * 4 };
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while got.len() < ours.len() && Instant::now() < deadline {
        if !router
            .output
            .wait_readable(Duration::from_millis(50))
            .unwrap()
        {
            continue;
        }
        let n = match router.output.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => panic!("router read: {e}"),
        };
        let p = &buf[..n];
        // Only our flow's TCP segments (skip router solicitations etc.).
        let proto = if v6 { p[6] } else { p[9] };
        if p[0] >> 4 == sup[0] >> 4
            && proto == 6
            && p.len() > iph + 4
            && p[iph..iph + 4] == sup[iph..iph + 4]
        {
            got.push(p.to_vec());
        }
    }
    assert_eq!(
        got.len(),
        ours.len(),
        "kernel produced a different number of segments"
    );
    for (i, (k, o)) in got.iter().zip(ours).enumerate() {
        let mut expect = o.clone();
        if v6 {
            expect[7] -= 1;
        } else {
            expect[8] -= 1;
            expect[10..12].fill(0);
            let c = !common::naive_sum(&[&expect[..iph]]);
            expect[10..12].copy_from_slice(&c.to_be_bytes());
        }
        assert_eq!(
            k, &expect,
            "segment {i} differs from the kernel's own segmentation"
        );
    }
    stats.kernel_compared.fetch_add(1, Ordering::Relaxed);
}

/// Forward packets from `src` to `dst` until `stop`.
fn forward(
    src: &TunQueue,
    dst: &TunQueue,
    mode: Mode,
    stop: &AtomicBool,
    stats: &Stats,
    router: Option<&Router>,
) {
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut seg = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut coalescer = Coalescer::new(512, uring_tunnel_tun::GroConfig::default());
    let mut out = vec![0u8; 1 << 20];
    let mut batch: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if !src.wait_readable(Duration::from_millis(20)).unwrap() {
            continue;
        }
        batch.clear();
        loop {
            let n = match src.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("tun read: {e}"),
            };
            stats.reads.fetch_add(1, Ordering::Relaxed);
            if mode == Mode::Plain {
                assert!(
                    n >= 20 && matches!(buf[0] >> 4, 4 | 6),
                    "plain read is not an IP packet"
                );
                dst.write(&buf[..n]).unwrap();
                stats.writes.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let hdr = VirtioNetHdr::parse(&buf[..n]).unwrap();
            let s = GsoSplit::new(&hdr, &buf[VNET_HDR_LEN..n]).unwrap();
            if hdr.gso_type != GSO_NONE {
                stats.gso_reads.fetch_add(1, Ordering::Relaxed);
                stats
                    .max_gso_size
                    .fetch_max(u64::from(hdr.gso_size), Ordering::Relaxed);
            }
            let mut segs = Vec::with_capacity(s.segments());
            for i in 0..s.segments() {
                let len = s.write_segment(i, &mut seg).unwrap();
                segs.push(seg[..len].to_vec());
            }
            stats
                .segments
                .fetch_add(segs.len() as u64, Ordering::Relaxed);
            if s.is_gso() && segs[0][if segs[0][0] >> 4 == 6 { 6 } else { 9 }] == 6 {
                check_segments(&buf[VNET_HDR_LEN..n], &segs);
                if let Some(r) = router
                    && stats.kernel_compared.load(Ordering::Relaxed) < 40
                {
                    compare_with_kernel(r, &buf[..n], &segs, stats);
                }
            }
            match mode {
                Mode::Split => {
                    for p in &segs {
                        seg[..VNET_HDR_LEN].copy_from_slice(&VirtioNetHdr::NONE.to_bytes());
                        seg[VNET_HDR_LEN..VNET_HDR_LEN + p.len()].copy_from_slice(p);
                        dst.write(&seg[..VNET_HDR_LEN + p.len()]).unwrap();
                        stats.writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => batch.extend(segs),
            }
            if batch.len() >= 256 {
                break;
            }
        }
        if mode == Mode::Coalesce && !batch.is_empty() {
            let writes = coalescer.coalesce(&batch, &mut out).unwrap();
            for w in writes {
                let h = VirtioNetHdr::parse(&out[w.clone()]).unwrap();
                if h.gso_type != GSO_NONE {
                    stats.gso_writes.fetch_add(1, Ordering::Relaxed);
                }
                dst.write(&out[w.clone()]).unwrap();
                stats.writes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Outcome {
    sent: [u8; 32],
    received: [u8; 32],
    ab: Arc<Stats>,
    ba: Arc<Stats>,
    caps_a: uring_tunnel_tun::TunCaps,
}

fn addr(v6: bool, host: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x7e57,
            0,
            0,
            0,
            0,
            0,
            u16::from(host),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(100, 64, 77, host))
    }
}

fn tun_cfg(role: &str, offload: bool, local: IpAddr, peer: IpAddr) -> TunConfig {
    let full = if local.is_ipv4() { 32 } else { 128 };
    let mut c = TunConfig::new(unique(role));
    c.offload = offload;
    c.nonblocking = true;
    c.mtu = Some(1500);
    c.addresses = vec![(local, full)];
    c.routes = vec![(peer, full)];
    c
}

fn router(v6: bool) -> Router {
    let (a, b) = (addr(v6, 1), addr(v6, 2));
    in_netns(move || {
        let path = if v6 {
            "/proc/sys/net/ipv6/conf/all/forwarding"
        } else {
            "/proc/sys/net/ipv4/ip_forward"
        };
        std::fs::write(path, "1").unwrap();
        let full = if v6 { 128 } else { 32 };
        let mut ci = TunConfig::new(unique("ri"));
        ci.nonblocking = true;
        ci.mtu = Some(1500);
        ci.routes = vec![(a, full)];
        let mut co = TunConfig::new(unique("ro"));
        co.offload = false;
        co.nonblocking = true;
        co.mtu = Some(1500);
        co.routes = vec![(b, full)];
        let mut di = TunDevice::open(&ci).unwrap();
        let mut dout = TunDevice::open(&co).unwrap();
        assert!(!dout.caps().vnet_hdr);
        let input = di.take_queues().remove(0);
        let output = dout.take_queues().remove(0);
        Router {
            input,
            output,
            _devs: (di, dout),
        }
    })
    .join()
    .unwrap()
}

/// Two namespaces A (client) and B (server), each with a TUN; the test
/// forwards between the TUNs in `mode` and moves `bytes` over TCP.
fn transfer(v6: bool, mode: Mode, bytes: usize, with_router: bool) -> Outcome {
    let (a_ip, b_ip) = (addr(v6, 1), addr(v6, 2));
    let offload = mode != Mode::Plain;
    let port = 5201;
    let data: Vec<u8> = (0..bytes as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let sent = Sha256::digest(&data).into();

    let (dev_tx_a, dev_rx_a) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let a = in_netns(move || {
        dev_tx_a
            .send(TunDevice::open(&tun_cfg("a", offload, a_ip, b_ip)).unwrap())
            .unwrap();
        if go_rx.recv().is_err() {
            return;
        }
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::new(b_ip, port), Duration::from_secs(5))
                .unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let (dev_tx_b, dev_rx_b) = mpsc::channel();
    let b = in_netns(move || {
        let dev = TunDevice::open(&tun_cfg("b", offload, b_ip, a_ip)).unwrap();
        let l = TcpListener::bind(SocketAddr::new(b_ip, port)).unwrap();
        dev_tx_b.send(dev).unwrap();
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let mut dev_a: TunDevice = dev_rx_a.recv().unwrap();
    let mut dev_b: TunDevice = dev_rx_b.recv().unwrap();
    let caps_a = dev_a.caps();
    let qa = Arc::new(dev_a.take_queues().remove(0));
    let qb = Arc::new(dev_b.take_queues().remove(0));
    let r = with_router.then(|| Arc::new(router(v6)));

    let stop = Arc::new(AtomicBool::new(false));
    let _guard = StopOnDrop(stop.clone());
    let (ab, ba) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
    let f1 = {
        let (qa, qb, stop, st, r) = (qa.clone(), qb.clone(), stop.clone(), ab.clone(), r.clone());
        thread::spawn(move || forward(&qa, &qb, mode, &stop, &st, r.as_deref()))
    };
    let f2 = {
        let (qa, qb, stop, st) = (qa.clone(), qb.clone(), stop.clone(), ba.clone());
        thread::spawn(move || forward(&qb, &qa, mode, &stop, &st, None))
    };
    go_tx.send(()).unwrap();
    let a_res = a.join();
    let b_res = b.join();
    stop.store(true, Ordering::SeqCst);
    let f1 = f1.join();
    let f2 = f2.join();
    if let Err(e) = f1.and(f2) {
        std::panic::resume_unwind(e);
    }
    a_res.expect("client thread");
    let got = b_res.expect("server thread");
    assert_eq!(got.len(), bytes, "received byte count");
    drop((dev_a, dev_b));
    Outcome {
        sent,
        received: Sha256::digest(&got).into(),
        ab,
        ba,
        caps_a,
    }
}

const BYTES: usize = 8 << 20;

fn run_tso(v6: bool, mode: Mode) {
    let o = transfer(v6, mode, BYTES, mode == Mode::Split);
    assert!(o.caps_a.vnet_hdr && o.caps_a.csum, "{:?}", o.caps_a);
    assert!(o.caps_a.tso, "TSO not granted: {:?}", o.caps_a);
    assert_eq!(o.sent, o.received, "sha256 of received data differs");
    let gso = o.ab.gso_reads.load(Ordering::Relaxed);
    let max = o.ab.max_gso_size.load(Ordering::Relaxed);
    eprintln!(
        "v6={v6} {mode:?}: A->B reads {} (gso {gso}, max gso_size {max}), segments {}, writes {} (coalesced {}), kernel-compared {}; B->A reads {}",
        o.ab.reads.load(Ordering::Relaxed),
        o.ab.segments.load(Ordering::Relaxed),
        o.ab.writes.load(Ordering::Relaxed),
        o.ab.gso_writes.load(Ordering::Relaxed),
        o.ab.kernel_compared.load(Ordering::Relaxed),
        o.ba.reads.load(Ordering::Relaxed),
    );
    assert!(gso > 0 && max > 0, "no TSO super-packets read from the TUN");
    if mode == Mode::Split {
        assert!(
            o.ab.kernel_compared.load(Ordering::Relaxed) > 0,
            "no super-packet compared with the kernel's segmentation"
        );
    }
    if mode == Mode::Coalesce {
        assert!(
            o.ab.gso_writes.load(Ordering::Relaxed) > 0,
            "no coalesced write happened"
        );
        assert!(o.ab.writes.load(Ordering::Relaxed) < o.ab.segments.load(Ordering::Relaxed));
    }
}

#[test]
fn tso_split_ipv4_matches_kernel_and_delivers() {
    let Some(_g) = setup("tso_split_ipv4_matches_kernel_and_delivers") else {
        return;
    };
    run_tso(false, Mode::Split);
}

#[test]
fn tso_split_ipv6_matches_kernel_and_delivers() {
    let Some(_g) = setup("tso_split_ipv6_matches_kernel_and_delivers") else {
        return;
    };
    run_tso(true, Mode::Split);
}

#[test]
fn coalesced_writes_are_accepted_ipv4() {
    let Some(_g) = setup("coalesced_writes_are_accepted_ipv4") else {
        return;
    };
    run_tso(false, Mode::Coalesce);
}

#[test]
fn coalesced_writes_are_accepted_ipv6() {
    let Some(_g) = setup("coalesced_writes_are_accepted_ipv6") else {
        return;
    };
    run_tso(true, Mode::Coalesce);
}

#[test]
fn plain_packets_flow_without_vnet_hdr() {
    let Some(_g) = setup("plain_packets_flow_without_vnet_hdr") else {
        return;
    };
    let o = transfer(false, Mode::Plain, 2 << 20, false);
    assert!(!o.caps_a.vnet_hdr && !o.caps_a.tso);
    assert_eq!(o.sent, o.received);
    assert!(o.ab.reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn multi_queue_caps_and_delete_on_drop() {
    let Some(_g) = setup("multi_queue_caps_and_delete_on_drop") else {
        return;
    };
    in_netns(|| {
        let mut cfg = TunConfig::new(unique("m"));
        cfg.queues = 4;
        cfg.mtu = Some(1420);
        cfg.addresses = vec![(addr(false, 9), 24), (addr(true, 9), 64)];
        let dev = TunDevice::open(&cfg).unwrap();
        assert!(dev.created());
        assert_eq!(dev.queues().len(), 4);
        let caps = dev.caps();
        assert!(caps.vnet_hdr && caps.csum && caps.tso, "{caps:?}");
        let name = std::ffi::CString::new(dev.name()).unwrap();
        let mtu =
            std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/mtu", dev.name())).unwrap();
        assert_eq!(mtu.trim(), "1420");
        assert!(dev.queues()[0].has_vnet_hdr());
        // Attach to the existing device: not created by this value.
        let mut again = cfg.clone();
        again.queues = 1;
        again.addresses.clear();
        let other = TunDevice::open(&again).unwrap();
        assert!(!other.created());
        drop(other);
        assert!(
            nix::net::if_::if_nametoindex(name.as_c_str()).is_ok(),
            "attached device must not delete"
        );
        drop(dev);
        assert!(
            nix::net::if_::if_nametoindex(name.as_c_str()).is_err(),
            "device still exists after drop"
        );
        // USO not requested: TSO only.
        let mut no_uso = TunConfig::new(unique("n"));
        no_uso.uso = false;
        let d = TunDevice::open(&no_uso).unwrap();
        assert!(d.caps().tso && !d.caps().uso);
    })
    .join()
    .unwrap();
}

/// Datagram `k` of message `m`: distinct contents, `len` bytes.
fn datagram(m: usize, k: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (m * 131 + k * 7)) as u8)
        .collect()
}

/// A UDP socket in namespace A sends with `UDP_SEGMENT` (GSO) through a TUN
/// with USO; the test reads the USO super-packets, splits them, checks every
/// segment and writes them into namespace B's TUN — one write per segment
/// (`Split`) or coalesced into USO writes (`Coalesce`). B's socket must get
/// every datagram intact.
fn run_uso(v6: bool, mode: Mode) {
    const GSO: usize = 1200;
    const MSGS: usize = 12;
    let (a_ip, b_ip) = (addr(v6, 1), addr(v6, 2));
    let port = 5301;
    // Message m: 10 full datagrams, every third message a shorter last one.
    let msgs: Vec<Vec<Vec<u8>>> = (0..MSGS)
        .map(|m| {
            (0..10)
                .map(|k| datagram(m, k, if k == 9 && m % 3 == 0 { 345 } else { GSO }))
                .collect()
        })
        .collect();
    let mut expected: Vec<Vec<u8>> = msgs.iter().flatten().cloned().collect();
    let total = expected.len();

    let (dev_tx_a, dev_rx_a) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let a = in_netns(move || {
        dev_tx_a
            .send(TunDevice::open(&tun_cfg("ua", true, a_ip, b_ip)).unwrap())
            .unwrap();
        if go_rx.recv().is_err() {
            return;
        }
        let s = std::net::UdpSocket::bind(SocketAddr::new(a_ip, 0)).unwrap();
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::UdpGsoSegment, &(GSO as i32))
            .expect("UDP_SEGMENT");
        for m in &msgs {
            let buf = m.concat();
            assert_eq!(
                s.send_to(&buf, SocketAddr::new(b_ip, port)).unwrap(),
                buf.len()
            );
        }
    });
    let (dev_tx_b, dev_rx_b) = mpsc::channel();
    let b = in_netns(move || {
        let dev = TunDevice::open(&tun_cfg("ub", true, b_ip, a_ip)).unwrap();
        let s = std::net::UdpSocket::bind(SocketAddr::new(b_ip, port)).unwrap();
        // A coalesced write delivers up to 64 datagrams at once: room for
        // all of them, so a slow (loaded) receiver does not drop any
        // (the kernel would count them as RcvbufErrors).
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20))
            .expect("SO_RCVBUFFORCE");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        dev_tx_b.send(dev).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < total && Instant::now() < deadline {
            match s.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        if got.len() < total {
            // This namespace's UDP counters, to tell drops from corruption.
            for f in ["/proc/thread-self/net/snmp", "/proc/thread-self/net/snmp6"] {
                let t = std::fs::read_to_string(f).unwrap_or_default();
                for l in t
                    .lines()
                    .filter(|l| l.starts_with("Udp") || l.starts_with("Ip"))
                {
                    eprintln!("{l}");
                }
            }
        }
        got
    });
    let mut dev_a: TunDevice = dev_rx_a.recv().unwrap();
    let mut dev_b: TunDevice = dev_rx_b.recv().unwrap();
    let (caps_a, caps_b) = (dev_a.caps(), dev_b.caps());
    let qa = dev_a.take_queues().remove(0);
    let qb = dev_b.take_queues().remove(0);
    if !(caps_a.uso && caps_b.uso) {
        drop(go_tx);
        let _ = (a.join(), b.join());
        let why = format!("USO not granted by this kernel: {caps_a:?} {caps_b:?}");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipping USO test: {why}");
        return;
    }
    go_tx.send(()).unwrap();

    let iph = if v6 { 40 } else { 20 };
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut seg = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut coalescer = Coalescer::new(512, uring_tunnel_tun::GroConfig::default());
    let mut out = vec![0u8; 1 << 20];
    let (mut uso_reads, mut segments, mut uso_writes) = (0usize, 0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(10);
    while segments < total && Instant::now() < deadline {
        if !qa.wait_readable(Duration::from_millis(20)).unwrap() {
            continue;
        }
        let mut batch: Vec<Vec<u8>> = Vec::new();
        loop {
            let n = match qa.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("tun read: {e}"),
            };
            let hdr = VirtioNetHdr::parse(&buf[..n]).unwrap();
            let pkt = &buf[VNET_HDR_LEN..n];
            let proto = if v6 { pkt[6] } else { pkt[9] };
            // Only our flow (skip router solicitations, MLD etc.).
            if proto != 17 || be16(pkt, iph + 2) != port {
                continue;
            }
            let s = GsoSplit::new(&hdr, pkt).unwrap();
            if hdr.gso_type == uring_tunnel_tun::GSO_UDP_L4 {
                uso_reads += 1;
                assert_eq!(usize::from(hdr.gso_size), GSO, "gso_size");
            }
            let mut payload = 0;
            for i in 0..s.segments() {
                let len = s.write_segment(i, &mut seg).unwrap();
                let p = &seg[..len];
                assert_checksums(p);
                assert_eq!(usize::from(be16(p, iph + 4)), len - iph, "UDP length");
                assert!(len - iph - 8 <= GSO, "segment payload above gso_size");
                if !v6 {
                    assert_eq!(be16(p, 4), be16(pkt, 4).wrapping_add(i as u16), "IPv4 id");
                }
                payload += len - iph - 8;
                batch.push(p.to_vec());
            }
            assert_eq!(
                payload,
                pkt.len() - iph - 8,
                "segment lengths do not add up"
            );
            segments += s.segments();
        }
        match mode {
            Mode::Split => {
                for p in &batch {
                    seg[..VNET_HDR_LEN].copy_from_slice(&VirtioNetHdr::NONE.to_bytes());
                    seg[VNET_HDR_LEN..VNET_HDR_LEN + p.len()].copy_from_slice(p);
                    qb.write(&seg[..VNET_HDR_LEN + p.len()]).unwrap();
                }
            }
            _ => {
                for w in coalescer.coalesce(&batch, &mut out).unwrap() {
                    let h = VirtioNetHdr::parse(&out[w.clone()]).unwrap();
                    if h.gso_type == uring_tunnel_tun::GSO_UDP_L4 {
                        uso_writes += 1;
                    }
                    qb.write(&out[w.clone()])
                        .expect("kernel rejected a coalesced write");
                }
            }
        }
    }
    a.join().expect("sender thread");
    let mut got = b.join().expect("receiver thread");
    eprintln!(
        "USO v6={v6} {mode:?}: {uso_reads} USO reads, {segments} segments, {uso_writes} USO writes, {} datagrams received",
        got.len()
    );
    assert!(uso_reads > 0, "no USO super-packet read from the TUN");
    assert_eq!(segments, total, "segment count");
    if mode == Mode::Coalesce {
        assert!(uso_writes > 0, "no coalesced USO write happened");
    }
    assert_eq!(got.len(), total, "datagrams received");
    got.sort();
    expected.sort();
    assert!(got == expected, "received datagrams differ from those sent");
    drop((dev_a, dev_b));
}

#[test]
fn uso_split_ipv4_delivers_every_datagram() {
    let Some(_g) = setup("uso_split_ipv4_delivers_every_datagram") else {
        return;
    };
    run_uso(false, Mode::Split);
}

#[test]
fn uso_split_ipv6_delivers_every_datagram() {
    let Some(_g) = setup("uso_split_ipv6_delivers_every_datagram") else {
        return;
    };
    run_uso(true, Mode::Split);
}

#[test]
fn uso_coalesced_writes_are_accepted_ipv4() {
    let Some(_g) = setup("uso_coalesced_writes_are_accepted_ipv4") else {
        return;
    };
    run_uso(false, Mode::Coalesce);
}

#[test]
fn uso_coalesced_writes_are_accepted_ipv6() {
    let Some(_g) = setup("uso_coalesced_writes_are_accepted_ipv6") else {
        return;
    };
    run_uso(true, Mode::Coalesce);
}
