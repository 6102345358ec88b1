//! The io_uring backend: the same [`Datapath`] driven by one ring per shard.
//!
//! - TUN reads: ONE multishot `READ` over a provided-buffer ring (each buffer holds a 64 KiB
//!   super-packet with its virtio-net header); each buffer goes back to the kernel right after
//!   [`Datapath::outbound`] consumed it. Never several plain reads in flight on the TUN fd.
//! - UDP receive: one multishot `RECVMSG` over a second buffer ring, `UDP_GRO` trains decrypted
//!   in place in the provided buffer.
//! - UDP send: each GSO batch is built directly in a [`SendPool`] slot and sent with one
//!   `SENDMSG` (`UDP_SEGMENT` cmsg); the slot stays locked until its CQE.
//! - TUN write: each coalesced super-packet is copied into a pool slot and written with `WRITE`.
//!
//! One `io_uring_enter` per loop iteration submits the sends and writes queued by the previous
//! iteration, and waits for new work: bounded by [`WAIT_TIMEOUT`] (so `stop` is noticed) and,
//! while the shard is busy and the kernel has min-timeout waits, batched for at most
//! [`MIN_WAIT`] so that batches form without letting the TUN queue (500 packets) overflow. At a
//! low rate the wait returns on the first completion (no added latency).
//!
//! Multishot requests end (CQE without `F_MORE`, e.g. `ENOBUFS` when every buffer was out) and
//! are re-armed at the end of the iteration, once all buffers were recycled.
//!
//! The ring, its completion queue copy and both sinks live on the shard thread; the two sinks
//! share the ring through a `RefCell` (no lock), since [`Datapath::inbound`] needs both at once.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Acquire};
use std::time::Duration;

use crate::batch::{BatchLayout, MAX_GSO_BYTES, MAX_SEGMENTS};
use crate::datapath::{Control, Datapath, TUN_READ_SIZE, TunSink, UdpSink};
use crate::ratelog::{RateLimit, WARN_INTERVAL};
use crate::stats::{DropReason, ShardStats};
use crate::sys::epoll;
use crate::sys::udp::UdpSocket;
use crate::sys::uring::{
    BufRing, Cqe, RECVMSG_OVERHEAD, RingConfig, SendPool, Uring, UringFeatures, UserData,
    parse_recvmsg,
};

const OP_TUN_READ: u8 = 1;
const OP_UDP_RECV: u8 = 2;
const OP_UDP_SEND: u8 = 3;
const OP_TUN_WRITE: u8 = 4;

const BGID_TUN: u16 = 1;
const BGID_UDP: u16 = 2;

/// Payload room of a UDP receive buffer: the largest GRO train.
const UDP_PAYLOAD: usize = 65536;

/// Buffer and slot counts of a shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// TUN read buffers (power of two; each [`TUN_READ_SIZE`] bytes).
    pub(crate) tun_bufs: u16,
    /// UDP receive buffers (power of two; a whole GRO train each).
    pub(crate) udp_bufs: u16,
    /// GSO send slots.
    pub(crate) udp_slots: u32,
    /// TUN write slots.
    pub(crate) tun_slots: u32,
}

impl Default for Params {
    /// 16 MiB of TUN buffers, 8 MiB of UDP buffers, 4 + 4 MiB of send slots per shard.
    fn default() -> Self {
        Self {
            tun_bufs: 256,
            udp_bufs: 128,
            udp_slots: 64,
            tun_slots: 64,
        }
    }
}
/// Longest wait in one `io_uring_enter`: `stop` is noticed within this time.
pub(crate) const WAIT_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a busy shard waits for a batch to fill (kernel ≥ 6.12 min-timeout waits).
pub(crate) const MIN_WAIT: Duration = Duration::from_micros(250);
/// Receive completions in the last iteration from which the shard counts as busy and batches.
const BUSY_THRESHOLD: usize = 4;
/// Largest batch to wait for.
const MAX_WANT: usize = 64;
/// Completions copied out of the CQ and not yet handled, at most.
const QUEUE_CAP: usize = 16384;
/// Consecutive failed TUN reads after which the shard gives up (e.g. the fd went bad).
const MAX_READ_ERRORS: u32 = 64;

/// The ring and the completions copied out of it, shared by the loop and both sinks.
struct Ring {
    uring: Uring,
    queue: VecDeque<Cqe>,
    stats: Arc<ShardStats>,
}

impl Ring {
    /// One `io_uring_enter`: submits what is queued, waits as asked (bounded).
    fn enter(
        &mut self,
        want: usize,
        timeout: Duration,
        min_wait: Option<Duration>,
    ) -> io::Result<()> {
        ShardStats::add(&self.stats.syscalls, 1);
        self.uring.submit_and_wait(want, Some(timeout), min_wait)
    }

    /// Copies ready completions into the queue (no syscall); returns how many.
    fn reap(&mut self) -> usize {
        let mut tmp = [Cqe::default(); 64];
        let mut total = 0;
        loop {
            let spare = (QUEUE_CAP - self.queue.len()).min(tmp.len());
            if spare == 0 {
                return total;
            }
            let n = self.uring.reap(&mut tmp[..spare]);
            self.queue.extend(tmp[..n].iter().copied());
            total += n;
            if n < spare {
                return total;
            }
        }
    }

    /// Waits briefly for completions and hands those of operation `op` to `f` right away
    /// (the others stay queued, in order, for the loop). For a sink out of slots.
    fn wait_for(&mut self, op: u8, mut f: impl FnMut(Cqe)) -> io::Result<()> {
        self.enter(1, Duration::from_millis(1), None)?;
        self.reap();
        self.queue.retain(|c| {
            if UserData::from_raw(c.user_data).op() == op {
                f(*c);
                false
            } else {
                true
            }
        });
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    dst: SocketAddr,
    seg: u16,
    len: usize,
    count: usize,
}

/// Where the batch being filled lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    None,
    Slot(u32),
    /// No slot was free: a private buffer sent synchronously.
    Private,
}

/// GSO batches in [`SendPool`] slots, sent with io_uring `SENDMSG`.
struct UringUdp<'a> {
    ring: &'a RefCell<Ring>,
    sock: &'a UdpSocket,
    stats: &'a ShardStats,
    pool: SendPool,
    meta: Box<[SlotMeta]>,
    free: Vec<u32>,
    cur: Current,
    layout: BatchLayout,
    private: Box<[u8]>,
    warn_send: RateLimit,
}

impl<'a> UringUdp<'a> {
    fn new(
        ring: &'a RefCell<Ring>,
        sock: &'a UdpSocket,
        stats: &'a ShardStats,
        slots: u32,
    ) -> io::Result<Self> {
        let pool = SendPool::new(slots, MAX_GSO_BYTES)?;
        let empty = SlotMeta {
            dst: sock.local_addr(),
            seg: 0,
            len: 0,
            count: 0,
        };
        Ok(Self {
            ring,
            sock,
            stats,
            pool,
            meta: vec![empty; slots as usize].into_boxed_slice(),
            free: (0..slots).rev().collect(),
            cur: Current::None,
            layout: BatchLayout::new(MAX_GSO_BYTES, MAX_SEGMENTS),
            private: vec![0u8; MAX_GSO_BYTES].into_boxed_slice(),
            warn_send: RateLimit::new(WARN_INTERVAL),
        })
    }

    /// A free slot, waiting a little for send completions if none is; else the private buffer.
    fn acquire(&mut self) -> Current {
        for _ in 0..2 {
            if let Some(s) = self.free.pop() {
                return Current::Slot(s);
            }
            let ring = self.ring;
            if ring
                .borrow_mut()
                .wait_for(OP_UDP_SEND, |c| self.on_cqe(c))
                .is_err()
            {
                break;
            }
        }
        self.free.pop().map_or(Current::Private, Current::Slot)
    }

    /// Handles the CQE of a `SENDMSG` from a slot.
    fn on_cqe(&mut self, c: Cqe) {
        let slot = UserData::from_raw(c.user_data).index();
        let Some(m) = self.meta.get(slot as usize).copied() else {
            return;
        };
        if !self.pool.complete(slot) {
            return;
        }
        let st = self.stats;
        if c.res >= 0 {
            ShardStats::add(&st.udp_tx_datagrams, m.count as u64);
            ShardStats::add(&st.udp_tx_bytes, m.len as u64);
        } else if m.count > 1 && self.sock.note_gso_send_error(-c.res, usize::from(m.seg)) {
            // GSO refused (EIO: off on the socket; EINVAL/EMSGSIZE: segments this large exceed
            // the route MTU and go without GSO from now on): resend singly.
            ShardStats::add(&st.gso_fallbacks, 1);
            if let Some(buf) = self.pool.buf(slot) {
                let bytes = &buf[..m.len];
                send_sync(self.sock, st, bytes, m.seg, m.dst, m.count);
            }
        } else {
            ShardStats::add(&st.drops[DropReason::IoError as usize], m.count as u64);
            if let Some(suppressed) = self.warn_send.check() {
                let error = io::Error::from_raw_os_error(-c.res);
                tracing::warn!(dst = %m.dst, %error, suppressed, "UDP send failed");
            }
        }
        self.free.push(slot);
    }
}

/// Sends `bytes` as datagrams of `seg` bytes with plain syscalls (GSO while the socket allows
/// it), counting everything like the epoll backend does.
fn send_sync(
    sock: &UdpSocket,
    st: &ShardStats,
    bytes: &[u8],
    seg: u16,
    dst: SocketAddr,
    count: usize,
) {
    let calls = if sock.gso_for(usize::from(seg)) && count > 1 {
        1
    } else {
        count
    };
    let before = sock.gso_fallbacks();
    match sock.send_segments(bytes, seg.max(1), dst) {
        Ok(sent) => {
            ShardStats::add(&st.udp_tx_datagrams, sent as u64);
            ShardStats::add(&st.udp_tx_bytes, bytes.len() as u64);
            if sent < count {
                ShardStats::add(
                    &st.drops[DropReason::IoError as usize],
                    (count - sent) as u64,
                );
            }
        }
        Err(_) => ShardStats::add(&st.drops[DropReason::IoError as usize], count as u64),
    }
    ShardStats::add(&st.gso_fallbacks, sock.gso_fallbacks() - before);
    st.record_sends(calls, count);
    ShardStats::add(&st.udp_sends, calls as u64);
    ShardStats::add(&st.syscalls, calls as u64);
}

impl UdpSink for UringUdp<'_> {
    fn reserve(&mut self, dst: SocketAddr, len: usize) -> Option<&mut [u8]> {
        if self.layout.check(dst, len).is_err() {
            self.flush();
        }
        let range = self.layout.next_range(dst, len).ok()?;
        if self.cur == Current::None {
            self.cur = self.acquire();
        }
        match self.cur {
            Current::Slot(s) => self.pool.buf_mut(s)?.get_mut(range),
            Current::Private => self.private.get_mut(range),
            Current::None => None,
        }
    }

    fn commit(&mut self, dst: SocketAddr, len: usize) {
        self.layout.commit(dst, len);
    }

    fn flush(&mut self) {
        let Some(dst) = self.layout.destination() else {
            return;
        };
        if self.layout.is_empty() {
            return;
        }
        let count = self.layout.count();
        let len = self.layout.len();
        // ≤ MAX_GSO_BYTES, so it fits.
        let seg = self.layout.segment_size().min(usize::from(u16::MAX)) as u16;
        let st = self.stats;
        match std::mem::replace(&mut self.cur, Current::None) {
            Current::Slot(s) => {
                let pushed = if count > 1 && !self.sock.gso_for(usize::from(seg)) {
                    false
                } else {
                    let segment = (count > 1).then_some(seg);
                    let ud = UserData::new(OP_UDP_SEND, count as u32, s).raw();
                    self.ring
                        .borrow_mut()
                        .uring
                        .push_sendmsg_slot(
                            self.sock.as_fd(),
                            &mut self.pool,
                            s,
                            len,
                            dst,
                            self.sock.family(),
                            segment,
                            ud,
                        )
                        .is_ok()
                };
                if pushed {
                    self.meta[s as usize] = SlotMeta {
                        dst,
                        seg,
                        len,
                        count,
                    };
                    ShardStats::add(&st.udp_sends, 1);
                    st.record_sends(1, count);
                } else {
                    if let Some(buf) = self.pool.buf(s) {
                        send_sync(self.sock, st, &buf[..len], seg, dst, count);
                    }
                    self.free.push(s);
                }
            }
            Current::Private => send_sync(self.sock, st, &self.private[..len], seg, dst, count),
            Current::None => {}
        }
        self.layout.clear();
    }

    fn send_one(&mut self, datagram: &[u8], dst: SocketAddr) {
        let st = self.stats;
        ShardStats::add(&st.syscalls, 1);
        ShardStats::add(&st.udp_sends, 1);
        st.record_sends(1, 1);
        match self.sock.send_to(datagram, dst) {
            Ok(_) => {
                let n = datagram.len() as u64;
                ShardStats::add(&st.udp_tx_datagrams, 1);
                ShardStats::add(&st.udp_tx_bytes, n);
                ShardStats::add(&st.udp_tx_control_datagrams, 1);
                ShardStats::add(&st.udp_tx_control_bytes, n);
            }
            Err(_) => st.drop_packet(DropReason::IoError),
        }
    }
}

/// Coalesced TUN writes copied into [`SendPool`] slots and written with io_uring `WRITE`.
struct UringTun<'a> {
    ring: &'a RefCell<Ring>,
    fd: BorrowedFd<'a>,
    stats: &'a ShardStats,
    pool: SendPool,
    free: Vec<u32>,
    warn_write: RateLimit,
}

impl<'a> UringTun<'a> {
    fn new(
        ring: &'a RefCell<Ring>,
        fd: BorrowedFd<'a>,
        stats: &'a ShardStats,
        slots: u32,
    ) -> io::Result<Self> {
        Ok(Self {
            ring,
            fd,
            stats,
            pool: SendPool::new(slots, TUN_READ_SIZE)?,
            free: (0..slots).rev().collect(),
            warn_write: RateLimit::new(WARN_INTERVAL),
        })
    }

    fn on_cqe(&mut self, c: Cqe) {
        let slot = UserData::from_raw(c.user_data).index();
        if self.pool.complete(slot) {
            self.free.push(slot);
            if c.res < 0 {
                self.stats.drop_packet(DropReason::IoError);
                if let Some(suppressed) = self.warn_write.check() {
                    let error = io::Error::from_raw_os_error(-c.res);
                    tracing::warn!(%error, suppressed, "TUN write failed");
                }
            }
        }
    }

    fn acquire(&mut self) -> Option<u32> {
        for _ in 0..2 {
            if let Some(s) = self.free.pop() {
                return Some(s);
            }
            let ring = self.ring;
            if ring
                .borrow_mut()
                .wait_for(OP_TUN_WRITE, |c| self.on_cqe(c))
                .is_err()
            {
                break;
            }
        }
        self.free.pop()
    }

    fn write_sync(&mut self, buf: &[u8]) {
        // Writes queued before this one go first: submit them (one enter) to keep the order.
        let _ = self.ring.borrow_mut().uring.submit();
        ShardStats::add(&self.stats.syscalls, 2);
        if epoll::write(self.fd, buf).is_err() {
            self.stats.drop_packet(DropReason::IoError);
        }
    }
}

impl TunSink for UringTun<'_> {
    fn write(&mut self, buf: &[u8]) {
        if buf.len() > self.pool.buf_size() {
            self.stats.drop_packet(DropReason::BadInnerPacket);
            return;
        }
        let Some(slot) = self.acquire() else {
            self.write_sync(buf);
            return;
        };
        if let Some(dst) = self.pool.buf_mut(slot) {
            dst[..buf.len()].copy_from_slice(buf);
        }
        let ud = UserData::new(OP_TUN_WRITE, 0, slot).raw();
        let pushed = self.ring.borrow_mut().uring.push_write_slot(
            self.fd,
            &mut self.pool,
            slot,
            buf.len(),
            ud,
        );
        if pushed.is_err() {
            self.free.push(slot);
            self.write_sync(buf);
        }
    }
}

/// What a shard asks for when it creates its ring.
pub(crate) fn ring_config() -> RingConfig {
    RingConfig {
        entries: 512,
        cq_entries: 8192,
        defer_taskrun: true,
    }
}

/// Runs one shard until `stop` is set. Creates the ring on the calling thread (pin first).
pub(crate) fn run(
    dp: &mut Datapath,
    tun: BorrowedFd<'_>,
    sock: &UdpSocket,
    control: &impl Control,
    clock: &impl Fn() -> Duration,
    stop: &AtomicBool,
    params: Params,
) -> io::Result<()> {
    let stats = Arc::clone(dp.stats_arc());
    let uring = Uring::new(&ring_config()).map_err(io::Error::other)?;
    let features: UringFeatures = *uring.features();
    let mut tun_bufs = uring
        .register_buf_ring(BGID_TUN, params.tun_bufs, TUN_READ_SIZE)
        .map_err(io::Error::other)?;
    let mut udp_bufs = uring
        .register_buf_ring(BGID_UDP, params.udp_bufs, UDP_PAYLOAD + RECVMSG_OVERHEAD)
        .map_err(io::Error::other)?;
    let ring = RefCell::new(Ring {
        uring,
        queue: VecDeque::with_capacity(QUEUE_CAP),
        stats: Arc::clone(&stats),
    });
    let st = &*stats;
    let mut udp = UringUdp::new(&ring, sock, st, params.udp_slots)?;
    let mut tun_sink = UringTun::new(&ring, tun, st, params.tun_slots)?;
    let tun_ud = UserData::new(OP_TUN_READ, 0, 0).raw();
    let udp_ud = UserData::new(OP_UDP_RECV, 0, 0).raw();
    let (mut tun_armed, mut udp_armed) = (false, false);
    let mut read_errors = 0u32;
    let mut last_rx = 0usize;
    let result = loop {
        if stop.load(Acquire) {
            break Ok(());
        }
        {
            let mut r = ring.borrow_mut();
            if !tun_armed {
                r.uring.push_read_multi(tun, &tun_bufs, tun_ud)?;
                tun_armed = true;
            }
            if !udp_armed {
                r.uring
                    .push_recvmsg_multi(sock.as_fd(), &udp_bufs, udp_ud)?;
                udp_armed = true;
            }
            // Busy: wait for about as many completions as last time, at most MIN_WAIT for
            // them. Quiet: return on the first completion.
            let (want, min_wait) = if features.min_timeout && last_rx >= BUSY_THRESHOLD {
                (last_rx.min(MAX_WANT), Some(MIN_WAIT))
            } else {
                (1, None)
            };
            r.enter(want, WAIT_TIMEOUT, min_wait)?;
        }
        last_rx = 0;
        let now = clock();
        loop {
            let next = {
                let mut r = ring.borrow_mut();
                match r.queue.pop_front() {
                    Some(c) => Some(c),
                    None if r.reap() > 0 => r.queue.pop_front(),
                    None => None,
                }
            };
            let Some(c) = next else { break };
            match UserData::from_raw(c.user_data).op() {
                OP_TUN_READ => {
                    last_rx += 1;
                    if c.multishot_ended() {
                        tun_armed = false;
                    }
                    let bid = tun_bufs.take(&c);
                    if c.res > 0 {
                        read_errors = 0;
                        if let Some(b) = bid.and_then(|b| tun_bufs.buf(b)) {
                            let n = (c.res as usize).min(b.len());
                            dp.outbound(&b[..n], now, &mut udp);
                        }
                    } else if c.res < 0 && !c.is_enobufs() && c.res != -libc::ECANCELED {
                        st.drop_packet(DropReason::IoError);
                        read_errors += 1;
                    }
                    // Back to the kernel right after use.
                    if let Some(b) = bid {
                        tun_bufs.recycle(b);
                    }
                }
                OP_UDP_RECV => {
                    last_rx += 1;
                    if c.multishot_ended() {
                        udp_armed = false;
                    }
                    let bid = udp_bufs.take(&c);
                    if c.res > 0
                        && let Some(b) = bid
                    {
                        let n = c.res as usize;
                        let (u, t) = (&mut udp, &mut tun_sink);
                        inbound_in_place(&mut udp_bufs, b, n, dp, now, control, u, t);
                    } else if c.res < 0 && !c.is_enobufs() && c.res != -libc::ECANCELED {
                        st.drop_packet(DropReason::IoError);
                    }
                    if let Some(b) = bid {
                        udp_bufs.recycle(b);
                    }
                }
                OP_UDP_SEND => udp.on_cqe(c),
                OP_TUN_WRITE => tun_sink.on_cqe(c),
                _ => {}
            }
        }
        if read_errors > MAX_READ_ERRORS {
            break Err(io::Error::other(
                "TUN reads keep failing (io_uring READ_MULTISHOT)",
            ));
        }
        dp.flush_inbound(&mut tun_sink);
        udp.flush();
    };
    // Let sends and writes in flight finish (bounded) so their slots are not leaked.
    for _ in 0..10 {
        if udp.pool.in_flight() == 0 && tun_sink.pool.in_flight() == 0 {
            break;
        }
        if ring
            .borrow_mut()
            .enter(1, Duration::from_millis(10), None)
            .is_err()
        {
            break;
        }
        loop {
            let next = {
                let mut r = ring.borrow_mut();
                r.reap();
                r.queue.pop_front()
            };
            let Some(c) = next else { break };
            match UserData::from_raw(c.user_data).op() {
                OP_UDP_SEND => udp.on_cqe(c),
                OP_TUN_WRITE => tun_sink.on_cqe(c),
                OP_TUN_READ => {
                    if let Some(b) = tun_bufs.take(&c) {
                        tun_bufs.recycle(b);
                    }
                }
                OP_UDP_RECV => {
                    if let Some(b) = udp_bufs.take(&c) {
                        udp_bufs.recycle(b);
                    }
                }
                _ => {}
            }
        }
    }
    result
}

/// Decrypts the datagram(s) of receive buffer `bid` in place and hands them to the datapath.
#[allow(clippy::too_many_arguments)]
fn inbound_in_place(
    bufs: &mut BufRing,
    bid: u16,
    res: usize,
    dp: &mut Datapath,
    now: Duration,
    control: &impl Control,
    udp: &mut UringUdp<'_>,
    tun: &mut UringTun<'_>,
) {
    let Some(buf) = bufs.buf_mut(bid) else {
        return;
    };
    let res = res.min(buf.len());
    let Some(view) = parse_recvmsg(&buf[..res]) else {
        dp.stats().drop_packet(DropReason::Malformed);
        return;
    };
    let (meta, off) = (view.meta, view.payload_offset);
    if meta.truncated {
        dp.stats().drop_packet(DropReason::Malformed);
        return;
    }
    let seg = meta.gro_segment.map_or(0, usize::from);
    dp.inbound(
        &mut buf[off..off + meta.len],
        seg,
        meta.src,
        now,
        control,
        udp,
        tun,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowed_ips::AllowedIpsBuilder;
    use crate::peers::{IndexTable, Shared};
    use crate::sys::udp::UdpConfig;
    use arc_swap::ArcSwap;
    use std::net::{IpAddr, Ipv4Addr};
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::Ordering::{Relaxed, Release};
    use std::time::Instant;
    use uring_tunnel_tun::GroConfig;

    struct NoHandshakes;

    impl Control for NoHandshakes {
        fn handshake(
            &self,
            _: &[u8],
            _: SocketAddr,
            _: Duration,
            _: &mut [u8],
        ) -> Result<Option<usize>, DropReason> {
            Err(DropReason::HandshakeRejected)
        }
    }

    /// Far more TUN reads and UDP datagrams than buffers: both multishots run dry (ENOBUFS,
    /// no F_MORE) many times and must be re-armed each time, or the counts fall short.
    #[test]
    fn multishots_rearm_after_running_out_of_buffers() {
        const READS: u64 = 300;
        const DGRAMS: u64 = 200;
        let shared = Arc::new(Shared {
            peers: ArcSwap::from_pointee(Vec::new()),
            allowed: ArcSwap::from_pointee(AllowedIpsBuilder::new().build()),
            indices: ArcSwap::from_pointee(IndexTable::new()),
            mtu: 1420.into(),
            stop: AtomicBool::new(false),
        });
        let stats = Arc::new(ShardStats::default());
        // A datagram socket stands in for the TUN queue: one read = one message.
        let (tun, feeder) = UnixDatagram::pair().unwrap();
        tun.set_nonblocking(true).unwrap();
        feeder.set_nonblocking(true).unwrap();
        let sock = UdpSocket::bind(&UdpConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..UdpConfig::default()
        })
        .unwrap();
        let dst = sock.local_addr();
        let params = Params {
            tun_bufs: 4,
            udp_bufs: 2,
            udp_slots: 2,
            tun_slots: 2,
        };
        let st = Arc::clone(&stats);
        let sh = Arc::clone(&shared);
        std::thread::scope(|s| {
            let shard = s.spawn(|| {
                let mut dp = Datapath::new(sh, st, GroConfig::default());
                let origin = Instant::now();
                let clock = || origin.elapsed();
                run(
                    &mut dp,
                    tun.as_fd(),
                    &sock,
                    &NoHandshakes,
                    &clock,
                    &shared.stop,
                    params,
                )
            });
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for i in 0..DGRAMS {
                // Garbage of varying size (so GRO cannot merge them): dropped as malformed.
                tx.send_to(&vec![0xee; 20 + (i % 7) as usize], dst).unwrap();
            }
            // The socket queues only a few messages (net.unix.max_dgram_qlen): feed as the
            // shard drains it.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut fed = 0u64;
            while fed < READS && Instant::now() < deadline {
                match feeder.send(&[0x00, fed as u8]) {
                    Ok(_) => fed += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => panic!("feeding: {e}"),
                }
            }
            while Instant::now() < deadline
                && (stats.tun_reads.load(Relaxed) < READS
                    || stats.udp_rx_datagrams.load(Relaxed) < DGRAMS)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            shared.stop.store(true, Release);
            shard.join().unwrap().unwrap();
        });
        assert_eq!(stats.tun_reads.load(Relaxed), READS);
        assert_eq!(stats.drops_of(DropReason::BadInnerPacket), READS);
        assert_eq!(stats.udp_rx_datagrams.load(Relaxed), DGRAMS);
        assert_eq!(stats.drops_of(DropReason::Malformed), DGRAMS);
        // Re-arming took far fewer enters than there were reads plus datagrams.
        let enters = stats.syscalls.load(Relaxed);
        assert!(enters > 0 && enters < READS + DGRAMS, "{enters} enters");
    }
}
