//! Seal/open throughput of each AEAD backend on a 1420-byte packet (WireGuard nonce, no aad).
//!
//! `cargo bench -p uring-tunnel-crypto --features aead-aws-lc --bench aead`

#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use uring_tunnel_crypto::aead::{Aead, RustCryptoAead};

const LEN: usize = 1420;

fn bench_backend<A: Aead>(c: &mut Criterion, name: &str) {
    let key = [0x42u8; 32];
    let cipher = A::new(&key);
    let mut g = c.benchmark_group(format!("aead/{name}"));
    g.throughput(Throughput::Bytes(LEN as u64));

    let mut buf = vec![0x5au8; LEN];
    let mut counter = 0u64;
    g.bench_function("seal_1420", |b| {
        b.iter(|| {
            counter += 1;
            let tag = cipher.seal_in_place(counter, &[], black_box(&mut buf));
            black_box(tag)
        })
    });

    let mut ct = vec![0x5au8; LEN];
    let tag = cipher.seal_in_place(7, &[], &mut ct);
    g.bench_function("open_1420", |b| {
        b.iter_batched_ref(
            || ct.clone(),
            |buf| {
                cipher.open_in_place(7, &[], black_box(buf), &tag).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn backends(c: &mut Criterion) {
    bench_backend::<RustCryptoAead>(c, "rustcrypto");
    #[cfg(feature = "aead-ring")]
    bench_backend::<uring_tunnel_crypto::aead::RingAead>(c, "ring");
    #[cfg(feature = "aead-aws-lc")]
    bench_backend::<uring_tunnel_crypto::aead::AwsLcAead>(c, "aws-lc-rs");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = backends
}
criterion_main!(benches);
