//! The packet work of a shard, independent of how the bytes reach the kernel.
//!
//! Both backends (io_uring and epoll) call the same two entry points:
//! - [`Datapath::outbound`]: one TUN read (virtio-net header + possibly a TSO/USO super-packet)
//!   → split into segments written straight behind 16 bytes of header room in a
//!   [`SendBatch`] → encrypted in place → coalesced per destination for one GSO send;
//! - [`Datapath::inbound`]: one UDP receive (possibly a GRO train of same-size datagrams) →
//!   each datagram decrypted in place → inner packets collected, then coalesced into as few
//!   TUN writes as possible by [`Datapath::flush_inbound`].
//!
//! Per packet this allocates nothing and takes no lock: tables are `ArcSwap` snapshots loaded
//! once per call, counters are atomics. Handshake messages and packets for a peer without a
//! session take the rare path through the control plane.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use uring_tunnel_crypto::messages::{MessageType, classify};
use uring_tunnel_crypto::transport::{
    TRANSPORT_OVERHEAD, padded_len_for_mtu, transport_receiver_index,
};
use uring_tunnel_tun::{Coalescer, GroConfig, GsoSplit, VNET_HDR_LEN, VirtioNetHdr};

use crate::peers::Shared;
use crate::stats::{DropReason, ShardStats};

/// Largest TUN read: a 64 KiB super-packet plus its virtio-net header.
pub const TUN_READ_SIZE: usize = 65535 + VNET_HDR_LEN;
/// Most inner packets gathered before a coalesced TUN flush.
pub const INBOUND_BATCH: usize = 128;

/// Where encrypted datagrams go: the backend's send path.
pub trait UdpSink {
    /// Room for the next datagram, exactly `len` bytes, to `dst`: the sink flushes its current
    /// batch first when that cannot take it. `None` when no room can be had (counted as a
    /// drop by the caller).
    fn reserve(&mut self, dst: SocketAddr, len: usize) -> Option<&mut [u8]>;
    /// Accounts the datagram just written into the reserved room.
    fn commit(&mut self, dst: SocketAddr, len: usize);
    /// Hands the filled batch to the kernel and starts an empty one.
    fn flush(&mut self);
    /// Sends one datagram right away (handshake messages, rare).
    fn send_one(&mut self, datagram: &[u8], dst: SocketAddr);
}

/// Where decrypted packets go: the backend's TUN write path.
pub trait TunSink {
    /// Writes `buf` (virtio-net header + packet, or a bare packet) as one TUN write.
    fn write(&mut self, buf: &[u8]);
}

/// The rare path: handshake messages and sessions, owned by the control plane.
pub trait Control {
    /// Processes a handshake message (types 1–3) from `src`; returns a reply to send to
    /// `src`, if any, or the reason to count a drop.
    fn handshake(
        &self,
        datagram: &[u8],
        src: SocketAddr,
        now: Duration,
        reply: &mut [u8],
    ) -> Result<Option<usize>, DropReason>;
}

/// A shard's packet processor.
pub struct Datapath {
    shared: Arc<Shared>,
    stats: Arc<ShardStats>,
    vnet_hdr: bool,
    /// Inner packets waiting for the coalesced TUN flush: ranges into `rx_store`.
    rx_pkts: Vec<Range<usize>>,
    rx_store: Box<[u8]>,
    rx_store_len: usize,
    coalescer: Coalescer,
    tun_out: Box<[u8]>,
    reply: Box<[u8; 256]>,
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("vnet_hdr", &self.vnet_hdr)
            .finish_non_exhaustive()
    }
}

impl Datapath {
    /// A processor for one shard. `gro` says what the TUN device granted.
    pub fn new(shared: Arc<Shared>, stats: Arc<ShardStats>, gro: GroConfig) -> Self {
        let store = INBOUND_BATCH * (65535 + VNET_HDR_LEN).min(2048 + VNET_HDR_LEN);
        Datapath {
            shared,
            stats,
            vnet_hdr: gro.vnet_hdr,
            rx_pkts: Vec::with_capacity(INBOUND_BATCH),
            rx_store: vec![0u8; store].into_boxed_slice(),
            rx_store_len: 0,
            coalescer: Coalescer::new(INBOUND_BATCH, gro),
            tun_out: vec![0u8; store + INBOUND_BATCH * VNET_HDR_LEN].into_boxed_slice(),
            reply: Box::new([0u8; 256]),
        }
    }

    /// The shard's counters.
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// The shard's counters, shared.
    pub fn stats_arc(&self) -> &Arc<ShardStats> {
        &self.stats
    }

    /// Processes one TUN read (`read` = what the read returned, header included when the
    /// device has virtio-net headers).
    pub fn outbound(&mut self, read: &[u8], now: Duration, udp: &mut impl UdpSink) {
        let stats = &*self.stats;
        ShardStats::add(&stats.tun_reads, 1);
        let (hdr, pkt) = if self.vnet_hdr {
            let Some((h, p)) = read.split_at_checked(VNET_HDR_LEN) else {
                stats.drop_packet(DropReason::BadInnerPacket);
                return;
            };
            match VirtioNetHdr::parse(h) {
                Ok(h) => (h, p),
                Err(_) => {
                    stats.drop_packet(DropReason::BadInnerPacket);
                    return;
                }
            }
        } else {
            (VirtioNetHdr::NONE, read)
        };
        stats.tun_read_bytes.observe(pkt.len() as u64);
        let Ok(split) = GsoSplit::new(&hdr, pkt) else {
            stats.drop_packet(DropReason::BadInnerPacket);
            return;
        };
        let nseg = split.segments();
        // Every segment of a super-packet has the same destination: route once.
        let allowed = self.shared.allowed.load();
        let Some(peer_id) = allowed.lookup_packet(pkt, true) else {
            ShardStats::add(&stats.drops[DropReason::NoRoute as usize], nseg as u64);
            return;
        };
        let peers = self.shared.peers.load();
        let Some(peer) = peers.get(peer_id as usize).and_then(|p| p.as_deref()) else {
            ShardStats::add(&stats.drops[DropReason::NoRoute as usize], nseg as u64);
            return;
        };
        ShardStats::add(&stats.tun_rx_packets, nseg as u64);
        ShardStats::add(&stats.tun_rx_bytes, pkt.len() as u64);

        let keypair = peer.current.load();
        let endpoint = peer.endpoint.load();
        let (Some(kp), Some(dst)) = (keypair.as_deref(), endpoint.as_deref().copied()) else {
            self.stage_segments(peer, &split, nseg);
            return;
        };
        if kp.is_expired(now) {
            self.stage_segments(peer, &split, nseg);
            return;
        }
        let Ok(counters) = kp.claim_counters(nseg as u64) else {
            self.stage_segments(peer, &split, nseg);
            return;
        };
        let mtu = self.shared.mtu();
        let mut sent_bytes = 0u64;
        for (i, counter) in (0..nseg).zip(counters) {
            let seg_len = split.segment_len(i);
            let dlen = TRANSPORT_OVERHEAD + padded_len_for_mtu(seg_len, mtu);
            let Some(slot) = udp.reserve(dst, dlen) else {
                stats.drop_packet(DropReason::IoError);
                continue;
            };
            if split.write_segment(i, &mut slot[16..16 + seg_len]).is_err() {
                stats.drop_packet(DropReason::BadInnerPacket);
                continue;
            }
            match kp.encapsulate_mtu(counter, slot, seg_len, mtu, now) {
                Ok(n) => {
                    debug_assert_eq!(n, dlen);
                    udp.commit(dst, dlen);
                    sent_bytes += seg_len as u64;
                }
                Err(e) => stats.drop_packet(e.into()),
            }
        }
        if sent_bytes > 0 {
            peer.tx_bytes.fetch_add(sent_bytes, Relaxed);
            peer.last_data_sent.set(now);
            peer.last_auth_sent.set(now);
        }
        if kp.should_rekey_on_send(now) {
            peer.wants_handshake.store(true, Relaxed);
        }
    }

    fn stage_segments(&self, peer: &crate::peers::PeerState, split: &GsoSplit<'_>, nseg: usize) {
        let mut seg = [0u8; 65535];
        for i in 0..nseg {
            match split.write_segment(i, &mut seg) {
                Ok(n) => {
                    if !peer.stage(&seg[..n]) {
                        self.stats.drop_packet(DropReason::NoSession);
                    }
                }
                Err(_) => self.stats.drop_packet(DropReason::BadInnerPacket),
            }
        }
    }

    /// Processes one UDP receive: `data` holds one datagram, or a GRO train of datagrams of
    /// `seg_size` bytes each (the last may be shorter). Decrypted packets are queued for
    /// [`Datapath::flush_inbound`], which runs automatically when the queue fills.
    #[allow(clippy::too_many_arguments)]
    pub fn inbound(
        &mut self,
        data: &mut [u8],
        seg_size: usize,
        src: SocketAddr,
        now: Duration,
        control: &impl Control,
        udp: &mut impl UdpSink,
        tun: &mut impl TunSink,
    ) {
        ShardStats::add(&self.stats.udp_recvs, 1);
        let seg = if seg_size == 0 { data.len() } else { seg_size };
        if seg == 0 {
            self.stats.drop_packet(DropReason::Malformed);
            return;
        }
        self.stats
            .gro_datagrams
            .observe(data.len().div_ceil(seg) as u64);
        for dgram in data.chunks_mut(seg) {
            self.one_datagram(dgram, src, now, control, udp, tun);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn one_datagram(
        &mut self,
        dgram: &mut [u8],
        src: SocketAddr,
        now: Duration,
        control: &impl Control,
        udp: &mut impl UdpSink,
        tun: &mut impl TunSink,
    ) {
        let stats = &*self.stats;
        ShardStats::add(&stats.udp_rx_datagrams, 1);
        ShardStats::add(&stats.udp_rx_bytes, dgram.len() as u64);
        match classify(dgram) {
            Ok(MessageType::Transport) => {}
            Ok(_) => {
                ShardStats::add(&stats.udp_rx_control_datagrams, 1);
                ShardStats::add(&stats.udp_rx_control_bytes, dgram.len() as u64);
                match control.handshake(dgram, src, now, &mut self.reply[..]) {
                    Ok(Some(n)) => udp.send_one(&self.reply[..n], src),
                    Ok(None) => {}
                    Err(reason) => stats.drop_packet(reason),
                }
                return;
            }
            Err(e) => {
                stats.drop_packet(e.into());
                return;
            }
        }
        let Ok(index) = transport_receiver_index(dgram) else {
            stats.drop_packet(DropReason::Malformed);
            return;
        };
        let indices = self.shared.indices.load();
        let Some(session) = indices.get(&index) else {
            stats.drop_packet(DropReason::UnknownIndex);
            return;
        };
        let decap = match session.keypair.decapsulate(dgram, now) {
            Ok(d) => d,
            Err(e) => {
                stats.drop_packet(e.into());
                return;
            }
        };
        let peers = self.shared.peers.load();
        let Some(peer) = peers.get(session.peer as usize).and_then(|p| p.as_deref()) else {
            stats.drop_packet(DropReason::UnknownIndex);
            return;
        };
        // Authenticated: roam, promote a responder's next keypair, feed the timers.
        peer.note_source(src);
        peer.last_auth_received.set(now);
        if let Some(next) = peer.next.load().as_ref()
            && Arc::ptr_eq(next, &session.keypair)
        {
            peer.current.store(Some(Arc::clone(next)));
            peer.next.store(None);
        }
        if session.keypair.should_rekey_on_receive(now) {
            peer.wants_handshake.store(true, Relaxed);
        }
        if decap.is_keepalive() {
            ShardStats::add(&stats.udp_rx_control_datagrams, 1);
            ShardStats::add(&stats.udp_rx_control_bytes, dgram.len() as u64);
            return;
        }
        ShardStats::add(&stats.udp_rx_data_datagrams, 1);
        ShardStats::add(&stats.udp_rx_data_bytes, dgram.len() as u64);
        let plain = &dgram[decap.plaintext.clone()];
        let Some(len) = inner_len(plain) else {
            stats.drop_packet(DropReason::BadInnerPacket);
            return;
        };
        let pkt = &plain[..len];
        let allowed = self.shared.allowed.load();
        if allowed.lookup_packet(pkt, false) != Some(session.peer) {
            stats.drop_packet(DropReason::SourceNotAllowed);
            return;
        }
        if len > self.rx_store.len() {
            stats.drop_packet(DropReason::BadInnerPacket);
            return;
        }
        peer.rx_bytes.fetch_add(len as u64, Relaxed);
        peer.last_data_received.set(now);
        if self.rx_pkts.len() == INBOUND_BATCH || self.rx_store_len + len > self.rx_store.len() {
            self.flush_inbound(tun);
        }
        let start = self.rx_store_len;
        self.rx_store[start..start + len].copy_from_slice(pkt);
        self.rx_store_len += len;
        self.rx_pkts.push(start..start + len);
    }

    /// Coalesces the queued inner packets and writes them to the TUN.
    pub fn flush_inbound(&mut self, tun: &mut impl TunSink) {
        if self.rx_pkts.is_empty() {
            return;
        }
        let stats = &*self.stats;
        let n = self.rx_pkts.len();
        let store = &self.rx_store[..self.rx_store_len];
        let mut views: [&[u8]; INBOUND_BATCH] = [&[]; INBOUND_BATCH];
        for (v, r) in views.iter_mut().zip(&self.rx_pkts) {
            *v = &store[r.clone()];
        }
        match self.coalescer.coalesce(&views[..n], &mut self.tun_out) {
            Ok(writes) => {
                let hdr = if self.vnet_hdr { VNET_HDR_LEN } else { 0 };
                for w in writes {
                    stats
                        .tun_write_bytes
                        .observe(w.len().saturating_sub(hdr) as u64);
                    tun.write(&self.tun_out[w.clone()]);
                }
                ShardStats::add(&stats.tun_writes, writes.len() as u64);
                ShardStats::add(&stats.tun_tx_packets, n as u64);
                ShardStats::add(&stats.tun_tx_bytes, self.rx_store_len as u64);
            }
            Err(_) => {
                ShardStats::add(&stats.drops[DropReason::BadInnerPacket as usize], n as u64);
            }
        }
        self.rx_pkts.clear();
        self.rx_store_len = 0;
    }
}

/// Length of the IP packet at the start of `plain` (the rest is WireGuard padding), if the
/// header is sane and the packet fits.
#[inline]
fn inner_len(plain: &[u8]) -> Option<usize> {
    let len = match plain.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*plain.get(2)?, *plain.get(3)?])),
        6 => 40 + usize::from(u16::from_be_bytes([*plain.get(4)?, *plain.get(5)?])),
        _ => return None,
    };
    (len >= 20 && len <= plain.len()).then_some(len)
}
