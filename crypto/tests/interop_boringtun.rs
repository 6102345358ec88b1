//! Wire interop of the handshake and cookies against an independent implementation: Cloudflare's
//! `boringtun` (its sans-IO `noise::Tunn`). Transport packets are sealed/opened here with
//! ChaCha20-Poly1305 directly from the derived keys, which checks the key schedule end to end.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use boringtun::noise::rate_limiter::RateLimiter as BtRateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, SeedableRng};
use uring_tunnel_crypto::cookie::{CookieChecker, MacVerdict};
use uring_tunnel_crypto::handshake::{Handshake, LocalStatic, SessionKeys, open_initiation};
use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};
use uring_tunnel_crypto::messages::{
    CookieReply, Initiation, MessageType, Response, TransportHeader, classify,
};

const SRC: &str = "198.18.0.2:51820";

struct Ours {
    local: LocalStatic,
    hs: Handshake,
    checker: CookieChecker,
    rng: ChaCha20Rng,
}

fn setup(psk: Option<[u8; 32]>, bt_limit: Option<u64>) -> (Ours, Tunn) {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
    let local = LocalStatic::new(StaticSecret::generate(&mut rng));
    let bt_secret = boringtun::x25519::StaticSecret::random_from_rng(OsRng);
    let bt_public = boringtun::x25519::PublicKey::from(&bt_secret);
    let hs = Handshake::new(
        &local,
        PublicKey::from_bytes(bt_public.to_bytes()),
        psk.map_or(PresharedKey::none(), PresharedKey::from_bytes),
    )
    .unwrap();
    let limiter = bt_limit.map(|l| Arc::new(BtRateLimiter::new(&bt_public, l)));
    let tunn = Tunn::new(
        bt_secret,
        boringtun::x25519::PublicKey::from(*local.public_key().as_bytes()),
        psk,
        None,
        7,
        limiter,
    );
    let checker = CookieChecker::new(local.public_key());
    (
        Ours {
            local,
            hs,
            checker,
            rng,
        },
        tunn,
    )
}

fn src() -> SocketAddr {
    SRC.parse().unwrap()
}

fn src_ip() -> Option<IpAddr> {
    Some(src().ip())
}

fn network(r: TunnResult<'_>) -> Vec<u8> {
    match r {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        TunnResult::Err(e) => panic!("boringtun error: {e:?}"),
        _ => panic!("expected a datagram for the network"),
    }
}

/// A minimal IPv4/UDP packet that boringtun will hand to its tunnel.
fn ipv4_packet(payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[100, 64, 0, 1]);
    p[16..20].copy_from_slice(&[100, 64, 0, 2]);
    p[20..22].copy_from_slice(&1234u16.to_be_bytes());
    p[22..24].copy_from_slice(&5678u16.to_be_bytes());
    p[24..26].copy_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// Opens a type-4 datagram with our receive key; returns the (possibly padded) plaintext.
fn open_transport(keys: &SessionKeys, datagram: &[u8]) -> Vec<u8> {
    assert_eq!(classify(datagram), Ok(MessageType::Transport));
    let h = TransportHeader::parse(datagram).unwrap();
    assert_eq!(h.receiver_index(), keys.local_index);
    let ct = h.ciphertext();
    let (body, tag) = ct.split_at(ct.len() - 16);
    let mut body = body.to_vec();
    ChaCha20Poly1305::new((&keys.recv_key).into())
        .decrypt_in_place_detached((&nonce(h.counter())).into(), &[], &mut body, tag.into())
        .expect("transport packet from boringtun must open with our receive key");
    body
}

/// Seals a type-4 datagram with our send key (padded to 16 bytes).
fn seal_transport(keys: &SessionKeys, counter: u64, plaintext: &[u8]) -> Vec<u8> {
    let padded = plaintext.len().div_ceil(16) * 16;
    let mut body = plaintext.to_vec();
    body.resize(padded, 0);
    let tag = ChaCha20Poly1305::new((&keys.send_key).into())
        .encrypt_in_place_detached((&nonce(counter)).into(), &[], &mut body)
        .unwrap();
    let mut d = Vec::with_capacity(16 + padded + 16);
    d.extend_from_slice(&MessageType::Transport.to_wire());
    d.extend_from_slice(&keys.remote_index.to_le_bytes());
    d.extend_from_slice(&counter.to_le_bytes());
    d.extend_from_slice(&body);
    d.extend_from_slice(&tag);
    d
}

fn exchange_data(keys: &SessionKeys, tunn: &mut Tunn, we_send_first: bool) {
    let mut buf = vec![0u8; 2048];
    let to_bt = ipv4_packet(b"hello boringtun");
    let from_bt = ipv4_packet(b"hello uring-tunnel, from boringtun");
    let mut check_ours_arrives = |tunn: &mut Tunn| match tunn.decapsulate(
        src_ip(),
        &seal_transport(keys, 0, &to_bt),
        &mut buf,
    ) {
        TunnResult::WriteToTunnelV4(p, _) => assert_eq!(p, &to_bt[..]),
        TunnResult::Err(e) => panic!("boringtun refused our transport packet: {e:?}"),
        _ => panic!("boringtun did not deliver our packet"),
    };
    if we_send_first {
        check_ours_arrives(tunn);
    }
    let mut out = vec![0u8; 2048];
    let datagram = network(tunn.encapsulate(&from_bt, &mut out));
    let plain = open_transport(keys, &datagram);
    assert_eq!(&plain[..from_bt.len()], &from_bt[..]);
    assert!(plain[from_bt.len()..].iter().all(|&b| b == 0));
    if !we_send_first {
        check_ours_arrives(tunn);
    }
}

fn boringtun_initiates(psk: Option<[u8; 32]>) {
    let (mut o, mut tunn) = setup(psk, None);
    let mut buf = vec![0u8; 2048];
    let now = Duration::from_secs(10);
    let init = network(tunn.format_handshake_initiation(&mut buf, false));
    assert_eq!(
        o.checker.check(&init, src(), now, false, &mut o.rng),
        Ok(MacVerdict::Proceed)
    );
    let rec = open_initiation(&o.local, &Initiation::parse(&init).unwrap()).unwrap();
    assert_eq!(rec.initiator_static(), o.hs.remote_static());
    o.hs.consume_initiation(rec, now).unwrap();
    let (resp, keys) = o.hs.create_response(0xabcd_0001, now, &mut o.rng).unwrap();
    // boringtun answers the response with a keepalive on the new session.
    let keepalive = network(tunn.decapsulate(src_ip(), &resp, &mut buf));
    assert!(open_transport(&keys, &keepalive).iter().all(|&b| b == 0));
    exchange_data(&keys, &mut tunn, false);
}

fn we_initiate(psk: Option<[u8; 32]>) {
    let (mut o, mut tunn) = setup(psk, None);
    let mut buf = vec![0u8; 2048];
    let now = Duration::from_secs(10);
    let init =
        o.hs.create_initiation(&o.local, 0x1234_5678, SystemTime::now(), now, &mut o.rng)
            .unwrap();
    let resp = network(tunn.decapsulate(src_ip(), &init, &mut buf));
    assert_eq!(
        o.checker.check(&resp, src(), now, false, &mut o.rng),
        Ok(MacVerdict::Proceed)
    );
    let keys =
        o.hs.consume_response(&o.local, &Response::parse(&resp).unwrap())
            .unwrap();
    assert_eq!(keys.local_index, 0x1234_5678);
    exchange_data(&keys, &mut tunn, true);
}

#[test]
fn boringtun_initiates_without_psk() {
    boringtun_initiates(None);
}

#[test]
fn boringtun_initiates_with_psk() {
    boringtun_initiates(Some([0x42; 32]));
}

#[test]
fn we_initiate_without_psk() {
    we_initiate(None);
}

#[test]
fn we_initiate_with_psk() {
    we_initiate(Some([0x24; 32]));
}

#[test]
fn psk_mismatch_is_refused_by_boringtun() {
    let (mut o, mut tunn) = setup(Some([1; 32]), None);
    o.hs.set_preshared_key(PresharedKey::from_bytes([2; 32]));
    let mut buf = vec![0u8; 2048];
    let now = Duration::from_secs(1);
    let init =
        o.hs.create_initiation(&o.local, 1, SystemTime::now(), now, &mut o.rng)
            .unwrap();
    // boringtun cannot tell a PSK mismatch at the initiation: it answers, and the response
    // fails to authenticate on our side.
    let resp = network(tunn.decapsulate(src_ip(), &init, &mut buf));
    assert!(
        o.hs.consume_response(&o.local, &Response::parse(&resp).unwrap())
            .is_err()
    );
}

#[test]
fn boringtun_under_load_sends_a_cookie_we_honour() {
    let (mut o, mut tunn) = setup(None, Some(0));
    let mut buf = vec![0u8; 2048];
    let now = Duration::from_secs(10);
    let init =
        o.hs.create_initiation(&o.local, 1, SystemTime::now(), now, &mut o.rng)
            .unwrap();
    let reply = network(tunn.decapsulate(src_ip(), &init, &mut buf));
    assert_eq!(classify(&reply), Ok(MessageType::CookieReply));
    let reply = CookieReply::parse(&reply).unwrap();
    assert_eq!(reply.receiver_index(), 1);
    o.hs.consume_cookie_reply(&reply, now).unwrap();
    assert!(o.hs.macs().has_cookie(now));
    let retry =
        o.hs.create_initiation(
            &o.local,
            2,
            SystemTime::now() + Duration::from_millis(50),
            now,
            &mut o.rng,
        )
        .unwrap();
    let resp = network(tunn.decapsulate(src_ip(), &retry, &mut buf));
    assert_eq!(classify(&resp), Ok(MessageType::Response));
    let keys =
        o.hs.consume_response(&o.local, &Response::parse(&resp).unwrap())
            .unwrap();
    exchange_data(&keys, &mut tunn, true);
}

#[test]
fn we_under_load_send_a_cookie_boringtun_honours() {
    let (mut o, mut tunn) = setup(None, None);
    let mut buf = vec![0u8; 2048];
    let now = Duration::from_secs(10);
    let init = network(tunn.format_handshake_initiation(&mut buf, false));
    let MacVerdict::CookieReply(reply) = o
        .checker
        .check(&init, src(), now, true, &mut o.rng)
        .unwrap()
    else {
        panic!("under load without MAC2 we must answer with a cookie reply");
    };
    assert!(matches!(
        tunn.decapsulate(src_ip(), &reply, &mut buf),
        TunnResult::Done
    ));
    std::thread::sleep(Duration::from_millis(30)); // a newer TAI64N for the retry
    let retry = network(tunn.format_handshake_initiation(&mut buf, true));
    assert_ne!(retry[132..], [0u8; 16], "boringtun must add MAC2");
    assert_eq!(
        o.checker.check(&retry, src(), now, true, &mut o.rng),
        Ok(MacVerdict::Proceed)
    );
    // The same MAC2 from another port is not accepted.
    let other_port: SocketAddr = "198.18.0.2:51821".parse().unwrap();
    assert!(matches!(
        o.checker.check(&retry, other_port, now, true, &mut o.rng),
        Ok(MacVerdict::CookieReply(_))
    ));
    let rec = open_initiation(&o.local, &Initiation::parse(&retry).unwrap()).unwrap();
    o.hs.consume_initiation(rec, now).unwrap();
    let (resp, keys) = o.hs.create_response(99, now, &mut o.rng).unwrap();
    let keepalive = network(tunn.decapsulate(src_ip(), &resp, &mut buf));
    assert!(open_transport(&keys, &keepalive).iter().all(|&b| b == 0));
}

/// Our `Device` (handshake, keypair slots, transport encapsulate/decapsulate) against boringtun,
/// both as initiator and as responder.
#[test]
fn device_talks_to_boringtun_both_roles() {
    use uring_tunnel_crypto::peer::{Device, PeerConfig, Reply};
    use uring_tunnel_crypto::timers::TimerConfig;

    for we_initiate in [true, false] {
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(we_initiate));
        let ours = StaticSecret::generate(&mut rng);
        let our_pub = ours.public_key();
        let bt_secret = boringtun::x25519::StaticSecret::random_from_rng(OsRng);
        let bt_public = boringtun::x25519::PublicKey::from(&bt_secret);
        let mut tunn = Tunn::new(
            bt_secret,
            boringtun::x25519::PublicKey::from(*our_pub.as_bytes()),
            Some([7; 32]),
            None,
            3,
            None,
        );
        let mut dev = Device::new(ours, TimerConfig::default());
        let now = Duration::from_secs(5);
        let peer = dev
            .add_peer(
                PeerConfig {
                    preshared_key: PresharedKey::from_bytes([7; 32]),
                    endpoint: Some(src()),
                    ..PeerConfig::new(PublicKey::from_bytes(bt_public.to_bytes()))
                },
                now,
            )
            .unwrap();
        let mut buf = vec![0u8; 2048];
        if we_initiate {
            let init = dev
                .create_initiation(peer, SystemTime::now(), now, &mut rng)
                .unwrap();
            let resp = network(tunn.decapsulate(src_ip(), &init, &mut buf));
            dev.handle_handshake(&resp, src(), now, false, &mut rng)
                .unwrap();
        } else {
            let init = network(tunn.format_handshake_initiation(&mut buf, false));
            let out = dev
                .handle_handshake(&init, src(), now, false, &mut rng)
                .unwrap();
            let Some(Reply::Response(resp)) = out.reply else {
                panic!("expected a response")
            };
            // boringtun confirms with a keepalive, which promotes our `next` session.
            let mut keepalive = network(tunn.decapsulate(src_ip(), &resp, &mut buf));
            let r = dev.decapsulate(&mut keepalive, src(), now).unwrap();
            assert!(r.promoted && r.packet.is_keepalive());
        }
        // Our packet to boringtun.
        let ip = ipv4_packet(b"from our device");
        let mut out = vec![0u8; 16 + ip.len() + 16 + 16];
        out[16..16 + ip.len()].copy_from_slice(&ip);
        let n = dev.encapsulate(peer, &mut out, ip.len(), now).unwrap();
        match tunn.decapsulate(src_ip(), &out[..n], &mut buf) {
            TunnResult::WriteToTunnelV4(p, _) => assert_eq!(p, &ip[..]),
            TunnResult::Err(e) => panic!("boringtun refused our device's packet: {e:?}"),
            _ => panic!("boringtun did not deliver our device's packet"),
        }
        // boringtun's packet to us.
        let ip = ipv4_packet(b"from boringtun to the device");
        let mut out = vec![0u8; 2048];
        let mut datagram = network(tunn.encapsulate(&ip, &mut out));
        let r = dev.decapsulate(&mut datagram, src(), now).unwrap();
        assert_eq!(&datagram[r.packet.plaintext.clone()][..ip.len()], &ip[..]);
    }
}
