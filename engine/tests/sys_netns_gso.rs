//! UDP GSO over a veth whose TX checksum offload is off (`ethtool -K dev tx off`).
//!
//! Before Linux 6.11 the kernel refused such a `UDP_SEGMENT` send with `EIO`; since commit
//! "udp: Allow GSO transmit from devices with no checksum offload" (6.11) it computes the
//! checksums in software and sends. The test asserts the behaviour of the running kernel: on
//! ≥ 6.11 GSO goes through and every datagram arrives intact with no fallback; on older kernels
//! the send is refused, the socket disables GSO, counts the fallback and delivers every datagram
//! singly — for plain `sendmsg` and io_uring `SENDMSG` alike. (A kernel refusal that still exists
//! is tested without root in `sys::udp`: GSO on UDP-Lite, the same `EIO` branch an IPsec route
//! takes.) Needs root, `ip` and `ethtool`: fails under CI=true without them, skips otherwise.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use common::{payload, reassemble, recv_until, root_with_tools};
use uring_tunnel_engine::sys::enter_netns;
use uring_tunnel_engine::sys::udp::{UdpConfig, UdpSocket};
use uring_tunnel_engine::sys::uring::{Cqe, RingConfig, SendPool, Uring};

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair; removed (with the veth) on drop.
struct VethPair {
    ns_a: String,
    ns_b: String,
}

const ADDR_A: &str = "198.18.200.1";
const ADDR_B: &str = "198.18.200.2";

impl VethPair {
    fn new(tag: &str) -> Self {
        let id = std::process::id();
        let pair = Self {
            ns_a: format!("ut-{tag}-a-{id}"),
            ns_b: format!("ut-{tag}-b-{id}"),
        };
        // Names ≤ 15 bytes (IFNAMSIZ).
        let (va, vb) = (
            format!("ug{}a", id % 1_000_000),
            format!("ug{}b", id % 1_000_000),
        );
        run(&["ip", "netns", "add", &pair.ns_a]);
        run(&["ip", "netns", "add", &pair.ns_b]);
        run(&[
            "ip", "link", "add", &va, "netns", &pair.ns_a, "type", "veth", "peer", "name", &vb,
            "netns", &pair.ns_b,
        ]);
        run(&[
            "ip",
            "-n",
            &pair.ns_a,
            "addr",
            "add",
            &format!("{ADDR_A}/24"),
            "dev",
            &va,
        ]);
        run(&[
            "ip",
            "-n",
            &pair.ns_b,
            "addr",
            "add",
            &format!("{ADDR_B}/24"),
            "dev",
            &vb,
        ]);
        run(&["ip", "-n", &pair.ns_a, "link", "set", &va, "up"]);
        run(&["ip", "-n", &pair.ns_b, "link", "set", &vb, "up"]);
        run(&[
            "ip", "netns", "exec", &pair.ns_a, "ethtool", "-K", &va, "tx", "off",
        ]);
        pair
    }

    /// Runs `f` on a thread that entered namespace `ns` (sockets it creates live there).
    fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap();
            enter_netns(file.as_fd()).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn bind_in(ns: &str, ip: &'static str) -> UdpSocket {
    VethPair::in_ns(ns, move || {
        UdpSocket::bind(&UdpConfig {
            bind: ip.parse().unwrap(),
            gro: false,
            ..UdpConfig::default()
        })
        .unwrap()
    })
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = rel
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

#[test]
fn gso_over_veth_without_tx_checksum_offload() {
    let name = "gso_over_veth_without_tx_checksum_offload";
    if !root_with_tools(name, &["ip", "ethtool"]) {
        return;
    }
    let refuses = !kernel_at_least(6, 11);
    let pair = VethPair::new("gso");
    let tx = bind_in(&pair.ns_a, ADDR_A);
    let rx = bind_in(&pair.ns_b, ADDR_B);
    let dst: SocketAddr = rx.local_addr();
    let data = payload(10, 1200, 500);

    // What the kernel says to one raw GSO send.
    match tx.send_gso(&data, 1200, dst) {
        Ok(n) => {
            assert!(
                !refuses,
                "kernel < 6.11 accepted GSO without TX csum offload"
            );
            assert_eq!(n, data.len());
            let (all, n) = reassemble(&recv_until(&rx, data.len(), Duration::from_secs(3)));
            assert_eq!(
                (all == data, n),
                (true, 11),
                "software-checksummed GSO corrupted"
            );
        }
        Err(e) => {
            assert!(refuses, "kernel ≥ 6.11 refused GSO: {e}");
            assert_eq!(e.raw_os_error(), Some(EIO));
        }
    }
    assert!(
        tx.gso_enabled(),
        "send_gso alone must not change the socket state"
    );

    // send_segments: GSO when accepted, else one refusal and 11 single datagrams.
    assert_eq!(tx.send_segments(&data, 1200, dst).unwrap(), 11);
    assert_eq!(tx.gso_enabled(), !refuses);
    assert_eq!(tx.gso_fallbacks(), u64::from(refuses));
    let got = recv_until(&rx, data.len(), Duration::from_secs(3));
    let (all, n) = reassemble(&got);
    assert_eq!(n, 11);
    assert_eq!(all, data);
    assert!(got.iter().all(|(m, _)| m.src == tx.local_addr()));

    // io_uring SENDMSG with a GSO cmsg: same outcome in the CQE.
    let tx2 = bind_in(&pair.ns_a, ADDR_A);
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let mut pool = SendPool::new(1, 65536).unwrap();
    pool.buf_mut(0).unwrap()[..data.len()].copy_from_slice(&data);
    ring.push_sendmsg_slot(
        tx2.as_fd(),
        &mut pool,
        0,
        data.len(),
        dst,
        tx2.family(),
        Some(1200),
        7,
    )
    .unwrap();
    let mut cqes = [Cqe::default(); 2];
    let mut n = 0;
    for _ in 0..100 {
        ring.submit_and_wait(1, Some(Duration::from_millis(20)), None)
            .unwrap();
        n = ring.reap(&mut cqes);
        if n > 0 {
            break;
        }
    }
    assert_eq!(n, 1);
    assert!(pool.complete(0));
    if refuses {
        assert_eq!(cqes[0].res, -EIO);
        assert!(tx2.note_send_error(-cqes[0].res));
        assert!(!tx2.gso_enabled());
        let slot = pool.buf(0).unwrap()[..data.len()].to_vec();
        assert_eq!(tx2.send_segments(&slot, 1200, dst).unwrap(), 11);
    } else {
        assert_eq!(cqes[0].res as usize, data.len());
    }
    let (all, n) = reassemble(&recv_until(&rx, data.len(), Duration::from_secs(3)));
    assert_eq!((all == data, n), (true, 11));
    drop(pair);
}

/// EIO is 5 on every Linux architecture.
const EIO: i32 = 5;
