//! A handshake initiation arriving at the responder `b`. Must never panic.
//!
//! The first byte picks the shape of the input:
//! * bit 0 clear: the rest is the datagram as is (`classify`, MAC checks, parse, open);
//! * bit 0 set: a *valid* initiation from `a` (ephemeral from an input seed, timestamp from the
//!   input) with input-chosen byte flips, so decryption of the static key and timestamp, the
//!   peer lookup, replay/flood checks and the response all run on real and near-real messages;
//!   an accepted one is completed by `a` and a transport packet goes through both ways.
//! * bit 1: re-seal MAC1 after mutating (else a flipped byte stops at MAC1);
//! * bit 2: `b` is under load (MAC2/cookie path); bit 3: both sides use a preshared key;
//! * bit 4: the same datagram arrives twice (replay of the timestamp).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::messages::{Initiation, classify};
use uring_tunnel_crypto::peer::{Event, Reply};
use uring_tunnel_fuzz::{NOW, Pair, Reader, mutate, reseal_mac1, src, wall};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mode = r.u8();
    let mut pair = Pair::new(mode & 8 != 0);
    let mut rng = ChaCha20Rng::seed_from_u64(r.u64());
    let mut msg = if mode & 1 == 0 {
        r.rest().to_vec()
    } else {
        let ts = r.u64();
        let init = pair
            .a
            .create_initiation(pair.b_in_a, wall(ts), NOW, &mut rng);
        let mut m = init.expect("initiation to a known peer").to_vec();
        mutate(&mut m, &mut r, 8);
        m
    };
    if mode & 2 != 0 {
        reseal_mac1(&mut msg, pair.b.public_key());
    }
    let _ = classify(&msg);
    let _ = Initiation::parse(&msg);
    let under_load = mode & 4 != 0;
    let first = pair
        .b
        .handle_handshake(&msg, src(), NOW, under_load, &mut rng);
    if mode & 16 != 0 {
        let again = pair
            .b
            .handle_handshake(&msg, src(), NOW, under_load, &mut rng);
        if let Ok(o) = &again {
            assert!(
                !matches!(o.reply, Some(Reply::Response(_))),
                "a replayed initiation was answered"
            );
        }
    }
    let Ok(out) = first else { return };
    let Some(Reply::Response(resp)) = out.reply else {
        return;
    };
    assert_eq!(out.peer, Some(pair.a_in_b), "response to an unknown peer");
    let done = pair.a.handle_handshake(&resp, src(), NOW, false, &mut rng);
    let Ok(done) = done else { return };
    assert!(matches!(done.event, Some(Event::SessionEstablished { .. })));
    // Initiator → responder transport packet confirms the session.
    let payload = r.take(64);
    let mut buf = vec![0u8; 32 + 80];
    buf[16..16 + payload.len()].copy_from_slice(payload);
    let n = pair
        .a
        .encapsulate(pair.b_in_a, &mut buf, payload.len(), NOW)
        .expect("encapsulate on a new session");
    let got = pair.b.decapsulate(&mut buf[..n], src(), NOW);
    let got = got.expect("transport packet on a fresh session");
    assert!(got.promoted);
    let plain = &buf[got.packet.plaintext.clone()];
    assert_eq!(&plain[..payload.len()], payload);
    assert!(plain[payload.len()..].iter().all(|&b| b == 0));
});
