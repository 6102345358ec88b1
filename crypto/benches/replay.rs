//! Replay-window check per received packet: in order (the common case), slightly reordered
//! (as across shards), a replayed counter and one below the window.
//!
//! `cargo bench -p uring-tunnel-crypto --bench replay`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uring_tunnel_crypto::ReplayWindow;

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(1));
    g.bench_function("check_and_mark_in_order", |b| {
        let w = ReplayWindow::default();
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            black_box(w.check_and_mark(black_box(n)))
        })
    });
    g.bench_function("check_then_mark_in_order", |b| {
        // The datapath's shape: a cheap check before decryption, the mark after.
        let w = ReplayWindow::default();
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let _ = black_box(w.check(black_box(n)));
            black_box(w.mark(n))
        })
    });
    g.bench_function("check_and_mark_reordered", |b| {
        // Pairs swapped: 2,1,4,3,... — every other counter lands below the highest.
        let w = ReplayWindow::default();
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let c = if n.is_multiple_of(2) { n - 1 } else { n + 1 };
            black_box(w.check_and_mark(black_box(c)))
        })
    });
    let w = ReplayWindow::default();
    for n in 1..=10_000u64 {
        w.mark(n).unwrap();
    }
    g.bench_function("check_replayed", |b| {
        b.iter(|| black_box(w.check(black_box(9_990))))
    });
    g.bench_function("check_too_old", |b| {
        b.iter(|| black_box(w.check(black_box(1))))
    });
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
