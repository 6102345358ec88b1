//! Property tests: arbitrary bytes and headers never panic the parser,
//! splitter or coalescer, and every produced segment has valid checksums.

mod common;

use common::*;
use proptest::prelude::*;
use uring_tunnel_tun::{Coalescer, GroConfig, GsoSplit, VirtioNetHdr, complete_checksum};

fn arb_hdr() -> impl Strategy<Value = VirtioNetHdr> {
    (
        prop_oneof![Just(0u8), Just(1), any::<u8>()],
        prop_oneof![
            Just(0u8),
            Just(1),
            Just(3),
            Just(4),
            Just(5),
            Just(0x81),
            any::<u8>()
        ],
        any::<u16>(),
        prop_oneof![Just(0u16), 1u16..2000, any::<u16>()],
        prop_oneof![Just(20u16), Just(40), any::<u16>()],
        prop_oneof![Just(6u16), Just(16), any::<u16>()],
    )
        .prop_map(
            |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VirtioNetHdr {
                flags,
                gso_type,
                hdr_len,
                gso_size,
                csum_start,
                csum_offset,
            },
        )
}

/// A valid TCP or UDP packet (v4/v6), optionally with random byte mutations.
fn arb_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<bool>(),
        0usize..3000,
        any::<u32>(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    )
        .prop_map(|(v6, udp, n, seq, muts)| {
            let f = if v6 { Flow::v6() } else { Flow::v4() };
            let mut p = if udp {
                f.udp(seq as u16, &payload(n, seq))
            } else {
                f.tcp(seq as u16, seq, ACK, &payload(n, seq))
            };
            for (i, b) in muts {
                let len = p.len();
                p[i % len] = b;
            }
            p
        })
}

fn exercise_split(hdr: &VirtioNetHdr, pkt: &[u8]) {
    if let Ok(s) = GsoSplit::new(hdr, pkt) {
        let mut out = vec![0u8; 65536];
        for i in 0..s.segments().min(200) {
            let n = s.write_segment(i, &mut out).unwrap();
            assert_eq!(n, s.segment_len(i));
        }
        let _ = s.write_segment(s.segments(), &mut out);
        let _ = s.write_segment(0, &mut out[..3]);
    }
    let mut copy = pkt.to_vec();
    let _ = complete_checksum(hdr, &mut copy);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_split_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000), hdr in arb_hdr()) {
        let _ = VirtioNetHdr::parse(&bytes);
        exercise_split(&hdr, &bytes);
        if let Ok(h) = VirtioNetHdr::parse(&bytes) {
            exercise_split(&h, &bytes[10..]);
        }
    }

    #[test]
    fn split_valid_packets_with_random_headers(pkt in arb_packet(), hdr in arb_hdr()) {
        exercise_split(&hdr, &pkt);
    }

    /// A valid super-packet with any gso_size splits into segments whose
    /// checksums all verify.
    #[test]
    fn split_segments_always_verify(v6 in any::<bool>(), udp in any::<bool>(), n in 1usize..20000, gso in 1u16..1500, ts in any::<bool>()) {
        let mut f = if v6 { Flow::v6() } else { Flow::v4() };
        f.ts = ts;
        let p = if udp { f.udp(1, &payload(n, 9)) } else { f.tcp(1, 77, ACK | PSH, &payload(n, 9)) };
        let iph = if v6 { 40 } else { 20 };
        let hdr = VirtioNetHdr {
            flags: 1,
            gso_type: match (udp, v6) { (true, _) => 5, (false, false) => 1, (false, true) => 4 },
            hdr_len: 0,
            gso_size: gso,
            csum_start: iph,
            csum_offset: if udp { 6 } else { 16 },
        };
        let s = GsoSplit::new(&hdr, &p).unwrap();
        prop_assert_eq!(s.segments(), n.div_ceil(usize::from(gso)));
        let mut out = vec![0u8; 2000];
        for i in 0..s.segments() {
            let len = s.write_segment(i, &mut out).unwrap();
            assert_checksums(&out[..len]);
        }
    }

    #[test]
    fn coalesce_random_batches(pkts in proptest::collection::vec(prop_oneof![arb_packet(), proptest::collection::vec(any::<u8>(), 0..200)], 0..40)) {
        let mut c = Coalescer::new(64, GroConfig::default());
        let mut out = vec![0u8; c.output_capacity(&pkts)];
        let writes = c.coalesce(&pkts, &mut out).unwrap().to_vec();
        prop_assert!(writes.len() <= pkts.len());
        // Every write splits back; the split output covers exactly the input bytes.
        let mut total = 0;
        for w in &writes {
            let hdr = VirtioNetHdr::parse(&out[w.clone()]).unwrap();
            let s = GsoSplit::new(&hdr, &out[w.start + 10..w.end]).unwrap();
            let mut buf = vec![0u8; 65536];
            for i in 0..s.segments() {
                total += s.write_segment(i, &mut buf).unwrap();
            }
        }
        prop_assert_eq!(total, pkts.iter().map(Vec::len).sum::<usize>());
    }
}
