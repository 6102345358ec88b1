//! Coalescing (GRO) a batch of IP packets into as few TUN writes as possible.
//!
//! TCP follows the rules of wireguard-go's `tun/offload_linux.go` (and the
//! kernel's `tcp_gro_receive`): same addresses, ports and ACK number,
//! contiguous sequence numbers, flags exactly ACK (PSH allowed on the last
//! segment only), equal IP header fields (TOS/traffic class, TTL/hop limit,
//! DF, flow label), equal IP and TCP options, equal window, equal payload size
//! except for a shorter last one, at most 65535 bytes. UDP (USO, when enabled)
//! needs the same addresses and ports, equal IP fields and equal payload size
//! except for a shorter last one. Anything else — IPv6 extension headers, IPv4
//! fragments, bad checksums, SYN/FIN/RST/URG/ECE/CWR — passes through
//! unchanged with a plain virtio-net header, in its original order relative to
//! its own flow.
//!
//! The [`Coalescer`] is sized once; [`Coalescer::coalesce`] allocates nothing.
//! It plans groups in one pass over the batch, then copies each group once
//! into the caller's contiguous output buffer as `[vnet hdr][packet]` writes.

use std::ops::Range;

use crate::checksum;
use crate::error::OffloadError;
use crate::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR_LEN, VirtioNetHdr};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const NONE: u16 = u16::MAX;
/// Largest coalesced IP packet.
const MAX_PACKET: usize = 65535;

/// What the coalescer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroConfig {
    /// Writes carry a virtio-net header. When false, nothing is coalesced and
    /// packets are copied out as they are, without header.
    pub vnet_hdr: bool,
    /// Coalesce TCP (needs TSO granted on the device).
    pub tcp: bool,
    /// Coalesce UDP (needs USO granted on the device).
    pub udp: bool,
    /// Verify each packet's L4 (and IPv4 header) checksum before merging it:
    /// the kernel recomputes the checksum of a coalesced packet, so without
    /// this a corrupt inner packet would be accepted. Packets failing it pass
    /// through unchanged.
    pub verify_checksums: bool,
    /// Most segments in one coalesced packet (the kernel accepts up to 64
    /// for UDP on older versions; TCP is limited by the 64 KiB size anyway).
    pub max_segments: u16,
}

impl Default for GroConfig {
    fn default() -> Self {
        Self {
            vnet_hdr: true,
            tcp: true,
            udp: true,
            verify_checksums: true,
            max_segments: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// Flow identity: IP version, addresses, L4 protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FlowKey {
    addrs: [u8; 32],
    ports: [u8; 4],
    proto: u8,
    v6: bool,
}

impl FlowKey {
    fn hash(&self) -> u64 {
        let mut h: u64 = u64::from(self.proto) | (u64::from(self.v6) << 8);
        for c in self.addrs.chunks_exact(8) {
            let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        let p = u64::from(u32::from_ne_bytes(self.ports));
        h = (h ^ p).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
}

/// A packet that may be merged.
#[derive(Debug, Clone, Copy)]
struct Cand {
    key: FlowKey,
    proto: Proto,
    iph_len: u16,
    hdr_len: u16,
    payload: u16,
    seq: u32,
    ack: u32,
    psh: bool,
}

enum Class {
    /// Mergeable.
    Cand(Cand),
    /// Not mergeable but belongs to a flow: closes the flow's open group so
    /// later packets are not reordered before it.
    Flow(FlowKey),
    /// Not a flow we track.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    key: FlowKey,
    /// `None` for a pass-through single packet.
    proto: Option<Proto>,
    first: u16,
    last: u16,
    count: u16,
    iph_len: u16,
    hdr_len: u16,
    gso_size: u16,
    total_len: u32,
    next_seq: u32,
    ack: u32,
    psh: bool,
    open: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    gen_: u32,
    group: u16,
}

/// Coalescer with tables preallocated for batches of up to `max_batch`
/// packets.
#[derive(Debug)]
pub struct Coalescer {
    cfg: GroConfig,
    max_batch: usize,
    next: Vec<u16>,
    groups: Vec<Group>,
    slots: Vec<Slot>,
    gen_: u32,
    writes: Vec<Range<usize>>,
}

impl Coalescer {
    /// A coalescer for batches of at most `max_batch` (≤ 65534) packets.
    pub fn new(max_batch: usize, cfg: GroConfig) -> Self {
        let max_batch = max_batch.clamp(1, usize::from(NONE) - 1);
        let slots = (max_batch * 2).next_power_of_two();
        Self {
            cfg,
            max_batch,
            next: vec![NONE; max_batch],
            groups: Vec::with_capacity(max_batch),
            slots: vec![Slot::default(); slots],
            gen_: 0,
            writes: Vec::with_capacity(max_batch),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &GroConfig {
        &self.cfg
    }

    /// Output bytes that always suffice for `pkts`: every packet plus one
    /// virtio-net header each.
    pub fn output_capacity<P: AsRef<[u8]>>(&self, pkts: &[P]) -> usize {
        let hdr = if self.cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
        pkts.iter().map(|p| p.as_ref().len() + hdr).sum()
    }

    /// Coalesce `pkts` (IP packets, in arrival order) into `out`. Returns the
    /// byte ranges of `out` to write to the TUN, one write each, in order.
    /// `out` must hold [`Coalescer::output_capacity`] bytes.
    pub fn coalesce<P: AsRef<[u8]>>(
        &mut self,
        pkts: &[P],
        out: &mut [u8],
    ) -> Result<&[Range<usize>], OffloadError> {
        if pkts.len() > self.max_batch {
            return Err(OffloadError::BatchTooLarge {
                len: pkts.len(),
                cap: self.max_batch,
            });
        }
        let need = self.output_capacity(pkts);
        if out.len() < need {
            return Err(OffloadError::OutputTooSmall {
                need,
                have: out.len(),
            });
        }
        // Checksums are verified while copying (one pass over each packet),
        // which is only possible after planning. A packet failing inside a
        // merged group means the plan would have been different (it passes
        // through unchanged and closes its flow's group), so the batch is
        // then planned again verifying up front. Failures outside merged
        // groups change nothing: single packets are written unchanged either
        // way, and a failing candidate that merged with nothing takes the
        // same path through the flow table as a pass-through packet.
        self.plan(pkts, false);
        if !self.emit(pkts, out, self.cfg.verify_checksums) {
            self.plan(pkts, true);
            let ok = self.emit(pkts, out, false);
            debug_assert!(ok);
        }
        Ok(&self.writes)
    }

    fn lookup(&self, key: &FlowKey) -> (usize, Option<u16>) {
        let mask = self.slots.len() - 1;
        let mut i = (key.hash() as usize) & mask;
        loop {
            let s = self.slots[i];
            if s.gen_ != self.gen_ {
                return (i, None);
            }
            if self.groups[usize::from(s.group)].key == *key {
                return (i, Some(s.group));
            }
            i = (i + 1) & mask;
        }
    }

    /// Group the batch; `verify`: check checksums here (the slow path, see
    /// [`Coalescer::coalesce`]).
    fn plan<P: AsRef<[u8]>>(&mut self, pkts: &[P], verify: bool) {
        self.groups.clear();
        self.gen_ = self.gen_.wrapping_add(1);
        if self.gen_ == 0 {
            self.slots.fill(Slot::default());
            self.gen_ = 1;
        }
        let merge = self.cfg.vnet_hdr && (self.cfg.tcp || self.cfg.udp);
        for (idx, p) in pkts.iter().enumerate() {
            let pkt = p.as_ref();
            let idx16 = idx as u16;
            self.next[idx] = NONE;
            let class = if merge {
                classify(pkt, &self.cfg, verify && self.cfg.verify_checksums)
            } else {
                Class::Other
            };
            match class {
                Class::Other => self.push_single(idx16, FlowKey::default()),
                Class::Flow(key) => {
                    if let (_, Some(g)) = self.lookup(&key) {
                        self.groups[usize::from(g)].open = false;
                    }
                    self.push_single(idx16, FlowKey::default());
                }
                Class::Cand(c) => {
                    let (slot, found) = self.lookup(&c.key);
                    if let Some(g) = found {
                        let g = usize::from(g);
                        if self.try_merge(g, idx16, &c, pkts) {
                            continue;
                        }
                        self.groups[g].open = false;
                    }
                    let gi = self.groups.len() as u16;
                    self.groups.push(Group {
                        key: c.key,
                        proto: Some(c.proto),
                        first: idx16,
                        last: idx16,
                        count: 1,
                        iph_len: c.iph_len,
                        hdr_len: c.hdr_len,
                        gso_size: c.payload,
                        total_len: u32::from(c.hdr_len) + u32::from(c.payload),
                        next_seq: c.seq.wrapping_add(u32::from(c.payload)),
                        ack: c.ack,
                        psh: c.psh,
                        open: !c.psh,
                    });
                    self.slots[slot] = Slot {
                        gen_: self.gen_,
                        group: gi,
                    };
                }
            }
        }
    }

    fn push_single(&mut self, idx: u16, key: FlowKey) {
        self.groups.push(Group {
            key,
            proto: None,
            first: idx,
            last: idx,
            count: 1,
            iph_len: 0,
            hdr_len: 0,
            gso_size: 0,
            total_len: 0,
            next_seq: 0,
            ack: 0,
            psh: false,
            open: false,
        });
    }

    fn try_merge<P: AsRef<[u8]>>(&mut self, g: usize, idx: u16, c: &Cand, pkts: &[P]) -> bool {
        let grp = self.groups[g];
        if !grp.open
            || grp.proto != Some(c.proto)
            || grp.count >= self.cfg.max_segments
            || grp.iph_len != c.iph_len
            || grp.hdr_len != c.hdr_len
            || c.payload > grp.gso_size
            || grp.total_len as usize + usize::from(c.payload) > MAX_PACKET
        {
            return false;
        }
        if c.proto == Proto::Tcp && (c.ack != grp.ack || c.seq != grp.next_seq) {
            return false;
        }
        let head = pkts[usize::from(grp.first)].as_ref();
        let pkt = pkts[usize::from(idx)].as_ref();
        if !headers_compatible(head, pkt, c) {
            return false;
        }
        let grp = &mut self.groups[g];
        self.next[usize::from(grp.last)] = idx;
        grp.last = idx;
        grp.count += 1;
        grp.total_len += u32::from(c.payload);
        grp.next_seq = grp.next_seq.wrapping_add(u32::from(c.payload));
        if c.psh {
            grp.psh = true;
            grp.open = false;
        }
        if c.payload < grp.gso_size {
            grp.open = false;
        }
        true
    }

    /// Write the planned groups into `out`. With `verify`, every packet of
    /// a merged group has its checksums verified while it is copied; returns
    /// false (output incomplete) at the first that fails.
    fn emit<P: AsRef<[u8]>>(&mut self, pkts: &[P], out: &mut [u8], verify: bool) -> bool {
        self.writes.clear();
        let vnet = self.cfg.vnet_hdr;
        let mut pos = 0usize;
        for grp in &self.groups {
            let start = pos;
            let first = pkts[usize::from(grp.first)].as_ref();
            let p0 = if vnet { pos + VNET_HDR_LEN } else { pos };
            match grp.proto {
                Some(proto) if grp.count > 1 => {
                    let total = grp.total_len as usize;
                    let pkt_out = &mut out[p0..p0 + total];
                    let iph = usize::from(grp.iph_len);
                    let h = usize::from(grp.hdr_len);
                    let v6 = grp.key.v6;
                    let ip_proto = match proto {
                        Proto::Tcp => IPPROTO_TCP,
                        Proto::Udp => IPPROTO_UDP,
                    };
                    // Same addresses in the whole group: their pseudo-header
                    // sum is computed once, each packet adds its length.
                    let pseudo = if verify {
                        pseudo_sum(first, v6, ip_proto, 0)
                    } else {
                        0
                    };
                    pkt_out[..iph].copy_from_slice(&first[..iph]);
                    if verify {
                        let l4 = checksum::copy_and_sum(&first[iph..], &mut pkt_out[iph..]);
                        if !packet_ok(first, iph, v6, pseudo, l4) {
                            return false;
                        }
                    } else {
                        pkt_out[iph..first.len()].copy_from_slice(&first[iph..]);
                    }
                    let mut w = first.len();
                    let mut m = self.next[usize::from(grp.first)];
                    while m != NONE {
                        let pkt = pkts[usize::from(m)].as_ref();
                        let src = &pkt[h..];
                        let dst = &mut pkt_out[w..w + src.len()];
                        if verify {
                            // Payloads start at an even offset from the L4
                            // header, so the two sums add up.
                            let payload = checksum::copy_and_sum(src, dst);
                            let l4 = checksum::add(checksum::sum(&pkt[iph..h]), payload);
                            if !packet_ok(pkt, iph, v6, pseudo, l4) {
                                return false;
                            }
                        } else {
                            dst.copy_from_slice(src);
                        }
                        w += src.len();
                        m = self.next[usize::from(m)];
                    }
                    let hdr = finish_coalesced(pkt_out, grp, proto);
                    if vnet {
                        out[pos..p0].copy_from_slice(&hdr.to_bytes());
                    }
                    pos = p0 + total;
                }
                _ => {
                    if vnet {
                        out[pos..p0].copy_from_slice(&VirtioNetHdr::NONE.to_bytes());
                    }
                    out[p0..p0 + first.len()].copy_from_slice(first);
                    pos = p0 + first.len();
                }
            }
            self.writes.push(start..pos);
        }
        true
    }
}

/// Folded pseudo-header sum of `pkt` (addresses from its IP header).
fn pseudo_sum(pkt: &[u8], v6: bool, proto: u8, l4_len: u32) -> u16 {
    if v6 {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&pkt[8..24]);
        d.copy_from_slice(&pkt[24..40]);
        checksum::pseudo_v6(&s, &d, proto, l4_len)
    } else {
        checksum::pseudo_v4(
            [pkt[12], pkt[13], pkt[14], pkt[15]],
            [pkt[16], pkt[17], pkt[18], pkt[19]],
            proto,
            l4_len as u16,
        )
    }
}

/// IPv4 header checksum and L4 checksum of `pkt` are valid, given the
/// pseudo-header sum without length and the L4 sum.
fn packet_ok(pkt: &[u8], iph: usize, v6: bool, pseudo: u16, l4_sum: u16) -> bool {
    // Bounded by `classify`: packets are at most 65535 bytes.
    let l4_len = (pkt.len() - iph) as u32;
    let pseudo = checksum::add(checksum::add(pseudo, (l4_len >> 16) as u16), l4_len as u16);
    (v6 || checksum::sum(&pkt[..iph]) == 0xffff) && checksum::add(pseudo, l4_sum) == 0xffff
}

/// Fix the headers of a coalesced packet and build its virtio-net header.
fn finish_coalesced(pkt: &mut [u8], grp: &Group, proto: Proto) -> VirtioNetHdr {
    let total = pkt.len();
    let iph = usize::from(grp.iph_len);
    let l4_len = total - iph;
    let v6 = grp.key.v6;
    if v6 {
        pkt[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    } else {
        pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        pkt[10..12].fill(0);
        let c = checksum::ipv4_header(&pkt[..iph]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let (ip_proto, csum_offset, gso_type) = match proto {
        Proto::Tcp => {
            if grp.psh {
                pkt[iph + 13] |= TCP_PSH;
            }
            (IPPROTO_TCP, 16u16, if v6 { GSO_TCPV6 } else { GSO_TCPV4 })
        }
        Proto::Udp => {
            pkt[iph + 4..iph + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (IPPROTO_UDP, 6u16, GSO_UDP_L4)
        }
    };
    let pseudo = if v6 {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&pkt[8..24]);
        d.copy_from_slice(&pkt[24..40]);
        checksum::pseudo_v6(&s, &d, ip_proto, l4_len as u32)
    } else {
        checksum::pseudo_v4(
            [pkt[12], pkt[13], pkt[14], pkt[15]],
            [pkt[16], pkt[17], pkt[18], pkt[19]],
            ip_proto,
            l4_len as u16,
        )
    };
    let f = iph + usize::from(csum_offset);
    pkt[f..f + 2].copy_from_slice(&pseudo.to_be_bytes());
    VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: grp.hdr_len,
        gso_size: grp.gso_size,
        csum_start: grp.iph_len,
        csum_offset,
    }
}

/// IP fields and options that must be equal between the head of a group and
/// a packet joining it. Header lengths are already known equal.
fn headers_compatible(head: &[u8], pkt: &[u8], c: &Cand) -> bool {
    let iph = usize::from(c.iph_len);
    let h = usize::from(c.hdr_len);
    if c.key.v6 {
        // Version, traffic class, flow label; hop limit.
        if head[..4] != pkt[..4] || head[7] != pkt[7] {
            return false;
        }
    } else {
        // TOS, flags (DF), TTL, options.
        if head[1] != pkt[1]
            || head[6] >> 5 != pkt[6] >> 5
            || head[8] != pkt[8]
            || head[20..iph] != pkt[20..iph]
        {
            return false;
        }
    }
    match c.proto {
        // Window (bytes 14..16) and options (20..doff) equal; flags were
        // checked by `classify`.
        Proto::Tcp => {
            head[iph + 14..iph + 16] == pkt[iph + 14..iph + 16]
                && head[iph + 20..h] == pkt[iph + 20..h]
        }
        Proto::Udp => true,
    }
}

fn l4_checksum_ok(pkt: &[u8], iph: usize, proto: u8, v6: bool) -> bool {
    let l4_len = pkt.len() - iph;
    let pseudo = pseudo_sum(pkt, v6, proto, l4_len as u32);
    checksum::add(pseudo, checksum::sum(&pkt[iph..])) == 0xffff
}

/// Decide whether a packet may be merged; `verify`: also check its
/// checksums. Never panics on any input.
fn classify(pkt: &[u8], cfg: &GroConfig, verify: bool) -> Class {
    if pkt.len() > MAX_PACKET || pkt.is_empty() {
        return Class::Other;
    }
    let mut key = FlowKey::default();
    let (iph, proto) = match pkt[0] >> 4 {
        4 => {
            if pkt.len() < 20 {
                return Class::Other;
            }
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            if ihl < 20
                || pkt.len() < ihl
                || usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) != pkt.len()
            {
                return Class::Other;
            }
            // Fragments (MF set or non-zero offset) are never merged.
            if pkt[6] & 0x3f != 0 || pkt[7] != 0 {
                return Class::Other;
            }
            key.addrs[..8].copy_from_slice(&pkt[12..20]);
            (ihl, pkt[9])
        }
        6 => {
            if pkt.len() < 40 || usize::from(u16::from_be_bytes([pkt[4], pkt[5]])) + 40 != pkt.len()
            {
                return Class::Other;
            }
            key.v6 = true;
            key.addrs.copy_from_slice(&pkt[8..40]);
            // Extension headers are never merged (next header must be L4).
            (40, pkt[6])
        }
        _ => return Class::Other,
    };
    key.proto = proto;
    let l4 = &pkt[iph..];
    match proto {
        IPPROTO_TCP if cfg.tcp => {
            if l4.len() < 20 {
                return Class::Other;
            }
            key.ports.copy_from_slice(&l4[..4]);
            let doff = usize::from(l4[12] >> 4) * 4;
            let flags = l4[13];
            let payload = l4.len().saturating_sub(doff);
            if doff < 20
                || doff > l4.len()
                || l4[12] & 0x0f != 0
                || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH)
                || payload == 0
            {
                return Class::Flow(key);
            }
            if verify
                && ((!key.v6 && checksum::sum(&pkt[..iph]) != 0xffff)
                    || !l4_checksum_ok(pkt, iph, IPPROTO_TCP, key.v6))
            {
                return Class::Flow(key);
            }
            Class::Cand(Cand {
                key,
                proto: Proto::Tcp,
                iph_len: iph as u16,
                hdr_len: (iph + doff) as u16,
                payload: payload as u16,
                seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                psh: flags & TCP_PSH != 0,
            })
        }
        IPPROTO_UDP if cfg.udp => {
            if l4.len() < 8 {
                return Class::Other;
            }
            key.ports.copy_from_slice(&l4[..4]);
            let payload = l4.len() - 8;
            if usize::from(u16::from_be_bytes([l4[4], l4[5]])) != l4.len()
                || payload == 0
                || l4[6..8] == [0, 0]
            {
                return Class::Flow(key);
            }
            if verify
                && ((!key.v6 && checksum::sum(&pkt[..iph]) != 0xffff)
                    || !l4_checksum_ok(pkt, iph, IPPROTO_UDP, key.v6))
            {
                return Class::Flow(key);
            }
            Class::Cand(Cand {
                key,
                proto: Proto::Udp,
                iph_len: iph as u16,
                hdr_len: (iph + 8) as u16,
                payload: payload as u16,
                seq: 0,
                ack: 0,
                psh: false,
            })
        }
        _ => Class::Other,
    }
}
