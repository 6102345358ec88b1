//! Interleaved min-of-rounds A/B of the AEAD backends on 1420-byte packets: robust against
//! other load on a shared machine, where criterion means are noisy.
//!
//! `cargo run --release -p uring-tunnel-crypto --features aead-aws-lc --example aead_ab`
#![allow(missing_docs)]
use std::hint::black_box;
use std::time::Instant;
use uring_tunnel_crypto::aead::*;

/// Returns (seal per op, open+seal per op) in seconds.
fn round<A: Aead>(c: &A, buf: &mut [u8], n: u32) -> (f64, f64) {
    let t = Instant::now();
    for i in 0..n {
        black_box(c.seal_in_place(u64::from(i), &[], black_box(&mut *buf)));
    }
    let seal = t.elapsed().as_secs_f64() / f64::from(n);
    let tag = c.seal_in_place(1, &[], buf);
    let t = Instant::now();
    for _ in 0..n {
        c.open_in_place(1, &[], black_box(&mut *buf), &tag).unwrap();
        black_box(c.seal_in_place(1, &[], black_box(&mut *buf)));
    }
    (seal, t.elapsed().as_secs_f64() / f64::from(n))
}

fn main() {
    let key = [7u8; 32];
    let rc = RustCryptoAead::new(&key);
    let rg = RingAead::new(&key);
    #[cfg(feature = "aead-aws-lc")]
    let aw = AwsLcAead::new(&key);
    let mut buf = vec![0x5au8; 1420];
    let mut best = vec![(f64::MAX, f64::MAX); 3];
    for _ in 0..60 {
        #[allow(unused_mut)]
        let mut rs = vec![round(&rc, &mut buf, 300), round(&rg, &mut buf, 3000)];
        #[cfg(feature = "aead-aws-lc")]
        rs.push(round(&aw, &mut buf, 3000));
        for (i, r) in rs.into_iter().enumerate() {
            best[i].0 = best[i].0.min(r.0);
            best[i].1 = best[i].1.min(r.1);
        }
    }
    for (name, (s, o)) in ["rustcrypto", "ring", "aws-lc-rs"].iter().zip(best) {
        if s == f64::MAX {
            continue;
        }
        let o = o - s;
        println!(
            "{name:>10}: seal {:.0} ns = {:.2} GB/s; open {:.0} ns = {:.2} GB/s",
            s * 1e9,
            1420.0 / s / 1e9,
            o * 1e9,
            1420.0 / o / 1e9
        );
    }
}
