//! Transport data messages (WireGuard message type 4): session keypairs, send counters,
//! in-place encapsulation and decapsulation.
//!
//! Wire format of a transport datagram:
//!
//! ```text
//! 0      4              8                16                        len-16     len
//! | 4 0 0 0 | receiver idx | counter (LE u64) | ciphertext (padded)     | tag (16) |
//! ```
//!
//! The sender pads the plaintext with zeros to a multiple of 16 bytes (or up to the MTU,
//! whichever is smaller, see [`padded_len_for_mtu`]). A receiver accepts any datagram of at
//! least [`TRANSPORT_OVERHEAD`] bytes whose tag verifies, padded or not, as WireGuard's
//! reference implementations do.

use crate::Error;
use crate::aead::{Aead, DefaultAead, TAG_LEN};
use crate::replay::ReplayWindow;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// WireGuard protocol constants (whitepaper §6, DESIGN.md §5).
pub mod constants {
    use core::time::Duration;

    /// Initiate a new handshake once a session has sent this many messages.
    pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
    /// Never send or accept a counter at or above this value: 2^64 − 2^13 − 1.
    pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
    /// The initiator of a session starts a new handshake once the session is this old.
    pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
    /// A session older than this may neither send nor receive.
    pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
    /// Give up retrying a handshake after this long.
    pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
    /// Retry a handshake initiation that got no response after this long (plus jitter).
    pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Upper bound of the random jitter added to [`REKEY_TIMEOUT`].
    pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);
    /// Passive keepalive delay, and the "no reply" delay before a new handshake.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Session keys are erased after this long without a new session (3 × Reject-After-Time).
    pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);
    /// The cookie secret rotates this often.
    pub const COOKIE_REFRESH_TIME: Duration = Duration::from_secs(120);
    /// Bits in the anti-replay ring.
    pub const REPLAY_WINDOW_BITS: u64 = 8192;
    /// Usable anti-replay window: a counter more than this far below the highest is too old.
    pub const REPLAY_WINDOW_SIZE: u64 = REPLAY_WINDOW_BITS - 64;
    /// Transport plaintext is zero-padded to a multiple of this.
    pub const PADDING_MULTIPLE: usize = 16;
    /// WireGuard message type of transport data.
    pub const MESSAGE_TYPE_TRANSPORT: u32 = 4;
}

use constants::{
    KEEPALIVE_TIMEOUT, MESSAGE_TYPE_TRANSPORT, PADDING_MULTIPLE, REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REKEY_TIMEOUT,
};

/// Length of the transport header: type (u32 LE = 4), receiver index (u32 LE), counter (u64 LE).
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Header plus tag: the smallest transport datagram (a keepalive) is this long.
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER_LEN + TAG_LEN;

/// `payload_len` rounded up to a multiple of 16 (saturating at `usize::MAX`).
#[inline]
pub const fn padded_len(payload_len: usize) -> usize {
    match payload_len.checked_next_multiple_of(PADDING_MULTIPLE) {
        Some(n) => n,
        None => usize::MAX,
    }
}

/// Padded plaintext length as the reference implementations compute it: a multiple of 16,
/// but never above `mtu` when the payload itself fits in the MTU (so that a full-MTU inner
/// packet does not grow the outer datagram past MTU + 32).
#[inline]
pub const fn padded_len_for_mtu(payload_len: usize, mtu: usize) -> usize {
    let p = padded_len(payload_len);
    if payload_len <= mtu && p > mtu {
        mtu
    } else {
        p
    }
}

/// Receiver index of a transport datagram, read before any decryption to find the session.
///
/// Errors: `InvalidLength` below [`TRANSPORT_OVERHEAD`] bytes, `UnknownMessageType` if the
/// first 4 bytes are not `4, 0, 0, 0`.
#[inline]
pub fn transport_receiver_index(datagram: &[u8]) -> Result<u32, Error> {
    let header = transport_header(datagram)?;
    Ok(header.0)
}

/// Parses (receiver index, counter) from a transport datagram.
#[inline]
fn transport_header(datagram: &[u8]) -> Result<(u32, u64), Error> {
    if datagram.len() < TRANSPORT_OVERHEAD {
        return Err(Error::InvalidLength);
    }
    let Some((head, _)) = datagram.split_first_chunk::<TRANSPORT_HEADER_LEN>() else {
        return Err(Error::InvalidLength);
    };
    let [t0, t1, t2, t3, i0, i1, i2, i3, c @ ..] = *head;
    if u32::from_le_bytes([t0, t1, t2, t3]) != MESSAGE_TYPE_TRANSPORT {
        return Err(Error::UnknownMessageType);
    }
    Ok((u32::from_le_bytes([i0, i1, i2, i3]), u64::from_le_bytes(c)))
}

/// How far (in counters) a shard's claimed block may trail the session's send counter
/// before [`CounterBlock`] retires it: half the replay window, so that a counter from a block
/// is never more than the usable window below what the receiver has seen.
pub const MAX_BLOCK_LAG: u64 = constants::REPLAY_WINDOW_SIZE / 2;

/// A shard-local block of send counters claimed from one [`Keypair`] with
/// [`Keypair::claim_counters`], so that shards do not share the counter cache line per
/// packet. Keep one per (shard, session); it refills itself, and retires a block that went
/// stale while the shard was quiet (see [`MAX_BLOCK_LAG`]).
#[derive(Debug, Clone, Default)]
pub struct CounterBlock {
    next: u64,
    end: u64,
    /// [`Keypair::id`] of the session the block came from (another session invalidates it).
    session: u64,
}

impl CounterBlock {
    /// An empty block: the first [`next_counter`](Self::next_counter) claims one.
    pub const fn new() -> Self {
        Self {
            next: 0,
            end: 0,
            session: 0,
        }
    }

    /// Counters left in the current block.
    pub fn remaining(&self) -> u64 {
        self.end - self.next
    }

    /// The next counter for this shard, claiming a block of `block_size` when the current
    /// one is used up, stale, or belongs to another session.
    #[inline]
    pub fn next_counter<A: Aead>(
        &mut self,
        kp: &Keypair<A>,
        block_size: u64,
    ) -> Result<u64, Error> {
        if self.next < self.end
            && self.session == kp.id
            && kp.sent_counter().saturating_sub(self.next) <= MAX_BLOCK_LAG
        {
            let c = self.next;
            self.next += 1;
            return Ok(c);
        }
        let r = kp.claim_counters(block_size.max(1))?;
        self.session = kp.id;
        self.next = r.start + 1;
        self.end = r.end;
        Ok(r.start)
    }
}

/// Result of a successful [`Keypair::decapsulate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated {
    /// The message counter (already marked in the replay window).
    pub counter: u64,
    /// Where the decrypted plaintext (including any zero padding) lies in the buffer.
    /// Empty for a keepalive.
    pub plaintext: Range<usize>,
}

impl Decapsulated {
    /// True for a keepalive (empty plaintext).
    pub fn is_keepalive(&self) -> bool {
        self.plaintext.is_empty()
    }
}

/// One session's keys and counters, shared by every shard (`Sync`, no locks).
///
/// Keys are erased when the keypair is dropped (by the AEAD backend: RustCrypto and
/// AWS-LC zeroize their key state; `ring` does not expose that).
pub struct Keypair<A: Aead = DefaultAead> {
    /// Our index for this session (peers put it in the receiver field of what they send).
    pub local_index: u32,
    /// The peer's index for this session (we put it in the receiver field).
    pub remote_index: u32,
    /// True if we sent the initiation that created this session.
    pub is_initiator: bool,
    /// When the session was derived (monotonic `now` of the caller).
    pub created: Duration,
    send: A,
    recv: A,
    send_counter: AtomicU64,
    replay: ReplayWindow,
    /// Process-unique session id (never 0), so that state kept per session elsewhere
    /// (e.g. a [`CounterBlock`]) can tell sessions apart even if indices repeat.
    id: u64,
}

/// Source of [`Keypair`] ids; starts at 1 so that 0 means "no session".
static NEXT_KEYPAIR_ID: AtomicU64 = AtomicU64::new(1);

impl<A: Aead> core::fmt::Debug for Keypair<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keypair")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("is_initiator", &self.is_initiator)
            .field("created", &self.created)
            .field("send_counter", &self.send_counter.load(Ordering::Relaxed))
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl<A: Aead> Keypair<A> {
    /// A fresh session. The key arrays are consumed (the local copies are wiped).
    pub fn new(
        send_key: [u8; 32],
        recv_key: [u8; 32],
        local_index: u32,
        remote_index: u32,
        is_initiator: bool,
        now: Duration,
    ) -> Self {
        // Wiped when these bindings drop, at the end of this function.
        let send_key = zeroize::Zeroizing::new(send_key);
        let recv_key = zeroize::Zeroizing::new(recv_key);
        Self {
            local_index,
            remote_index,
            is_initiator,
            created: now,
            send: A::new(&send_key),
            recv: A::new(&recv_key),
            send_counter: AtomicU64::new(0),
            replay: ReplayWindow::new(),
            id: NEXT_KEYPAIR_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Process-unique id of this session (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Test hook: moves the send counter (e.g. next to Reject-After-Messages).
    #[doc(hidden)]
    pub fn set_send_counter_for_test(&self, value: u64) {
        self.send_counter.store(value, Ordering::Relaxed);
    }

    /// The next counter to send with, or `CounterExhausted` at Reject-After-Messages
    /// (the counter never wraps: once exhausted it stays exhausted).
    #[inline]
    pub fn next_counter(&self) -> Result<u64, Error> {
        self.claim_counters(1).map(|r| r.start)
    }

    /// Claims a block of up to `n` consecutive counters for one shard in a single atomic
    /// operation. The range is shorter than `n` only at Reject-After-Messages; it is empty
    /// only if `n == 0`. `CounterExhausted` once no counter is left.
    ///
    /// A block held by a quiet shard goes stale: the receiver drops counters more than
    /// 8128 below its highest, so retire a block once [`sent_counter`](Self::sent_counter)
    /// has moved far past it.
    #[inline]
    pub fn claim_counters(&self, n: u64) -> Result<Range<u64>, Error> {
        let mut cur = self.send_counter.load(Ordering::Relaxed);
        loop {
            if cur >= REJECT_AFTER_MESSAGES {
                return Err(Error::CounterExhausted);
            }
            let end = cur.saturating_add(n).min(REJECT_AFTER_MESSAGES);
            match self.send_counter.compare_exchange_weak(
                cur,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(cur..end),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Number of counters handed out so far (the next counter to be claimed).
    #[inline]
    pub fn sent_counter(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    /// The replay window (e.g. for diagnostics).
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// True once the session is older than Reject-After-Time at `now`.
    #[inline]
    pub fn is_expired(&self, now: Duration) -> bool {
        now.saturating_sub(self.created) >= REJECT_AFTER_TIME
    }

    /// Whether sending on this session should trigger a new handshake: after
    /// Rekey-After-Messages, or (initiator only) once older than Rekey-After-Time.
    #[inline]
    pub fn should_rekey_on_send(&self, now: Duration) -> bool {
        self.sent_counter() > REKEY_AFTER_MESSAGES
            || (self.is_initiator && now.saturating_sub(self.created) >= REKEY_AFTER_TIME)
    }

    /// Whether receiving on this session should trigger a last-minute handshake: initiator
    /// only, once older than Reject-After-Time − Keepalive-Timeout − Rekey-Timeout (165 s).
    #[inline]
    pub fn should_rekey_on_receive(&self, now: Duration) -> bool {
        self.is_initiator
            && now.saturating_sub(self.created)
                >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    }

    /// Encrypts a packet in place, padding the plaintext to a multiple of 16.
    ///
    /// `buf[..16]` is header room, `buf[16..16 + payload_len]` the plaintext. Writes the
    /// header, zero padding, ciphertext and tag; returns the datagram length
    /// (`32 + padded_len(payload_len)`). `payload_len == 0` makes a keepalive.
    ///
    /// Errors: `BufferTooSmall`, `CounterExhausted` (counter at or above
    /// Reject-After-Messages), `SessionExpired` (older than Reject-After-Time).
    #[inline]
    pub fn encapsulate(
        &self,
        counter: u64,
        buf: &mut [u8],
        payload_len: usize,
        now: Duration,
    ) -> Result<usize, Error> {
        self.encapsulate_padded(counter, buf, payload_len, padded_len(payload_len), now)
    }

    /// Like [`encapsulate`](Self::encapsulate) but pads as the reference implementations
    /// do for a link of `mtu` bytes ([`padded_len_for_mtu`]).
    #[inline]
    pub fn encapsulate_mtu(
        &self,
        counter: u64,
        buf: &mut [u8],
        payload_len: usize,
        mtu: usize,
        now: Duration,
    ) -> Result<usize, Error> {
        self.encapsulate_padded(
            counter,
            buf,
            payload_len,
            padded_len_for_mtu(payload_len, mtu),
            now,
        )
    }

    fn encapsulate_padded(
        &self,
        counter: u64,
        buf: &mut [u8],
        payload_len: usize,
        padded: usize,
        now: Duration,
    ) -> Result<usize, Error> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Error::CounterExhausted);
        }
        if self.is_expired(now) {
            return Err(Error::SessionExpired);
        }
        let total = padded
            .checked_add(TRANSPORT_OVERHEAD)
            .ok_or(Error::BufferTooSmall)?;
        let Some(buf) = buf.get_mut(..total) else {
            return Err(Error::BufferTooSmall);
        };
        let (header, rest) = buf
            .split_first_chunk_mut::<TRANSPORT_HEADER_LEN>()
            .ok_or(Error::BufferTooSmall)?;
        let (body, tag_out) = rest
            .split_last_chunk_mut::<TAG_LEN>()
            .ok_or(Error::BufferTooSmall)?;
        let padding = body.get_mut(payload_len..).ok_or(Error::BufferTooSmall)?;
        padding.fill(0);

        header[..4].copy_from_slice(&MESSAGE_TYPE_TRANSPORT.to_le_bytes());
        header[4..8].copy_from_slice(&self.remote_index.to_le_bytes());
        header[8..].copy_from_slice(&counter.to_le_bytes());
        *tag_out = self.send.seal_in_place(counter, &[], body);
        Ok(total)
    }

    /// Authenticates and decrypts a whole transport datagram in place.
    ///
    /// Order: header and length checks, Reject-After-Messages, Reject-After-Time, a cheap
    /// replay pre-check, tag verification and decryption, then the replay window is marked
    /// (only authenticated counters ever move the window).
    ///
    /// Errors: `InvalidLength` (< 32 bytes), `UnknownMessageType`, `UnknownIndex` (receiver
    /// index is not this session's `local_index`), `CounterExhausted`, `SessionExpired`,
    /// `CounterTooOld`, `Replayed`, `DecryptFailed`. On any error the buffer contents are
    /// unspecified and must be dropped.
    #[inline]
    pub fn decapsulate(&self, buf: &mut [u8], now: Duration) -> Result<Decapsulated, Error> {
        let (index, counter) = transport_header(buf)?;
        if index != self.local_index {
            return Err(Error::UnknownIndex);
        }
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Error::CounterExhausted);
        }
        if self.is_expired(now) {
            return Err(Error::SessionExpired);
        }
        self.replay.check(counter)?;
        let len = buf.len();
        let rest = buf
            .get_mut(TRANSPORT_HEADER_LEN..)
            .ok_or(Error::InvalidLength)?;
        let (body, tag) = rest
            .split_last_chunk_mut::<TAG_LEN>()
            .ok_or(Error::InvalidLength)?;
        let tag = *tag;
        self.recv.open_in_place(counter, &[], body, &tag)?;
        self.replay.mark(counter)?;
        Ok(Decapsulated {
            counter,
            plaintext: TRANSPORT_HEADER_LEN..len - TAG_LEN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::RustCryptoAead;
    use proptest::prelude::*;

    const T0: Duration = Duration::from_secs(1000);

    fn pair() -> (Keypair, Keypair) {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        // Initiator sends with k1, receives with k2; responder the opposite.
        let a = Keypair::new(k1, k2, 0x1111, 0x2222, true, T0);
        let b = Keypair::new(k2, k1, 0x2222, 0x1111, false, T0);
        (a, b)
    }

    fn packet(payload: &[u8], extra: usize) -> Vec<u8> {
        let mut buf =
            vec![0xAAu8; TRANSPORT_HEADER_LEN + padded_len(payload.len()) + TAG_LEN + extra];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + payload.len()].copy_from_slice(payload);
        buf
    }

    #[test]
    fn constants_match_whitepaper() {
        use constants::*;
        assert_eq!(REJECT_AFTER_MESSAGES, 18_446_744_073_709_543_423); // 2^64 - 2^13 - 1
        assert_eq!(REKEY_AFTER_MESSAGES, 1_152_921_504_606_846_976);
        assert_eq!(REPLAY_WINDOW_SIZE, 8128);
        assert_eq!(ZERO_KEYS_AFTER, REJECT_AFTER_TIME * 3);
    }

    #[test]
    fn padding() {
        assert_eq!(padded_len(0), 0);
        assert_eq!(padded_len(1), 16);
        assert_eq!(padded_len(16), 16);
        assert_eq!(padded_len(17), 32);
        assert_eq!(padded_len(1420), 1424);
        assert_eq!(padded_len(usize::MAX), usize::MAX);
        assert_eq!(padded_len_for_mtu(1420, 1420), 1420);
        assert_eq!(padded_len_for_mtu(1419, 1420), 1420);
        assert_eq!(padded_len_for_mtu(1401, 1420), 1408);
        assert_eq!(padded_len_for_mtu(1500, 1420), 1504);
    }

    #[test]
    fn round_trip_various_lengths() {
        let (a, b) = pair();
        for len in [0usize, 1, 15, 16, 17, 100, 1420, 1500, 9000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut buf = packet(&payload, 5);
            let c = a.next_counter().unwrap();
            let n = a.encapsulate(c, &mut buf, len, T0).unwrap();
            assert_eq!(n, 32 + padded_len(len));
            assert_eq!(&buf[..4], &[4, 0, 0, 0]);
            assert_eq!(transport_receiver_index(&buf[..n]), Ok(0x2222));
            assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), c);
            // Plaintext is not visible in the ciphertext.
            if len >= 16 {
                assert_ne!(&buf[16..16 + len], &payload[..]);
            }
            let d = b
                .decapsulate(&mut buf[..n], T0 + Duration::from_secs(1))
                .unwrap();
            assert_eq!(d.counter, c);
            assert_eq!(d.plaintext, 16..16 + padded_len(len));
            assert_eq!(&buf[16..16 + len], &payload[..]);
            assert!(
                buf[16 + len..d.plaintext.end].iter().all(|&x| x == 0),
                "zero padding"
            );
            assert_eq!(d.is_keepalive(), len == 0);
        }
        // And the other direction.
        let mut buf = packet(b"pong", 0);
        let n = b
            .encapsulate(b.next_counter().unwrap(), &mut buf, 4, T0)
            .unwrap();
        let d = a.decapsulate(&mut buf[..n], T0).unwrap();
        assert_eq!(&buf[d.plaintext][..4], b"pong");
    }

    #[test]
    fn receiver_accepts_unpadded_and_mtu_capped_lengths() {
        // Reference implementations cap padding at the MTU, so lengths that are not
        // 32 + a multiple of 16 occur on the wire and must be accepted.
        let (a, b) = pair();
        let payload = vec![9u8; 1419];
        let mut buf = packet(&payload, 0);
        let n = a.encapsulate_mtu(0, &mut buf, 1419, 1420, T0).unwrap();
        assert_eq!(n, 32 + 1420);
        let d = b.decapsulate(&mut buf[..n], T0).unwrap();
        assert_eq!(d.plaintext.len(), 1420);
        let mut buf = packet(&[5u8; 7], 0);
        let n = a.encapsulate_mtu(1, &mut buf, 7, 7, T0).unwrap();
        assert_eq!(n, 39);
        let d = b.decapsulate(&mut buf[..n], T0).unwrap();
        assert_eq!(&buf[d.plaintext], &[5u8; 7]);
    }

    #[test]
    fn keepalive_is_32_bytes() {
        let (a, b) = pair();
        let mut buf = [0u8; 32];
        let n = a
            .encapsulate(a.next_counter().unwrap(), &mut buf, 0, T0)
            .unwrap();
        assert_eq!(n, 32);
        let d = b.decapsulate(&mut buf, T0).unwrap();
        assert!(d.is_keepalive());
        assert_eq!(d.plaintext, 16..16);
    }

    #[test]
    fn tamper_every_byte_fails() {
        let (a, b) = pair();
        let mut orig = packet(b"hello, tunnel!!!!", 0);
        let n = a.encapsulate(0, &mut orig, 17, T0).unwrap();
        for i in 0..n {
            let mut buf = orig[..n].to_vec();
            buf[i] ^= 0x20;
            let r = b.decapsulate(&mut buf, T0);
            let want: &[Error] = match i {
                0..4 => &[Error::UnknownMessageType],
                4..8 => &[Error::UnknownIndex],
                // A flipped counter bit: different nonce, tag fails.
                _ => &[Error::DecryptFailed],
            };
            assert!(matches!(r, Err(e) if want.contains(&e)), "byte {i}: {r:?}");
        }
        // Truncation and extension fail too.
        let mut short = orig[..n - 1].to_vec();
        assert_eq!(b.decapsulate(&mut short, T0), Err(Error::DecryptFailed));
        let mut long = orig[..n].to_vec();
        long.push(0);
        assert_eq!(b.decapsulate(&mut long, T0), Err(Error::DecryptFailed));
        // The untouched packet still decrypts (no failed attempt moved the window).
        let mut ok = orig[..n].to_vec();
        b.decapsulate(&mut ok, T0).unwrap();
    }

    #[test]
    fn replay_and_too_old() {
        let (a, b) = pair();
        let make = |c: u64| {
            let mut buf = packet(b"x", 0);
            let n = a.encapsulate(c, &mut buf, 1, T0).unwrap();
            buf.truncate(n);
            buf
        };
        let p5 = make(5);
        let mut p = p5.clone();
        b.decapsulate(&mut p, T0).unwrap();
        let mut p = p5.clone();
        assert_eq!(b.decapsulate(&mut p, T0), Err(Error::Replayed));
        let p3 = make(3);
        b.decapsulate(&mut p3.clone(), T0).unwrap();
        let mut big = make(10_000);
        b.decapsulate(&mut big, T0).unwrap();
        let mut old = make(10_000 - 8129);
        assert_eq!(b.decapsulate(&mut old, T0), Err(Error::CounterTooOld));
        let mut edge = make(10_000 - 8128);
        b.decapsulate(&mut edge, T0).unwrap();
    }

    #[test]
    fn forged_counter_does_not_move_window() {
        let (_a, b) = pair();
        // A forged packet with a huge counter and garbage tag must not advance the window.
        let mut forged = vec![0u8; 64];
        forged[..4].copy_from_slice(&4u32.to_le_bytes());
        forged[4..8].copy_from_slice(&0x2222u32.to_le_bytes());
        forged[8..16].copy_from_slice(&(1u64 << 50).to_le_bytes());
        assert_eq!(b.decapsulate(&mut forged, T0), Err(Error::DecryptFailed));
        assert_eq!(b.replay_window().highest(), None);
    }

    #[test]
    fn buffer_too_small() {
        let (a, _) = pair();
        let mut buf = vec![0u8; 16 + 16 + 16 + 15]; // needs 48 + 16 for 16..=32 payload
        assert_eq!(
            a.encapsulate(0, &mut buf, 17, T0),
            Err(Error::BufferTooSmall)
        );
        let mut buf = vec![0u8; 31];
        assert_eq!(
            a.encapsulate(0, &mut buf, 0, T0),
            Err(Error::BufferTooSmall)
        );
        let mut buf = vec![0u8; 64];
        assert_eq!(
            a.encapsulate(0, &mut buf, usize::MAX, T0),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            a.encapsulate(0, &mut buf, usize::MAX - 40, T0),
            Err(Error::BufferTooSmall)
        );
        // Exactly enough room works.
        let mut buf = vec![0u8; 16 + 32 + 16];
        assert_eq!(a.encapsulate(0, &mut buf, 17, T0), Ok(64));
    }

    #[test]
    fn short_and_foreign_datagrams() {
        let (_, b) = pair();
        for len in 0..32 {
            let mut buf = vec![4u8; len];
            assert_eq!(b.decapsulate(&mut buf, T0), Err(Error::InvalidLength));
            assert_eq!(transport_receiver_index(&buf), Err(Error::InvalidLength));
        }
        let mut init = vec![0u8; 148];
        init[0] = 1;
        assert_eq!(b.decapsulate(&mut init, T0), Err(Error::UnknownMessageType));
        assert_eq!(
            transport_receiver_index(&init),
            Err(Error::UnknownMessageType)
        );
    }

    #[test]
    fn send_counter_exhaustion() {
        let (a, b) = pair();
        a.set_send_counter_for_test(REJECT_AFTER_MESSAGES - 2);
        let c1 = a.next_counter().unwrap();
        assert_eq!(c1, REJECT_AFTER_MESSAGES - 2);
        let c2 = a.next_counter().unwrap();
        assert_eq!(c2, REJECT_AFTER_MESSAGES - 1);
        assert_eq!(a.next_counter(), Err(Error::CounterExhausted));
        assert_eq!(a.claim_counters(10), Err(Error::CounterExhausted));
        // Repeated failures never wrap the counter back to zero.
        for _ in 0..10_000 {
            assert_eq!(a.next_counter(), Err(Error::CounterExhausted));
        }
        assert_eq!(a.sent_counter(), REJECT_AFTER_MESSAGES);
        // The last valid counter still goes through and is accepted.
        let mut buf = packet(b"last", 0);
        let n = a.encapsulate(c2, &mut buf, 4, T0).unwrap();
        b.decapsulate(&mut buf[..n], T0).unwrap();
        let mut buf = packet(b"over", 0);
        assert_eq!(
            a.encapsulate(REJECT_AFTER_MESSAGES, &mut buf, 4, T0),
            Err(Error::CounterExhausted)
        );
        // The receiver refuses a counter at the limit even with a valid tag (sealed by hand).
        let mut buf = packet(b"over", 0);
        buf[..4].copy_from_slice(&4u32.to_le_bytes());
        buf[4..8].copy_from_slice(&0x2222u32.to_le_bytes());
        buf[8..16].copy_from_slice(&REJECT_AFTER_MESSAGES.to_le_bytes());
        let sender = DefaultAead::new(&[1u8; 32]);
        let tag = sender.seal_in_place(REJECT_AFTER_MESSAGES, &[], &mut buf[16..32]);
        buf[32..48].copy_from_slice(&tag);
        assert_eq!(
            b.decapsulate(&mut buf[..48], T0),
            Err(Error::CounterExhausted)
        );
    }

    #[test]
    fn claim_counters_blocks() {
        let (a, _) = pair();
        assert_eq!(a.claim_counters(256), Ok(0..256));
        assert_eq!(a.next_counter(), Ok(256));
        assert_eq!(a.claim_counters(0), Ok(257..257));
        assert_eq!(a.claim_counters(3), Ok(257..260));
        a.set_send_counter_for_test(REJECT_AFTER_MESSAGES - 5);
        assert_eq!(
            a.claim_counters(256),
            Ok(REJECT_AFTER_MESSAGES - 5..REJECT_AFTER_MESSAGES)
        );
        assert_eq!(a.claim_counters(1), Err(Error::CounterExhausted));
        a.set_send_counter_for_test(REJECT_AFTER_MESSAGES - 5);
        assert_eq!(
            a.claim_counters(u64::MAX),
            Ok(REJECT_AFTER_MESSAGES - 5..REJECT_AFTER_MESSAGES)
        );
    }

    #[test]
    fn counter_blocks_refill_and_retire_stale() {
        let (a, b) = pair();
        let mut quiet = CounterBlock::new();
        let mut busy = CounterBlock::new();
        assert_eq!(quiet.next_counter(&a, 256), Ok(0));
        assert_eq!(quiet.remaining(), 255);
        // The busy shard sends 10 000 packets; the receiver sees them all.
        let mut last = 0;
        for _ in 0..10_000 {
            last = busy.next_counter(&a, 256).unwrap();
            let mut buf = packet(b"busy", 0);
            let n = a.encapsulate(last, &mut buf, 4, T0).unwrap();
            b.decapsulate(&mut buf[..n], T0).unwrap();
        }
        assert!(last >= 10_000);
        // The quiet shard's block (counters 1..256) is now far below the receiver's window:
        // it must not be used; a fresh block is claimed and that packet is accepted.
        let c = quiet.next_counter(&a, 256).unwrap();
        assert!(c > last, "stale block reused: {c} <= {last}");
        let mut buf = packet(b"quiet", 0);
        let n = a.encapsulate(c, &mut buf, 5, T0).unwrap();
        b.decapsulate(&mut buf[..n], T0).unwrap();
        // Without retirement the old counter would have been refused.
        let mut buf = packet(b"old", 0);
        let n = a.encapsulate(1, &mut buf, 3, T0).unwrap();
        assert_eq!(b.decapsulate(&mut buf[..n], T0), Err(Error::CounterTooOld));
        // A block is used consecutively while fresh.
        let c2 = quiet.next_counter(&a, 256).unwrap();
        assert_eq!(c2, c + 1);
        // A new session invalidates the block, even one with the same indices.
        let a2: Keypair = Keypair::new([3; 32], [4; 32], 0x1111, 0x2222, true, T0);
        assert_ne!(a2.id(), a.id());
        assert_eq!(quiet.next_counter(&a2, 256), Ok(0));
        // Exhaustion propagates.
        a2.set_send_counter_for_test(REJECT_AFTER_MESSAGES);
        let mut fresh = CounterBlock::new();
        assert_eq!(fresh.next_counter(&a2, 256), Err(Error::CounterExhausted));
    }

    #[test]
    fn concurrent_counters_are_unique() {
        let (a, _) = pair();
        let got: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|t| {
                    let a = &a;
                    s.spawn(move || {
                        let mut v = Vec::new();
                        for i in 0..20_000 {
                            if (i + t) % 10 == 0 {
                                v.extend(a.claim_counters(7).unwrap());
                            } else {
                                v.push(a.next_counter().unwrap());
                            }
                        }
                        v
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = got.into_iter().flatten().collect();
        let n = all.len() as u64;
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, n);
        assert_eq!(a.sent_counter(), n);
        assert_eq!(all.last().copied(), Some(n - 1), "no gaps");
    }

    #[test]
    fn reject_after_time() {
        let (a, b) = pair();
        let limit = T0 + REJECT_AFTER_TIME;
        let mut buf = packet(b"t", 0);
        let n = a
            .encapsulate(0, &mut buf, 1, limit - Duration::from_nanos(1))
            .unwrap();
        let mut late = buf[..n].to_vec();
        assert_eq!(
            a.encapsulate(1, &mut buf, 1, limit),
            Err(Error::SessionExpired)
        );
        assert_eq!(b.decapsulate(&mut late, limit), Err(Error::SessionExpired));
        b.decapsulate(&mut buf[..n], limit - Duration::from_nanos(1))
            .unwrap();
        assert!(a.is_expired(limit));
        assert!(!a.is_expired(limit - Duration::from_nanos(1)));
    }

    #[test]
    fn rekey_predicates() {
        let (a, b) = pair();
        assert!(!a.should_rekey_on_send(T0 + Duration::from_secs(119)));
        assert!(a.should_rekey_on_send(T0 + REKEY_AFTER_TIME));
        assert!(
            !b.should_rekey_on_send(T0 + REKEY_AFTER_TIME),
            "responder waits"
        );
        b.set_send_counter_for_test(REKEY_AFTER_MESSAGES + 1);
        assert!(b.should_rekey_on_send(T0));
        assert!(!a.should_rekey_on_receive(T0 + Duration::from_secs(164)));
        assert!(a.should_rekey_on_receive(T0 + Duration::from_secs(165)));
        assert!(!b.should_rekey_on_receive(T0 + Duration::from_secs(170)));
    }

    #[test]
    fn works_with_every_backend() {
        fn rt<S: Aead, R: Aead>() {
            let s: Keypair<S> = Keypair::new([7; 32], [8; 32], 1, 2, true, T0);
            let r: Keypair<R> = Keypair::new([8; 32], [7; 32], 2, 1, false, T0);
            let mut buf = packet(&[0x5a; 100], 0);
            let n = s
                .encapsulate(s.next_counter().unwrap(), &mut buf, 100, T0)
                .unwrap();
            let d = r.decapsulate(&mut buf[..n], T0).unwrap();
            assert_eq!(&buf[d.plaintext][..100], &[0x5a; 100]);
        }
        rt::<RustCryptoAead, DefaultAead>();
        rt::<DefaultAead, RustCryptoAead>();
        #[cfg(feature = "aead-ring")]
        rt::<crate::aead::RingAead, RustCryptoAead>();
        #[cfg(feature = "aead-aws-lc")]
        rt::<crate::aead::AwsLcAead, RustCryptoAead>();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic and never decrypt.
        #[test]
        fn decapsulate_random_bytes_never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let (_, b) = pair();
            prop_assert!(b.decapsulate(&mut data, T0).is_err());
            let _ = transport_receiver_index(&data);
        }

        /// Valid packets with random mutations (bit flips, truncation, extension, header
        /// rewrites) never panic and only the unmodified packet decrypts.
        #[test]
        fn decapsulate_mutated_packets(
            len in 0usize..300,
            flips in proptest::collection::vec((any::<usize>(), 0u8..8), 0..4),
            cut in proptest::option::of(any::<usize>()),
            extra in proptest::collection::vec(any::<u8>(), 0..20),
            counter in any::<u64>(),
            now_offset in 0u64..400,
        ) {
            let (a, b) = pair();
            let counter = counter % REJECT_AFTER_MESSAGES;
            let payload = vec![0x42u8; len];
            let mut buf = packet(&payload, 0);
            let n = a.encapsulate(counter, &mut buf, len, T0).unwrap();
            buf.truncate(n);
            let orig = buf.clone();
            for (pos, bit) in &flips {
                let i = pos % buf.len();
                buf[i] ^= 1 << bit;
            }
            if let Some(c) = cut {
                buf.truncate(c % (buf.len() + 1));
            }
            buf.extend_from_slice(&extra);
            let modified = buf != orig;
            let now = T0 + Duration::from_secs(now_offset);
            let r = b.decapsulate(&mut buf, now);
            if modified {
                prop_assert!(r.is_err(), "modified packet accepted");
            } else {
                // The unmodified packet passes exactly while the session is alive.
                prop_assert_eq!(r.is_ok(), now_offset < 180);
            }
        }
    }
}
