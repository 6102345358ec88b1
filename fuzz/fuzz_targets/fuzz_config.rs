//! Arbitrary text as a wg-quick configuration file. Must never panic; an accepted
//! configuration's peers name lines within the file, and a rejected one names a line within
//! the file and never quotes anything key-like (a run of 40+ base64 characters).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use uring_tunnel::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match Config::parse(&text, Path::new("fuzz.conf")) {
        Ok(cfg) => {
            for p in &cfg.peers {
                assert!(p.line >= 1 && p.line <= lines);
            }
        }
        Err(e) => {
            assert!(e.line <= lines + 1, "error line {} of {lines}", e.line);
            assert!(!e.reason.is_empty());
            assert!(e.to_string().starts_with("fuzz.conf"));
            let mut run = 0;
            for c in e.reason.chars() {
                run = if c.is_ascii_alphanumeric() || c == '+' || c == '/' {
                    run + 1
                } else {
                    0
                };
                assert!(run < 40, "key-like text in {:?}", e.reason);
            }
        }
    }
});
