//! A sequence of datagrams, each given to `Device::handle_handshake` or
//! `Device::decapsulate` (by its type byte) of the responder `b`, interleaved with timer
//! ticks and real messages from `a`. Must never panic, whatever the order.
//!
//! Input: a list of records `[op][len u16][bytes]`; `op` bits: 0–1 choose the datagram (raw
//! bytes; a fresh initiation from `a` with flips; `a`'s answer to the last reply of `b`; a
//! transport packet from `a` with flips), bit 2 re-seals MAC1 for `b`, bit 3 `b` under load,
//! bits 4–7 advance the clock by that many seconds (and tick both devices).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::messages::{MessageType, classify};
use uring_tunnel_crypto::peer::Reply;
use uring_tunnel_fuzz::{NOW, Pair, Reader, mutate, reseal_mac1, src};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mut pair = Pair::new(r.u8() & 1 != 0);
    let mut rng = ChaCha20Rng::seed_from_u64(r.u64());
    let mut now = NOW;
    let mut last_reply: Option<Vec<u8>> = None;
    let mut steps = 0;
    while !r.is_empty() && steps < 32 {
        steps += 1;
        let op = r.u8();
        let secs = u64::from(op >> 4);
        if secs > 0 {
            now += Duration::from_secs(secs * secs);
            let wall = uring_tunnel_fuzz::wall(now.as_secs());
            let _ = pair.a.tick(now, wall, &mut rng);
            for t in pair.b.tick(now, wall, &mut rng) {
                let _ = pair
                    .a
                    .handle_handshake(&t.datagram, src(), now, false, &mut rng);
            }
        }
        let mut msg = match op & 3 {
            0 => {
                let len = usize::from(r.u16() % 2048);
                r.take(len).to_vec()
            }
            1 => {
                let wall = uring_tunnel_fuzz::wall(now.as_secs() + u64::from(r.u8()));
                let Ok(m) = pair.a.create_initiation(pair.b_in_a, wall, now, &mut rng) else {
                    continue;
                };
                let mut m = m.to_vec();
                mutate(&mut m, &mut r, 4);
                m
            }
            2 => {
                // a consumes b's last reply; whatever a sends next goes to b.
                let Some(reply) = last_reply.take() else {
                    continue;
                };
                let _ = pair.a.handle_handshake(&reply, src(), now, false, &mut rng);
                let mut buf = vec![0u8; 64];
                match pair.a.encapsulate(pair.b_in_a, &mut buf, 0, now) {
                    Ok(n) => buf[..n].to_vec(),
                    Err(_) => continue,
                }
            }
            _ => {
                let len = usize::from(r.u8());
                let payload = r.take(len);
                let mut buf = vec![0u8; 32 + payload.len() + 16];
                buf[16..16 + payload.len()].copy_from_slice(payload);
                let Ok(n) = pair
                    .a
                    .encapsulate(pair.b_in_a, &mut buf, payload.len(), now)
                else {
                    continue;
                };
                buf.truncate(n);
                mutate(&mut buf, &mut r, 2);
                buf
            }
        };
        if op & 4 != 0 {
            reseal_mac1(&mut msg, pair.b.public_key());
        }
        match classify(&msg) {
            Ok(MessageType::Transport) => {
                let _ = pair.b.decapsulate(&mut msg, src(), now);
            }
            _ => {
                if let Ok(out) = pair
                    .b
                    .handle_handshake(&msg, src(), now, op & 8 != 0, &mut rng)
                    && let Some(reply) = out.reply
                {
                    if let Reply::Response(_) = reply {
                        assert_eq!(out.peer, Some(pair.a_in_b));
                    }
                    last_reply = Some(reply.as_bytes().to_vec());
                }
            }
        }
    }
});
