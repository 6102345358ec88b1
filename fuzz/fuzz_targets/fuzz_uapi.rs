//! Arbitrary bytes as a UAPI request (`get=1` / `set=1` / `show=1` and their key lines), as a
//! client on `/var/run/wireguard/<if>.sock` could send them. Must never panic; a parsed `set`
//! never names more peers than it has lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uring_tunnel::uapi::{Request, parse_request};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for req in [text.to_string(), format!("set=1\n{text}")] {
        if let Ok(Request::Set(u)) = parse_request(&req) {
            assert!(u.peers.len() <= req.lines().count());
        }
    }
});
