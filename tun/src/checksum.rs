//! Internet (RFC 1071) one's-complement checksums.
//!
//! All values in this module are in the *big-endian numeric* domain: a folded
//! sum `s` is what you would store with `s.to_be_bytes()`.

/// Lanes of the main checksum loop (32 bytes per iteration).
const LANES: usize = 8;
/// Bytes summed before the 32-bit lane accumulators are folded into a `u64`:
/// each lane takes one word per 32-byte chunk, so after `n` chunks its high
/// half sum is below `n × 2^16` and its low half sum below `n × 2^16`; both
/// stay below 2^32 for `n ≤ 2^15`.
const BLOCK: usize = LANES * 4 * (1 << 15);

/// Sum of lanes: each 32-bit word `x` was added twice, wrapping into
/// `all[j]` and as `x >> 16` into `hi[j]`. The sum of the low halves is then
/// `all - (hi << 16)` (mod 2^32, exact while below 2^32), so no carry is lost
/// and the loop is one load, one shift and two adds per 16 bytes with SSE2
/// (baseline x86-64, no `target-cpu` needed).
#[inline(always)]
fn lanes_total(all: &[u32; LANES], hi: &[u32; LANES]) -> u64 {
    let mut s = 0u64;
    for j in 0..LANES {
        let lo = all[j].wrapping_sub(hi[j] << 16);
        s += u64::from(lo) + u64::from(hi[j]);
    }
    s
}

/// Sum of `rest` (meant for < 32 bytes) as native-endian 16-bit words, an
/// odd last byte padded with zero after it.
#[inline(always)]
fn sum_tail(rest: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut w4 = rest.chunks_exact(4);
    for c in &mut w4 {
        s += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    match *w4.remainder() {
        [a, b, c] => {
            s + u64::from(u16::from_ne_bytes([a, b])) + u64::from(u16::from_ne_bytes([c, 0]))
        }
        [a, b] => s + u64::from(u16::from_ne_bytes([a, b])),
        [a] => s + u64::from(u16::from_ne_bytes([a, 0])),
        _ => s,
    }
}

/// [`sum_ne`] of at most [`BLOCK`] bytes.
#[inline(always)]
fn sum_block(data: &[u8]) -> u64 {
    let mut all = [0u32; LANES];
    let mut hi = [0u32; LANES];
    let (body, rest) = data.split_at(data.len() / (LANES * 4) * (LANES * 4));
    for c in body.chunks_exact(LANES * 4) {
        for j in 0..LANES {
            let x = u32::from_ne_bytes([c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3]]);
            all[j] = all[j].wrapping_add(x);
            hi[j] += x >> 16;
        }
    }
    lanes_total(&all, &hi) + sum_tail(rest)
}

/// [`copy_sum_ne`] of at most [`BLOCK`] bytes; `dst.len() == src.len()`.
#[inline(always)]
fn copy_sum_block(src: &[u8], dst: &mut [u8]) -> u64 {
    let mut all = [0u32; LANES];
    let mut hi = [0u32; LANES];
    let n = src.len() / (LANES * 4) * (LANES * 4);
    let (body, rest) = src.split_at(n);
    let (dbody, drest) = dst.split_at_mut(n);
    for (c, d) in body
        .chunks_exact(LANES * 4)
        .zip(dbody.chunks_exact_mut(LANES * 4))
    {
        // Store the loaded words (rather than `copy_from_slice`, which the
        // compiler would split off into a `memcpy` call and a second loop)
        // so copy and sum stay one pass.
        let mut w = [0u32; LANES];
        for j in 0..LANES {
            w[j] = u32::from_ne_bytes(c[4 * j..4 * j + 4].try_into().unwrap_or_default());
        }
        for j in 0..LANES {
            d[4 * j..4 * j + 4].copy_from_slice(&w[j].to_ne_bytes());
            all[j] = all[j].wrapping_add(w[j]);
            hi[j] += w[j] >> 16;
        }
    }
    drest.copy_from_slice(rest);
    lanes_total(&all, &hi) + sum_tail(rest)
}

/// Sum `data` as native-endian 16-bit words into a `u64` whose 16-bit
/// fold is the one's-complement sum (no carries lost below 2^47 bytes).
#[inline]
fn sum_ne(data: &[u8]) -> u64 {
    if data.len() < LANES * 4 {
        // Headers: skip the lane set-up and reduction.
        return sum_tail(data);
    }
    if data.len() <= BLOCK {
        return sum_block(data);
    }
    data.chunks(BLOCK).map(sum_block).sum()
}

/// Copy `src` to the front of `dst` and sum it like [`sum_ne`], in one pass.
///
/// # Panics
/// If `dst` is shorter than `src` (callers size `dst` first).
#[inline]
fn copy_sum_ne(src: &[u8], dst: &mut [u8]) -> u64 {
    let dst = &mut dst[..src.len()];
    if src.len() <= BLOCK {
        return copy_sum_block(src, dst);
    }
    src.chunks(BLOCK)
        .zip(dst.chunks_mut(BLOCK))
        .map(|(s, d)| copy_sum_block(s, d))
        .sum()
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

/// Copy `src` into the front of `dst` and return the one's-complement sum of
/// `src` (as [`sum`]) computed in the same pass.
///
/// # Panics
/// If `dst.len() < src.len()`.
#[inline]
pub fn copy_and_sum(src: &[u8], dst: &mut [u8]) -> u16 {
    u16::from_be(fold64(copy_sum_ne(src, dst)))
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
        let mut s: u64 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            s += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            s += u64::from(data[i]) << 8;
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
    fn copy_and_sum_matches_for_all_lengths_and_offsets() {
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut out = vec![0u8; 3100];
        for off in 0..4 {
            for len in (0..300).chain([1399, 1400, 1401, 2990]) {
                let src = &data[off..off + len];
                out.fill(0xa5);
                assert_eq!(copy_and_sum(src, &mut out[1..]), naive(src), "len {len}");
                assert_eq!(&out[1..=len], src);
                assert_eq!(out[0], 0xa5);
                assert!(
                    out[len + 1..].iter().all(|&b| b == 0xa5),
                    "wrote past len {len}"
                );
            }
        }
    }

    #[test]
    fn large_inputs_fold_lane_accumulators_per_block() {
        // Several blocks of all-ones words: every lane accumulator near its limit.
        let ff = vec![0xffu8; 3 * BLOCK + 77];
        assert_eq!(sum(&ff), naive(&ff));
        let mut out = vec![0u8; ff.len()];
        assert_eq!(copy_and_sum(&ff, &mut out), naive(&ff));
        assert_eq!(out, ff);
        let mixed: Vec<u8> = (0..(2 * BLOCK + 33) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 | 0x80)
            .collect();
        assert_eq!(sum(&mixed), naive(&mixed));
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
