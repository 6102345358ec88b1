//! Arbitrary bytes as a handshake response to a pending initiation. Must never panic.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::cookie::CookieChecker;
use uring_tunnel_crypto::handshake::{Handshake, LocalStatic};
use uring_tunnel_crypto::keys::{PresharedKey, StaticSecret};
use uring_tunnel_crypto::messages::Response;

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
        let peer = Handshake::new(&local, remote, PresharedKey::from_bytes([3; 32])).unwrap();
        let checker = CookieChecker::new(local.public_key());
        State { local, peer, checker, rng: ChaCha20Rng::seed_from_u64(0) }
    });
}

fuzz_target!(|data: &[u8]| {
    STATE.with_borrow_mut(|s| {
        let now = Duration::from_secs(1000);
        if s.peer.pending_initiation_index().is_none() {
            let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            s.peer
                .create_initiation(&s.local, 0, wall, now, &mut s.rng)
                .unwrap();
        }
        let src = SocketAddr::from(([198, 18, 0, 1], 51820));
        let _ = s.checker.check(data, src, now, true, &mut s.rng);
        if let Ok(msg) = Response::parse(data) {
            let _ = s.peer.consume_response(&s.local, &msg);
        }
    });
});
