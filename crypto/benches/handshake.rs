//! Handshake costs: creating an initiation, the responder's whole consume + respond, the
//! initiator's consume of the response, and a MAC1 check (the under-load first line).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::cookie::CookieChecker;
use uring_tunnel_crypto::handshake::{Handshake, LocalStatic, open_initiation};
use uring_tunnel_crypto::keys::{PresharedKey, StaticSecret};
use uring_tunnel_crypto::messages::{Initiation, Response};

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let a = LocalStatic::new(StaticSecret::generate(&mut rng));
    let b = LocalStatic::new(StaticSecret::generate(&mut rng));
    let mut ha = Handshake::new(&a, *b.public_key(), PresharedKey::none()).unwrap();
    let mut hb = Handshake::new(&b, *a.public_key(), PresharedKey::none()).unwrap();
    let now = Duration::from_secs(1);
    let mut t = 0u64;
    let mut wall = || {
        t += 1;
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + t)
    };

    c.bench_function("create_initiation", |bn| {
        bn.iter(|| ha.create_initiation(&a, 1, wall(), now, &mut rng).unwrap())
    });

    let mut consumed_at = now;
    c.bench_function(
        "responder: open + consume initiation + create response",
        |bn| {
            bn.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let init = ha.create_initiation(&a, 1, wall(), now, &mut rng).unwrap();
                    consumed_at += Duration::from_secs(1);
                    let start = Instant::now();
                    let rec = open_initiation(&b, &Initiation::parse(&init).unwrap()).unwrap();
                    hb.consume_initiation(rec, consumed_at).unwrap();
                    black_box(hb.create_response(2, consumed_at, &mut rng).unwrap());
                    total += start.elapsed();
                }
                total
            })
        },
    );

    c.bench_function("initiator: consume response", |bn| {
        bn.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let init = ha.create_initiation(&a, 1, wall(), now, &mut rng).unwrap();
                consumed_at += Duration::from_secs(1);
                let rec = open_initiation(&b, &Initiation::parse(&init).unwrap()).unwrap();
                hb.consume_initiation(rec, consumed_at).unwrap();
                let resp = hb.create_response(2, consumed_at, &mut rng).unwrap().0;
                let start = Instant::now();
                black_box(
                    ha.consume_response(&a, &Response::parse(&resp).unwrap())
                        .unwrap(),
                );
                total += start.elapsed();
            }
            total
        })
    });

    let checker = CookieChecker::new(b.public_key());
    let init = ha.create_initiation(&a, 1, wall(), now, &mut rng).unwrap();
    c.bench_function("verify_mac1", |bn| {
        bn.iter(|| checker.verify_mac1(&init).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
