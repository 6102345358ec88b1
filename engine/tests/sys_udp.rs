//! Loopback tests of the UDP part of the syscall layer: GSO → GRO, recvmmsg batches, dual-stack
//! address mapping, SO_REUSEPORT shards, the per-segment fallback.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{cfg_dual, cfg_v4, payload, reassemble, recv_until};
use uring_tunnel_engine::sys::udp::{Family, UdpConfig, UdpSocket};

fn loopback_v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

#[test]
fn socket_setup_reports_what_it_got() {
    let s = UdpSocket::bind(&cfg_dual()).unwrap();
    let info = s.info();
    assert_eq!(info.family, Family::V6);
    assert!(info.dual_stack);
    assert_ne!(info.local.port(), 0);
    assert!(info.gro, "UDP_GRO refused: {info:?}");
    assert!(info.gso, "UDP_SEGMENT unknown: {info:?}");
    assert!(s.gso_enabled());
    // The kernel doubles the value; as root the FORCE variants lift the rmem_max cap.
    assert!(info.rcvbuf >= 1 << 16, "{info:?}");
    if info.buffers_forced {
        assert!(info.rcvbuf >= 2 * (8 << 20), "{info:?}");
    }
    let s4 = UdpSocket::bind(&cfg_v4()).unwrap();
    assert_eq!(s4.family(), Family::V4);
    assert!(!s4.info().dual_stack);
    assert_eq!(s4.local_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn fwmark_is_set_when_asked() {
    let cfg = UdpConfig {
        fwmark: Some(0x5157),
        ..cfg_v4()
    };
    match UdpSocket::bind(&cfg) {
        Ok(s) => assert_eq!(s.info().fwmark, Some(0x5157)),
        // Without CAP_NET_ADMIN the kernel refuses; the error must name the step.
        Err(e) => assert!(e.to_string().contains("SO_MARK"), "{e}"),
    }
}

fn gso_to_gro(rx_cfg: UdpConfig, tx_cfg: UdpConfig, gro: bool) {
    let rx = UdpSocket::bind(&UdpConfig { gro, ..rx_cfg }).unwrap();
    let tx = UdpSocket::bind(&tx_cfg).unwrap();
    let data = payload(10, 1200, 500);
    let dst = loopback_v4(rx.local_addr().port());
    assert_eq!(tx.send_gso(&data, 1200, dst).unwrap(), data.len());
    let got = recv_until(&rx, data.len(), Duration::from_secs(2));
    let (all, datagrams) = reassemble(&got);
    assert_eq!(all, data, "payload bytes differ");
    assert_eq!(datagrams, 11);
    let tx_port = tx.local_addr().port();
    for (m, _) in &got {
        // Source normalised to plain IPv4 even on a dual-stack receiver.
        assert_eq!(m.src, loopback_v4(tx_port));
        assert!(!m.truncated);
        match m.gro_segment {
            Some(s) => {
                assert!(gro, "GRO cmsg on a socket without UDP_GRO");
                assert_eq!(s, 1200);
            }
            None => assert!(m.len <= 1200),
        }
    }
    if gro {
        // Over loopback the GSO packet stays whole, so a GRO receiver gets it coalesced.
        assert!(
            got.len() < 11,
            "expected coalescing, got {} buffers",
            got.len()
        );
    } else {
        assert_eq!(got.len(), 11);
    }
}

#[test]
fn gso_send_received_coalesced_by_gro_receiver() {
    gso_to_gro(cfg_v4(), cfg_v4(), true);
}

#[test]
fn gso_send_received_as_single_datagrams_without_gro() {
    gso_to_gro(cfg_v4(), cfg_v4(), false);
}

#[test]
fn gso_between_dual_stack_sockets_over_mapped_v4() {
    gso_to_gro(cfg_dual(), cfg_dual(), true);
}

#[test]
fn gso_over_ipv6_loopback() {
    let rx = UdpSocket::bind(&cfg_dual()).unwrap();
    let tx = UdpSocket::bind(&cfg_dual()).unwrap();
    let data = payload(20, 1300, 1);
    let dst: SocketAddr = format!("[::1]:{}", rx.local_addr().port()).parse().unwrap();
    assert_eq!(tx.send_segments(&data, 1300, dst).unwrap(), 21);
    let got = recv_until(&rx, data.len(), Duration::from_secs(2));
    let (all, n) = reassemble(&got);
    assert_eq!(all, data);
    assert_eq!(n, 21);
    let want_src: SocketAddr = format!("[::1]:{}", tx.local_addr().port()).parse().unwrap();
    assert!(got.iter().all(|(m, _)| m.src == want_src));
}

#[test]
fn send_segments_without_gso_sends_each_datagram() {
    let rx = UdpSocket::bind(&UdpConfig {
        gro: false,
        ..cfg_v4()
    })
    .unwrap();
    let tx = UdpSocket::bind(&cfg_v4()).unwrap();
    tx.disable_gso();
    let data = payload(10, 1200, 500);
    let dst = loopback_v4(rx.local_addr().port());
    assert_eq!(tx.send_segments(&data, 1200, dst).unwrap(), 11);
    assert_eq!(tx.gso_fallbacks(), 0);
    let got = recv_until(&rx, data.len(), Duration::from_secs(2));
    assert_eq!(got.len(), 11);
    assert_eq!(reassemble(&got).0, data);
    // One short segment, an empty datagram, and bad sizes.
    assert_eq!(tx.send_segments(&data[..100], 1200, dst).unwrap(), 1);
    assert_eq!(tx.send_segments(&[], 1200, dst).unwrap(), 1);
    assert!(tx.send_segments(&data, 0, dst).is_err());
    assert!(tx.send_gso(&data, 0, dst).is_err());
    let tx2 = UdpSocket::bind(&cfg_v4()).unwrap();
    assert!(tx2.send_gso(&payload(65, 100, 0), 100, dst).is_err());
}

#[test]
fn recvmmsg_batches_keep_sources_and_payloads() {
    let rx = UdpSocket::bind(&UdpConfig {
        gro: false,
        ..cfg_dual()
    })
    .unwrap();
    let a = UdpSocket::bind(&cfg_v4()).unwrap();
    let b = UdpSocket::bind(&cfg_dual()).unwrap();
    let port = rx.local_addr().port();
    let mut sent = Vec::new();
    for i in 0..20u8 {
        let msg: Vec<u8> = (0..(10 + usize::from(i) * 50))
            .map(|j| i ^ j as u8)
            .collect();
        let (s, dst) = if i % 2 == 0 {
            (&a, loopback_v4(port))
        } else {
            (&b, format!("[::1]:{port}").parse().unwrap())
        };
        s.send_to(&msg, dst).unwrap();
        sent.push((s.local_addr().port(), msg));
    }
    let total: usize = sent.iter().map(|(_, m)| m.len()).sum();
    let got = recv_until(&rx, total, Duration::from_secs(2));
    assert_eq!(got.len(), 20);
    // recv_until used batches of 8: more than one datagram per syscall must have happened.
    for ((m, bytes), (port, msg)) in got.iter().zip(&sent) {
        assert_eq!(bytes, msg);
        assert_eq!(m.src.port(), *port);
        assert_eq!(m.gro_segment, None);
        match m.src {
            SocketAddr::V4(v4) => assert_eq!(*v4.ip(), Ipv4Addr::LOCALHOST),
            SocketAddr::V6(v6) => assert_eq!(v6.ip().to_string(), "::1"),
        }
    }
}

#[test]
fn recvmmsg_marks_truncation_and_would_block() {
    use uring_tunnel_engine::sys::udp::{RecvHeaders, RecvMeta};
    let rx = UdpSocket::bind(&cfg_v4()).unwrap();
    let tx = UdpSocket::bind(&cfg_v4()).unwrap();
    let mut hdrs = RecvHeaders::new(4);
    let mut bufs = [[0u8; 16]; 4];
    let mut metas = [RecvMeta::default(); 4];
    let e = rx
        .recv_batch(&mut hdrs, bufs.iter_mut().map(|b| &mut b[..]), &mut metas)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    tx.send_to(&[9u8; 40], rx.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let n = rx
        .recv_batch(&mut hdrs, bufs.iter_mut().map(|b| &mut b[..]), &mut metas)
        .unwrap();
    assert_eq!(n, 1);
    assert!(metas[0].truncated);
    assert_eq!(metas[0].len, 16);
}

#[test]
fn reuseport_shards_share_a_port_and_split_flows() {
    let shards = UdpSocket::bind_shards(
        &UdpConfig {
            gro: false,
            ..cfg_v4()
        },
        2,
    )
    .unwrap();
    let port = shards[0].local_addr().port();
    assert_ne!(port, 0);
    assert!(shards.iter().all(|s| s.local_addr().port() == port));
    let clients: Vec<UdpSocket> = (0..32)
        .map(|_| UdpSocket::bind(&cfg_v4()).unwrap())
        .collect();
    for (i, c) in clients.iter().enumerate() {
        c.send_to(&[i as u8; 8], loopback_v4(port)).unwrap();
    }
    let mut seen = HashSet::new();
    let mut per_shard = [0usize; 2];
    for _round in 0..3 {
        for (k, s) in shards.iter().enumerate() {
            for (m, b) in recv_until(s, usize::MAX, Duration::from_millis(100)) {
                assert_eq!(b, vec![b[0]; 8]);
                assert_eq!(m.src.port(), clients[usize::from(b[0])].local_addr().port());
                assert!(seen.insert(b[0]), "datagram {} twice", b[0]);
                per_shard[k] += 1;
            }
        }
    }
    assert_eq!(seen.len(), 32);
    // 32 random 4-tuples over 2 sockets: all on one has probability 2^-31.
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
}
