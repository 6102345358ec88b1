//! MAC1/MAC2 and cookies (whitepaper §5.3, §5.4.4, §5.4.7) plus a per-source rate limiter.
//!
//! * [`MacGenerator`] (one per peer, used by both roles): writes MAC1 and, while it holds a
//!   fresh cookie from that peer, MAC2 on every handshake message we send; consumes the
//!   peer's cookie replies.
//! * [`CookieChecker`] (one per device): verifies MAC1 of every incoming handshake message
//!   and, when the caller says it is under load, requires a MAC2 made with a cookie bound to
//!   the sender's IP address *and* UDP port, answering with a cookie reply otherwise.
//! * [`RateLimiter`]: token bucket per source IP (IPv6 by /64), bounded memory.

use core::time::Duration;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;
use crate::keys::PublicKey;
use crate::messages::{
    COOKIE_NONCE_LEN, COOKIE_REPLY_LEN, CookieReply, MAC_LEN, MessageType, classify, cookie_reply,
    field_mut, put_u32,
};
use crate::noise::{LABEL_COOKIE, LABEL_MAC1, hash, mac, mac_cookie, xaead_open, xaead_seal};

/// The cookie secret of a responder is replaced after this long.
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// A cookie we received is used for this long (the secret's lifetime minus a margin for the
/// time the reply spent in flight).
pub const COOKIE_VALIDITY: Duration = Duration::from_secs(120 - 5);

/// Offset of MAC1 in a handshake message of length `len`.
const fn mac1_offset(len: usize) -> usize {
    len - 2 * MAC_LEN
}

/// Offset of MAC2 in a handshake message of length `len`.
const fn mac2_offset(len: usize) -> usize {
    len - MAC_LEN
}

/// (bytes before mac1, mac1, bytes before mac2, mac2) of a handshake message.
type MacParts<'a> = (&'a [u8], &'a [u8; MAC_LEN], &'a [u8], &'a [u8; MAC_LEN]);

/// Splits an incoming handshake message (initiation or response only) into its MAC parts.
fn handshake_parts(msg: &[u8]) -> Result<MacParts<'_>, Error> {
    match classify(msg)? {
        MessageType::Initiation | MessageType::Response => {}
        _ => return Err(Error::UnknownMessageType),
    }
    let (before_mac2, mac2) = msg
        .split_last_chunk::<MAC_LEN>()
        .ok_or(Error::InvalidLength)?;
    let (before_mac1, mac1) = before_mac2
        .split_last_chunk::<MAC_LEN>()
        .ok_or(Error::InvalidLength)?;
    Ok((before_mac1, mac1, before_mac2, mac2))
}

/// Writes MAC1 (and MAC2 when holding a cookie) on outgoing handshake messages to one peer and
/// keeps the cookie that peer sent us.
pub struct MacGenerator {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    cookie: Option<(Zeroizing<[u8; MAC_LEN]>, Duration)>,
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl core::fmt::Debug for MacGenerator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MacGenerator")
            .field("has_cookie", &self.cookie.is_some())
            .finish_non_exhaustive()
    }
}

impl MacGenerator {
    /// For messages sent to the peer whose static public key is `peer`.
    pub fn new(peer: &PublicKey) -> Self {
        Self {
            mac1_key: hash(&[LABEL_MAC1, peer.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, peer.as_bytes()]),
            cookie: None,
            last_mac1: None,
        }
    }

    /// Whether a cookie is held that is still fresh at `now` (so the next message gets MAC2).
    pub fn has_cookie(&self, now: Duration) -> bool {
        self.fresh_cookie(now).is_some()
    }

    fn fresh_cookie(&self, now: Duration) -> Option<&[u8; MAC_LEN]> {
        match &self.cookie {
            Some((c, at)) if now.saturating_sub(*at) < COOKIE_VALIDITY => Some(c),
            _ => None,
        }
    }

    /// Writes MAC1 over `msg[..len-32]` and MAC2 over `msg[..len-16]` (zero without a fresh
    /// cookie) into the last 32 bytes of a complete handshake message.
    pub fn seal<const M: usize>(&mut self, msg: &mut [u8; M], now: Duration) {
        const { assert!(M >= 2 * MAC_LEN + 4) };
        let m1 = mac(&self.mac1_key, &[&msg[..mac1_offset(M)]]);
        msg[mac1_offset(M)..mac2_offset(M)].copy_from_slice(&m1);
        self.last_mac1 = Some(m1);
        let m2 = match self.fresh_cookie(now) {
            Some(cookie) => mac_cookie(cookie, &[&msg[..mac2_offset(M)]]),
            None => [0; MAC_LEN],
        };
        msg[mac2_offset(M)..].copy_from_slice(&m2);
    }

    /// Decrypts a cookie reply to the last message we sealed (its MAC1 is the AAD) and keeps the
    /// cookie for [`COOKIE_VALIDITY`]. Nothing else (in particular no endpoint) changes.
    /// `DecryptFailed` if it does not verify, `UnexpectedHandshake` if we sent nothing yet.
    pub fn consume_cookie_reply(
        &mut self,
        reply: &CookieReply<'_>,
        now: Duration,
    ) -> Result<(), Error> {
        let Some(last_mac1) = self.last_mac1 else {
            return Err(Error::UnexpectedHandshake);
        };
        let enc = reply.encrypted_cookie();
        let mut cookie = Zeroizing::new([0u8; MAC_LEN]);
        cookie.copy_from_slice(&enc[..MAC_LEN]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&enc[MAC_LEN..]);
        xaead_open(
            &self.cookie_key,
            reply.nonce(),
            &last_mac1,
            &mut cookie[..],
            &tag,
        )?;
        self.cookie = Some((cookie, now));
        Ok(())
    }
}

/// What to do with an incoming handshake message after [`CookieChecker::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacVerdict {
    /// MAC1 (and MAC2 if required) verified: process the message.
    Proceed,
    /// Under load without a valid MAC2: send this cookie reply to the source and drop the
    /// message.
    CookieReply([u8; COOKIE_REPLY_LEN]),
}

/// Responder side: verifies MAC1/MAC2 of incoming handshake messages, issues cookie replies,
/// rate-limits sources under load.
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
    secret_born: Option<Duration>,
    limiter: RateLimiter,
}

impl core::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieChecker")
            .field("secret_born", &self.secret_born)
            .finish_non_exhaustive()
    }
}

impl CookieChecker {
    /// For messages sent to us, whose static public key is `local`.
    pub fn new(local: &PublicKey) -> Self {
        Self::with_limiter(local, RateLimiter::default())
    }

    /// Like [`CookieChecker::new`] with a custom rate limiter.
    pub fn with_limiter(local: &PublicKey, limiter: RateLimiter) -> Self {
        Self {
            mac1_key: hash(&[LABEL_MAC1, local.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, local.as_bytes()]),
            secret: Zeroizing::new([0; 32]),
            secret_born: None,
            limiter,
        }
    }

    /// Verifies MAC1 only (`InvalidMac1` if wrong). Also refuses anything that is not an
    /// initiation or a response.
    pub fn verify_mac1(&self, msg: &[u8]) -> Result<(), Error> {
        let (before_mac1, mac1, _, _) = handshake_parts(msg)?;
        let expected = mac(&self.mac1_key, &[before_mac1]);
        if bool::from(expected.ct_eq(mac1)) {
            Ok(())
        } else {
            Err(Error::InvalidMac1)
        }
    }

    fn cookie_for(&self, src: SocketAddr) -> [u8; MAC_LEN] {
        let port = src.port().to_be_bytes();
        match src.ip() {
            IpAddr::V4(ip) => mac(&self.secret, &[&ip.octets(), &port]),
            IpAddr::V6(ip) => mac(&self.secret, &[&ip.octets(), &port]),
        }
    }

    fn secret_fresh(&self, now: Duration) -> bool {
        self.secret_born
            .is_some_and(|born| now.saturating_sub(born) < COOKIE_SECRET_MAX_AGE)
    }

    /// Checks an incoming initiation or response from `src`:
    /// * MAC1 must verify (`Err(InvalidMac1)`), always;
    /// * when `under_load`, MAC2 must be made with the cookie for `src` (IP and port) under the
    ///   current secret; if not, the answer is a cookie reply to send back; if it is, the
    ///   source IP is rate limited (`Err(RateLimited)`).
    pub fn check(
        &mut self,
        msg: &[u8],
        src: SocketAddr,
        now: Duration,
        under_load: bool,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<MacVerdict, Error> {
        let (before_mac1, mac1, before_mac2, mac2) = handshake_parts(msg)?;
        let expected = mac(&self.mac1_key, &[before_mac1]);
        if !bool::from(expected.ct_eq(mac1)) {
            return Err(Error::InvalidMac1);
        }
        if !under_load {
            return Ok(MacVerdict::Proceed);
        }
        if self.secret_fresh(now) {
            let cookie = Zeroizing::new(self.cookie_for(src));
            let expected = mac_cookie(&cookie, &[before_mac2]);
            if bool::from(expected.ct_eq(mac2)) {
                return if self.limiter.allow(src.ip(), now) {
                    Ok(MacVerdict::Proceed)
                } else {
                    Err(Error::RateLimited)
                };
            }
        }
        // Both handshake messages carry their sender index at offset 4.
        let sender = msg
            .get(4..8)
            .and_then(|b| b.first_chunk::<4>())
            .map(|b| u32::from_le_bytes(*b))
            .ok_or(Error::InvalidLength)?;
        Ok(MacVerdict::CookieReply(
            self.create_reply(sender, mac1, src, now, rng),
        ))
    }

    fn create_reply(
        &mut self,
        receiver: u32,
        mac1: &[u8; MAC_LEN],
        src: SocketAddr,
        now: Duration,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> [u8; COOKIE_REPLY_LEN] {
        if !self.secret_fresh(now) {
            rng.fill_bytes(&mut self.secret[..]);
            self.secret_born = Some(now);
        }
        let mut out = [0u8; COOKIE_REPLY_LEN];
        out[..4].copy_from_slice(&MessageType::CookieReply.to_wire());
        put_u32::<{ cookie_reply::RECEIVER }, COOKIE_REPLY_LEN>(&mut out, receiver);
        let mut nonce = [0u8; COOKIE_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        *field_mut::<{ cookie_reply::NONCE }, COOKIE_NONCE_LEN, COOKIE_REPLY_LEN>(&mut out) = nonce;
        let enc = field_mut::<{ cookie_reply::COOKIE }, 32, COOKIE_REPLY_LEN>(&mut out);
        enc[..MAC_LEN].copy_from_slice(&self.cookie_for(src));
        let tag = xaead_seal(&self.cookie_key, &nonce, mac1, &mut enc[..MAC_LEN]);
        enc[MAC_LEN..].copy_from_slice(&tag);
        out
    }
}

/// Key of a rate-limiter bucket: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&o[..8]);
                    SourceKey::V6(p)
                }
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Credit in nanoseconds of refill time; one packet costs `1 s / rate`.
    credit: u64,
    last: Duration,
}

/// Token bucket per source IP address (IPv6 per /64): `rate` packets per second, bursts of
/// `burst`. At most `capacity` sources are tracked; when full, sources whose bucket has
/// refilled are forgotten, and if none has, new sources are refused.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: HashMap<SourceKey, Bucket>,
    capacity: usize,
    cost: u64,
    max_credit: u64,
}

impl Default for RateLimiter {
    /// 20 packets per second, burst 5, 16384 sources.
    fn default() -> Self {
        Self::new(20, 5, 16384)
    }
}

impl RateLimiter {
    /// `rate` packets per second (≥ 1), bursts of `burst` (≥ 1), at most `capacity` sources.
    pub fn new(rate: u32, burst: u32, capacity: usize) -> Self {
        let cost = 1_000_000_000 / u64::from(rate.max(1));
        Self {
            buckets: HashMap::new(),
            capacity: capacity.max(1),
            cost,
            max_credit: cost * u64::from(burst.max(1)),
        }
    }

    /// Number of sources currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Takes one token for `ip` at `now`; false if its bucket is empty (or the table is full
    /// of active sources).
    pub fn allow(&mut self, ip: IpAddr, now: Duration) -> bool {
        let key = SourceKey::of(ip);
        if let Some(b) = self.buckets.get_mut(&key) {
            let elapsed = u64::try_from(now.saturating_sub(b.last).as_nanos()).unwrap_or(u64::MAX);
            b.credit = b.credit.saturating_add(elapsed).min(self.max_credit);
            b.last = now;
            return if b.credit >= self.cost {
                b.credit -= self.cost;
                true
            } else {
                false
            };
        }
        if self.buckets.len() >= self.capacity {
            self.collect_garbage(now);
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        self.buckets.insert(
            key,
            Bucket {
                credit: self.max_credit - self.cost,
                last: now,
            },
        );
        true
    }

    /// Forgets sources whose bucket is full again at `now` (they are equivalent to new ones).
    pub fn collect_garbage(&mut self, now: Duration) {
        let max = self.max_credit;
        self.buckets.retain(|_, b| {
            let elapsed = u64::try_from(now.saturating_sub(b.last).as_nanos()).unwrap_or(u64::MAX);
            b.credit.saturating_add(elapsed) < max
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::StaticSecret;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn initiation_like(sender: u32) -> [u8; 148] {
        let mut m = [0x5a; 148];
        m[..4].copy_from_slice(&MessageType::Initiation.to_wire());
        m[4..8].copy_from_slice(&sender.to_le_bytes());
        m
    }

    fn setup() -> (ChaCha20Rng, CookieChecker, MacGenerator) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let responder = StaticSecret::generate(&mut rng).public_key();
        (
            rng,
            CookieChecker::new(&responder),
            MacGenerator::new(&responder),
        )
    }

    #[test]
    fn mac1_verifies_and_detects_tampering() {
        let (mut rng, mut checker, mut gen_) = setup();
        let mut m = initiation_like(7);
        gen_.seal(&mut m, Duration::ZERO);
        assert_eq!(checker.verify_mac1(&m), Ok(()));
        let src = addr("198.18.0.1:51820");
        assert_eq!(
            checker.check(&m, src, Duration::ZERO, false, &mut rng),
            Ok(MacVerdict::Proceed)
        );
        assert_eq!(m[132..], [0; 16], "no cookie, no mac2");
        for i in [0usize, 10, 115, 116, 131] {
            let mut bad = m;
            bad[i] ^= 1;
            let r = checker.check(&bad, src, Duration::ZERO, false, &mut rng);
            assert!(r.is_err(), "byte {i}");
        }
        // A MAC1 made for another responder key does not verify.
        let other = StaticSecret::generate(&mut rng).public_key();
        let mut m2 = initiation_like(7);
        MacGenerator::new(&other).seal(&mut m2, Duration::ZERO);
        assert_eq!(checker.verify_mac1(&m2), Err(Error::InvalidMac1));
    }

    #[test]
    fn cookie_round_trip_binds_ip_and_port() {
        let (mut rng, mut checker, mut gen_) = setup();
        let now = Duration::from_secs(1000);
        let src = addr("198.18.0.1:51820");
        let mut m = initiation_like(42);
        gen_.seal(&mut m, now);
        let MacVerdict::CookieReply(reply) = checker.check(&m, src, now, true, &mut rng).unwrap()
        else {
            panic!("expected a cookie reply under load");
        };
        let reply = CookieReply::parse(&reply).unwrap();
        assert_eq!(reply.receiver_index(), 42);
        gen_.consume_cookie_reply(&reply, now).unwrap();
        assert!(gen_.has_cookie(now));

        let mut retry = initiation_like(43);
        gen_.seal(&mut retry, now + MS);
        assert_ne!(retry[132..], [0; 16]);
        assert_eq!(
            checker.check(&retry, src, now + MS, true, &mut rng),
            Ok(MacVerdict::Proceed)
        );
        // Same IP, other port: the cookie is not valid there.
        let other_port = addr("198.18.0.1:51821");
        assert!(matches!(
            checker.check(&retry, other_port, now + MS, true, &mut rng),
            Ok(MacVerdict::CookieReply(_))
        ));
        // Other IP, same port.
        assert!(matches!(
            checker.check(&retry, addr("198.18.0.2:51820"), now + MS, true, &mut rng),
            Ok(MacVerdict::CookieReply(_))
        ));
        // After the secret rotated, the old cookie is worthless.
        let later = now + COOKIE_SECRET_MAX_AGE + MS;
        let mut late = initiation_like(44);
        gen_.seal(&mut late, now + MS);
        assert!(matches!(
            checker.check(&late, src, later, true, &mut rng),
            Ok(MacVerdict::CookieReply(_))
        ));
    }

    #[test]
    fn cookie_reply_needs_matching_mac1_and_key() {
        let (mut rng, mut checker, mut gen_) = setup();
        let src = addr("[fd00::1]:4000");
        let now = Duration::from_secs(5);
        let mut m = initiation_like(1);
        // Nothing sent yet: a reply is unexpected.
        let mut fake_gen = MacGenerator::new(&StaticSecret::generate(&mut rng).public_key());
        let mut probe = initiation_like(9);
        gen_.seal(&mut probe, now);
        let MacVerdict::CookieReply(reply) =
            checker.check(&probe, src, now, true, &mut rng).unwrap()
        else {
            panic!()
        };
        let parsed = CookieReply::parse(&reply).unwrap();
        assert_eq!(
            fake_gen.consume_cookie_reply(&parsed, now),
            Err(Error::UnexpectedHandshake)
        );
        // Sealing another message changes the AAD: the old reply no longer verifies.
        gen_.seal(&mut m, now);
        assert_eq!(
            gen_.consume_cookie_reply(&parsed, now),
            Err(Error::DecryptFailed)
        );
        assert!(!gen_.has_cookie(now));
        // A reply to a message sealed for another key is refused too.
        fake_gen.seal(&mut probe, now);
        assert_eq!(
            fake_gen.consume_cookie_reply(&parsed, now),
            Err(Error::DecryptFailed)
        );
    }

    #[test]
    fn cookie_expires_after_validity() {
        let (mut rng, mut checker, mut gen_) = setup();
        let src = addr("198.18.0.9:1");
        let now = Duration::from_secs(10);
        let mut m = initiation_like(3);
        gen_.seal(&mut m, now);
        let MacVerdict::CookieReply(reply) = checker.check(&m, src, now, true, &mut rng).unwrap()
        else {
            panic!()
        };
        gen_.consume_cookie_reply(&CookieReply::parse(&reply).unwrap(), now)
            .unwrap();
        assert!(gen_.has_cookie(now + COOKIE_VALIDITY - MS));
        assert!(!gen_.has_cookie(now + COOKIE_VALIDITY));
        let mut m = initiation_like(4);
        gen_.seal(&mut m, now + COOKIE_VALIDITY);
        assert_eq!(m[132..], [0; 16]);
    }

    #[test]
    fn checker_refuses_non_handshake_messages() {
        let (mut rng, mut checker, _) = setup();
        let src = addr("198.18.0.1:1");
        let mut c = [0u8; 64];
        c[0] = 3;
        assert_eq!(
            checker.check(&c, src, Duration::ZERO, true, &mut rng),
            Err(Error::UnknownMessageType)
        );
        assert_eq!(
            checker.check(&[1, 0, 0, 0], src, Duration::ZERO, true, &mut rng),
            Err(Error::InvalidLength)
        );
    }

    #[test]
    fn rate_limiter_burst_then_rate() {
        let mut rl = RateLimiter::new(20, 5, 4);
        let ip: IpAddr = "198.18.0.1".parse().unwrap();
        let t0 = Duration::from_secs(100);
        for i in 0..5 {
            assert!(rl.allow(ip, t0), "burst packet {i}");
        }
        assert!(!rl.allow(ip, t0));
        // 50 ms later one more token.
        assert!(rl.allow(ip, t0 + 50 * MS));
        assert!(!rl.allow(ip, t0 + 50 * MS));
        // Over one second at 20/s: ~20 allowed, never more.
        let mut ok = 0;
        for ms in (60..1060).step_by(10) {
            if rl.allow(ip, t0 + ms * MS) {
                ok += 1;
            }
        }
        assert!((19..=21).contains(&ok), "{ok}");
        // Another IP is independent; an IPv6 /64 is one source.
        assert!(rl.allow("198.18.0.2".parse().unwrap(), t0));
        let a: IpAddr = "fd00:1:2:3::1".parse().unwrap();
        let b: IpAddr = "fd00:1:2:3::ffff".parse().unwrap();
        for _ in 0..5 {
            assert!(rl.allow(a, t0));
        }
        assert!(!rl.allow(b, t0));
    }

    #[test]
    fn rate_limiter_memory_is_bounded() {
        let mut rl = RateLimiter::new(20, 5, 8);
        let t0 = Duration::from_secs(1);
        for i in 0..8u8 {
            assert!(rl.allow(IpAddr::from([198, 18, 1, i]), t0));
        }
        // Full of active sources: a new one is refused and nothing grows.
        assert!(!rl.allow(IpAddr::from([198, 18, 2, 0]), t0));
        assert_eq!(rl.len(), 8);
        // Once buckets have refilled they are forgotten and new sources fit.
        assert!(rl.allow(IpAddr::from([198, 18, 2, 0]), t0 + Duration::from_secs(1)));
        assert_eq!(rl.len(), 1);
        for i in 0..10_000u32 {
            rl.allow(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_secs(2));
        }
        assert!(rl.len() <= 8);
    }

    #[test]
    fn under_load_valid_mac2_is_rate_limited() {
        let (mut rng, mut checker, mut gen_) = setup();
        let src = addr("198.18.0.1:51820");
        let now = Duration::from_secs(1);
        let mut m = initiation_like(1);
        gen_.seal(&mut m, now);
        let MacVerdict::CookieReply(reply) = checker.check(&m, src, now, true, &mut rng).unwrap()
        else {
            panic!()
        };
        gen_.consume_cookie_reply(&CookieReply::parse(&reply).unwrap(), now)
            .unwrap();
        gen_.seal(&mut m, now);
        let mut results = Vec::new();
        for _ in 0..7 {
            results.push(checker.check(&m, src, now, true, &mut rng));
        }
        assert_eq!(results[..5], vec![Ok(MacVerdict::Proceed); 5][..]);
        assert_eq!(results[5], Err(Error::RateLimited));
    }
}
