//! Arbitrary bytes as a received handshake initiation: classify, MAC checks (with and without
//! load), then the responder's consume path. Must never panic.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::cookie::CookieChecker;
use uring_tunnel_crypto::handshake::{Handshake, LocalStatic, open_initiation};
use uring_tunnel_crypto::keys::{PresharedKey, StaticSecret};
use uring_tunnel_crypto::messages::{Initiation, classify};

struct State {
    local: LocalStatic,
    peer: Handshake,
    checker: CookieChecker,
    rng: ChaCha20Rng,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new({
        let local = LocalStatic::new(StaticSecret::from_bytes([1; 32]));
        let remote = StaticSecret::from_bytes([2; 32]).public_key();
        let peer = Handshake::new(&local, remote, PresharedKey::none()).unwrap();
        let checker = CookieChecker::new(local.public_key());
        State { local, peer, checker, rng: ChaCha20Rng::seed_from_u64(0) }
    });
}

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    STATE.with_borrow_mut(|s| {
        let src = SocketAddr::from(([198, 18, 0, 1], 51820));
        let now = Duration::from_secs(1000);
        let _ = s.checker.check(data, src, now, false, &mut s.rng);
        let _ = s.checker.check(data, src, now, true, &mut s.rng);
        if let Ok(msg) = Initiation::parse(data) {
            if let Ok(rec) = open_initiation(&s.local, &msg) {
                let _ = s.peer.consume_initiation(rec, now);
            }
        }
    });
});
