//! A cookie reply arriving at the initiator `a`, which has an initiation to `b` in flight.
//! Must never panic.
//!
//! First byte:
//! * bit 0 clear: the rest is the datagram (`CookieReply::parse`, the device's index lookup,
//!   `MacGenerator::consume_cookie_reply`), with its receiver index set to `a`'s pending index
//!   when it is cookie-reply-sized;
//! * bit 0 set: the real cookie reply of `b` (under load) with input-chosen byte flips; when
//!   `a` accepts it, `a`'s next initiation must carry a MAC2 that `b` accepts under load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::messages::{COOKIE_REPLY_LEN, CookieReply, cookie_reply};
use uring_tunnel_crypto::peer::{Event, Reply};
use uring_tunnel_fuzz::{NOW, Pair, Reader, mutate, src, wall};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mode = r.u8();
    let mut pair = Pair::new(false);
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
    let (msg, changed) = if mode & 1 == 0 {
        let mut m = r.rest().to_vec();
        if m.len() == COOKIE_REPLY_LEN {
            m[cookie_reply::RECEIVER..cookie_reply::RECEIVER + 4]
                .copy_from_slice(&pending.to_le_bytes());
        }
        (m, true)
    } else {
        let out = pair
            .b
            .handle_handshake(&init, src(), NOW, true, &mut rng)
            .expect("b answers under load");
        let Some(Reply::CookieReply(reply)) = out.reply else {
            panic!("no cookie reply under load");
        };
        let mut m = reply.to_vec();
        let changed = mutate(&mut m, &mut r, 8);
        (m, changed)
    };
    let _ = CookieReply::parse(&msg);
    let got = pair
        .a
        .handle_handshake(&msg, src(), NOW, mode & 4 != 0, &mut rng);
    let stored = matches!(got, Ok(ref o) if matches!(o.event, Some(Event::CookieStored { .. })));
    if stored {
        let later = NOW + std::time::Duration::from_secs(1);
        let init2 = pair
            .a
            .create_initiation(pair.b_in_a, wall(2), later, &mut rng)
            .expect("second initiation");
        let res = pair
            .b
            .handle_handshake(&init2, src(), later, true, &mut rng);
        if !changed {
            let out = res.expect("initiation with the cookie's MAC2 under load");
            assert!(
                matches!(out.reply, Some(Reply::Response(_))),
                "the cookie did not get the initiation through"
            );
        }
    }
});
