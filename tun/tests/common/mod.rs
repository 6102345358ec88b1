//! Packet builders and checkers (etherparse) shared by the offload tests.
#![allow(dead_code, unreachable_pub)]

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, NetHeaders, PacketBuilder,
    PacketHeaders, PayloadSlice, TcpHeader, TcpOptionElement, TransportHeader,
};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// Description of one flow's headers.
#[derive(Debug, Clone)]
pub struct Flow {
    pub v6: bool,
    /// IPv4 options (multiple of 4 bytes).
    pub ip_opts: Vec<u8>,
    /// TCP timestamps option.
    pub ts: bool,
    pub ttl: u8,
    pub dscp: u8,
    pub df: bool,
    pub flow_label: u32,
    pub src4: [u8; 4],
    pub dst4: [u8; 4],
    pub src6: [u8; 16],
    pub dst6: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub ack: u32,
    pub window: u16,
}

impl Flow {
    pub fn v4() -> Self {
        Self {
            v6: false,
            ip_opts: Vec::new(),
            ts: false,
            ttl: 64,
            dscp: 0,
            df: true,
            flow_label: 0,
            src4: [100, 64, 0, 1],
            dst4: [100, 64, 0, 2],
            src6: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst6: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            sport: 40000,
            dport: 5201,
            ack: 0x1234_5678,
            window: 502,
        }
    }

    pub fn v6() -> Self {
        Self {
            v6: true,
            flow_label: 0xabcde,
            ..Self::v4()
        }
    }

    fn ip(&self, proto: IpNumber, id: u16, frag: bool) -> IpHeaders {
        if self.v6 {
            IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: self.dscp << 2,
                    flow_label: Ipv6FlowLabel::try_new(self.flow_label).unwrap(),
                    payload_length: 0,
                    next_header: proto,
                    hop_limit: self.ttl,
                    source: self.src6,
                    destination: self.dst6,
                },
                Default::default(),
            )
        } else {
            let mut h = Ipv4Header::new(0, self.ttl, proto, self.src4, self.dst4).unwrap();
            h.identification = id;
            h.dont_fragment = self.df && !frag;
            h.more_fragments = frag;
            h.dscp = etherparse::IpDscp::try_new(self.dscp).unwrap();
            h.options = self.ip_opts.as_slice().try_into().unwrap();
            IpHeaders::Ipv4(h, Default::default())
        }
    }

    /// A TCP packet with full checksums.
    pub fn tcp(&self, id: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = TcpHeader::new(self.sport, self.dport, seq, self.window);
        t.fin = flags & FIN != 0;
        t.syn = flags & SYN != 0;
        t.rst = flags & RST != 0;
        t.psh = flags & PSH != 0;
        t.ack = flags & ACK != 0;
        t.urg = flags & URG != 0;
        t.ece = flags & ECE != 0;
        t.cwr = flags & CWR != 0;
        t.acknowledgment_number = self.ack;
        if self.ts {
            t.set_options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(0x0102_0304, 0x0506_0708),
            ])
            .unwrap();
        }
        let b = PacketBuilder::ip(self.ip(IpNumber::TCP, id, false)).tcp_header(t);
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).unwrap();
        v
    }

    /// A UDP packet with full checksums.
    pub fn udp(&self, id: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ip(self.ip(IpNumber::UDP, id, false)).udp(self.sport, self.dport);
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).unwrap();
        v
    }

    /// An IPv4 first fragment (MF set) of a UDP datagram.
    pub fn udp_fragment(&self, id: u16, payload: &[u8]) -> Vec<u8> {
        assert!(!self.v6);
        let b = PacketBuilder::ip(self.ip(IpNumber::UDP, id, true)).udp(self.sport, self.dport);
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).unwrap();
        v
    }
}

/// Deterministic payload bytes.
pub fn payload(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(7919)) >> 1) as u8)
        .collect()
}

/// Insert an 8-byte IPv6 destination-options header in front of the L4 header.
pub fn with_v6_dest_opts(pkt: &[u8]) -> Vec<u8> {
    assert_eq!(pkt[0] >> 4, 6);
    let mut v = pkt[..40].to_vec();
    let nh = v[6];
    v[6] = 60;
    let pl = u16::from_be_bytes([v[4], v[5]]) + 8;
    v[4..6].copy_from_slice(&pl.to_be_bytes());
    v.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
    v.extend_from_slice(&pkt[40..]);
    v
}

/// Naive one's-complement folded sum (independent of the crate's).
pub fn naive_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for p in parts {
        let mut i = 0;
        while i + 1 < p.len() {
            s += u64::from(u16::from_be_bytes([p[i], p[i + 1]]));
            i += 2;
        }
        if i < p.len() {
            s += u64::from(p[i]) << 8;
        }
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Folded pseudo-header sum for `pkt` (IPv4 or IPv6 without extension headers).
pub fn pseudo(pkt: &[u8], l4_off: usize, proto: u8) -> u16 {
    let l4_len = (pkt.len() - l4_off) as u32;
    let len_bytes = l4_len.to_be_bytes();
    if pkt[0] >> 4 == 4 {
        naive_sum(&[&pkt[12..20], &[0, proto], &len_bytes[2..]])
    } else {
        naive_sum(&[&pkt[8..40], &len_bytes, &[0, 0, 0, proto]])
    }
}

/// Assert that every checksum in `pkt` verifies (etherparse's computation).
pub fn assert_checksums(pkt: &[u8]) {
    let h = PacketHeaders::from_ip_slice(pkt).expect("parse");
    let payload = match h.payload {
        PayloadSlice::Tcp(p) | PayloadSlice::Udp(p) => p,
        other => panic!("unexpected payload {other:?}"),
    };
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Tcp(t))) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "ipv4 header checksum"
            );
            assert_eq!(usize::from(ip.total_len), pkt.len());
            assert_eq!(
                t.checksum,
                t.calc_checksum_ipv4(ip, payload).unwrap(),
                "tcp/ipv4 checksum"
            );
        }
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(u))) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "ipv4 header checksum"
            );
            assert_eq!(
                u.checksum,
                u.calc_checksum_ipv4(ip, payload).unwrap(),
                "udp/ipv4 checksum"
            );
            assert_eq!(usize::from(u.length), 8 + payload.len());
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Tcp(t))) => {
            assert_eq!(usize::from(ip.payload_length) + 40, pkt.len());
            assert_eq!(
                t.checksum,
                t.calc_checksum_ipv6(ip, payload).unwrap(),
                "tcp/ipv6 checksum"
            );
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Udp(u))) => {
            assert_eq!(usize::from(ip.payload_length) + 40, pkt.len());
            assert_eq!(
                u.checksum,
                u.calc_checksum_ipv6(ip, payload).unwrap(),
                "udp/ipv6 checksum"
            );
        }
        other => panic!("unexpected headers {other:?}"),
    }
}
