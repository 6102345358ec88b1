//! Split and coalesce on packets built with etherparse.

mod common;

use common::*;
use uring_tunnel_tun::{
    Coalescer, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, GroConfig, GsoSplit,
    OffloadError, VNET_HDR_LEN, VirtioNetHdr, complete_checksum, split_into,
};

fn coalesce(pkts: &[Vec<u8>], cfg: GroConfig) -> Vec<Vec<u8>> {
    let mut c = Coalescer::new(128, cfg);
    let mut out = vec![0u8; c.output_capacity(pkts)];
    let writes = c.coalesce(pkts, &mut out).unwrap();
    writes.iter().map(|r| out[r.clone()].to_vec()).collect()
}

/// Split one write (vnet header + packet).
fn split(write: &[u8]) -> Vec<Vec<u8>> {
    let hdr = VirtioNetHdr::parse(write).unwrap();
    let pkt = &write[VNET_HDR_LEN..];
    let s = GsoSplit::new(&hdr, pkt).unwrap();
    (0..s.segments())
        .map(|i| {
            let mut b = vec![0u8; s.segment_len(i)];
            assert_eq!(s.write_segment(i, &mut b).unwrap(), b.len());
            b
        })
        .collect()
}

fn plain(pkt: &[u8]) -> Vec<u8> {
    let mut v = VirtioNetHdr::NONE.to_bytes().to_vec();
    v.extend_from_slice(pkt);
    v
}

/// The super-packet (with vnet header) the kernel would hand us for `segs`,
/// built independently of the crate.
fn kernel_super(segs: &[Vec<u8>], udp: bool) -> Vec<u8> {
    let first = &segs[0];
    let last = segs.last().unwrap();
    let v6 = first[0] >> 4 == 6;
    let iph = if v6 {
        40
    } else {
        usize::from(first[0] & 15) * 4
    };
    let l4h = if udp {
        8
    } else {
        usize::from(first[iph + 12] >> 4) * 4
    };
    let h = iph + l4h;
    let mut p = first[..h].to_vec();
    for s in segs {
        p.extend_from_slice(&s[h..]);
    }
    let total = p.len();
    if v6 {
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    } else {
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[10..12].fill(0);
        let c = !naive_sum(&[&p[..iph]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let (proto, off) = if udp { (17, 6) } else { (6, 16) };
    if udp {
        p[iph + 4..iph + 6].copy_from_slice(&((total - iph) as u16).to_be_bytes());
    } else {
        // Flags of the last segment (FIN/PSH) on the super-packet.
        p[iph + 13] = last[iph + 13] | (first[iph + 13] & CWR);
    }
    let ps = pseudo(&p, iph, proto);
    p[iph + off..iph + off + 2].copy_from_slice(&ps.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if udp {
            GSO_UDP_L4
        } else if v6 {
            GSO_TCPV6
        } else {
            GSO_TCPV4
        },
        hdr_len: h as u16,
        gso_size: (first.len() - h) as u16,
        csum_start: iph as u16,
        csum_offset: off as u16,
    };
    let mut v = hdr.to_bytes().to_vec();
    v.extend_from_slice(&p);
    v
}

fn tcp_segments(f: &Flow, id0: u16, seq0: u32, sizes: &[usize], last_flags: u8) -> Vec<Vec<u8>> {
    let mut seq = seq0;
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let flags = if i + 1 == sizes.len() {
                last_flags
            } else {
                ACK
            };
            let p = f.tcp(id0.wrapping_add(i as u16), seq, flags, &payload(n, seq));
            seq = seq.wrapping_add(n as u32);
            p
        })
        .collect()
}

fn udp_segments(f: &Flow, id0: u16, sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| f.udp(id0.wrapping_add(i as u16), &payload(n, i as u32)))
        .collect()
}

/// segments → coalesce → one write equal to the kernel's super-packet → split → segments.
fn assert_roundtrip(segs: &[Vec<u8>], udp: bool) {
    for s in segs {
        assert_checksums(s);
    }
    let writes = coalesce(segs, GroConfig::default());
    assert_eq!(writes.len(), 1, "expected one coalesced write");
    assert_eq!(
        writes[0],
        kernel_super(segs, udp),
        "coalesced write differs from kernel super-packet"
    );
    let back = split(&writes[0]);
    assert_eq!(back.len(), segs.len());
    for (i, (a, b)) in back.iter().zip(segs).enumerate() {
        assert_checksums(a);
        assert_eq!(a, b, "segment {i} differs after split");
    }
}

#[test]
fn tcp4_roundtrip_equal_sizes_and_short_last_with_psh() {
    assert_roundtrip(
        &tcp_segments(&Flow::v4(), 7, 1000, &[1448; 8], ACK | PSH),
        false,
    );
    assert_roundtrip(
        &tcp_segments(&Flow::v4(), 7, 1000, &[1400, 1400, 1400, 17], ACK | PSH),
        false,
    );
    assert_roundtrip(
        &tcp_segments(&Flow::v4(), 7, 1000, &[1400, 1400, 1399], ACK),
        false,
    );
}

#[test]
fn tcp4_roundtrip_with_ip_options_timestamps_and_wrapping_id_seq() {
    let mut f = Flow::v4();
    f.ip_opts = vec![0x94, 0x04, 0x00, 0x00]; // router alert
    f.ts = true;
    f.dscp = 10;
    assert_roundtrip(
        &tcp_segments(&f, 0xfffe, u32::MAX - 2000, &[1388; 5], ACK | PSH),
        false,
    );
}

#[test]
fn tcp6_roundtrip_with_timestamps() {
    let mut f = Flow::v6();
    f.ts = true;
    assert_roundtrip(&tcp_segments(&f, 0, 5, &[1428; 6], ACK | PSH), false);
    assert_roundtrip(
        &tcp_segments(&Flow::v6(), 0, 5, &[1000, 1000, 3], ACK),
        false,
    );
}

#[test]
fn udp_roundtrip_v4_v6() {
    assert_roundtrip(&udp_segments(&Flow::v4(), 40, &[1392; 10]), true);
    assert_roundtrip(&udp_segments(&Flow::v4(), 40, &[1200, 1200, 5]), true);
    assert_roundtrip(
        &udp_segments(&Flow::v6(), 0, &[1392, 1392, 1392, 1000]),
        true,
    );
}

#[test]
fn tcp_max_64k_then_new_group() {
    let segs = tcp_segments(&Flow::v4(), 1, 1, &[1400; 60], ACK);
    let writes = coalesce(&segs, GroConfig::default());
    assert_eq!(writes.len(), 2);
    for w in &writes {
        assert!(w.len() - VNET_HDR_LEN <= 65535);
    }
    let back: Vec<Vec<u8>> = writes.iter().flat_map(|w| split(w)).collect();
    assert_eq!(back, segs);
}

#[test]
fn max_segments_is_respected() {
    let segs = udp_segments(&Flow::v4(), 1, &[100; 10]);
    let cfg = GroConfig {
        max_segments: 4,
        ..GroConfig::default()
    };
    let writes = coalesce(&segs, cfg);
    assert_eq!(writes.len(), 3);
    let back: Vec<Vec<u8>> = writes.iter().flat_map(|w| split(w)).collect();
    assert_eq!(back, segs);
}

#[test]
fn split_kernel_like_flags_cwr_first_fin_psh_last() {
    let f = Flow::v4();
    // Segments as the kernel's own segmentation writes them.
    let mut segs = tcp_segments(&f, 300, 10, &[1000, 1000, 1000, 600], ACK | PSH | FIN);
    segs[0] = f.tcp(300, 10, ACK | CWR, &payload(1000, 10));
    let sup = kernel_super(&segs, false);
    assert_eq!(sup[VNET_HDR_LEN + 20 + 13], ACK | PSH | FIN | CWR);
    let back = split(&sup);
    assert_eq!(back, segs);
    // CWR on the first and FIN on the last are not coalescable; the middle two are.
    let writes = coalesce(&segs, GroConfig::default());
    assert_eq!(writes.len(), 3);
    assert_eq!(writes[0], plain(&segs[0]));
    assert_eq!(writes[2], plain(&segs[3]));
    assert_eq!(split(&writes[1]), segs[1..3].to_vec());
}

#[test]
fn control_flags_pass_through_and_keep_order() {
    let f = Flow::v4();
    for flag in [SYN, FIN, RST, URG, ECE, CWR] {
        let a = f.tcp(1, 100, ACK, &payload(500, 1));
        let b = f.tcp(2, 600, ACK | flag, &payload(500, 2));
        let c = f.tcp(3, 1100, ACK, &payload(500, 3));
        let writes = coalesce(&[a.clone(), b.clone(), c.clone()], GroConfig::default());
        assert_eq!(
            writes,
            vec![plain(&a), plain(&b), plain(&c)],
            "flag {flag:#x}"
        );
    }
    // A bare ACK (no payload) and a SYN without ACK.
    let a = f.tcp(1, 100, ACK, &[]);
    let b = f.tcp(2, 100, SYN, &[]);
    assert_eq!(
        coalesce(&[a.clone(), b.clone()], GroConfig::default()),
        vec![plain(&a), plain(&b)]
    );
}

#[test]
fn psh_in_the_middle_closes_the_group() {
    let f = Flow::v4();
    let a = f.tcp(1, 0, ACK, &payload(1000, 1));
    let b = f.tcp(2, 1000, ACK | PSH, &payload(1000, 2));
    let c = f.tcp(3, 2000, ACK, &payload(1000, 3));
    let d = f.tcp(4, 3000, ACK, &payload(1000, 4));
    let writes = coalesce(
        &[a.clone(), b.clone(), c.clone(), d.clone()],
        GroConfig::default(),
    );
    assert_eq!(writes.len(), 2);
    assert_eq!(split(&writes[0]), vec![a, b]);
    assert_eq!(split(&writes[1]), vec![c, d]);
}

#[test]
fn out_of_order_and_overlapping_pass_through_unchanged() {
    let f = Flow::v4();
    let a = f.tcp(1, 0, ACK, &payload(1000, 1));
    let c = f.tcp(3, 2000, ACK, &payload(1000, 3));
    let b = f.tcp(2, 1000, ACK, &payload(1000, 2));
    let w = coalesce(&[a.clone(), c.clone(), b.clone()], GroConfig::default());
    assert_eq!(w, vec![plain(&a), plain(&c), plain(&b)]);
    // Overlap: second starts inside the first.
    let o = f.tcp(2, 500, ACK, &payload(1000, 2));
    assert_eq!(
        coalesce(&[a.clone(), o.clone()], GroConfig::default()),
        vec![plain(&a), plain(&o)]
    );
    // Retransmission of the same segment.
    assert_eq!(
        coalesce(&[a.clone(), a.clone()], GroConfig::default()),
        vec![plain(&a), plain(&a)]
    );
}

#[test]
fn different_sizes() {
    let f = Flow::v4();
    // Larger after smaller: no merge.
    let a = f.tcp(1, 0, ACK, &payload(1000, 1));
    let b = f.tcp(2, 1000, ACK, &payload(1200, 2));
    assert_eq!(
        coalesce(&[a.clone(), b.clone()], GroConfig::default()),
        vec![plain(&a), plain(&b)]
    );
    // Shorter one ends the group; the next starts a new one.
    let s = f.tcp(2, 1000, ACK, &payload(500, 2));
    let c = f.tcp(3, 1500, ACK, &payload(1000, 3));
    let d = f.tcp(4, 2500, ACK, &payload(1000, 4));
    let w = coalesce(
        &[a.clone(), s.clone(), c.clone(), d.clone()],
        GroConfig::default(),
    );
    assert_eq!(w.len(), 2);
    assert_eq!(split(&w[0]), vec![a, s]);
    assert_eq!(split(&w[1]), vec![c, d]);
}

#[test]
fn header_field_differences_prevent_merge() {
    let base = Flow::v4();
    let variants: Vec<Flow> = vec![
        Flow {
            ttl: 63,
            ..base.clone()
        },
        Flow {
            dscp: 8,
            ..base.clone()
        },
        Flow {
            df: false,
            ..base.clone()
        },
        Flow {
            ack: base.ack + 1,
            ..base.clone()
        },
        Flow {
            window: 1,
            ..base.clone()
        },
        Flow {
            ts: true,
            ..base.clone()
        },
        Flow {
            ip_opts: vec![0x94, 4, 0, 0],
            ..base.clone()
        },
        Flow {
            sport: 1,
            ..base.clone()
        },
    ];
    for (i, v) in variants.iter().enumerate() {
        let a = base.tcp(1, 0, ACK, &payload(1000, 1));
        let b = v.tcp(2, 1000, ACK, &payload(1000, 2));
        let w = coalesce(&[a.clone(), b.clone()], GroConfig::default());
        assert_eq!(w, vec![plain(&a), plain(&b)], "variant {i}");
    }
    // IPv6: flow label and hop limit.
    let b6 = Flow::v6();
    for v in [
        Flow {
            flow_label: 1,
            ..b6.clone()
        },
        Flow {
            ttl: 1,
            ..b6.clone()
        },
    ] {
        let a = b6.tcp(0, 0, ACK, &payload(1000, 1));
        let b = v.tcp(0, 1000, ACK, &payload(1000, 2));
        assert_eq!(
            coalesce(&[a.clone(), b.clone()], GroConfig::default()),
            vec![plain(&a), plain(&b)]
        );
    }
    // Differing IPv4 ids alone do not prevent merging (wireguard-go, kernel GRO).
    let a = base.tcp(1, 0, ACK, &payload(1000, 1));
    let b = base.tcp(77, 1000, ACK, &payload(1000, 2));
    assert_eq!(coalesce(&[a, b], GroConfig::default()).len(), 1);
}

#[test]
fn ipv6_extension_headers_and_ipv4_fragments_pass_through() {
    let f6 = Flow::v6();
    let a = with_v6_dest_opts(&f6.tcp(0, 0, ACK, &payload(1000, 1)));
    let b = with_v6_dest_opts(&f6.tcp(0, 1000, ACK, &payload(1000, 2)));
    assert_eq!(
        coalesce(&[a.clone(), b.clone()], GroConfig::default()),
        vec![plain(&a), plain(&b)]
    );
    let u1 = with_v6_dest_opts(&f6.udp(0, &payload(500, 1)));
    let u2 = with_v6_dest_opts(&f6.udp(0, &payload(500, 2)));
    assert_eq!(
        coalesce(&[u1.clone(), u2.clone()], GroConfig::default()),
        vec![plain(&u1), plain(&u2)]
    );
    let f4 = Flow::v4();
    let g1 = f4.udp_fragment(9, &payload(800, 1));
    let g2 = f4.udp_fragment(10, &payload(800, 2));
    assert_eq!(
        coalesce(&[g1.clone(), g2.clone()], GroConfig::default()),
        vec![plain(&g1), plain(&g2)]
    );
}

#[test]
fn bad_checksums_pass_through() {
    let f = Flow::v4();
    let a = f.tcp(1, 0, ACK, &payload(1000, 1));
    let mut b = f.tcp(2, 1000, ACK, &payload(1000, 2));
    let n = b.len();
    b[n - 1] ^= 0x55;
    assert_eq!(
        coalesce(&[a.clone(), b.clone()], GroConfig::default()),
        vec![plain(&a), plain(&b)]
    );
    // Bad IPv4 header checksum.
    let mut c = f.tcp(2, 1000, ACK, &payload(1000, 2));
    c[10] ^= 1;
    assert_eq!(
        coalesce(&[a.clone(), c.clone()], GroConfig::default()),
        vec![plain(&a), plain(&c)]
    );
    // UDP with checksum 0 (none) is not coalesced.
    let mut u1 = f.udp(1, &payload(100, 1));
    let mut u2 = f.udp(2, &payload(100, 2));
    u1[26..28].fill(0);
    u2[26..28].fill(0);
    assert_eq!(
        coalesce(&[u1.clone(), u2.clone()], GroConfig::default()),
        vec![plain(&u1), plain(&u2)]
    );
}

/// Checksums are verified while copying a planned group; a bad packet inside
/// it must give exactly what up-front verification gives: the group is cut
/// before it, it passes through unchanged, and the rest of its flow forms new
/// groups. Other flows in the batch are unaffected.
#[test]
fn bad_checksum_inside_a_group_cuts_it() {
    let f = Flow::v4();
    let mut t = tcp_segments(&f, 7, 1000, &[900; 7], ACK);
    let n = t[2].len();
    t[2][n - 3] ^= 0x40;
    // Corrupt IPv4 header checksum of the last one.
    t[6][11] ^= 1;
    let mut fu = Flow::v6();
    fu.sport = 999;
    let mut u = udp_segments(&fu, 0, &[300; 4]);
    // Corrupt UDP head.
    u[0][60] ^= 0xff;
    let batch: Vec<Vec<u8>> = vec![
        t[0].clone(),
        u[0].clone(),
        t[1].clone(),
        u[1].clone(),
        t[2].clone(),
        u[2].clone(),
        t[3].clone(),
        t[4].clone(),
        u[3].clone(),
        t[5].clone(),
        t[6].clone(),
    ];
    let w = coalesce(&batch, GroConfig::default());
    assert_eq!(
        w.len(),
        6,
        "writes: {:?}",
        w.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(split(&w[0]), t[..2].to_vec());
    assert_eq!(w[1], plain(&u[0]));
    assert_eq!(split(&w[2]), u[1..].to_vec());
    assert_eq!(w[3], plain(&t[2]));
    assert_eq!(split(&w[4]), t[3..6].to_vec());
    assert_eq!(w[5], plain(&t[6]));
    for x in [&w[0], &w[2], &w[4]] {
        assert_ne!(VirtioNetHdr::parse(x).unwrap().gso_type, GSO_NONE);
    }
    // Without verification the same batch merges everything per flow.
    let nv = GroConfig {
        verify_checksums: false,
        ..GroConfig::default()
    };
    assert_eq!(coalesce(&batch, nv).len(), 2);
    // The coalescer is reusable after a batch that needed the slow path.
    let mut c = Coalescer::new(64, GroConfig::default());
    let mut out = vec![0u8; c.output_capacity(&batch)];
    assert_eq!(c.coalesce(&batch, &mut out).unwrap().len(), 6);
    let good = tcp_segments(&f, 1, 5, &[900; 5], ACK);
    assert_eq!(c.coalesce(&good, &mut out).unwrap().len(), 1);
}

#[test]
fn interleaved_flows_coalesce_separately_in_order_of_first_packet() {
    let fa = Flow::v4();
    let fb = Flow {
        sport: 40001,
        ..Flow::v4()
    };
    let fu = Flow::v6();
    let a = tcp_segments(&fa, 1, 0, &[1000; 3], ACK);
    let b = tcp_segments(&fb, 1, 5000, &[900; 3], ACK | PSH);
    let u = udp_segments(&fu, 0, &[700; 3]);
    let mut pkts = Vec::new();
    for i in 0..3 {
        pkts.push(a[i].clone());
        pkts.push(u[i].clone());
        pkts.push(b[i].clone());
    }
    let w = coalesce(&pkts, GroConfig::default());
    assert_eq!(w.len(), 3);
    assert_eq!(split(&w[0]), a);
    assert_eq!(split(&w[1]), u);
    assert_eq!(split(&w[2]), b);
}

#[test]
fn config_disables() {
    let u = udp_segments(&Flow::v4(), 0, &[700; 3]);
    let t = tcp_segments(&Flow::v4(), 0, 0, &[700; 3], ACK);
    let no_udp = GroConfig {
        udp: false,
        ..GroConfig::default()
    };
    assert_eq!(
        coalesce(&u, no_udp),
        u.iter().map(|p| plain(p)).collect::<Vec<_>>()
    );
    assert_eq!(coalesce(&t, no_udp).len(), 1);
    let no_tcp = GroConfig {
        tcp: false,
        ..GroConfig::default()
    };
    assert_eq!(
        coalesce(&t, no_tcp),
        t.iter().map(|p| plain(p)).collect::<Vec<_>>()
    );
    // No vnet header: packets copied out unchanged, no header.
    let off = GroConfig {
        vnet_hdr: false,
        ..GroConfig::default()
    };
    assert_eq!(coalesce(&t, off), t);
}

#[test]
fn coalescer_errors_and_reuse() {
    let t = tcp_segments(&Flow::v4(), 0, 0, &[700; 3], ACK);
    let mut c = Coalescer::new(2, GroConfig::default());
    let mut out = vec![0u8; 10_000];
    assert!(matches!(
        c.coalesce(&t, &mut out),
        Err(OffloadError::BatchTooLarge { .. })
    ));
    let mut c = Coalescer::new(8, GroConfig::default());
    assert!(matches!(
        c.coalesce(&t, &mut out[..100]),
        Err(OffloadError::OutputTooSmall { .. })
    ));
    // Many batches through one coalescer (generation counter reuse).
    for _ in 0..1000 {
        assert_eq!(c.coalesce(&t, &mut out).unwrap().len(), 1);
    }
}

#[test]
fn needs_csum_single_packets_are_completed() {
    for (f, udp) in [
        (Flow::v4(), false),
        (Flow::v6(), false),
        (Flow::v4(), true),
        (Flow::v6(), true),
    ] {
        let good = if udp {
            f.udp(3, &payload(333, 3))
        } else {
            f.tcp(3, 9, ACK | PSH, &payload(333, 3))
        };
        let iph = if f.v6 { 40 } else { 20 };
        let off = if udp { 6 } else { 16 };
        let mut partial = good.clone();
        let ps = pseudo(&partial, iph, if udp { 17 } else { 6 });
        partial[iph + off..iph + off + 2].copy_from_slice(&ps.to_be_bytes());
        let hdr = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_NONE,
            hdr_len: 0,
            gso_size: 0,
            csum_start: iph as u16,
            csum_offset: off as u16,
        };
        // Through the splitter (copy) ...
        let mut w = hdr.to_bytes().to_vec();
        w.extend_from_slice(&partial);
        assert_eq!(split(&w), vec![good.clone()]);
        // ... and in place.
        complete_checksum(&hdr, &mut partial).unwrap();
        assert_eq!(partial, good);
    }
    // A plain header copies unchanged; complete_checksum is a no-op.
    let p = Flow::v4().udp(1, &payload(10, 1));
    assert_eq!(split(&plain(&p)), vec![p.clone()]);
    let mut q = p.clone();
    complete_checksum(&VirtioNetHdr::NONE, &mut q).unwrap();
    assert_eq!(q, p);
}

#[test]
fn split_into_caller_buffers_and_errors() {
    let segs = tcp_segments(&Flow::v4(), 0, 0, &[1000, 1000, 400], ACK);
    let sup = kernel_super(&segs, false);
    let hdr = VirtioNetHdr::parse(&sup).unwrap();
    let pkt = &sup[VNET_HDR_LEN..];
    let mut bufs = vec![vec![0u8; 1500]; 4];
    let mut lens = [0usize; 4];
    assert_eq!(split_into(&hdr, pkt, &mut bufs, &mut lens).unwrap(), 3);
    for i in 0..3 {
        assert_eq!(bufs[i][..lens[i]], segs[i][..]);
    }
    assert!(matches!(
        split_into(&hdr, pkt, &mut bufs[..2], &mut lens),
        Err(OffloadError::OutputTooSmall { need: 3, have: 2 })
    ));
    let s = GsoSplit::new(&hdr, pkt).unwrap();
    assert!(s.is_gso());
    assert_eq!(s.max_segment_len(), segs[0].len());
    assert!(matches!(
        s.write_segment(3, &mut bufs[0]),
        Err(OffloadError::SegmentIndex { .. })
    ));
    assert!(matches!(
        s.write_segment(0, &mut [0u8; 100]),
        Err(OffloadError::OutputTooSmall { .. })
    ));
    // Invalid headers.
    let bad = |h: VirtioNetHdr| GsoSplit::new(&h, pkt).unwrap_err();
    assert_eq!(
        bad(VirtioNetHdr { gso_size: 0, ..hdr }),
        OffloadError::ZeroGsoSize
    );
    assert!(matches!(
        bad(VirtioNetHdr {
            gso_type: GSO_TCPV6,
            ..hdr
        }),
        OffloadError::Malformed(_)
    ));
    assert!(matches!(
        bad(VirtioNetHdr { gso_type: 3, ..hdr }),
        OffloadError::UnsupportedGsoType(3)
    ));
    assert!(matches!(
        bad(VirtioNetHdr {
            csum_offset: 6,
            ..hdr
        }),
        OffloadError::Malformed(_)
    ));
    assert!(matches!(
        bad(VirtioNetHdr {
            csum_start: 24,
            ..hdr
        }),
        OffloadError::Malformed(_)
    ));
    assert!(GsoSplit::new(&hdr, &pkt[..30]).is_err());
    assert!(GsoSplit::new(&hdr, &[]).is_err());
    // ECN bit is accepted.
    assert_eq!(
        GsoSplit::new(
            &VirtioNetHdr {
                gso_type: GSO_TCPV4 | 0x80,
                ..hdr
            },
            pkt
        )
        .unwrap()
        .segments(),
        3
    );
}
