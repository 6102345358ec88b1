//! Property tests at the `Device` level: random and mutated datagrams never panic, never
//! create sessions, and never move a peer's endpoint.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::keys::StaticSecret;
use uring_tunnel_crypto::peer::{Device, PeerConfig, PeerId};
use uring_tunnel_crypto::timers::TimerConfig;

const NOW: Duration = Duration::from_secs(50);

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn endpoint() -> SocketAddr {
    "198.18.0.1:51820".parse().unwrap()
}

fn attacker() -> SocketAddr {
    "203.0.113.1:4444".parse().unwrap()
}

/// (responder device, its peer id for the initiator, initiator device, its peer id, rng)
fn setup() -> (Device, PeerId, Device, PeerId, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let ka = StaticSecret::generate(&mut rng);
    let kb = StaticSecret::generate(&mut rng);
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let mut a = Device::new(ka, TimerConfig::default());
    let mut b = Device::new(kb, TimerConfig::default());
    let b_in_a = a.add_peer(PeerConfig::new(pb), NOW).unwrap();
    let a_in_b = b
        .add_peer(
            PeerConfig {
                endpoint: Some(endpoint()),
                ..PeerConfig::new(pa)
            },
            NOW,
        )
        .unwrap();
    (b, a_in_b, a, b_in_a, rng)
}

fn sessionless(dev: &Device, peer: PeerId) -> bool {
    let p = dev.peer(peer).unwrap();
    p.current().is_none() && p.next().is_none() && p.previous().is_none()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_datagrams_do_nothing(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ty in 0u8..6,
        fix_len in any::<bool>(),
        under_load in any::<bool>(),
    ) {
        let (mut b, a_in_b, _, _, mut rng) = setup();
        if !bytes.is_empty() {
            bytes[0] = ty;
            for x in bytes.iter_mut().skip(1).take(3) {
                *x = 0;
            }
        }
        if fix_len {
            let len = match ty { 1 => 148, 2 => 92, 3 => 64, _ => bytes.len().max(32) };
            bytes.resize(len, 0);
        }
        let r = b.handle_handshake(&bytes, attacker(), NOW, under_load, &mut rng);
        // Random bytes never carry a valid MAC1, so nothing at all comes out.
        prop_assert!(r.is_err(), "random bytes were accepted: {:?}", r);
        let mut buf = bytes.clone();
        prop_assert!(b.decapsulate(&mut buf, attacker(), NOW).is_err());
        prop_assert!(sessionless(&b, a_in_b));
        prop_assert_eq!(b.peer(a_in_b).unwrap().endpoint(), Some(endpoint()));
    }

    #[test]
    fn mutated_initiation_never_moves_the_endpoint(pos in 0usize..148, xor in 1u8..=255) {
        let (mut b, a_in_b, mut a, b_in_a, mut rng) = setup();
        let mut init = a.create_initiation(b_in_a, wall(), NOW, &mut rng).unwrap();
        init[pos] ^= xor;
        let r = b.handle_handshake(&init, attacker(), NOW, false, &mut rng);
        if pos < 132 {
            // Any change before MAC2 breaks MAC1 (or the type): refused.
            prop_assert!(r.is_err());
            prop_assert!(sessionless(&b, a_in_b));
            prop_assert_eq!(b.peer(a_in_b).unwrap().endpoint(), Some(endpoint()));
        } else {
            // MAC2 is not checked when not under load: the initiation is genuine.
            prop_assert!(r.is_ok());
        }
    }

    #[test]
    fn mutated_transport_is_refused(pos in 0usize..64, xor in 1u8..=255) {
        let (mut b, a_in_b, mut a, b_in_a, mut rng) = setup();
        let init = a.create_initiation(b_in_a, wall(), NOW, &mut rng).unwrap();
        let out = b.handle_handshake(&init, endpoint(), NOW, false, &mut rng).unwrap();
        let resp = out.reply.unwrap();
        a.handle_handshake(resp.as_bytes(), "198.18.0.2:51820".parse().unwrap(), NOW, false, &mut rng)
            .unwrap();
        let mut buf = vec![0u8; 16 + 32 + 16];
        let n = a.encapsulate(b_in_a, &mut buf, 32, NOW).unwrap();
        buf.truncate(n);
        let pos = pos % n;
        buf[pos] ^= xor;
        prop_assert!(b.decapsulate(&mut buf, attacker(), NOW).is_err());
        // Not confirmed by a forged packet: the session stays in `next`.
        let p = b.peer(a_in_b).unwrap();
        prop_assert!(p.current().is_none() && p.next().is_some());
        prop_assert_eq!(p.endpoint(), Some(endpoint()));
    }
}
