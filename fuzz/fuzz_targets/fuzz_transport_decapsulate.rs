//! Arbitrary bytes as a received transport datagram, given to a device with an established
//! session: once as they are, once behind a header naming that session (to get past the index
//! lookup into the AEAD and replay checks). Must never panic and never authenticate.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::keys::StaticSecret;
use uring_tunnel_crypto::peer::{Device, PeerConfig};
use uring_tunnel_crypto::timers::TimerConfig;

struct State {
    responder: Device,
    index: u32,
}

const NOW: Duration = Duration::from_secs(100);

thread_local! {
    static STATE: RefCell<State> = RefCell::new({
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let ka = StaticSecret::from_bytes([1; 32]);
        let kb = StaticSecret::from_bytes([2; 32]);
        let (pa, pb) = (ka.public_key(), kb.public_key());
        let mut a = Device::new(ka, TimerConfig::default());
        let mut b = Device::new(kb, TimerConfig::default());
        let b_in_a = a.add_peer(PeerConfig::new(pb), NOW).unwrap();
        b.add_peer(PeerConfig::new(pa), NOW).unwrap();
        let src: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let init = a.create_initiation(b_in_a, wall, NOW, &mut rng).unwrap();
        let out = b.handle_handshake(&init, src, NOW, false, &mut rng).unwrap();
        let resp = out.reply.unwrap();
        a.handle_handshake(resp.as_bytes(), src, NOW, false, &mut rng).unwrap();
        let index = a.peer(b_in_a).unwrap().current().unwrap().remote_index;
        State { responder: b, index }
    });
}

fuzz_target!(|data: &[u8]| {
    STATE.with_borrow_mut(|s| {
        let src: SocketAddr = "198.18.0.9:9".parse().unwrap();
        let mut buf = data.to_vec();
        assert!(s.responder.decapsulate(&mut buf, src, NOW).is_err());
        let mut framed = Vec::with_capacity(8 + data.len());
        framed.extend_from_slice(&[4, 0, 0, 0]);
        framed.extend_from_slice(&s.index.to_le_bytes());
        framed.extend_from_slice(data);
        assert!(s.responder.decapsulate(&mut framed, src, NOW).is_err());
    });
});
