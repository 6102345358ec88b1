//! Per-shard counters.
//!
//! Each shard owns one [`ShardStats`] and is its only writer: increments are `Relaxed` atomic
//! adds on a cache line no other shard writes, so counting costs no contention. Readers (`show`,
//! metrics, the bench) sum the shards whenever they like; values are monotonic.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a packet was dropped. Stable snake_case names via [`DropReason::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// A datagram too short/long for its type, or of no known type.
    Malformed,
    /// A handshake message whose MAC1 did not verify.
    InvalidMac,
    /// AEAD tag failure (wrong key, corrupted, forged).
    DecryptFailed,
    /// Transport counter below the replay window.
    CounterTooOld,
    /// Transport counter seen before.
    Replayed,
    /// Receiver index names no live session.
    UnknownIndex,
    /// A handshake from a key we do not know, stale timestamp, or out-of-state message.
    HandshakeRejected,
    /// Handshakes over the rate limit, or answered with a cookie while under load.
    RateLimited,
    /// Session too old or its counter exhausted.
    SessionExpired,
    /// Inner packet's source address outside the sending peer's AllowedIPs.
    SourceNotAllowed,
    /// Inner packet to a destination no peer's AllowedIPs cover.
    NoRoute,
    /// Peer has no session and its waiting queue is full.
    NoSession,
    /// Inner packet that is not IPv4/IPv6 or is truncated.
    BadInnerPacket,
    /// The kernel refused a send or a TUN write.
    IoError,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 14] = [
        DropReason::Malformed,
        DropReason::InvalidMac,
        DropReason::DecryptFailed,
        DropReason::CounterTooOld,
        DropReason::Replayed,
        DropReason::UnknownIndex,
        DropReason::HandshakeRejected,
        DropReason::RateLimited,
        DropReason::SessionExpired,
        DropReason::SourceNotAllowed,
        DropReason::NoRoute,
        DropReason::NoSession,
        DropReason::BadInnerPacket,
        DropReason::IoError,
    ];

    /// Stable name for reports and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::InvalidMac => "invalid_mac",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::CounterTooOld => "counter_too_old",
            DropReason::Replayed => "replayed",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::HandshakeRejected => "handshake_rejected",
            DropReason::RateLimited => "rate_limited",
            DropReason::SessionExpired => "session_expired",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::NoRoute => "no_route",
            DropReason::NoSession => "no_session",
            DropReason::BadInnerPacket => "bad_inner_packet",
            DropReason::IoError => "io_error",
        }
    }
}

/// Monotonic counters of one shard. `#[repr(align(128))]` keeps shards off each other's lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardStats {
    /// TUN reads completed (each may carry a TSO/USO super-packet).
    pub tun_reads: AtomicU64,
    /// Inner packets read from the TUN after splitting super-packets.
    pub tun_rx_packets: AtomicU64,
    /// Inner bytes read from the TUN.
    pub tun_rx_bytes: AtomicU64,
    /// TUN writes issued (each may carry a coalesced super-packet).
    pub tun_writes: AtomicU64,
    /// Inner packets written to the TUN, counted before coalescing.
    pub tun_tx_packets: AtomicU64,
    /// Inner bytes written to the TUN.
    pub tun_tx_bytes: AtomicU64,
    /// UDP receive completions (each may be a GRO-coalesced datagram train).
    pub udp_recvs: AtomicU64,
    /// UDP datagrams received after GRO splitting.
    pub udp_rx_datagrams: AtomicU64,
    /// UDP bytes received.
    pub udp_rx_bytes: AtomicU64,
    /// UDP send calls/SQEs (each may carry many GSO segments).
    pub udp_sends: AtomicU64,
    /// UDP datagrams sent.
    pub udp_tx_datagrams: AtomicU64,
    /// UDP bytes sent.
    pub udp_tx_bytes: AtomicU64,
    /// Syscalls made by the shard loop (`io_uring_enter` on the uring backend).
    pub syscalls: AtomicU64,
    /// Sends where GSO was refused and segments went out one by one.
    pub gso_fallbacks: AtomicU64,
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [AtomicU64; DropReason::ALL.len()],
}

impl ShardStats {
    /// Adds `n` to a counter (single writer: the owning shard).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Counts one drop.
    #[inline]
    pub fn drop_packet(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }

    /// Current value of one drop counter.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }
}

impl From<uring_tunnel_crypto::Error> for DropReason {
    fn from(e: uring_tunnel_crypto::Error) -> Self {
        use uring_tunnel_crypto::Error as E;
        match e {
            E::InvalidLength | E::UnknownMessageType | E::BufferTooSmall => DropReason::Malformed,
            E::InvalidMac1 => DropReason::InvalidMac,
            E::InvalidMac2 | E::RateLimited => DropReason::RateLimited,
            E::DecryptFailed => DropReason::DecryptFailed,
            E::CounterTooOld => DropReason::CounterTooOld,
            E::Replayed => DropReason::Replayed,
            E::UnknownIndex => DropReason::UnknownIndex,
            E::StaleTimestamp | E::UnknownPeer | E::UnexpectedHandshake | E::InvalidKey => {
                DropReason::HandshakeRejected
            }
            E::CounterExhausted | E::SessionExpired => DropReason::SessionExpired,
            E::NoSession => DropReason::NoSession,
            _ => DropReason::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }

    #[test]
    fn counting() {
        let s = ShardStats::default();
        s.drop_packet(DropReason::Replayed);
        s.drop_packet(DropReason::Replayed);
        ShardStats::add(&s.udp_sends, 3);
        assert_eq!(s.drops_of(DropReason::Replayed), 2);
        assert_eq!(s.udp_sends.load(Relaxed), 3);
        assert_eq!(
            DropReason::from(uring_tunnel_crypto::Error::DecryptFailed),
            DropReason::DecryptFailed
        );
    }
}
