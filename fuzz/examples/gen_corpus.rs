//! Writes the checked-in seed corpus, deterministically: a few valid inputs per target.
//!
//!     cd fuzz && cargo +nightly run --example gen_corpus      # rewrites corpus/<target>/seed-*
//!
//! Files are named `seed-<name>` so they stay apart from anything a fuzzer adds.

use std::fs;
use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::peer::Reply;
use uring_tunnel_fuzz::{NOW, Pair, TCP, UDP, ipv4, ipv6, src, wall};
use uring_tunnel_tun::{F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VirtioNetHdr};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Real handshake messages of a fresh pair: initiation, response, cookie reply, transport.
fn messages(psk: bool) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut p = Pair::new(psk);
    let init =
        p.a.create_initiation(p.b_in_a, wall(1), NOW, &mut rng)
            .unwrap();
    let cookie = match p
        .b
        .handle_handshake(&init, src(), NOW, true, &mut rng)
        .unwrap()
        .reply
    {
        Some(Reply::CookieReply(c)) => c.to_vec(),
        _ => panic!("no cookie reply"),
    };
    let resp = match p
        .b
        .handle_handshake(&init, src(), NOW, false, &mut rng)
        .unwrap()
        .reply
    {
        Some(Reply::Response(r)) => r,
        _ => panic!("no response"),
    };
    p.a.handle_handshake(&resp, src(), NOW, false, &mut rng)
        .unwrap();
    let mut buf = vec![0u8; 32 + 32];
    buf[16..16 + 5].copy_from_slice(b"hello");
    let n = p.a.encapsulate(p.b_in_a, &mut buf, 5, NOW).unwrap();
    buf.truncate(n);
    (init.to_vec(), resp.to_vec(), cookie, buf)
}

fn main() {
    let seed = 42u64.to_le_bytes();
    let ts = 5u64.to_le_bytes();
    let (init, resp, cookie, transport) = messages(false);

    // fuzz_initiation: [mode][seed u64][ts u64][mutations] or [mode][seed][raw].
    write(
        "fuzz_initiation",
        "valid",
        &cat(&[&[0x01], &seed, &ts, &[0]]),
    );
    write(
        "fuzz_initiation",
        "valid-psk-replay",
        &cat(&[&[0x19], &seed, &ts, &[0], b"payload"]),
    );
    write(
        "fuzz_initiation",
        "valid-load",
        &cat(&[&[0x05], &seed, &ts, &[0]]),
    );
    write(
        "fuzz_initiation",
        "flip-reseal",
        &cat(&[&[0x03], &seed, &ts, &[1, 100, 0, 0x01]]),
    );
    write("fuzz_initiation", "raw", &cat(&[&[0x00], &seed, &init]));

    // fuzz_response: [mode][seed][mutations] or [mode][seed][raw].
    write("fuzz_response", "valid", &cat(&[&[0x01], &seed, &[0]]));
    write(
        "fuzz_response",
        "valid-psk-twice",
        &cat(&[&[0x19], &seed, &[0]]),
    );
    write(
        "fuzz_response",
        "flip-reseal",
        &cat(&[&[0x03], &seed, &[1, 50, 0, 0x80]]),
    );
    write("fuzz_response", "raw", &cat(&[&[0x02], &seed, &resp]));

    // fuzz_cookie_reply
    write("fuzz_cookie_reply", "valid", &cat(&[&[0x01], &seed, &[0]]));
    write(
        "fuzz_cookie_reply",
        "flip",
        &cat(&[&[0x01], &seed, &[1, 40, 0, 0x04]]),
    );
    write("fuzz_cookie_reply", "raw", &cat(&[&[0x00], &seed, &cookie]));

    // fuzz_transport_decapsulate: [1][counter skip u16][len u16][payload][mutations] or raw.
    let payload = [0x45u8; 60];
    write(
        "fuzz_transport_decapsulate",
        "valid",
        &cat(&[
            &[0x01],
            &3u16.to_le_bytes(),
            &60u16.to_le_bytes(),
            &payload,
            &[0],
        ]),
    );
    write(
        "fuzz_transport_decapsulate",
        "keepalive",
        &cat(&[&[0x01], &0u16.to_le_bytes(), &0u16.to_le_bytes(), &[0]]),
    );
    write(
        "fuzz_transport_decapsulate",
        "raw",
        &cat(&[&[0x00], &transport]),
    );

    // fuzz_device: [psk][seed][op …]; op 1 = initiation (ts byte, mutations), 2 = answer the
    // last reply, 3 = transport (len, payload, mutations), 0 = raw (len u16, bytes).
    write(
        "fuzz_device",
        "handshake-then-data",
        &cat(&[
            &[0],
            &seed,
            &[0x01, 0, 0],
            &[0x02],
            &[0x03, 4],
            b"ping",
            &[0],
            &[0x13, 2],
            b"hi",
            &[0],
        ]),
    );
    write(
        "fuzz_device",
        "load-and-timers",
        &cat(&[
            &[1],
            &seed,
            &[0x09, 0, 0],
            &[0x02],
            &[0x01, 1, 0],
            &[0xa2],
            &[0xf3, 0, 0],
        ]),
    );
    write(
        "fuzz_device",
        "raw-initiation",
        &cat(&[
            &[0],
            &seed,
            &[0x04],
            &(init.len() as u16).to_le_bytes(),
            &init,
        ]),
    );

    // fuzz_config: wg-quick files.
    let a = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    let b = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    write(
        "fuzz_config",
        "full",
        format!(
            "[Interface]\nPrivateKey = {a}\nListenPort = 51820\nAddress = 100.64.0.1/24, fd00::1/64\n\
             MTU = 1380\nTable = off\nFwMark = 0x10\nDNS = 1.1.1.1\n\n[Peer]\n# comment\n\
             PublicKey = {b}\nPresharedKey = {a}\nEndpoint = 198.18.0.2:51820\n\
             AllowedIPs = 100.64.0.2/32, fd00::2/128\nPersistentKeepalive = 25\n\n\
             [Peer]\nPublicKey = {a}\nEndpoint = [fd00::3]:1\nAllowedIPs = 0.0.0.0/0\n"
        )
        .as_bytes(),
    );
    write(
        "fuzz_config",
        "minimal",
        format!("[Interface]\nPrivateKey={a}\n[Peer]\npublickey={b}\nallowedips=10.0.0.0/8\n")
            .as_bytes(),
    );
    write(
        "fuzz_config",
        "bad-line",
        b"[Interface]\nPrivateKey = nope\nBogus\n",
    );

    // fuzz_vnet_split: 10-byte header + packet.
    let big: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    let tcp4 = ipv4(TCP, 1, (1, 2), 100, 0x18, &big);
    let hdr = |gso, hdr_len, size, start, off| VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: gso,
        hdr_len,
        gso_size: size,
        csum_start: start,
        csum_offset: off,
    };
    let seed_split = |name: &str, h: VirtioNetHdr, p: &[u8]| {
        write("fuzz_vnet_split", name, &cat(&[&h.to_bytes(), p]));
    };
    seed_split("tcp4-tso", hdr(GSO_TCPV4, 40, 1000, 20, 16), &tcp4);
    seed_split(
        "tcp6-tso",
        hdr(GSO_TCPV6, 60, 1200, 40, 16),
        &ipv6(TCP, (1, 2), 7, 0x19, &big),
    );
    seed_split(
        "udp4-uso",
        hdr(GSO_UDP_L4, 28, 1300, 20, 6),
        &ipv4(UDP, 1, (1, 2), 0, 0, &big),
    );
    seed_split(
        "udp6-uso",
        hdr(GSO_UDP_L4, 48, 500, 40, 6),
        &ipv6(UDP, (1, 2), 0, 0, &big[..1700]),
    );
    seed_split(
        "csum-only",
        hdr(GSO_NONE, 0, 0, 20, 16),
        &ipv4(TCP, 1, (1, 2), 0, 0x10, &big[..100]),
    );
    seed_split(
        "plain",
        VirtioNetHdr::NONE,
        &ipv4(UDP, 1, (1, 2), 0, 0, b"x"),
    );

    // fuzz_coalesce: templated lists [flags|0x80][count][(sel, len u16)…] and a raw list.
    let mut t = vec![0x8f, 12];
    for i in 0..12u8 {
        let sel = i % 4; // four flows: tcp4, udp4, tcp6, udp6
        t.push(sel);
        t.extend_from_slice(&1200u16.to_le_bytes());
    }
    write("fuzz_coalesce", "templated-4-flows", &t);
    let mut t = vec![0xbf, 6];
    for len in [1000u16, 1000, 1000, 400, 1000, 1000] {
        t.push(0x80); // tcp4, PSH set
        t.extend_from_slice(&len.to_le_bytes());
    }
    write("fuzz_coalesce", "templated-psh", &t);
    let mut raw = vec![0x0f, 3];
    for p in [
        ipv4(TCP, 1, (5, 6), 1, 0x10, &[1; 100]),
        ipv4(TCP, 2, (5, 6), 101, 0x10, &[2; 100]),
        ipv6(UDP, (5, 6), 0, 0, &[3; 50]),
    ] {
        raw.extend_from_slice(&(p.len() as u16).to_le_bytes());
        raw.extend_from_slice(&p);
    }
    write("fuzz_coalesce", "raw", &raw);
}
