//! Two `Device`s talking through a simulated network with a fake clock: handshakes from either
//! side, with and without PSK, simultaneous initiations, replays, the cookie path under load,
//! keypair rotation and timer-driven retransmission.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use uring_tunnel_crypto::Error;
use uring_tunnel_crypto::keys::{PresharedKey, StaticSecret};
use uring_tunnel_crypto::messages::{MessageType, classify};
use uring_tunnel_crypto::peer::{Device, Event, PeerConfig, PeerId, Reply};
use uring_tunnel_crypto::timers::TimerConfig;

struct Node {
    dev: Device,
    addr: SocketAddr,
    peer: PeerId,
}

struct Net {
    a: Node,
    b: Node,
    rng: ChaCha20Rng,
    now: Duration,
}

fn wall(now: Duration) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + now
}

impl Net {
    fn new(seed: u64, psk: bool) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let psk = if psk {
            PresharedKey::generate(&mut rng)
        } else {
            PresharedKey::none()
        };
        let ka = StaticSecret::generate(&mut rng);
        let kb = StaticSecret::generate(&mut rng);
        let (pa, pb) = (ka.public_key(), kb.public_key());
        let addr_a: SocketAddr = "198.18.0.1:51820".parse().unwrap();
        let addr_b: SocketAddr = "198.18.0.2:51820".parse().unwrap();
        let now = Duration::from_secs(1000);
        let mut da = Device::new(ka, TimerConfig::default());
        let mut db = Device::new(kb, TimerConfig::default());
        let peer_b = da
            .add_peer(
                PeerConfig {
                    preshared_key: psk.clone(),
                    endpoint: Some(addr_b),
                    ..PeerConfig::new(pb)
                },
                now,
            )
            .unwrap();
        let peer_a = db
            .add_peer(
                PeerConfig {
                    preshared_key: psk,
                    endpoint: Some(addr_a),
                    ..PeerConfig::new(pa)
                },
                now,
            )
            .unwrap();
        Net {
            a: Node {
                dev: da,
                addr: addr_a,
                peer: peer_b,
            },
            b: Node {
                dev: db,
                addr: addr_b,
                peer: peer_a,
            },
            rng,
            now,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn initiation(&mut self, from_a: bool) -> Vec<u8> {
        let now = self.now;
        let from = if from_a { &mut self.a } else { &mut self.b };
        from.dev
            .create_initiation(from.peer, wall(now), now, &mut self.rng)
            .unwrap()
            .to_vec()
    }

    /// Delivers a handshake datagram sent by A (a_to_b) or B, from `src` (default: the
    /// sender's address), to the other side.
    fn deliver_handshake(
        &mut self,
        a_to_b: bool,
        datagram: &[u8],
        src: Option<SocketAddr>,
        under_load: bool,
    ) -> Result<(Option<Reply>, Option<Event>), Error> {
        let (from, to) = if a_to_b {
            (&self.a, &mut self.b)
        } else {
            (&self.b, &mut self.a)
        };
        let src = src.unwrap_or(from.addr);
        let out = to
            .dev
            .handle_handshake(datagram, src, self.now, under_load, &mut self.rng)?;
        Ok((out.reply, out.event))
    }

    /// Full handshake initiated by A (true) or B, no load.
    fn handshake(&mut self, from_a: bool) {
        let init = self.initiation(from_a);
        let (reply, event) = self.deliver_handshake(from_a, &init, None, false).unwrap();
        assert!(matches!(event, Some(Event::SessionPending { .. })));
        let Some(Reply::Response(resp)) = reply else {
            panic!("expected a response")
        };
        let (reply, event) = self.deliver_handshake(!from_a, &resp, None, false).unwrap();
        assert!(reply.is_none());
        assert!(matches!(event, Some(Event::SessionEstablished { .. })));
    }

    /// Encrypts `payload` at A (a_to_b) or B for the other side.
    fn seal(&mut self, a_to_b: bool, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let now = self.now;
        let from = if a_to_b { &mut self.a } else { &mut self.b };
        let mut buf = vec![0u8; 16 + payload.len() + 16 + 32];
        buf[16..16 + payload.len()].copy_from_slice(payload);
        let n = from
            .dev
            .encapsulate(from.peer, &mut buf, payload.len(), now)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Decrypts at the other side; returns the plaintext (padding stripped to `len`).
    fn open(
        &mut self,
        a_to_b: bool,
        datagram: &[u8],
        len: usize,
    ) -> Result<(Vec<u8>, bool), Error> {
        let now = self.now;
        let (from, to) = if a_to_b {
            (&self.a, &mut self.b)
        } else {
            (&self.b, &mut self.a)
        };
        let src = from.addr;
        let mut buf = datagram.to_vec();
        let r = to.dev.decapsulate(&mut buf, src, now)?;
        assert_eq!(Some(r.peer), Some(to.peer));
        let plain = buf[r.packet.plaintext.clone()].to_vec();
        assert!(plain.len() >= len && plain[len..].iter().all(|&b| b == 0));
        Ok((plain[..len].to_vec(), r.promoted))
    }

    fn roundtrip(&mut self, a_to_b: bool, payload: &[u8]) {
        let d = self.seal(a_to_b, payload).unwrap();
        let (p, _) = self.open(a_to_b, &d, payload.len()).unwrap();
        assert_eq!(p, payload);
    }
}

fn exchange_both_ways(net: &mut Net, initiator_is_a: bool) {
    // The responder may not send before it heard from the initiator on the new session.
    assert_eq!(
        net.seal(!initiator_is_a, b"too early").unwrap_err(),
        Error::NoSession
    );
    let d = net
        .seal(initiator_is_a, b"first data from the initiator")
        .unwrap();
    let (p, promoted) = net.open(initiator_is_a, &d, 29).unwrap();
    assert_eq!(&p, b"first data from the initiator");
    assert!(
        promoted,
        "the first packet confirms the responder's next session"
    );
    net.roundtrip(!initiator_is_a, b"answer from the responder");
    for i in 0..50u32 {
        net.roundtrip(i % 2 == 0, &i.to_le_bytes().repeat(i as usize));
    }
}

#[test]
fn a_initiates_without_psk() {
    let mut net = Net::new(1, false);
    net.handshake(true);
    exchange_both_ways(&mut net, true);
}

#[test]
fn b_initiates_without_psk() {
    let mut net = Net::new(2, false);
    net.handshake(false);
    exchange_both_ways(&mut net, false);
}

#[test]
fn a_initiates_with_psk() {
    let mut net = Net::new(3, true);
    net.handshake(true);
    exchange_both_ways(&mut net, true);
}

#[test]
fn b_initiates_with_psk() {
    let mut net = Net::new(4, true);
    net.handshake(false);
    exchange_both_ways(&mut net, false);
}

#[test]
fn psk_mismatch_gives_no_session() {
    let mut net = Net::new(5, true);
    let pb = *net.a.dev.peer(net.a.peer).unwrap().public_key();
    net.a
        .dev
        .add_peer(
            PeerConfig {
                preshared_key: PresharedKey::from_bytes([9; 32]),
                ..PeerConfig::new(pb)
            },
            net.now,
        )
        .unwrap();
    let init = net.initiation(true);
    let (reply, _) = net.deliver_handshake(true, &init, None, false).unwrap();
    let Some(Reply::Response(resp)) = reply else {
        panic!()
    };
    assert_eq!(
        net.deliver_handshake(false, &resp, None, false)
            .unwrap_err(),
        Error::DecryptFailed
    );
    assert_eq!(net.seal(true, b"x").unwrap_err(), Error::NoSession);
}

#[test]
fn simultaneous_initiations_both_get_working_sessions() {
    let mut net = Net::new(6, false);
    let ia = net.initiation(true);
    let ib = net.initiation(false);
    // Both initiations cross on the wire; each side answers the other's.
    let (ra, _) = net.deliver_handshake(false, &ib, None, false).unwrap(); // B's init at A
    let (rb, _) = net.deliver_handshake(true, &ia, None, false).unwrap(); // A's init at B
    let (Some(Reply::Response(ra)), Some(Reply::Response(rb))) = (ra, rb) else {
        panic!("both sides must answer")
    };
    // Both responses arrive and complete each side's own initiation.
    let (_, ev_b) = net.deliver_handshake(true, &ra, None, false).unwrap(); // A's response at B
    let (_, ev_a) = net.deliver_handshake(false, &rb, None, false).unwrap(); // B's response at A
    assert!(matches!(ev_a, Some(Event::SessionEstablished { .. })));
    assert!(matches!(ev_b, Some(Event::SessionEstablished { .. })));
    for i in 0..20u8 {
        net.roundtrip(true, &[i; 33]);
        net.roundtrip(false, &[i; 7]);
    }
}

#[test]
fn replayed_or_stale_initiation_is_refused() {
    let mut net = Net::new(7, false);
    let init = net.initiation(true);
    let (reply, _) = net.deliver_handshake(true, &init, None, false).unwrap();
    let Some(Reply::Response(resp)) = reply else {
        panic!()
    };
    net.deliver_handshake(false, &resp, None, false).unwrap();
    exchange_both_ways(&mut net, true);
    let b_current = net
        .b
        .dev
        .peer(net.b.peer)
        .unwrap()
        .current()
        .cloned()
        .unwrap();

    net.advance(Duration::from_secs(1));
    assert_eq!(
        net.deliver_handshake(true, &init, None, false).unwrap_err(),
        Error::StaleTimestamp
    );
    // An initiation with an older clock is as stale as a replay.
    let older = {
        let now = net.now;
        let peer = net.a.peer;
        net.a
            .dev
            .create_initiation(peer, wall(now) - Duration::from_secs(60), now, &mut net.rng)
            .unwrap()
    };
    assert_eq!(
        net.deliver_handshake(true, &older, None, false)
            .unwrap_err(),
        Error::StaleTimestamp
    );
    // Nothing changed at B: same current session, still working.
    let p = net.b.dev.peer(net.b.peer).unwrap();
    assert!(Arc::ptr_eq(p.current().unwrap(), &b_current));
    assert!(p.next().is_none());
    net.roundtrip(false, b"still fine");
    // A transport packet replayed is refused too.
    let d = net.seal(true, b"once").unwrap();
    net.open(true, &d, 4).unwrap();
    assert_eq!(net.open(true, &d, 4).unwrap_err(), Error::Replayed);
}

#[test]
fn cookie_path_under_load() {
    let mut net = Net::new(8, false);
    let init = net.initiation(true);
    // Under load, no MAC2: a cookie reply, no handshake state at B.
    let (reply, event) = net.deliver_handshake(true, &init, None, true).unwrap();
    assert!(event.is_none());
    let Some(Reply::CookieReply(cookie)) = reply else {
        panic!("expected a cookie reply under load")
    };
    assert_eq!(classify(&cookie), Ok(MessageType::CookieReply));
    assert!(net.b.dev.peer(net.b.peer).unwrap().next().is_none());

    // The cookie reply arrives at A from a spoofed address: accepted, endpoint unchanged.
    let spoofed: SocketAddr = "203.0.113.9:9".parse().unwrap();
    let (_, ev) = net
        .deliver_handshake(false, &cookie, Some(spoofed), false)
        .unwrap();
    assert!(matches!(ev, Some(Event::CookieStored { .. })));
    assert_eq!(
        net.a.dev.peer(net.a.peer).unwrap().endpoint(),
        Some(net.b.addr)
    );

    // The retry carries MAC2 and is accepted under load.
    net.advance(Duration::from_millis(100));
    let retry = net.initiation(true);
    assert_ne!(retry[132..], [0u8; 16]);

    // The same MAC2 from another source port of A does not count: another cookie reply.
    let other_port: SocketAddr = "198.18.0.1:51821".parse().unwrap();
    let (reply, _) = net
        .deliver_handshake(true, &retry, Some(other_port), true)
        .unwrap();
    assert!(matches!(reply, Some(Reply::CookieReply(_))));

    let (reply, _) = net.deliver_handshake(true, &retry, None, true).unwrap();
    let Some(Reply::Response(resp)) = reply else {
        panic!("expected a response to the retry with a valid MAC2")
    };
    // B's response may also meet load at A; A has no cookie from B yet, so it is refused
    // with a cookie reply under load, and accepted without load.
    let (reply, _) = net.deliver_handshake(false, &resp, None, true).unwrap();
    assert!(matches!(reply, Some(Reply::CookieReply(_))));
    net.deliver_handshake(false, &resp, None, false).unwrap();
    exchange_both_ways(&mut net, true);
}

#[test]
fn invalid_mac1_is_refused_before_anything_else() {
    let mut net = Net::new(9, false);
    let mut init = net.initiation(true);
    init[120] ^= 1;
    assert_eq!(
        net.deliver_handshake(true, &init, None, false).unwrap_err(),
        Error::InvalidMac1
    );
    assert_eq!(
        net.deliver_handshake(true, &init, None, true).unwrap_err(),
        Error::InvalidMac1
    );
}

#[test]
fn unknown_peer_is_refused() {
    let mut net = Net::new(10, false);
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut stranger = Device::new(StaticSecret::generate(&mut rng), TimerConfig::default());
    let id = stranger
        .add_peer(PeerConfig::new(*net.b.dev.public_key()), net.now)
        .unwrap();
    let init = stranger
        .create_initiation(id, wall(net.now), net.now, &mut rng)
        .unwrap();
    assert_eq!(
        net.deliver_handshake(true, &init, None, false).unwrap_err(),
        Error::UnknownPeer
    );
}

#[test]
fn rotation_keeps_in_flight_packets_and_bounds_indices() {
    let mut net = Net::new(11, false);
    net.handshake(true);
    exchange_both_ways(&mut net, true);
    for round in 0..5 {
        net.advance(Duration::from_secs(30));
        // A packet sealed on the old session, delivered after the new handshake.
        let in_flight = net.seal(true, b"in flight").unwrap();
        let old = net
            .a
            .dev
            .peer(net.a.peer)
            .unwrap()
            .current()
            .cloned()
            .unwrap();
        net.handshake(round % 2 == 0);
        let initiator_is_a = round % 2 == 0;
        let pa = net.a.dev.peer(net.a.peer).unwrap();
        if initiator_is_a {
            assert!(Arc::ptr_eq(pa.previous().unwrap(), &old));
        }
        // The in-flight packet still opens at B (old session kept as current or previous).
        net.open(true, &in_flight, 9).unwrap();
        exchange_both_ways_after_rotation(&mut net, initiator_is_a);
        assert!(net.a.dev.index_count() <= 3, "{}", net.a.dev.index_count());
        assert!(net.b.dev.index_count() <= 3, "{}", net.b.dev.index_count());
    }
}

fn exchange_both_ways_after_rotation(net: &mut Net, initiator_is_a: bool) {
    let d = net.seal(initiator_is_a, b"confirm").unwrap();
    let (_, promoted) = net.open(initiator_is_a, &d, 7).unwrap();
    assert!(promoted);
    net.roundtrip(!initiator_is_a, b"back");
    net.roundtrip(initiator_is_a, b"forth");
}

#[test]
fn lost_initiation_is_retransmitted_by_the_timers() {
    let mut net = Net::new(12, false);
    // Data without a session asks for a handshake; the tick sends the initiation.
    assert_eq!(net.seal(true, b"queued").unwrap_err(), Error::NoSession);
    let now = net.now;
    let out = net.a.dev.tick(now, wall(now), &mut net.rng);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, net.b.addr);
    assert_eq!(classify(&out[0].datagram), Ok(MessageType::Initiation));
    // It is lost. Nothing more before Rekey-Timeout...
    net.advance(Duration::from_secs(4));
    let now = net.now;
    assert!(net.a.dev.tick(now, wall(now), &mut net.rng).is_empty());
    // ...a retry after Rekey-Timeout + jitter (≤ 333 ms).
    net.advance(Duration::from_millis(1400));
    let now = net.now;
    let out = net.a.dev.tick(now, wall(now), &mut net.rng);
    assert_eq!(out.len(), 1);
    let retry = out[0].datagram.clone();
    let (reply, _) = net.deliver_handshake(true, &retry, None, false).unwrap();
    let Some(Reply::Response(resp)) = reply else {
        panic!()
    };
    net.deliver_handshake(false, &resp, None, false).unwrap();
    exchange_both_ways(&mut net, true);
    // The first (lost) initiation's index is gone: only the session's index is left.
    assert_eq!(net.a.dev.index_count(), 1);
}

#[test]
fn late_response_to_a_replaced_initiation_is_refused() {
    let mut net = Net::new(13, false);
    let first = net.initiation(true);
    let (reply, _) = net.deliver_handshake(true, &first, None, false).unwrap();
    let Some(Reply::Response(late)) = reply else {
        panic!()
    };
    net.advance(Duration::from_secs(6));
    let _second = net.initiation(true);
    assert_eq!(
        net.deliver_handshake(false, &late, None, false)
            .unwrap_err(),
        Error::UnknownIndex
    );
}

#[test]
fn removed_peer_loses_sessions_and_indices() {
    let mut net = Net::new(40, false);
    net.handshake(true);
    exchange_both_ways(&mut net, true);
    let d = net.seal(true, b"in flight").unwrap();
    assert!(net.b.dev.index_count() > 0);
    let peer = net.b.peer;
    let key = *net.b.dev.peer(peer).unwrap().public_key();
    net.b.dev.remove_peer(peer).unwrap();
    assert_eq!(net.b.dev.index_count(), 0);
    assert!(net.b.dev.peer(peer).is_none());
    assert_eq!(net.b.dev.peer_by_key(&key), None);
    assert_eq!(net.b.dev.peers().count(), 0);
    assert_eq!(net.b.dev.remove_peer(peer), Err(Error::UnknownPeer));
    let mut buf = d.clone();
    let now = net.now;
    let src = net.a.addr;
    assert_eq!(
        net.b.dev.decapsulate(&mut buf, src, now).unwrap_err(),
        Error::UnknownIndex
    );
    // Its initiations are now from an unknown key.
    let init = net.initiation(true);
    assert_eq!(
        net.deliver_handshake(true, &init, None, false).unwrap_err(),
        Error::UnknownPeer
    );
    // Re-added, it gets a fresh id and works again.
    let id = net
        .b
        .dev
        .add_peer(
            PeerConfig {
                endpoint: Some(net.a.addr),
                ..PeerConfig::new(key)
            },
            now,
        )
        .unwrap();
    assert_ne!(id, peer);
    net.b.peer = id;
    net.handshake(true);
    exchange_both_ways(&mut net, true);
}

#[test]
fn new_private_key_drops_sessions_and_handshakes_with_the_new_key() {
    let mut net = Net::new(41, true);
    net.handshake(true);
    exchange_both_ways(&mut net, true);
    let psk = net
        .a
        .dev
        .peer(net.a.peer)
        .unwrap()
        .handshake()
        .preshared_key()
        .clone();
    let new = StaticSecret::generate(&mut net.rng);
    let new_pub = new.public_key();
    let now = net.now;
    assert!(net.a.dev.set_private_key(new, now).is_empty());
    assert_eq!(net.a.dev.public_key(), &new_pub);
    assert_eq!(net.a.dev.index_count(), 0);
    assert_eq!(net.seal(true, b"x").unwrap_err(), Error::NoSession);
    // The PSK survived the rebuild.
    assert_eq!(
        net.a
            .dev
            .peer(net.a.peer)
            .unwrap()
            .handshake()
            .preshared_key(),
        &psk
    );
    // B still knows A by the old key: A's initiation is refused until B learns the new one.
    let init = net.initiation(true);
    assert!(net.deliver_handshake(true, &init, None, false).is_err());
    let now = net.now;
    net.b.dev.remove_peer(net.b.peer).unwrap();
    net.b.peer = net
        .b
        .dev
        .add_peer(
            PeerConfig {
                preshared_key: psk,
                endpoint: Some(net.a.addr),
                ..PeerConfig::new(new_pub)
            },
            now,
        )
        .unwrap();
    net.advance(Duration::from_secs(1));
    net.handshake(true);
    exchange_both_ways(&mut net, true);
}

#[test]
fn private_key_equal_to_a_peer_removes_that_peer() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let ka = StaticSecret::generate(&mut rng);
    let kb = StaticSecret::generate(&mut rng);
    let kb2 = StaticSecret::from_bytes(*kb.to_bytes());
    let now = Duration::from_secs(1);
    let mut dev = Device::new(ka, TimerConfig::default());
    let id = dev.add_peer(PeerConfig::new(kb.public_key()), now).unwrap();
    assert_eq!(dev.set_private_key(kb2, now), vec![id]);
    assert_eq!(dev.peers().count(), 0);
    assert_eq!(dev.peer_by_key(&kb.public_key()), None);
}
