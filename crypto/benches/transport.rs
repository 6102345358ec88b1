//! Whole transport path on a 1420-byte packet: encapsulate (header, padding, seal) and
//! decapsulate (parse, replay check, open, replay mark) with the default backend.
//!
//! `cargo bench -p uring-tunnel-crypto --features aead-aws-lc --bench transport`

#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use uring_tunnel_crypto::transport::{TRANSPORT_OVERHEAD, padded_len};
use uring_tunnel_crypto::{Keypair, aead::DEFAULT_AEAD_NAME};

const LEN: usize = 1420;
const NOW: Duration = Duration::from_secs(1);

fn transport(c: &mut Criterion) {
    let a: Keypair = Keypair::new([1; 32], [2; 32], 1, 2, true, NOW);
    let b: Keypair = Keypair::new([2; 32], [1; 32], 2, 1, false, NOW);
    let mut g = c.benchmark_group(format!("transport/{DEFAULT_AEAD_NAME}"));
    g.throughput(Throughput::Bytes(LEN as u64));
    let mut buf = vec![0x5au8; padded_len(LEN) + TRANSPORT_OVERHEAD];
    g.bench_function("encapsulate_1420", |bch| {
        bch.iter(|| {
            let ctr = a.next_counter().unwrap();
            black_box(a.encapsulate(ctr, black_box(&mut buf), LEN, NOW).unwrap())
        })
    });
    g.bench_function("decapsulate_1420", |bch| {
        bch.iter_batched_ref(
            || {
                let mut p = vec![0x5au8; padded_len(LEN) + TRANSPORT_OVERHEAD];
                let ctr = b.next_counter().unwrap();
                let n = b.encapsulate(ctr, &mut p, LEN, NOW).unwrap();
                p.truncate(n);
                p
            },
            |p| {
                black_box(a.decapsulate(black_box(p), NOW).unwrap());
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = transport
}
criterion_main!(benches);
