//! A transport datagram arriving at `b`, which shares an established session with `a`.
//! Must never panic.
//!
//! First byte:
//! * bit 0 clear: the rest as it is, and once more behind a header naming the live session
//!   (past the index lookup into the AEAD and replay checks); whatever authenticates (the
//!   fuzzer can learn real packets from comparisons) is refused when delivered again;
//! * bit 0 set: a real packet from `a` (payload from the input, counter from the input) with
//!   input-chosen byte flips: it authenticates exactly when nothing changed, then carries the
//!   payload; a tampered one leaves the replay window alone (the original is accepted after
//!   it); a second delivery is refused as a replay.
//!
//! The session's keys are drawn per process, so packets saved in a corpus by an earlier run
//! are not valid in the next one.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::peer::Reply;
use uring_tunnel_fuzz::{NOW, Pair, Reader, mutate, src, wall};

thread_local! {
    // The handshake costs several X25519 operations: done once, the session is reused.
    static PAIR: RefCell<Pair> = RefCell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(t.as_nanos() as u64 ^ u64::from(std::process::id()));
        let mut pair = Pair::new(true);
        let init = pair.a.create_initiation(pair.b_in_a, wall(1), NOW, &mut rng).unwrap();
        let out = pair.b.handle_handshake(&init, src(), NOW, false, &mut rng).unwrap();
        let Some(Reply::Response(resp)) = out.reply else { panic!("no response") };
        pair.a.handle_handshake(&resp, src(), NOW, false, &mut rng).unwrap();
        pair
    });
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mode = r.u8();
    PAIR.with_borrow_mut(|pair| {
        let session = pair.a.peer(pair.b_in_a).and_then(|p| p.current().cloned());
        let session = session.expect("session");
        if mode & 1 == 0 {
            let rest = r.rest();
            let mut framed = Vec::with_capacity(8 + rest.len());
            framed.extend_from_slice(&[4, 0, 0, 0]);
            framed.extend_from_slice(&session.remote_index.to_le_bytes());
            framed.extend_from_slice(rest);
            for dgram in [rest, &framed[..]] {
                let mut buf = dgram.to_vec();
                if pair.b.decapsulate(&mut buf, src(), NOW).is_ok() {
                    let mut again = dgram.to_vec();
                    assert!(
                        pair.b.decapsulate(&mut again, src(), NOW).is_err(),
                        "replay"
                    );
                }
            }
            return;
        }
        // Counters are fresh per input (a high, unused one from the input), so the
        // replay window of the long-lived session does not make results depend on history.
        let counter = session.sent_counter() + 1 + u64::from(r.u16());
        session.set_send_counter_for_test(counter + 1);
        let len = usize::from(r.u16() % 1500);
        let payload = r.take(len);
        let mut buf = vec![0u8; 32 + payload.len() + 16];
        buf[16..16 + payload.len()].copy_from_slice(payload);
        let n = session
            .encapsulate(counter, &mut buf, payload.len(), NOW)
            .expect("encapsulate");
        buf.truncate(n);
        let orig = buf.clone();
        let changed = mutate(&mut buf, &mut r, 4) && buf != orig;
        let mut first = buf.clone();
        let got = pair.b.decapsulate(&mut first, src(), NOW);
        assert_eq!(got.is_ok(), !changed, "authenticated iff unmodified");
        if let Ok(got) = got {
            let plain = &first[got.packet.plaintext.clone()];
            assert_eq!(&plain[..payload.len()], payload);
            let mut again = buf.clone();
            assert!(
                pair.b.decapsulate(&mut again, src(), NOW).is_err(),
                "replay accepted"
            );
        } else {
            let mut real = orig.clone();
            let got = pair.b.decapsulate(&mut real, src(), NOW);
            assert!(
                got.is_ok(),
                "a tampered packet spoilt the real one: {got:?}"
            );
        }
    });
});
