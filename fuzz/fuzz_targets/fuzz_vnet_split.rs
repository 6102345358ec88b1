//! Arbitrary bytes as what a TUN read with `IFF_VNET_HDR` returns: a 10-byte virtio-net header
//! and an IP packet. `VirtioNetHdr::parse`, `GsoSplit` (every segment written), `split_into`
//! and `complete_checksum` must never panic, and segments must fit the lengths announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uring_tunnel_tun::{GsoSplit, VNET_HDR_LEN, VirtioNetHdr, complete_checksum, split_into};

/// Segments written per input at most (a 64 KiB super-packet with gso_size 1 has 64 Ki).
const MAX_SEGMENTS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Ok(hdr) = VirtioNetHdr::parse(data) else {
        assert!(data.len() < VNET_HDR_LEN);
        return;
    };
    let mut bytes = [0u8; VNET_HDR_LEN];
    hdr.write(&mut bytes).expect("write into 10 bytes");
    assert_eq!(&bytes[..], &data[..VNET_HDR_LEN], "header round trip");
    let pkt = &data[VNET_HDR_LEN..];

    let mut copy = pkt.to_vec();
    let _ = complete_checksum(&hdr, &mut copy);
    assert_eq!(copy.len(), pkt.len());

    let Ok(split) = GsoSplit::new(&hdr, pkt) else {
        return;
    };
    let n = split.segments();
    assert!(n >= 1);
    let max = split.max_segment_len();
    let mut out = vec![0u8; max + 64];
    for i in 0..n.min(MAX_SEGMENTS) {
        let want = split.segment_len(i);
        assert!(want <= max);
        let got = split
            .write_segment(i, &mut out)
            .expect("segment into a big enough buffer");
        assert_eq!(got, want);
        if want > 0 {
            // One byte short must be refused, not written past.
            assert!(split.write_segment(i, &mut out[..want - 1]).is_err());
        }
    }
    assert!(split.write_segment(n, &mut out).is_err());
    if n <= MAX_SEGMENTS {
        let mut outs = vec![vec![0u8; max]; n];
        let mut lens = vec![0usize; n];
        let k = split_into(&hdr, pkt, &mut outs, &mut lens).expect("split_into");
        assert_eq!(k, n);
        for (i, l) in lens.iter().enumerate() {
            assert_eq!(*l, split.segment_len(i));
        }
    }
});
