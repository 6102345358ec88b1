//! The epoll backend: the same [`Datapath`] driven by readiness and plain syscalls.
//!
//! TUN: `read` per packet (each may be a 64 KiB super-packet) until `EAGAIN` or a batch limit;
//! coalesced `write`s. UDP: `recvmmsg` with `UDP_GRO`, `sendmsg` with `UDP_SEGMENT` (GSO). This
//! is the strong baseline the io_uring backend is compared with: it already batches and
//! coalesces everything the kernel lets it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Acquire;
use std::time::Duration;

use crate::batch::SendBatch;
use crate::datapath::{Control, Datapath, TUN_READ_SIZE, TunSink, UdpSink};
use crate::ratelog::{RateLimit, WARN_INTERVAL};
use crate::stats::{DropReason, ShardStats};
use crate::sys::epoll::{self, Epoll, Event};
use crate::sys::udp::{RecvHeaders, RecvMeta, UdpSocket};

const TOKEN_TUN: u64 = 1;
const TOKEN_UDP: u64 = 2;
/// TUN reads per readiness event before looking at the UDP side again.
const TUN_BATCH: usize = 64;
/// Datagram buffers per `recvmmsg`.
const RECV_BATCH: usize = 16;
/// Each receive buffer holds a whole GRO train.
const RECV_BUF: usize = 65536;

struct EpollUdp<'a> {
    sock: &'a UdpSocket,
    batch: SendBatch,
    stats: &'a ShardStats,
    warn_send: RateLimit,
}

impl UdpSink for EpollUdp<'_> {
    fn reserve(&mut self, dst: SocketAddr, len: usize) -> Option<&mut [u8]> {
        if self.batch.check(dst, len).is_err() {
            self.flush();
        }
        self.batch.slot(dst, len).ok()
    }

    fn commit(&mut self, dst: SocketAddr, len: usize) {
        self.batch.commit(dst, len);
    }

    fn flush(&mut self) {
        let Some(dst) = self.batch.destination() else {
            return;
        };
        let seg = self.batch.segment_size() as u16;
        let count = self.batch.count();
        let before = self.sock.gso_fallbacks();
        let calls = if self.sock.gso_for(usize::from(seg)) && count > 1 {
            1
        } else {
            count
        };
        match self.sock.send_segments(self.batch.bytes(), seg, dst) {
            Ok(sent) => {
                ShardStats::add(&self.stats.udp_tx_datagrams, sent as u64);
                ShardStats::add(&self.stats.udp_tx_bytes, self.batch.bytes().len() as u64);
                if sent < count {
                    ShardStats::add(
                        &self.stats.drops[DropReason::IoError as usize],
                        (count - sent) as u64,
                    );
                }
            }
            Err(e) => {
                ShardStats::add(
                    &self.stats.drops[DropReason::IoError as usize],
                    count as u64,
                );
                if let Some(suppressed) = self.warn_send.check() {
                    tracing::warn!(%dst, error = %e, suppressed, "UDP send failed");
                }
            }
        }
        self.stats.record_sends(calls, count);
        let fell_back = self.sock.gso_fallbacks() - before;
        ShardStats::add(&self.stats.gso_fallbacks, fell_back);
        ShardStats::add(&self.stats.udp_sends, calls as u64);
        ShardStats::add(&self.stats.syscalls, calls as u64);
        self.batch.clear();
    }

    fn send_one(&mut self, datagram: &[u8], dst: SocketAddr) {
        ShardStats::add(&self.stats.syscalls, 1);
        ShardStats::add(&self.stats.udp_sends, 1);
        self.stats.record_sends(1, 1);
        match self.sock.send_to(datagram, dst) {
            Ok(_) => {
                let n = datagram.len() as u64;
                ShardStats::add(&self.stats.udp_tx_datagrams, 1);
                ShardStats::add(&self.stats.udp_tx_bytes, n);
                ShardStats::add(&self.stats.udp_tx_control_datagrams, 1);
                ShardStats::add(&self.stats.udp_tx_control_bytes, n);
            }
            Err(_) => self.stats.drop_packet(DropReason::IoError),
        }
    }
}

struct EpollTun<'a> {
    fd: BorrowedFd<'a>,
    stats: &'a ShardStats,
    warn_write: RateLimit,
}

impl TunSink for EpollTun<'_> {
    fn write(&mut self, buf: &[u8]) {
        ShardStats::add(&self.stats.syscalls, 1);
        if let Err(e) = epoll::write(self.fd, buf) {
            self.stats.drop_packet(DropReason::IoError);
            if let Some(suppressed) = self.warn_write.check() {
                tracing::warn!(error = %e, suppressed, "TUN write failed");
            }
        }
    }
}

/// Runs one shard until `shared.stop` is set. `tun` must be nonblocking.
pub(crate) fn run(
    dp: &mut Datapath,
    tun: BorrowedFd<'_>,
    sock: &UdpSocket,
    control: &impl Control,
    clock: &impl Fn() -> Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    let stats = Arc::clone(dp.stats_arc());
    let ep = Epoll::new()?;
    let flags = epoll::READABLE | epoll::EDGE;
    ep.add(tun, flags, TOKEN_TUN)?;
    ep.add(sock.as_fd(), flags, TOKEN_UDP)?;
    let mut events = [Event::EMPTY; 4];
    let mut udp = EpollUdp {
        sock,
        batch: SendBatch::new(),
        stats: &stats,
        warn_send: RateLimit::new(WARN_INTERVAL),
    };
    let mut tun_sink = EpollTun {
        fd: tun,
        stats: &stats,
        warn_write: RateLimit::new(WARN_INTERVAL),
    };
    let mut read_buf = vec![0u8; TUN_READ_SIZE].into_boxed_slice();
    let mut hdrs = RecvHeaders::new(RECV_BATCH);
    let mut recv_bufs: Vec<Box<[u8]>> = (0..RECV_BATCH)
        .map(|_| vec![0u8; RECV_BUF].into_boxed_slice())
        .collect();
    let mut metas = [RecvMeta::default(); RECV_BATCH];
    // Edge-triggered: start as if both were ready so nothing queued before is missed.
    let mut tun_ready = true;
    let mut udp_ready = true;
    while !stop.load(Acquire) {
        if !tun_ready && !udp_ready {
            ShardStats::add(&stats.syscalls, 1);
            let n = ep.wait(&mut events, Some(Duration::from_millis(100)))?;
            for ev in &events[..n] {
                match ev.token() {
                    TOKEN_TUN => tun_ready = true,
                    TOKEN_UDP => udp_ready = true,
                    _ => {}
                }
            }
            continue;
        }
        if tun_ready {
            let now = clock();
            for _ in 0..TUN_BATCH {
                ShardStats::add(&stats.syscalls, 1);
                match epoll::read(tun, &mut read_buf) {
                    Ok(0) => {
                        tun_ready = false;
                        break;
                    }
                    Ok(n) => dp.outbound(&read_buf[..n], now, &mut udp),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tun_ready = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        stats.drop_packet(DropReason::IoError);
                        tun_ready = false;
                        break;
                    }
                }
            }
            udp.flush();
        }
        if udp_ready {
            let now = clock();
            ShardStats::add(&stats.syscalls, 1);
            match sock.recv_batch(
                &mut hdrs,
                recv_bufs.iter_mut().map(|b| &mut b[..]),
                &mut metas,
            ) {
                Ok(n) => {
                    for (buf, meta) in recv_bufs.iter_mut().zip(&metas[..n]) {
                        if meta.truncated {
                            stats.drop_packet(DropReason::Malformed);
                            continue;
                        }
                        let seg = meta.gro_segment.map_or(0, usize::from);
                        dp.inbound(
                            &mut buf[..meta.len],
                            seg,
                            meta.src,
                            now,
                            control,
                            &mut udp,
                            &mut tun_sink,
                        );
                    }
                    if n < RECV_BATCH {
                        udp_ready = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => udp_ready = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    stats.drop_packet(DropReason::IoError);
                    udp_ready = false;
                }
            }
            dp.flush_inbound(&mut tun_sink);
            udp.flush();
        }
    }
    Ok(())
}
