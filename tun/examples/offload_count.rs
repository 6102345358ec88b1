//! Run one offload operation a given number of times, for instruction
//! counting (load-independent, unlike wall-clock benchmarks):
//!
//! ```text
//! cargo build --release -p uring-tunnel-tun --example offload_count
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/offload_count split 101
//! ```
//!
//! The difference between the totals for `N` and `1` iterations, divided by
//! `(N - 1) × 46`, is the instruction count per 1400-byte segment. Operations:
//! `split`, `coalesce` (verifying checksums), `coalesce-noverify`, `memcpy`.
#![allow(missing_docs)]

use std::hint::black_box;

use uring_tunnel_tun::checksum::{add, finish, pseudo_v4, sum};
use uring_tunnel_tun::{Coalescer, GroConfig, GsoSplit, VNET_HDR_LEN, VirtioNetHdr};

const SEG: usize = 1400;
const SEGS: usize = 46;

/// Same packets as `benches/offload.rs`.
fn tcp4(seq: u32, payload: usize) -> Vec<u8> {
    let total = 40 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[100, 64, 0, 1]);
    p[16..20].copy_from_slice(&[100, 64, 0, 2]);
    let c = !sum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&7u32.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&500u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_add(seq) as u8;
    }
    let ps = pseudo_v4([100, 64, 0, 1], [100, 64, 0, 2], 6, (total - 20) as u16);
    let c = finish(add(ps, sum(&p[20..])));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_else(|| "split".into());
    let iters: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let segs: Vec<Vec<u8>> = (0..SEGS).map(|i| tcp4((i * SEG) as u32, SEG)).collect();
    let cfg = GroConfig {
        verify_checksums: op != "coalesce-noverify",
        ..GroConfig::default()
    };
    let mut co = Coalescer::new(64, cfg);
    let mut out = vec![0u8; co.output_capacity(&segs)];
    let w = co.coalesce(&segs, &mut out).unwrap()[0].clone();
    let sup = out[w].to_vec();
    let hdr = VirtioNetHdr::parse(&sup).unwrap();
    let mut seg_out = vec![0u8; 1500];
    for _ in 0..iters {
        match op.as_str() {
            "split" => {
                let s = GsoSplit::new(black_box(&hdr), black_box(&sup[VNET_HDR_LEN..])).unwrap();
                for i in 0..s.segments() {
                    black_box(s.write_segment(i, &mut seg_out).unwrap());
                }
            }
            "coalesce" | "coalesce-noverify" => {
                black_box(co.coalesce(black_box(&segs), &mut out).unwrap().len());
            }
            "memcpy" => {
                for s in black_box(&segs) {
                    seg_out[..s.len()].copy_from_slice(s);
                    black_box(&seg_out);
                }
            }
            other => panic!("unknown operation {other}"),
        }
    }
}
