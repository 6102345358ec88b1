//! A handshake response arriving at the initiator `a`, which has an initiation to `b` in
//! flight. Must never panic.
//!
//! First byte:
//! * bit 0 clear: the rest is the datagram, with its receiver index set to `a`'s pending
//!   index when it is response-sized (so it reaches `consume_response`);
//! * bit 0 set: the real response of `b` with input-chosen byte flips;
//! * bit 1: re-seal MAC1 for `a` after mutating; bit 2: `a` under load; bit 3: preshared key;
//! * bit 4: the same response is delivered twice (the second must not establish a session).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::messages::{RESPONSE_LEN, Response, response};
use uring_tunnel_crypto::peer::{Event, Reply};
use uring_tunnel_fuzz::{NOW, Pair, Reader, mutate, reseal_mac1, src, wall};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mode = r.u8();
    let mut pair = Pair::new(mode & 8 != 0);
    let mut rng = ChaCha20Rng::seed_from_u64(r.u64());
    let init = pair
        .a
        .create_initiation(pair.b_in_a, wall(1), NOW, &mut rng)
        .expect("initiation");
    let pending = pair
        .a
        .peer(pair.b_in_a)
        .and_then(|p| p.handshake().pending_initiation_index())
        .expect("pending initiation");
    let mut msg = if mode & 1 == 0 {
        let mut m = r.rest().to_vec();
        if m.len() == RESPONSE_LEN {
            m[response::RECEIVER..response::RECEIVER + 4].copy_from_slice(&pending.to_le_bytes());
        }
        m
    } else {
        let out = pair
            .b
            .handle_handshake(&init, src(), NOW, false, &mut rng)
            .expect("b answers a valid initiation");
        let Some(Reply::Response(resp)) = out.reply else {
            panic!("no response to a valid initiation");
        };
        let mut m = resp.to_vec();
        mutate(&mut m, &mut r, 8);
        m
    };
    if mode & 2 != 0 {
        reseal_mac1(&mut msg, pair.a.public_key());
    }
    let _ = Response::parse(&msg);
    let under_load = mode & 4 != 0;
    let first = pair
        .a
        .handle_handshake(&msg, src(), NOW, under_load, &mut rng);
    if mode & 16 != 0 {
        let again = pair
            .a
            .handle_handshake(&msg, src(), NOW, under_load, &mut rng);
        if let (Ok(f), Ok(a)) = (&first, &again) {
            assert!(
                !(matches!(f.event, Some(Event::SessionEstablished { .. }))
                    && matches!(a.event, Some(Event::SessionEstablished { .. }))),
                "one response established two sessions"
            );
        }
    }
    let Ok(out) = first else { return };
    if let Some(Event::SessionEstablished { peer, .. }) = out.event {
        assert_eq!(peer, pair.b_in_a);
        // The session works towards b when b knows it (the real response).
        let mut buf = vec![0u8; 48];
        let n = pair
            .a
            .encapsulate(pair.b_in_a, &mut buf, 0, NOW)
            .expect("keepalive on a new session");
        let _ = pair.b.decapsulate(&mut buf[..n], src(), NOW);
    }
});
