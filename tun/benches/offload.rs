//! Split and coalesce cost per 1400-byte segment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uring_tunnel_tun::{Coalescer, GroConfig, GsoSplit, VNET_HDR_LEN, VirtioNetHdr};

const SEG: usize = 1400;
const SEGS: usize = 46;

/// An IPv4/TCP packet with `payload` bytes and valid checksums, built by
/// coalescing is avoided here: headers are written by hand.
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
    let c = !uring_tunnel_tun::checksum::sum(&p[..20]);
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
    use uring_tunnel_tun::checksum::{add, finish, pseudo_v4, sum};
    let ps = pseudo_v4([100, 64, 0, 1], [100, 64, 0, 2], 6, (total - 20) as u16);
    let c = finish(add(ps, sum(&p[20..])));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn bench(c: &mut Criterion) {
    let segs: Vec<Vec<u8>> = (0..SEGS).map(|i| tcp4((i * SEG) as u32, SEG)).collect();
    let mut co = Coalescer::new(64, GroConfig::default());
    let mut out = vec![0u8; co.output_capacity(&segs)];
    let w = co.coalesce(&segs, &mut out).unwrap()[0].clone();
    assert_eq!(co.coalesce(&segs, &mut out).unwrap().len(), 1);
    let sup = out[w].to_vec();
    let hdr = VirtioNetHdr::parse(&sup).unwrap();

    let mut g = c.benchmark_group("offload");
    g.throughput(Throughput::Elements(SEGS as u64));
    let mut seg_out = vec![0u8; 1500];
    g.bench_function("split_tcp4_46x1400", |b| {
        b.iter(|| {
            let s = GsoSplit::new(black_box(&hdr), black_box(&sup[VNET_HDR_LEN..])).unwrap();
            for i in 0..s.segments() {
                black_box(s.write_segment(i, &mut seg_out).unwrap());
            }
        })
    });
    g.bench_function("coalesce_tcp4_46x1400_verify", |b| {
        b.iter(|| black_box(co.coalesce(black_box(&segs), &mut out).unwrap().len()))
    });
    let mut co_nv = Coalescer::new(
        64,
        GroConfig {
            verify_checksums: false,
            ..GroConfig::default()
        },
    );
    g.bench_function("coalesce_tcp4_46x1400_noverify", |b| {
        b.iter(|| black_box(co_nv.coalesce(black_box(&segs), &mut out).unwrap().len()))
    });
    // Baseline under the same load: only copying the segments' bytes once.
    g.bench_function("baseline_memcpy_46x1400", |b| {
        b.iter(|| {
            for s in black_box(&segs) {
                seg_out[..s.len()].copy_from_slice(s);
                black_box(&seg_out);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
