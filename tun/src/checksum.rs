//! Internet (RFC 1071) one's-complement checksums.
//!
//! All values in this module are in the *big-endian numeric* domain: a folded
//! sum `s` is what you would store with `s.to_be_bytes()`.

/// Sum `data` as native-endian `u32` words into a `u64` (no carries lost for
/// inputs below 16 GiB). Four independent accumulators keep the loop short
/// and let the compiler vectorise it.
#[inline]
fn sum_ne(data: &[u8]) -> u64 {
    let mut a0: u64 = 0;
    let mut a1: u64 = 0;
    let mut a2: u64 = 0;
    let mut a3: u64 = 0;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        a0 += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
        a1 += u64::from(u32::from_ne_bytes([c[4], c[5], c[6], c[7]]));
        a2 += u64::from(u32::from_ne_bytes([c[8], c[9], c[10], c[11]]));
        a3 += u64::from(u32::from_ne_bytes([c[12], c[13], c[14], c[15]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 16];
    tail[..rest.len()].copy_from_slice(rest);
    a0 += u64::from(u32::from_ne_bytes([tail[0], tail[1], tail[2], tail[3]]));
    a1 += u64::from(u32::from_ne_bytes([tail[4], tail[5], tail[6], tail[7]]));
    a2 += u64::from(u32::from_ne_bytes([tail[8], tail[9], tail[10], tail[11]]));
    a3 += u64::from(u32::from_ne_bytes([tail[12], tail[13], tail[14], tail[15]]));
    // Each accumulator is < 2^62 for any realistic input, so these adds cannot overflow.
    (a0 + a1) + (a2 + a3)
}

/// Fold a 64-bit accumulator to 16 bits with end-around carry.
#[inline]
const fn fold64(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// One's-complement sum of `data` read as big-endian 16-bit words (an odd
/// trailing byte is padded with zero), folded to 16 bits, not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    u16::from_be(fold64(sum_ne(data)))
}

/// One's-complement addition of two folded sums.
#[inline]
pub const fn add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// Folded (not complemented) sum of the IPv4 pseudo-header.
#[inline]
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u16 {
    let w = |b: [u8; 4]| {
        u32::from(u16::from_be_bytes([b[0], b[1]])) + u32::from(u16::from_be_bytes([b[2], b[3]]))
    };
    let s = w(src) as u64 + w(dst) as u64 + u64::from(proto) + u64::from(l4_len);
    fold_be(s)
}

/// Folded (not complemented) sum of the IPv6 pseudo-header.
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u16 {
    let mut s: u64 = 0;
    for c in src.chunks_exact(2).chain(dst.chunks_exact(2)) {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    s += u64::from(proto) + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff);
    fold_be(s)
}

/// Fold a sum of big-endian-valued 16-bit words.
#[inline]
const fn fold_be(s: u64) -> u16 {
    fold64(s)
}

/// Final checksum value (complement of the folded sum) as stored in headers.
#[inline]
pub const fn finish(s: u16) -> u16 {
    !s
}

/// IPv4 header checksum of `hdr` (whose checksum field must be zero, or the
/// result verifies to zero when the field is already set).
#[inline]
pub fn ipv4_header(hdr: &[u8]) -> u16 {
    finish(sum(hdr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            s += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            s += u32::from(data[i]) << 8;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn matches_naive_for_all_lengths() {
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..300 {
            assert_eq!(sum(&data[..len]), naive(&data[..len]), "len {len}");
        }
        assert_eq!(sum(&data), naive(&data));
        let ff = vec![0xffu8; 70_000];
        assert_eq!(sum(&ff), naive(&ff));
    }

    #[test]
    fn pseudo_headers_match_naive() {
        let mut v4 = Vec::new();
        v4.extend_from_slice(&[100, 64, 0, 1, 198, 18, 3, 4, 0, 6, 0x05, 0xdc]);
        assert_eq!(
            pseudo_v4([100, 64, 0, 1], [198, 18, 3, 4], 6, 1500),
            naive(&v4)
        );
        let src = [0xfdu8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0xff];
        let dst = [
            0xfdu8, 0xee, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0x01,
        ];
        let mut v6 = Vec::new();
        v6.extend_from_slice(&src);
        v6.extend_from_slice(&dst);
        v6.extend_from_slice(&[0, 1, 0x23, 0x45, 0, 0, 0, 17]);
        assert_eq!(pseudo_v6(&src, &dst, 17, 0x0001_2345), naive(&v6));
    }
}
