//! The Noise_IKpsk2 handshake of WireGuard (whitepaper §5.4.2–§5.4.5), both roles.
//!
//! One [`Handshake`] per configured peer holds what both roles need for that peer (its static
//! key, the precomputed static-static DH, the PSK, the MAC generator with any cookie, the
//! newest accepted initiation timestamp) and the state of at most one initiation we sent and
//! one initiation we received. The two are kept apart, so that when both sides initiate at the
//! same moment each side answers the other's initiation *and* completes its own: both end
//! with working sessions.
//!
//! Responder flow: [`open_initiation`] (needs only our static key) reveals the initiator's
//! static key, the caller finds that peer's [`Handshake`], then
//! [`Handshake::consume_initiation`] and [`Handshake::create_response`].
//! Initiator flow: [`Handshake::create_initiation`], then [`Handshake::consume_response`].
//!
//! MAC1/MAC2 of *incoming* messages are the caller's job ([`crate::cookie::CookieChecker`]),
//! done before any of these functions; outgoing messages get theirs here.

use core::fmt;
use core::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;
use crate::cookie::MacGenerator;
use crate::keys::{PresharedKey, PublicKey, StaticSecret};
use crate::messages::{
    CookieReply, ENCRYPTED_STATIC_LEN, ENCRYPTED_TIMESTAMP_LEN, INITIATION_LEN, Initiation,
    MessageType, RESPONSE_LEN, Response, TIMESTAMP_LEN, field_mut, initiation, put_u32, response,
};
use crate::noise::{
    TAG_LEN, aead_open, aead_seal, hash, initial_chaining_key, initial_hash, kdf1, kdf2, kdf3,
};

/// The minimum time between two initiations accepted from one peer (whitepaper: at most
/// 50 initiations per second are consumed per peer).
pub const MIN_INITIATION_INTERVAL: Duration = Duration::from_millis(20);

/// A TAI64N timestamp (12 bytes, big-endian seconds with the TAI64 offset, then nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tai64N([u8; TIMESTAMP_LEN]);

impl Tai64N {
    /// The timestamp of `wall`. Nanoseconds are rounded down to a multiple of 2^24 ns (~16.8 ms),
    /// as WireGuard implementations do, so that the value leaks little timing information.
    /// Times before 1970 map to 1970.
    pub fn from_system_time(wall: SystemTime) -> Self {
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = 0x4000_0000_0000_000a_u64.saturating_add(since.as_secs());
        let nanos = since.subsec_nanos() & !((1u32 << 24) - 1);
        let mut b = [0u8; TIMESTAMP_LEN];
        b[..8].copy_from_slice(&secs.to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Self(b)
    }

    /// Wraps 12 raw bytes.
    pub const fn from_bytes(b: [u8; TIMESTAMP_LEN]) -> Self {
        Self(b)
    }

    /// The 12 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; TIMESTAMP_LEN] {
        &self.0
    }
}

/// Our static identity, with the values derived from it once.
pub struct LocalStatic {
    secret: StaticSecret,
    public: PublicKey,
    /// HASH(initial hash || our public key): the responder's starting hash.
    hash0: [u8; 32],
}

impl fmt::Debug for LocalStatic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStatic")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl LocalStatic {
    /// Wraps our static private key.
    pub fn new(secret: StaticSecret) -> Self {
        let public = secret.public_key();
        Self {
            hash0: hash(&[&initial_hash(), public.as_bytes()]),
            secret,
            public,
        }
    }

    /// Our static public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Our static private key.
    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

/// Transport keys and indices of a completed handshake. Keys are zeroized on drop and never
/// printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// Key for packets we send.
    pub send_key: [u8; 32],
    /// Key for packets we receive.
    pub recv_key: [u8; 32],
    /// Our index: the peer puts it in every packet it sends us on this session.
    pub local_index: u32,
    /// The peer's index: we put it in every packet we send on this session.
    pub remote_index: u32,
    /// Whether we initiated this handshake.
    pub is_initiator: bool,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("is_initiator", &self.is_initiator)
            .finish_non_exhaustive()
    }
}

/// An initiation whose first half (the initiator's static key) we decrypted, not yet checked
/// against the peer's state. Produced by [`open_initiation`].
pub struct ReceivedInitiation {
    initiator_static: PublicKey,
    sender_index: u32,
    remote_ephemeral: PublicKey,
    chaining_key: Zeroizing<[u8; 32]>,
    hash: [u8; 32],
    encrypted_timestamp: [u8; ENCRYPTED_TIMESTAMP_LEN],
}

impl fmt::Debug for ReceivedInitiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedInitiation")
            .field("initiator_static", &self.initiator_static)
            .field("sender_index", &self.sender_index)
            .finish_non_exhaustive()
    }
}

impl ReceivedInitiation {
    /// The initiator's static public key: look the peer up by it.
    pub fn initiator_static(&self) -> &PublicKey {
        &self.initiator_static
    }

    /// The initiator's index for this handshake.
    pub fn sender_index(&self) -> u32 {
        self.sender_index
    }
}

fn split_tag<const N: usize, const M: usize>(
    field: &[u8; M],
) -> (Zeroizing<[u8; N]>, [u8; TAG_LEN]) {
    const { assert!(N + TAG_LEN == M) };
    let mut body = Zeroizing::new([0u8; N]);
    body.copy_from_slice(&field[..N]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&field[N..]);
    (body, tag)
}

/// Responder, first step: decrypts the initiator's static key from `msg` with our static key.
/// `DecryptFailed` if the message was not made for us, `InvalidKey` for a low-order ephemeral.
pub fn open_initiation(
    local: &LocalStatic,
    msg: &Initiation<'_>,
) -> Result<ReceivedInitiation, Error> {
    let remote_ephemeral = PublicKey::from_bytes(*msg.ephemeral());
    let ck = initial_chaining_key();
    let ck = kdf1(&ck, remote_ephemeral.as_bytes());
    let h = hash(&[&local.hash0, remote_ephemeral.as_bytes()]);
    let es = local.secret.diffie_hellman(&remote_ephemeral)?;
    let (ck, key) = kdf2(&ck, &es[..]);
    let (mut spub, tag) = split_tag::<32, ENCRYPTED_STATIC_LEN>(msg.encrypted_static());
    aead_open(&key, &h, &mut spub[..], &tag)?;
    let h = hash(&[&h, msg.encrypted_static()]);
    Ok(ReceivedInitiation {
        initiator_static: PublicKey::from_bytes(*spub),
        sender_index: msg.sender_index(),
        remote_ephemeral,
        chaining_key: ck,
        hash: h,
        encrypted_timestamp: *msg.encrypted_timestamp(),
    })
}

struct InitiatorState {
    local_index: u32,
    chaining_key: Zeroizing<[u8; 32]>,
    hash: [u8; 32],
    ephemeral: StaticSecret,
}

struct ResponderState {
    remote_index: u32,
    chaining_key: Zeroizing<[u8; 32]>,
    hash: [u8; 32],
    remote_ephemeral: PublicKey,
}

/// Handshake state for one peer (both roles).
pub struct Handshake {
    remote_static: PublicKey,
    /// HASH(initial hash || remote static): the initiator's starting hash for this peer.
    remote_hash0: [u8; 32],
    static_static: Zeroizing<[u8; 32]>,
    psk: PresharedKey,
    macs: MacGenerator,
    last_timestamp: Option<Tai64N>,
    last_consumed_at: Option<Duration>,
    initiator: Option<InitiatorState>,
    responder: Option<ResponderState>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("remote_static", &self.remote_static)
            .field(
                "initiation_pending",
                &self.initiator.as_ref().map(|s| s.local_index),
            )
            .field("initiation_consumed", &self.responder.is_some())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Handshake state with the peer whose static public key is `remote_static`.
    /// `InvalidKey` if that key is a low-order point.
    pub fn new(
        local: &LocalStatic,
        remote_static: PublicKey,
        psk: PresharedKey,
    ) -> Result<Self, Error> {
        let static_static = local.secret.diffie_hellman(&remote_static)?;
        Ok(Self {
            remote_hash0: hash(&[&initial_hash(), remote_static.as_bytes()]),
            remote_static,
            static_static,
            psk,
            macs: MacGenerator::new(&remote_static),
            last_timestamp: None,
            last_consumed_at: None,
            initiator: None,
            responder: None,
        })
    }

    /// The peer's static public key.
    pub fn remote_static(&self) -> &PublicKey {
        &self.remote_static
    }

    /// Replaces the pre-shared key (the all-zero key means none).
    pub fn set_preshared_key(&mut self, psk: PresharedKey) {
        self.psk = psk;
    }

    /// The pre-shared key (all zero when none).
    pub fn preshared_key(&self) -> &PresharedKey {
        &self.psk
    }

    /// The MAC generator for messages to this peer (holds its cookie).
    pub fn macs(&self) -> &MacGenerator {
        &self.macs
    }

    /// Our index of the initiation we sent and still await a response for.
    pub fn pending_initiation_index(&self) -> Option<u32> {
        self.initiator.as_ref().map(|s| s.local_index)
    }

    /// The initiator's index of an initiation we consumed but did not answer yet.
    pub fn consumed_initiation_index(&self) -> Option<u32> {
        self.responder.as_ref().map(|s| s.remote_index)
    }

    /// The newest initiation timestamp accepted from this peer.
    pub fn last_timestamp(&self) -> Option<Tai64N> {
        self.last_timestamp
    }

    /// Forgets any pending handshake state (ephemeral keys are zeroized).
    pub fn clear(&mut self) {
        self.initiator = None;
        self.responder = None;
    }

    /// Initiator: builds a handshake initiation with our index `local_index` and the TAI64N
    /// time of `wall`; MAC1 always, MAC2 if we hold a cookie at `now`. Replaces any earlier
    /// pending initiation.
    pub fn create_initiation(
        &mut self,
        local: &LocalStatic,
        local_index: u32,
        wall: SystemTime,
        now: Duration,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<[u8; INITIATION_LEN], Error> {
        self.initiator = None;
        let mut msg = [0u8; INITIATION_LEN];
        msg[..4].copy_from_slice(&MessageType::Initiation.to_wire());
        put_u32::<{ initiation::SENDER }, INITIATION_LEN>(&mut msg, local_index);

        let ephemeral = StaticSecret::generate(rng);
        let epub = ephemeral.public_key();
        let ck = initial_chaining_key();
        let ck = kdf1(&ck, epub.as_bytes());
        *field_mut::<{ initiation::EPHEMERAL }, 32, INITIATION_LEN>(&mut msg) = *epub.as_bytes();
        let h = hash(&[&self.remote_hash0, epub.as_bytes()]);

        let es = ephemeral.diffie_hellman(&self.remote_static)?;
        let (ck, key) = kdf2(&ck, &es[..]);
        let enc_static =
            field_mut::<{ initiation::STATIC }, ENCRYPTED_STATIC_LEN, INITIATION_LEN>(&mut msg);
        enc_static[..32].copy_from_slice(local.public.as_bytes());
        let tag = aead_seal(&key, &h, &mut enc_static[..32]);
        enc_static[32..].copy_from_slice(&tag);
        let h = hash(&[&h, &enc_static[..]]);

        let (ck, key) = kdf2(&ck, &self.static_static[..]);
        let enc_ts = field_mut::<{ initiation::TIMESTAMP }, ENCRYPTED_TIMESTAMP_LEN, INITIATION_LEN>(
            &mut msg,
        );
        enc_ts[..TIMESTAMP_LEN].copy_from_slice(Tai64N::from_system_time(wall).as_bytes());
        let tag = aead_seal(&key, &h, &mut enc_ts[..TIMESTAMP_LEN]);
        enc_ts[TIMESTAMP_LEN..].copy_from_slice(&tag);
        let h = hash(&[&h, &enc_ts[..]]);

        self.macs.seal(&mut msg, now);
        self.initiator = Some(InitiatorState {
            local_index,
            chaining_key: ck,
            hash: h,
            ephemeral,
        });
        Ok(msg)
    }

    /// Responder, second step: finishes consuming an initiation opened by [`open_initiation`]
    /// for this peer: decrypts and checks its timestamp. Refuses (state unchanged)
    /// `UnknownPeer` if it came from another static key, `DecryptFailed`, `StaleTimestamp` if
    /// its timestamp is not newer than the last accepted one (a replay), `RateLimited` if the
    /// previous initiation was accepted less than [`MIN_INITIATION_INTERVAL`] ago.
    pub fn consume_initiation(
        &mut self,
        received: ReceivedInitiation,
        now: Duration,
    ) -> Result<(), Error> {
        if received.initiator_static != self.remote_static {
            return Err(Error::UnknownPeer);
        }
        let (ck, key) = kdf2(&received.chaining_key, &self.static_static[..]);
        let (mut ts, tag) =
            split_tag::<TIMESTAMP_LEN, ENCRYPTED_TIMESTAMP_LEN>(&received.encrypted_timestamp);
        aead_open(&key, &received.hash, &mut ts[..], &tag)?;
        let ts = Tai64N::from_bytes(*ts);
        if self.last_timestamp.is_some_and(|last| ts <= last) {
            return Err(Error::StaleTimestamp);
        }
        if self
            .last_consumed_at
            .is_some_and(|at| now.saturating_sub(at) < MIN_INITIATION_INTERVAL)
        {
            return Err(Error::RateLimited);
        }
        let h = hash(&[&received.hash, &received.encrypted_timestamp]);
        self.last_timestamp = Some(ts);
        self.last_consumed_at = Some(now);
        self.responder = Some(ResponderState {
            remote_index: received.sender_index,
            chaining_key: ck,
            hash: h,
            remote_ephemeral: received.remote_ephemeral,
        });
        Ok(())
    }

    /// Responder, third step: answers the consumed initiation with our index `local_index`.
    /// Returns the response and the new session's keys (the caller keeps it as "next" until
    /// the first transport packet arrives on it). `UnexpectedHandshake` without a consumed
    /// initiation.
    pub fn create_response(
        &mut self,
        local_index: u32,
        now: Duration,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<([u8; RESPONSE_LEN], SessionKeys), Error> {
        let Some(state) = self.responder.take() else {
            return Err(Error::UnexpectedHandshake);
        };
        let mut msg = [0u8; RESPONSE_LEN];
        msg[..4].copy_from_slice(&MessageType::Response.to_wire());
        put_u32::<{ response::SENDER }, RESPONSE_LEN>(&mut msg, local_index);
        put_u32::<{ response::RECEIVER }, RESPONSE_LEN>(&mut msg, state.remote_index);

        let ephemeral = StaticSecret::generate(rng);
        let epub = ephemeral.public_key();
        *field_mut::<{ response::EPHEMERAL }, 32, RESPONSE_LEN>(&mut msg) = *epub.as_bytes();
        let ck = kdf1(&state.chaining_key, epub.as_bytes());
        let h = hash(&[&state.hash, epub.as_bytes()]);
        let ee = ephemeral.diffie_hellman(&state.remote_ephemeral)?;
        let ck = kdf1(&ck, &ee[..]);
        let se = ephemeral.diffie_hellman(&self.remote_static)?;
        let ck = kdf1(&ck, &se[..]);
        let (ck, tau, key) = kdf3(&ck, self.psk.as_bytes());
        let h = hash(&[&h, &tau[..]]);
        let tag = aead_seal(&key, &h, &mut []);
        *field_mut::<{ response::EMPTY }, TAG_LEN, RESPONSE_LEN>(&mut msg) = tag;

        let (t1, t2) = kdf2(&ck, &[]);
        self.macs.seal(&mut msg, now);
        Ok((
            msg,
            SessionKeys {
                send_key: *t2,
                recv_key: *t1,
                local_index,
                remote_index: state.remote_index,
                is_initiator: false,
            },
        ))
    }

    /// Initiator: consumes the response to our pending initiation and returns the session's
    /// keys. Refuses (pending initiation kept) `UnknownIndex` if it answers no initiation of
    /// ours, `DecryptFailed` if it does not authenticate, `InvalidKey` for a low-order
    /// ephemeral.
    pub fn consume_response(
        &mut self,
        local: &LocalStatic,
        msg: &Response<'_>,
    ) -> Result<SessionKeys, Error> {
        let Some(state) = self.initiator.as_ref() else {
            return Err(Error::UnexpectedHandshake);
        };
        if state.local_index != msg.receiver_index() {
            return Err(Error::UnknownIndex);
        }
        let repub = PublicKey::from_bytes(*msg.ephemeral());
        let ck = kdf1(&state.chaining_key, repub.as_bytes());
        let h = hash(&[&state.hash, repub.as_bytes()]);
        let ee = state.ephemeral.diffie_hellman(&repub)?;
        let ck = kdf1(&ck, &ee[..]);
        let se = local.secret.diffie_hellman(&repub)?;
        let ck = kdf1(&ck, &se[..]);
        let (ck, tau, key) = kdf3(&ck, self.psk.as_bytes());
        let h = hash(&[&h, &tau[..]]);
        aead_open(&key, &h, &mut [], msg.encrypted_nothing())?;
        let (t1, t2) = kdf2(&ck, &[]);
        self.initiator = None;
        Ok(SessionKeys {
            send_key: *t1,
            recv_key: *t2,
            local_index: msg.receiver_index(),
            remote_index: msg.sender_index(),
            is_initiator: true,
        })
    }

    /// Consumes a cookie reply from this peer (to the last handshake message we sent it): the
    /// next message carries MAC2. Changes nothing else (no endpoint, no handshake state).
    pub fn consume_cookie_reply(
        &mut self,
        reply: &CookieReply<'_>,
        now: Duration,
    ) -> Result<(), Error> {
        self.macs.consume_cookie_reply(reply, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::{CookieChecker, MacVerdict};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    struct Side {
        local: LocalStatic,
        hs: Handshake,
    }

    fn pair(rng: &mut ChaCha20Rng, psk: PresharedKey) -> (Side, Side) {
        let a = LocalStatic::new(StaticSecret::generate(rng));
        let b = LocalStatic::new(StaticSecret::generate(rng));
        let ha = Handshake::new(&a, *b.public_key(), psk.clone()).unwrap();
        let hb = Handshake::new(&b, *a.public_key(), psk).unwrap();
        (Side { local: a, hs: ha }, Side { local: b, hs: hb })
    }

    fn wall(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    fn run(
        a: &mut Side,
        b: &mut Side,
        t_ms: u64,
        rng: &mut ChaCha20Rng,
    ) -> (SessionKeys, SessionKeys) {
        let now = Duration::from_millis(t_ms);
        let init =
            a.hs.create_initiation(&a.local, 0x1111, wall(t_ms), now, rng)
                .unwrap();
        CookieChecker::new(b.local.public_key())
            .verify_mac1(&init)
            .unwrap();
        let rec = open_initiation(&b.local, &Initiation::parse(&init).unwrap()).unwrap();
        assert_eq!(rec.initiator_static(), a.local.public_key());
        assert_eq!(rec.sender_index(), 0x1111);
        b.hs.consume_initiation(rec, now).unwrap();
        let (resp, kb) = b.hs.create_response(0x2222, now, rng).unwrap();
        CookieChecker::new(a.local.public_key())
            .verify_mac1(&resp)
            .unwrap();
        let ka =
            a.hs.consume_response(&a.local, &Response::parse(&resp).unwrap())
                .unwrap();
        (ka, kb)
    }

    #[test]
    fn keys_agree_with_and_without_psk() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for psk in [PresharedKey::none(), PresharedKey::generate(&mut rng)] {
            let (mut a, mut b) = pair(&mut rng, psk);
            let (ka, kb) = run(&mut a, &mut b, 0, &mut rng);
            assert_eq!(ka.send_key, kb.recv_key);
            assert_eq!(ka.recv_key, kb.send_key);
            assert_ne!(ka.send_key, ka.recv_key);
            assert!(ka.is_initiator && !kb.is_initiator);
            assert_eq!((ka.local_index, ka.remote_index), (0x1111, 0x2222));
            assert_eq!((kb.local_index, kb.remote_index), (0x2222, 0x1111));
            assert!(a.hs.pending_initiation_index().is_none());
        }
    }

    #[test]
    fn psk_mismatch_fails_at_response() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (mut a, mut b) = pair(&mut rng, PresharedKey::none());
        b.hs.set_preshared_key(PresharedKey::from_bytes([1; 32]));
        let init =
            a.hs.create_initiation(&a.local, 1, wall(0), Duration::ZERO, &mut rng)
                .unwrap();
        let rec = open_initiation(&b.local, &Initiation::parse(&init).unwrap()).unwrap();
        b.hs.consume_initiation(rec, Duration::ZERO).unwrap();
        let (resp, _) = b.hs.create_response(2, Duration::ZERO, &mut rng).unwrap();
        assert_eq!(
            a.hs.consume_response(&a.local, &Response::parse(&resp).unwrap())
                .unwrap_err(),
            Error::DecryptFailed
        );
        // The pending initiation survives a bad response.
        assert_eq!(a.hs.pending_initiation_index(), Some(1));
    }

    #[test]
    fn replayed_and_old_initiations_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (mut a, mut b) = pair(&mut rng, PresharedKey::none());
        let first =
            a.hs.create_initiation(&a.local, 1, wall(1000), Duration::ZERO, &mut rng)
                .unwrap();
        let older =
            a.hs.create_initiation(&a.local, 2, wall(500), Duration::ZERO, &mut rng)
                .unwrap();
        let open =
            |m: &[u8; 148]| open_initiation(&b.local, &Initiation::parse(m).unwrap()).unwrap();
        b.hs.consume_initiation(open(&first), Duration::from_secs(1))
            .unwrap();
        let ts = b.hs.last_timestamp();
        assert_eq!(
            b.hs.consume_initiation(open(&first), Duration::from_secs(2)),
            Err(Error::StaleTimestamp)
        );
        assert_eq!(
            b.hs.consume_initiation(open(&older), Duration::from_secs(2)),
            Err(Error::StaleTimestamp)
        );
        assert_eq!(b.hs.last_timestamp(), ts);
        // A newer one within 20 ms of the last accepted is refused as a flood...
        let newer =
            a.hs.create_initiation(&a.local, 3, wall(2000), Duration::ZERO, &mut rng)
                .unwrap();
        assert_eq!(
            b.hs.consume_initiation(
                open(&newer),
                Duration::from_secs(1) + Duration::from_millis(5)
            ),
            Err(Error::RateLimited)
        );
        // ...and accepted later.
        b.hs.consume_initiation(open(&newer), Duration::from_secs(3))
            .unwrap();
        assert_eq!(b.hs.consumed_initiation_index(), Some(3));
    }

    #[test]
    fn initiation_for_someone_else_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let (mut a, b) = pair(&mut rng, PresharedKey::none());
        let c = LocalStatic::new(StaticSecret::generate(&mut rng));
        let init =
            a.hs.create_initiation(&a.local, 1, wall(0), Duration::ZERO, &mut rng)
                .unwrap();
        assert_eq!(
            open_initiation(&c, &Initiation::parse(&init).unwrap()).unwrap_err(),
            Error::DecryptFailed
        );
        // b's handshake for a refuses an initiation opened from c's peer d.
        let mut d = Handshake::new(&c, *b.local.public_key(), PresharedKey::none()).unwrap();
        let init_d = d
            .create_initiation(&c, 5, wall(0), Duration::ZERO, &mut rng)
            .unwrap();
        let rec = open_initiation(&b.local, &Initiation::parse(&init_d).unwrap()).unwrap();
        let mut hb = b.hs;
        assert_eq!(
            hb.consume_initiation(rec, Duration::ZERO),
            Err(Error::UnknownPeer)
        );
    }

    #[test]
    fn tampered_messages_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (mut a, mut b) = pair(&mut rng, PresharedKey::none());
        let init =
            a.hs.create_initiation(&a.local, 1, wall(0), Duration::ZERO, &mut rng)
                .unwrap();
        for i in 4..116 {
            let mut bad = init;
            bad[i] ^= 0x80;
            let r = open_initiation(&b.local, &Initiation::parse(&bad).unwrap()).and_then(|rec| {
                if rec.sender_index() != 1 {
                    return Err(Error::UnknownIndex); // the index is not authenticated here
                }
                b.hs.consume_initiation(rec, Duration::ZERO)
            });
            assert!(r.is_err(), "flipping byte {i} went unnoticed");
        }
        let rec = open_initiation(&b.local, &Initiation::parse(&init).unwrap()).unwrap();
        b.hs.consume_initiation(rec, Duration::ZERO).unwrap();
        let (resp, _) = b.hs.create_response(2, Duration::ZERO, &mut rng).unwrap();
        for i in 12..60 {
            let mut bad = resp;
            bad[i] ^= 0x01;
            assert!(
                a.hs.consume_response(&a.local, &Response::parse(&bad).unwrap())
                    .is_err(),
                "byte {i}"
            );
        }
        let mut wrong_index = resp;
        wrong_index[8] ^= 1;
        assert_eq!(
            a.hs.consume_response(&a.local, &Response::parse(&wrong_index).unwrap())
                .unwrap_err(),
            Error::UnknownIndex
        );
        a.hs.consume_response(&a.local, &Response::parse(&resp).unwrap())
            .unwrap();
        // A second copy of the response finds no pending initiation.
        assert_eq!(
            a.hs.consume_response(&a.local, &Response::parse(&resp).unwrap())
                .unwrap_err(),
            Error::UnexpectedHandshake
        );
    }

    #[test]
    fn simultaneous_initiations_both_complete() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let (mut a, mut b) = pair(&mut rng, PresharedKey::none());
        let now = Duration::ZERO;
        let ia =
            a.hs.create_initiation(&a.local, 10, wall(0), now, &mut rng)
                .unwrap();
        let ib =
            b.hs.create_initiation(&b.local, 20, wall(0), now, &mut rng)
                .unwrap();
        let rec = open_initiation(&b.local, &Initiation::parse(&ia).unwrap()).unwrap();
        b.hs.consume_initiation(rec, now).unwrap();
        let rec = open_initiation(&a.local, &Initiation::parse(&ib).unwrap()).unwrap();
        a.hs.consume_initiation(rec, now).unwrap();
        let (ra, a_resp) = a.hs.create_response(11, now, &mut rng).unwrap();
        let (rb, b_resp) = b.hs.create_response(21, now, &mut rng).unwrap();
        let a_init =
            a.hs.consume_response(&a.local, &Response::parse(&rb).unwrap())
                .unwrap();
        let b_init =
            b.hs.consume_response(&b.local, &Response::parse(&ra).unwrap())
                .unwrap();
        assert_eq!(a_init.send_key, b_resp.recv_key);
        assert_eq!(b_init.send_key, a_resp.recv_key);
        assert_eq!(a_init.recv_key, b_resp.send_key);
        assert_eq!(b_init.recv_key, a_resp.send_key);
    }

    #[test]
    fn tai64n_is_monotonic_and_coarse() {
        let t = |ms| Tai64N::from_system_time(wall(ms));
        assert!(t(0) < t(17));
        assert!(t(1000) < t(2000));
        // Within one 2^24 ns step the value does not change.
        let base = Tai64N::from_system_time(UNIX_EPOCH + Duration::from_secs(5));
        let near = Tai64N::from_system_time(
            UNIX_EPOCH + Duration::from_secs(5) + Duration::from_millis(16),
        );
        assert_eq!(base, near);
        assert_eq!(
            base.as_bytes()[..8],
            (0x4000_0000_0000_000a_u64 + 5).to_be_bytes()
        );
    }

    #[test]
    fn mac2_is_added_after_a_cookie() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let (mut a, b) = pair(&mut rng, PresharedKey::none());
        let mut checker = CookieChecker::new(b.local.public_key());
        let src = "198.18.0.1:51820".parse().unwrap();
        let now = Duration::from_secs(1);
        let init =
            a.hs.create_initiation(&a.local, 1, wall(0), now, &mut rng)
                .unwrap();
        let MacVerdict::CookieReply(reply) =
            checker.check(&init, src, now, true, &mut rng).unwrap()
        else {
            panic!("expected a cookie reply")
        };
        a.hs.consume_cookie_reply(&CookieReply::parse(&reply).unwrap(), now)
            .unwrap();
        let retry =
            a.hs.create_initiation(&a.local, 2, wall(100), now, &mut rng)
                .unwrap();
        assert_eq!(
            checker.check(&retry, src, now, true, &mut rng),
            Ok(MacVerdict::Proceed)
        );
    }
}
