//! Property tests: random and mutated bytes given to every parser and consume function give
//! errors, never a panic, and a mutation of an authenticated byte is always refused.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::cookie::{CookieChecker, MacGenerator, MacVerdict};
use uring_tunnel_crypto::handshake::{Handshake, LocalStatic, open_initiation};
use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};
use uring_tunnel_crypto::messages::{
    CookieReply, Initiation, MessageType, Response, TransportHeader, classify,
};

struct Fixture {
    a: LocalStatic,
    b: LocalStatic,
    ha: Handshake,
    hb: Handshake,
    rng: ChaCha20Rng,
}

fn fixture(seed: u64) -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let a = LocalStatic::new(StaticSecret::generate(&mut rng));
    let b = LocalStatic::new(StaticSecret::generate(&mut rng));
    let ha = Handshake::new(&a, *b.public_key(), PresharedKey::none()).unwrap();
    let hb = Handshake::new(&b, *a.public_key(), PresharedKey::none()).unwrap();
    Fixture { a, b, ha, hb, rng }
}

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

const NOW: Duration = Duration::from_secs(100);

fn with_type(mut v: Vec<u8>, ty: u8, len: usize) -> Vec<u8> {
    v.resize(len, 0);
    v[..4].copy_from_slice(&[ty, 0, 0, 0]);
    v
}

fn all_parsers(bytes: &[u8]) {
    let c = classify(bytes);
    let i = Initiation::parse(bytes);
    let r = Response::parse(bytes);
    let k = CookieReply::parse(bytes);
    let t = TransportHeader::parse(bytes);
    // The views agree with classify.
    assert_eq!(i.is_ok(), c == Ok(MessageType::Initiation));
    assert_eq!(r.is_ok(), c == Ok(MessageType::Response));
    assert_eq!(k.is_ok(), c == Ok(MessageType::CookieReply));
    assert_eq!(t.is_ok(), c == Ok(MessageType::Transport));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        all_parsers(&bytes);
        for (ty, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32), (4, 200)] {
            all_parsers(&with_type(bytes.clone(), ty, len));
        }
    }

    #[test]
    fn checker_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ty in 0u8..6,
        len in prop_oneof![Just(148usize), Just(92), Just(64), 0usize..200],
        under_load in any::<bool>(),
        port in any::<u16>(),
    ) {
        let mut f = fixture(1);
        let mut checker = CookieChecker::new(f.b.public_key());
        let src = SocketAddr::from(([198, 18, 0, 1], port));
        let msg = with_type(bytes, ty, len.max(4));
        let r = checker.check(&msg, src, NOW, under_load, &mut f.rng);
        // Random bytes never carry a valid MAC1.
        prop_assert!(r.is_err());
        prop_assert!(checker.verify_mac1(&msg).is_err());
    }

    #[test]
    fn random_initiations_are_refused(body in proptest::collection::vec(any::<u8>(), 148)) {
        let mut f = fixture(2);
        let msg = with_type(body, 1, 148);
        let r = open_initiation(&f.b, &Initiation::parse(&msg).unwrap())
            .and_then(|rec| f.hb.consume_initiation(rec, NOW));
        prop_assert!(r.is_err());
    }

    #[test]
    fn mutated_initiations(pos in 0usize..148, xor in 1u8..=255) {
        let mut f = fixture(3);
        let mut init = f.ha.create_initiation(&f.a, 77, wall(), NOW, &mut f.rng).unwrap();
        init[pos] ^= xor;
        let parsed = Initiation::parse(&init);
        if pos < 4 {
            prop_assert!(parsed.is_err());
            return Ok(());
        }
        let parsed = parsed.unwrap();
        let mac1_ok = CookieChecker::new(f.b.public_key()).verify_mac1(&init).is_ok();
        let r = open_initiation(&f.b, &parsed).and_then(|rec| f.hb.consume_initiation(rec, NOW));
        if pos < 132 {
            // Everything before MAC2 is covered by MAC1.
            prop_assert!(!mac1_ok);
        }
        if (8..116).contains(&pos) {
            // Ephemeral, static and timestamp are authenticated by the handshake itself.
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn random_and_mutated_responses(
        body in proptest::collection::vec(any::<u8>(), 92),
        pos in 0usize..92,
        xor in 1u8..=255,
    ) {
        let mut f = fixture(4);
        let init = f.ha.create_initiation(&f.a, 5, wall(), NOW, &mut f.rng).unwrap();
        // Random response claiming to answer our pending initiation.
        let mut random = with_type(body, 2, 92);
        random[8..12].copy_from_slice(&5u32.to_le_bytes());
        prop_assert!(f.ha.consume_response(&f.a, &Response::parse(&random).unwrap()).is_err());
        // A real response with one byte changed.
        let rec = open_initiation(&f.b, &Initiation::parse(&init).unwrap()).unwrap();
        f.hb.consume_initiation(rec, NOW).unwrap();
        let (mut resp, _) = f.hb.create_response(6, NOW, &mut f.rng).unwrap();
        resp[pos] ^= xor;
        match Response::parse(&resp) {
            Err(_) => prop_assert!(pos < 4),
            Ok(parsed) => {
                let r = f.ha.consume_response(&f.a, &parsed);
                if (8..60).contains(&pos) {
                    prop_assert!(r.is_err());
                }
            }
        }
    }

    #[test]
    fn random_and_mutated_cookie_replies(
        body in proptest::collection::vec(any::<u8>(), 64),
        pos in 0usize..64,
        xor in 1u8..=255,
    ) {
        let mut f = fixture(5);
        let mut macs = MacGenerator::new(f.b.public_key());
        let mut msg = [0u8; 148];
        msg[0] = 1;
        macs.seal(&mut msg, NOW);
        let random = with_type(body, 3, 64);
        prop_assert!(macs.consume_cookie_reply(&CookieReply::parse(&random).unwrap(), NOW).is_err());
        let mut checker = CookieChecker::new(f.b.public_key());
        let src = SocketAddr::from(([198, 18, 0, 1], 1));
        let Ok(MacVerdict::CookieReply(mut reply)) = checker.check(&msg, src, NOW, true, &mut f.rng)
        else {
            panic!("expected a cookie reply");
        };
        reply[pos] ^= xor;
        match CookieReply::parse(&reply) {
            Err(_) => prop_assert!(pos < 4),
            Ok(parsed) => {
                let r = macs.consume_cookie_reply(&parsed, NOW);
                // Nonce and encrypted cookie are authenticated; the receiver index is routing only.
                prop_assert_eq!(r.is_err(), pos >= 8);
            }
        }
    }
}

#[test]
fn public_key_parsing_never_panics_on_odd_text() {
    for s in [
        "",
        "=",
        "====",
        "\u{1F600}",
        "A\0",
        &"A".repeat(44),
        &"/".repeat(43),
    ] {
        let _ = s.parse::<PublicKey>();
        let _ = s.parse::<StaticSecret>();
    }
}
