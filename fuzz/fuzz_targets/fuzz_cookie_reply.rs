//! Arbitrary bytes as a cookie reply to the last handshake message we sent. Must never panic.
#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use uring_tunnel_crypto::cookie::MacGenerator;
use uring_tunnel_crypto::keys::StaticSecret;
use uring_tunnel_crypto::messages::CookieReply;

thread_local! {
    static MACS: RefCell<MacGenerator> = RefCell::new({
        let remote = StaticSecret::from_bytes([2; 32]).public_key();
        let mut macs = MacGenerator::new(&remote);
        let mut msg = [0u8; 148];
        msg[0] = 1;
        macs.seal(&mut msg, Duration::ZERO);
        macs
    });
}

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = CookieReply::parse(data) {
        MACS.with_borrow_mut(|m| {
            let _ = m.consume_cookie_reply(&reply, Duration::from_secs(1));
        });
    }
});
