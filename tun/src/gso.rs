//! Splitting TSO/USO super-packets (and completing partial checksums) into
//! MTU-sized packets, written into caller-owned buffers.
//!
//! Segments are produced the way Linux's own software segmentation
//! (`tcp_gso_segment` / `__udp_gso_segment` / `inet_gso_segment`) writes
//! them: IPv4 id incremented per segment, IPv4 total length and header
//! checksum, IPv6 payload length, TCP sequence advanced by `gso_size`,
//! FIN/PSH only on the last segment, CWR only on the first, UDP length, and
//! full TCP/UDP checksums.

use crate::checksum;
use crate::error::OffloadError;
use crate::vnet::{GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VirtioNetHdr};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Single packet copied unchanged.
    Plain,
    /// Single packet whose checksum at `start + offset` must be completed.
    Csum { start: usize, offset: usize },
    /// TCP super-packet.
    Tcp,
    /// UDP (USO) super-packet.
    Udp,
}

/// A validated super-packet, ready to be written out segment by segment.
///
/// Segments are independent: [`GsoSplit::write_segment`] may be called for
/// any index in any order, into any buffer (e.g. straight into the send
/// buffer behind room for a WireGuard header). Nothing is allocated.
#[derive(Debug, Clone, Copy)]
pub struct GsoSplit<'a> {
    pkt: &'a [u8],
    kind: Kind,
    v6: bool,
    l4_off: usize,
    hdr_len: usize,
    gso_size: usize,
    count: usize,
    /// Per-segment invariants, computed once (zero for single packets).
    pre: Precomputed,
}

/// What every segment shares, so `write_segment` only adds the fields that
/// change per segment to these sums instead of re-reading the headers.
#[derive(Debug, Clone, Copy, Default)]
struct Precomputed {
    /// Folded sum of the IPv4 header with total length, id and checksum
    /// taken as zero.
    ip_base: u16,
    /// IPv4 id of the first segment.
    ip_id: u16,
    /// Folded sum of the pseudo-header addresses and protocol (length not
    /// included).
    pseudo_base: u16,
    /// Folded sum of the L4 header with the checksum and the per-segment
    /// fields (TCP sequence number and data offset/flags word, UDP length)
    /// taken as zero.
    l4_base: u16,
    /// TCP sequence number of the first segment.
    seq: u32,
    /// TCP data offset and flags bytes of the super-packet.
    tcp_word: [u8; 2],
}

impl Precomputed {
    fn new(pkt: &[u8], v6: bool, l4: usize, hdr_len: usize, tcp: bool) -> Self {
        let mut p = Self::default();
        let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        if v6 {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&pkt[8..24]);
            d.copy_from_slice(&pkt[24..40]);
            p.pseudo_base = checksum::pseudo_v6(&s, &d, proto, 0);
        } else {
            p.pseudo_base = checksum::pseudo_v4(
                [pkt[12], pkt[13], pkt[14], pkt[15]],
                [pkt[16], pkt[17], pkt[18], pkt[19]],
                proto,
                0,
            );
            // Subtract the varying fields from the plain header sum:
            // one's-complement subtraction is addition of the complement.
            let all = checksum::sum(&pkt[..l4]);
            let var = checksum::sum(&pkt[2..6]);
            let csum = u16::from_be_bytes([pkt[10], pkt[11]]);
            p.ip_base = checksum::add(checksum::add(all, !var), !csum);
            p.ip_id = u16::from_be_bytes([pkt[4], pkt[5]]);
        }
        let h = &pkt[l4..hdr_len];
        let all = checksum::sum(h);
        let (var, csum) = if tcp {
            p.seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            p.tcp_word = [h[12], h[13]];
            let var = checksum::add(checksum::sum(&h[4..8]), checksum::sum(&h[12..14]));
            (var, u16::from_be_bytes([h[16], h[17]]))
        } else {
            (
                u16::from_be_bytes([h[4], h[5]]),
                u16::from_be_bytes([h[6], h[7]]),
            )
        };
        p.l4_base = checksum::add(checksum::add(all, !var), !csum);
        p
    }
}

impl<'a> GsoSplit<'a> {
    /// Validate `pkt` (the IP packet following the virtio-net header `hdr`).
    ///
    /// Never panics on any input; malformed or unsupported input gives an
    /// error and the packet should be dropped.
    pub fn new(hdr: &VirtioNetHdr, pkt: &'a [u8]) -> Result<Self, OffloadError> {
        let gso = hdr.gso_kind();
        if gso == GSO_NONE {
            let kind = if hdr.needs_csum() {
                let start = usize::from(hdr.csum_start);
                let offset = usize::from(hdr.csum_offset);
                let need = start + offset + 2;
                if need > pkt.len() {
                    return Err(OffloadError::Truncated {
                        need,
                        have: pkt.len(),
                    });
                }
                Kind::Csum { start, offset }
            } else {
                Kind::Plain
            };
            return Ok(Self {
                pkt,
                kind,
                v6: false,
                l4_off: 0,
                hdr_len: 0,
                gso_size: 0,
                count: 1,
                pre: Precomputed::default(),
            });
        }
        let (proto, want_v6) = match gso {
            GSO_TCPV4 => (IPPROTO_TCP, Some(false)),
            GSO_TCPV6 => (IPPROTO_TCP, Some(true)),
            GSO_UDP_L4 => (IPPROTO_UDP, None),
            other => return Err(OffloadError::UnsupportedGsoType(other)),
        };
        if hdr.gso_size == 0 {
            return Err(OffloadError::ZeroGsoSize);
        }
        let first = *pkt
            .first()
            .ok_or(OffloadError::Truncated { need: 20, have: 0 })?;
        let v6 = match first >> 4 {
            4 => false,
            6 => true,
            _ => return Err(OffloadError::Malformed("IP version")),
        };
        if want_v6.is_some_and(|w| w != v6) {
            return Err(OffloadError::Malformed(
                "gso_type does not match IP version",
            ));
        }
        let l4_off = if v6 {
            if pkt.len() < 40 {
                return Err(OffloadError::Truncated {
                    need: 40,
                    have: pkt.len(),
                });
            }
            if hdr.needs_csum() {
                let s = usize::from(hdr.csum_start);
                if s < 40 {
                    return Err(OffloadError::Malformed("csum_start inside IPv6 header"));
                }
                s
            } else if pkt[6] == proto {
                40
            } else {
                return Err(OffloadError::Malformed("IPv6 next header"));
            }
        } else {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 {
                return Err(OffloadError::Malformed("IPv4 IHL"));
            }
            if pkt.len() < ihl {
                return Err(OffloadError::Truncated {
                    need: ihl,
                    have: pkt.len(),
                });
            }
            if pkt[9] != proto {
                return Err(OffloadError::Malformed(
                    "IPv4 protocol does not match gso_type",
                ));
            }
            if pkt[6] & 0x3f != 0 || pkt[7] != 0 {
                return Err(OffloadError::Malformed("IPv4 fragment with GSO"));
            }
            if hdr.needs_csum() && usize::from(hdr.csum_start) != ihl {
                return Err(OffloadError::Malformed("csum_start is not the L4 header"));
            }
            ihl
        };
        let (l4_hlen, csum_off) = if proto == IPPROTO_TCP {
            let b = *pkt.get(l4_off + 12).ok_or(OffloadError::Truncated {
                need: l4_off + 20,
                have: pkt.len(),
            })?;
            let doff = usize::from(b >> 4) * 4;
            if doff < 20 {
                return Err(OffloadError::Malformed("TCP data offset"));
            }
            (doff, 16)
        } else {
            (8, 6)
        };
        if hdr.needs_csum() && usize::from(hdr.csum_offset) != csum_off {
            return Err(OffloadError::Malformed(
                "csum_offset does not match L4 protocol",
            ));
        }
        let hdr_len = l4_off + l4_hlen;
        if pkt.len() <= hdr_len {
            return Err(OffloadError::Truncated {
                need: hdr_len + 1,
                have: pkt.len(),
            });
        }
        let gso_size = usize::from(hdr.gso_size);
        if hdr_len + gso_size > usize::from(u16::MAX) {
            return Err(OffloadError::Malformed("segment longer than 65535"));
        }
        let payload = pkt.len() - hdr_len;
        let count = payload.div_ceil(gso_size);
        let tcp = proto == IPPROTO_TCP;
        let kind = if tcp { Kind::Tcp } else { Kind::Udp };
        Ok(Self {
            pkt,
            kind,
            v6,
            l4_off,
            hdr_len,
            gso_size,
            count,
            pre: Precomputed::new(pkt, v6, l4_off, hdr_len, tcp),
        })
    }

    /// Number of segments.
    pub const fn segments(&self) -> usize {
        self.count
    }

    /// Whether the input is a GSO super-packet (as opposed to a single packet).
    pub const fn is_gso(&self) -> bool {
        matches!(self.kind, Kind::Tcp | Kind::Udp)
    }

    /// Length of segment `i` (0 if out of range).
    pub fn segment_len(&self, i: usize) -> usize {
        match self.kind {
            Kind::Plain | Kind::Csum { .. } => {
                if i == 0 {
                    self.pkt.len()
                } else {
                    0
                }
            }
            Kind::Tcp | Kind::Udp => {
                if i >= self.count {
                    return 0;
                }
                let start = self.hdr_len + i * self.gso_size;
                self.hdr_len + (self.pkt.len() - start).min(self.gso_size)
            }
        }
    }

    /// Largest segment length (what each output buffer must hold).
    pub fn max_segment_len(&self) -> usize {
        self.segment_len(0)
    }

    /// Write segment `i` into the front of `out`; returns its length.
    pub fn write_segment(&self, i: usize, out: &mut [u8]) -> Result<usize, OffloadError> {
        if i >= self.count {
            return Err(OffloadError::SegmentIndex {
                index: i,
                count: self.count,
            });
        }
        let len = self.segment_len(i);
        let have = out.len();
        let out = out
            .get_mut(..len)
            .ok_or(OffloadError::OutputTooSmall { need: len, have })?;
        match self.kind {
            Kind::Plain => {
                out.copy_from_slice(self.pkt);
            }
            Kind::Csum { start, offset } => {
                // Copy and sum in one pass; the field at `start + offset`
                // holds the pseudo-header sum and is part of the sum.
                out[..start].copy_from_slice(&self.pkt[..start]);
                let sum = checksum::copy_and_sum(&self.pkt[start..], &mut out[start..]);
                let c = checksum::finish(sum);
                out[start + offset..start + offset + 2].copy_from_slice(&c.to_be_bytes());
            }
            Kind::Tcp | Kind::Udp => self.write_gso_segment(i, out),
        }
        Ok(len)
    }

    fn write_gso_segment(&self, i: usize, out: &mut [u8]) {
        let h = self.hdr_len;
        let start = h + i * self.gso_size;
        let seg_len = out.len();
        let pre = &self.pre;
        out[..h].copy_from_slice(&self.pkt[..h]);
        // The payload starts at an even offset from the L4 header (TCP and
        // UDP header lengths are multiples of 4), so its sum adds directly.
        let payload =
            checksum::copy_and_sum(&self.pkt[start..start + (seg_len - h)], &mut out[h..]);
        let l4 = self.l4_off;
        // Bounded by the constructor: hdr_len + gso_size <= 65535.
        let l4_len = (seg_len - l4) as u16;
        // IP header.
        if self.v6 {
            out[4..6].copy_from_slice(&((seg_len - 40) as u16).to_be_bytes());
        } else {
            let len = seg_len as u16;
            let id = pre.ip_id.wrapping_add(i as u16);
            out[2..4].copy_from_slice(&len.to_be_bytes());
            out[4..6].copy_from_slice(&id.to_be_bytes());
            let c = checksum::finish(checksum::add(checksum::add(pre.ip_base, len), id));
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let mut s = checksum::add(checksum::add(pre.pseudo_base, l4_len), pre.l4_base);
        s = checksum::add(s, payload);
        let csum_field;
        if self.kind == Kind::Tcp {
            csum_field = l4 + 16;
            let seq = pre.seq.wrapping_add((i * self.gso_size) as u32);
            out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            let mut flags = pre.tcp_word[1];
            if i + 1 != self.count {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            if i != 0 {
                flags &= !TCP_CWR;
            }
            out[l4 + 13] = flags;
            s = checksum::add(s, (seq >> 16) as u16);
            s = checksum::add(s, seq as u16);
            s = checksum::add(s, u16::from_be_bytes([pre.tcp_word[0], flags]));
        } else {
            csum_field = l4 + 6;
            out[l4 + 4..l4 + 6].copy_from_slice(&l4_len.to_be_bytes());
            s = checksum::add(s, l4_len);
        }
        let mut c = checksum::finish(s);
        if self.kind == Kind::Udp && c == 0 {
            c = 0xffff;
        }
        out[csum_field..csum_field + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Complete a partial checksum: sum `[start, end)` (the field holds the
/// pseudo-header sum) and store the complement at `start + offset`.
fn complete_at(pkt: &mut [u8], start: usize, offset: usize) {
    let c = checksum::finish(checksum::sum(&pkt[start..]));
    pkt[start + offset..start + offset + 2].copy_from_slice(&c.to_be_bytes());
}

/// Complete the checksum of a single (non-GSO) packet in place if `hdr`
/// has `NEEDS_CSUM`; no-op otherwise. Returns an error for a GSO header (use
/// [`GsoSplit`]) or out-of-range offsets.
///
/// For UDP a computed checksum of 0 is left as is: the kernel's own
/// `skb_checksum_help` does the same.
pub fn complete_checksum(hdr: &VirtioNetHdr, pkt: &mut [u8]) -> Result<(), OffloadError> {
    if hdr.gso_kind() != GSO_NONE {
        return Err(OffloadError::Malformed("GSO packet needs splitting"));
    }
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let offset = usize::from(hdr.csum_offset);
    let need = start + offset + 2;
    if need > pkt.len() {
        return Err(OffloadError::Truncated {
            need,
            have: pkt.len(),
        });
    }
    complete_at(pkt, start, offset);
    Ok(())
}

/// Split into the caller's buffers: segment `i` goes to the front of
/// `outs[i]` and its length to `lens[i]`. Returns the number of segments.
pub fn split_into<B: AsMut<[u8]>>(
    hdr: &VirtioNetHdr,
    pkt: &[u8],
    outs: &mut [B],
    lens: &mut [usize],
) -> Result<usize, OffloadError> {
    let s = GsoSplit::new(hdr, pkt)?;
    let n = s.segments();
    let have = outs.len().min(lens.len());
    if have < n {
        return Err(OffloadError::OutputTooSmall { need: n, have });
    }
    for (i, (out, len)) in outs.iter_mut().zip(lens.iter_mut()).take(n).enumerate() {
        *len = s.write_segment(i, out.as_mut())?;
    }
    Ok(n)
}
