//! Arbitrary packet lists through the GRO `Coalescer`. Must never panic, and:
//! * the writes lie inside the output buffer, in order, without overlap;
//! * every write parses as virtio-net header + packet that `GsoSplit` accepts;
//! * splitting all writes gives back exactly the input packets (as a multiset), up to IPv4
//!   header checksum, IPv4 ID, L4 checksum and (without URG) urgent pointer fields, which a
//!   split rewrites.
//!
//! Input: `[flags][count][len u16, bytes]…`; flags choose `GroConfig` (vnet header, TCP, UDP,
//! checksum verification, max segments), and bit 7 makes the list from templates (a few
//! valid TCP/UDP flows over IPv4/IPv6 with input-chosen sizes and byte flips) instead of raw.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uring_tunnel_fuzz::{Reader, TCP, UDP, ipv4, ipv6, mutate, normalized};
use uring_tunnel_tun::{Coalescer, GroConfig, GsoSplit, VNET_HDR_LEN, VirtioNetHdr};

const MAX_BATCH: usize = 64;

fn templated(r: &mut Reader<'_>, count: usize) -> Vec<Vec<u8>> {
    let mut seq = [1000u32; 8];
    let mut id = [7u16; 8];
    let mut pkts = Vec::with_capacity(count);
    for _ in 0..count {
        let sel = r.u8();
        let flow = usize::from(sel & 7);
        let len = usize::from(r.u16() % 1500);
        let payload = vec![sel; len];
        let proto = if flow & 1 == 0 { TCP } else { UDP };
        let ports = (1000 + flow as u16, 2000);
        let flags = if sel & 0x80 != 0 { 0x18 } else { 0x10 };
        let mut p = if flow & 2 == 0 {
            ipv4(proto, id[flow], ports, seq[flow], flags, &payload)
        } else {
            ipv6(proto, ports, seq[flow], flags, &payload)
        };
        seq[flow] = seq[flow].wrapping_add(len as u32);
        id[flow] = id[flow].wrapping_add(1);
        if sel & 0x40 != 0 {
            mutate(&mut p, r, 2);
        }
        pkts.push(p);
    }
    pkts
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let flags = r.u8();
    let cfg = GroConfig {
        vnet_hdr: flags & 1 != 0,
        tcp: flags & 2 != 0,
        udp: flags & 4 != 0,
        verify_checksums: flags & 8 != 0,
        max_segments: u16::from((flags >> 4) & 7) * 10 + 1,
    };
    let count = usize::from(r.u8()) % (MAX_BATCH + 1);
    let pkts: Vec<Vec<u8>> = if flags & 0x80 != 0 {
        templated(&mut r, count)
    } else {
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(r.u16() % 2000);
            v.push(r.take(len).to_vec());
        }
        v
    };
    let mut gro = Coalescer::new(MAX_BATCH, cfg);
    let cap = gro.output_capacity(&pkts);
    let mut out = vec![0u8; cap];
    let writes = gro
        .coalesce(&pkts, &mut out)
        .expect("batch within limits")
        .to_vec();
    // Too small an output buffer is refused.
    if cap > 0 {
        let mut small = vec![0u8; cap - 1];
        assert!(gro.coalesce(&pkts, &mut small).is_err());
    }
    let mut end = 0;
    let mut got: Vec<Vec<u8>> = Vec::with_capacity(pkts.len());
    for w in &writes {
        assert!(
            w.start >= end && w.start <= w.end && w.end <= out.len(),
            "bad range {w:?}"
        );
        end = w.end;
        let bytes = &out[w.clone()];
        if !cfg.vnet_hdr {
            got.push(bytes.to_vec());
            continue;
        }
        let hdr = VirtioNetHdr::parse(bytes).expect("write starts with a virtio-net header");
        let split = GsoSplit::new(&hdr, &bytes[VNET_HDR_LEN..]).expect("a write splits");
        assert!(split.segments() <= usize::from(cfg.max_segments.max(1)));
        let mut seg = vec![0u8; split.max_segment_len()];
        for i in 0..split.segments() {
            let n = split.write_segment(i, &mut seg).expect("segment");
            got.push(seg[..n].to_vec());
        }
    }
    assert_eq!(got.len(), pkts.len(), "packets in != packets out");
    // Same multiset, up to the fields a split rewrites.
    let mut a: Vec<Vec<u8>> = pkts.iter().map(|p| normalized(p)).collect();
    let mut b: Vec<Vec<u8>> = got.iter().map(|p| normalized(p)).collect();
    a.sort();
    b.sort();
    assert!(a == b, "split(coalesce(x)) is not x");
});
