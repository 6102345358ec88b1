//! io_uring part of the syscall layer on loopback and pipes: feature probe, multishot RECVMSG
//! with a buffer ring (sources, payloads, GRO, ENOBUFS re-arm), READ_MULTISHOT, SENDMSG with a
//! GSO cmsg, WRITE, bounded waits.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{cfg_dual, cfg_v4, payload, reassemble, recv_until};
use uring_tunnel_engine::sys::epoll::{pipe, read, write};
use uring_tunnel_engine::sys::udp::{UdpConfig, UdpSocket};
use uring_tunnel_engine::sys::uring::{
    BufRing, Cqe, RECVMSG_OVERHEAD, RingConfig, SendPool, Uring, UringError, UserData,
    missing_requirements, parse_recvmsg,
};

const RECV: u8 = 1;
const READ: u8 = 2;
const SEND: u8 = 3;
const WRITE: u8 = 4;

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = rel
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Waits (bounded) and collects CQEs until `pred` says enough or `limit` passes.
fn collect(ring: &mut Uring, limit: Duration, mut enough: impl FnMut(&[Cqe]) -> bool) -> Vec<Cqe> {
    let mut all = Vec::new();
    let mut buf = [Cqe::default(); 64];
    let deadline = Instant::now() + limit;
    while !enough(&all) && Instant::now() < deadline {
        ring.submit_and_wait(1, Some(Duration::from_millis(20)), None)
            .unwrap();
        let n = ring.reap(&mut buf);
        all.extend_from_slice(&buf[..n]);
    }
    all
}

#[test]
fn ring_features_are_sane() {
    let ring = Uring::new(&RingConfig::default()).unwrap();
    let f = *ring.features();
    eprintln!("features: {f}");
    assert!(f.ext_arg && f.nodrop && f.fast_poll, "{f}");
    assert!(f.sq_entries >= 256 && f.cq_entries >= 4096, "{f}");
    assert!(
        !(f.defer_taskrun && f.coop_taskrun),
        "exclusive modes both set: {f}"
    );
    assert!(
        !f.defer_taskrun || f.single_issuer,
        "DEFER_TASKRUN needs SINGLE_ISSUER: {f}"
    );
    if kernel_at_least(6, 12) {
        assert!(
            f.single_issuer && f.defer_taskrun && f.taskrun_flag && f.submit_all,
            "{f}"
        );
        assert!(f.min_timeout, "{f}");
        assert!(f.to_string().contains("defer_taskrun"));
    }
    let plain = Uring::new(&RingConfig {
        defer_taskrun: false,
        ..RingConfig::default()
    })
    .unwrap();
    let p = *plain.features();
    assert!(!p.defer_taskrun);
    if kernel_at_least(6, 1) {
        assert!(p.single_issuer && p.coop_taskrun && p.taskrun_flag, "{p}");
    }
}

#[test]
fn missing_opcodes_are_named() {
    assert!(missing_requirements(|_| true, true).is_empty());
    let m = missing_requirements(|code| code != io_uring::opcode::ReadMulti::CODE, false);
    assert_eq!(m.len(), 2, "{m:?}");
    let e = UringError::Missing(m).to_string();
    assert!(e.contains("READ_MULTISHOT") && e.contains("6.7"), "{e}");
    assert!(e.contains("EXT_ARG"), "{e}");
    let all = missing_requirements(|_| false, true);
    assert_eq!(all.len(), 6);
    assert!(all.iter().any(|s| s.starts_with("SENDMSG")));
}

#[test]
fn user_data_round_trip() {
    let u = UserData::new(SEND, 46, 0xdead_beef);
    assert_eq!((u.op(), u.aux(), u.index()), (SEND, 46, 0xdead_beef));
    assert_eq!(UserData::from_raw(u.raw()), u);
    let v = UserData::new(255, UserData::AUX_MAX + 5, u32::MAX);
    assert_eq!((v.op(), v.aux(), v.index()), (255, 4, u32::MAX));
}

#[test]
fn buf_ring_validates_and_tracks_ownership() {
    let ring = Uring::new(&RingConfig::default()).unwrap();
    assert!(ring.register_buf_ring(1, 3, 4096).is_err());
    assert!(ring.register_buf_ring(1, 4, 0).is_err());
    let mut br = ring.register_buf_ring(1, 4, 4096).unwrap();
    assert_eq!(br.taken(), 0);
    // Nothing is held by the caller yet: no access, no recycling.
    assert!(br.buf(0).is_none());
    assert!(br.buf_mut(3).is_none());
    assert!(!br.recycle(0));
    // A CQE without a buffer, or with an out-of-range id, yields nothing.
    assert_eq!(br.take(&Cqe::default()), None);
    assert_eq!(
        br.take(&Cqe {
            flags: 1 | (9 << 16),
            ..Cqe::default()
        }),
        None
    );
    // The same group id cannot be registered twice...
    assert!(ring.register_buf_ring(1, 4, 4096).is_err());
    drop(br);
    // ...but can after the drop unregistered it.
    let br2: BufRing = ring.register_buf_ring(1, 4, 4096).unwrap();
    assert_eq!(br2.bgid(), 1);
    let other = Uring::new(&RingConfig::default()).unwrap();
    let (r, _w) = pipe().unwrap();
    let mut other = other;
    assert!(
        other.push_read_multi(r.as_fd(), &br2, 0).is_err(),
        "group of another ring"
    );
}

/// Reaps multishot RECVMSG CQEs until `want_bytes` payload bytes arrived (bounded), taking,
/// parsing and recycling each buffer.
fn recv_multishot(
    ring: &mut Uring,
    br: &mut BufRing,
    want_bytes: usize,
) -> Vec<(SocketAddr, Option<u16>, Vec<u8>)> {
    let mut got = Vec::new();
    let mut bytes = 0;
    let mut buf = [Cqe::default(); 16];
    let deadline = Instant::now() + Duration::from_secs(3);
    while bytes < want_bytes && Instant::now() < deadline {
        ring.submit_and_wait(1, Some(Duration::from_millis(20)), None)
            .unwrap();
        let n = ring.reap(&mut buf);
        for c in &buf[..n] {
            assert_eq!(UserData::from_raw(c.user_data).op(), RECV);
            assert!(c.res >= 0 && c.more(), "{c:?}");
            let bid = br.take(c).expect("data CQE without a buffer");
            let view = parse_recvmsg(&br.buf(bid).unwrap()[..c.res as usize]).unwrap();
            assert!(!view.meta.truncated);
            bytes += view.payload.len();
            got.push((view.meta.src, view.meta.gro_segment, view.payload.to_vec()));
            assert!(br.recycle(bid));
        }
    }
    got
}

#[test]
fn multishot_recvmsg_gets_sources_and_payloads() {
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let rx = UdpSocket::bind(&UdpConfig {
        gro: false,
        ..cfg_dual()
    })
    .unwrap();
    let mut br = ring
        .register_buf_ring(7, 8, RECVMSG_OVERHEAD + 2048)
        .unwrap();
    ring.push_recvmsg_multi(rx.as_fd(), &br, UserData::new(RECV, 0, 0).raw())
        .unwrap();
    ring.submit().unwrap();
    let a = UdpSocket::bind(&cfg_v4()).unwrap();
    let b = UdpSocket::bind(&cfg_dual()).unwrap();
    let port = rx.local_addr().port();
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let mut buf = [Cqe::default(); 16];
    // 3 rounds of 6 datagrams through 8 buffers: only works because each buffer is recycled
    // (a round sent at once is drained by the kernel in one go, so a round must fit the ring).
    for round in 0..3u8 {
        for i in round * 6..round * 6 + 6 {
            let msg = vec![i; 100 + usize::from(i) * 10];
            if i % 2 == 0 {
                a.send_to(&msg, v4).unwrap();
                sent.push((
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.local_addr().port()),
                    msg,
                ));
            } else {
                b.send_to(&msg, v6).unwrap();
                sent.push((
                    format!("[::1]:{}", b.local_addr().port()).parse().unwrap(),
                    msg,
                ));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.len() < sent.len() && Instant::now() < deadline {
            ring.submit_and_wait(1, Some(Duration::from_millis(20)), None)
                .unwrap();
            let n = ring.reap(&mut buf);
            for c in &buf[..n] {
                assert!(c.res >= 0, "error CQE {c:?}");
                assert!(c.more(), "multishot ended early: {c:?}");
                let bid = br.take(c).unwrap();
                let view = parse_recvmsg(&br.buf(bid).unwrap()[..c.res as usize]).unwrap();
                got.push((view.meta.src, view.payload.to_vec()));
                assert_eq!(view.meta.gro_segment, None);
                assert!(br.recycle(bid));
            }
        }
    }
    assert_eq!(got, sent);
    assert_eq!(br.taken(), 0);
}

#[test]
fn multishot_recvmsg_rearms_after_enobufs() {
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let rx = UdpSocket::bind(&UdpConfig {
        gro: false,
        ..cfg_v4()
    })
    .unwrap();
    let tx = UdpSocket::bind(&cfg_v4()).unwrap();
    let mut br = ring
        .register_buf_ring(3, 4, RECVMSG_OVERHEAD + 1500)
        .unwrap();
    let ud = UserData::new(RECV, 0, 9).raw();
    ring.push_recvmsg_multi(rx.as_fd(), &br, ud).unwrap();
    ring.submit().unwrap();
    for i in 0..10u8 {
        tx.send_to(&[i; 64], rx.local_addr()).unwrap();
    }
    let mut order = Vec::new();
    let mut rearms = 0;
    let mut held = Vec::new();
    let mut buf = [Cqe::default(); 16];
    let deadline = Instant::now() + Duration::from_secs(3);
    while order.len() < 10 && Instant::now() < deadline {
        ring.submit_and_wait(1, Some(Duration::from_millis(20)), None)
            .unwrap();
        let n = ring.reap(&mut buf);
        for c in &buf[..n] {
            assert_eq!(c.user_data, ud);
            if c.res >= 0 {
                let bid = br.take(c).unwrap();
                let view = parse_recvmsg(&br.buf(bid).unwrap()[..c.res as usize]).unwrap();
                assert_eq!(view.payload, &[view.payload[0]; 64][..]);
                assert_eq!(view.meta.src, tx.local_addr());
                order.push(view.payload[0]);
                // Hold the buffers: the ring runs dry after 4 datagrams.
                held.push(bid);
            }
            if c.multishot_ended() {
                assert!(c.is_enobufs(), "ended for another reason: {c:?}");
                assert_eq!(br.taken(), 4);
                rearms += 1;
                for bid in held.drain(..) {
                    assert!(br.recycle(bid));
                }
                ring.push_recvmsg_multi(rx.as_fd(), &br, ud).unwrap();
            }
        }
    }
    assert_eq!(
        order,
        (0..10).collect::<Vec<u8>>(),
        "lost or reordered datagrams"
    );
    assert!(rearms >= 2, "expected ENOBUFS re-arms, got {rearms}");
}

#[test]
fn multishot_recvmsg_reports_gro_segments() {
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let rx = UdpSocket::bind(&cfg_dual()).unwrap();
    assert!(rx.info().gro);
    let tx = UdpSocket::bind(&cfg_v4()).unwrap();
    let mut br = ring
        .register_buf_ring(2, 4, RECVMSG_OVERHEAD + 65536)
        .unwrap();
    ring.push_recvmsg_multi(rx.as_fd(), &br, UserData::new(RECV, 0, 0).raw())
        .unwrap();
    ring.submit().unwrap();
    let data = payload(10, 1200, 500);
    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), rx.local_addr().port());
    assert_eq!(tx.send_segments(&data, 1200, dst).unwrap(), 11);
    let got = recv_multishot(&mut ring, &mut br, data.len());
    let mut all = Vec::new();
    let mut coalesced = false;
    for (src, gro, bytes) in &got {
        assert_eq!(*src, tx.local_addr());
        if let Some(s) = gro {
            assert_eq!(*s, 1200);
            coalesced = true;
        }
        all.extend_from_slice(bytes);
    }
    assert_eq!(all, data);
    assert!(coalesced, "GRO receiver got no coalesced buffer");
}

#[test]
fn read_multishot_on_a_pipe() {
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let (r, w) = pipe().unwrap();
    let mut br = ring.register_buf_ring(4, 4, 4096).unwrap();
    let ud = UserData::new(READ, 0, 1).raw();
    ring.push_read_multi(r.as_fd(), &br, ud).unwrap();
    ring.submit().unwrap();
    let mut chunks = Vec::new();
    for i in 0..6u8 {
        let msg = vec![b'a' + i; 100 * (usize::from(i) + 1)];
        assert_eq!(write(w.as_fd(), &msg).unwrap(), msg.len());
        let cqes = collect(&mut ring, Duration::from_secs(2), |c| !c.is_empty());
        assert_eq!(cqes.len(), 1, "{cqes:?}");
        let c = cqes[0];
        assert_eq!(c.user_data, ud);
        assert!(c.more());
        let bid = br.take(&c).unwrap();
        chunks.push(br.buf(bid).unwrap()[..c.res as usize].to_vec());
        // Writable in place while held.
        br.buf_mut(bid).unwrap()[0] = 0;
        assert!(br.recycle(bid));
        assert_eq!(chunks.last().unwrap(), &msg);
    }
    drop(w);
    let cqes = collect(&mut ring, Duration::from_secs(2), |c| !c.is_empty());
    assert_eq!(cqes.len(), 1);
    assert_eq!(cqes[0].res, 0, "EOF");
    assert!(cqes[0].multishot_ended());
}

// The unsafe-fn SENDMSG/WRITE helpers are tested inside `sys::uring` (unsafe stays in `sys`);
// their safe, slot-owning forms are tested here.

#[test]
fn send_pool_sendmsg_with_gso_locks_the_slot() {
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let rx = UdpSocket::bind(&cfg_v4()).unwrap();
    let tx = UdpSocket::bind(&cfg_dual()).unwrap();
    let mut pool = SendPool::new(4, 65536).unwrap();
    let data = payload(10, 1200, 500);
    pool.buf_mut(2).unwrap()[..data.len()].copy_from_slice(&data);
    let ud = UserData::new(SEND, 11, 2).raw();
    let dst = rx.local_addr();
    ring.push_sendmsg_slot(
        tx.as_fd(),
        &mut pool,
        2,
        data.len(),
        dst,
        tx.family(),
        Some(1200),
        ud,
    )
    .unwrap();
    assert!(pool.is_busy(2) && pool.in_flight() == 1);
    assert!(pool.buf_mut(2).is_none() && pool.buf(2).is_none());
    assert!(
        ring.push_sendmsg_slot(tx.as_fd(), &mut pool, 2, 10, dst, tx.family(), None, ud)
            .is_err()
    );
    assert!(
        ring.push_write_slot(tx.as_fd(), &mut pool, 9, 10, ud)
            .is_err()
    );
    assert!(
        ring.push_write_slot(tx.as_fd(), &mut pool, 1, 65537, ud)
            .is_err()
    );
    let cqes = collect(&mut ring, Duration::from_secs(2), |c| !c.is_empty());
    assert_eq!(cqes.len(), 1);
    assert_eq!((cqes[0].user_data, cqes[0].res as usize), (ud, data.len()));
    let u = UserData::from_raw(cqes[0].user_data);
    assert!(pool.complete(u.index()));
    assert!(!pool.complete(u.index()));
    assert!(pool.buf_mut(2).is_some());
    let got = recv_until(&rx, data.len(), Duration::from_secs(2));
    let (all, n) = reassemble(&got);
    assert_eq!(all, data);
    assert_eq!(n, 11);
}

#[test]
fn zero_copy_write_from_a_ring_buffer() {
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let (r1, w1) = pipe().unwrap();
    let (r2, w2) = pipe().unwrap();
    let mut br = ring.register_buf_ring(6, 2, 4096).unwrap();
    ring.push_read_multi(r1.as_fd(), &br, UserData::new(READ, 0, 0).raw())
        .unwrap();
    ring.submit().unwrap();
    write(w1.as_fd(), b"0123456789").unwrap();
    let c = collect(&mut ring, Duration::from_secs(2), |c| !c.is_empty())[0];
    let bid = br.take(&c).unwrap();
    // "Decrypt in place": change the bytes, then write a sub-range without copying.
    br.buf_mut(bid).unwrap()[2..6].copy_from_slice(b"ABCD");
    let ud = UserData::new(WRITE, 0, u32::from(bid)).raw();
    assert!(
        ring.push_write_from_ring(w2.as_fd(), &mut br, bid, 4090, 10, ud)
            .is_err()
    );
    ring.push_write_from_ring(w2.as_fd(), &mut br, bid, 1, 6, ud)
        .unwrap();
    assert_eq!(br.writing(), 1);
    assert!(
        br.buf(bid).is_none() && !br.recycle(bid),
        "locked while writing"
    );
    let c = collect(&mut ring, Duration::from_secs(2), |c| !c.is_empty())[0];
    assert_eq!((c.user_data, c.res), (ud, 6));
    assert!(br.write_done(bid));
    assert!(br.recycle(bid));
    let mut back = [0u8; 16];
    assert_eq!(read(r2.as_fd(), &mut back).unwrap(), 6);
    assert_eq!(&back[..6], b"1ABCD6");
}

#[test]
fn waits_are_bounded() {
    let mut ring = Uring::new(&RingConfig::default()).unwrap();
    let t = Instant::now();
    ring.submit_and_wait(1, Some(Duration::from_millis(50)), None)
        .unwrap();
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(45), "{waited:?}");
    assert!(waited < Duration::from_millis(1000), "{waited:?}");

    // Min-timeout: ask for a batch of 8 but return soon after the first completion.
    if !ring.features().min_timeout {
        eprintln!("no IORING_FEAT_MIN_TIMEOUT on this kernel: min-wait part not run");
        return;
    }
    let (r, w) = pipe().unwrap();
    let br = ring.register_buf_ring(9, 4, 256).unwrap();
    ring.push_read_multi(r.as_fd(), &br, 1).unwrap();
    ring.submit().unwrap();
    write(w.as_fd(), b"x").unwrap();
    let t = Instant::now();
    ring.submit_and_wait(
        8,
        Some(Duration::from_millis(2000)),
        Some(Duration::from_millis(10)),
    )
    .unwrap();
    let waited = t.elapsed();
    let mut buf = [Cqe::default(); 8];
    assert_eq!(ring.reap(&mut buf), 1);
    assert!(
        waited < Duration::from_millis(500),
        "min-wait ignored: {waited:?}"
    );
}
