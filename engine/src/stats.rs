//! Per-shard counters.
//!
//! Each shard owns one [`ShardStats`] and is its only writer: increments are `Relaxed` atomic
//! adds on a cache line no other shard writes, so counting costs no contention. Readers (`show`,
//! metrics, the bench) sum the shards whenever they like; values are monotonic. Snapshots
//! ([`StatsSnapshot`], [`ControlSnapshot`], [`EngineStats`]) are plain, serialisable copies.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

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

/// A histogram with fixed power-of-two buckets: bucket `i < N - 1` counts observations `v` with
/// `2^(i-1) < v <= 2^i` (bucket 0 also takes 0), the last bucket everything above `2^(N-2)`
/// (`+Inf`). One writer (the owning shard): an observation is two `Relaxed` adds, no lock,
/// no allocation. The count is the sum of the buckets, computed when a snapshot is taken.
#[derive(Debug)]
pub struct Pow2Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    sum: AtomicU64,
}

impl<const N: usize> Default for Pow2Histogram<N> {
    fn default() -> Self {
        Pow2Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Pow2Histogram<N> {
    /// The bucket an observation of `v` falls in.
    #[inline]
    pub const fn bucket_of(v: u64) -> usize {
        let i = if v <= 1 {
            0
        } else {
            (64 - (v - 1).leading_zeros()) as usize
        };
        if i < N - 1 { i } else { N - 1 }
    }

    /// Records one observation.
    #[inline]
    pub fn observe(&self, v: u64) {
        self.buckets[Self::bucket_of(v)].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    /// Records `times` observations of the same value `v`.
    #[inline]
    pub fn observe_n(&self, v: u64, times: u64) {
        if times > 0 {
            self.buckets[Self::bucket_of(v)].fetch_add(times, Relaxed);
            self.sum.fetch_add(v.saturating_mul(times), Relaxed);
        }
    }

    /// A plain copy.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        HistogramSnapshot {
            bounds: (0..N - 1).map(|i| 1u64 << i).collect(),
            count: counts.iter().sum(),
            counts,
            sum: self.sum.load(Relaxed),
        }
    }
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Finite upper bounds (inclusive) of the buckets, ascending; one more bucket (`+Inf`)
    /// follows the last.
    pub bounds: Vec<u64>,
    /// Observations per bucket (not cumulative): `bounds.len() + 1` entries, the last `+Inf`.
    pub counts: Vec<u64>,
    /// Sum of all observed values.
    pub sum: u64,
    /// Number of observations (the sum of `counts`).
    pub count: u64,
}

impl HistogramSnapshot {
    /// Cumulative counts, as Prometheus' `_bucket{le=...}` wants them; the last is `count`.
    pub fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0u64, |acc, c| {
                *acc += c;
                Some(*acc)
            })
            .collect()
    }

    /// Adds `other` (same bucket layout; a default/empty snapshot takes the other's layout).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.counts.is_empty() {
            self.bounds.clone_from(&other.bounds);
            self.counts = vec![0; other.counts.len()];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Buckets of the per-send/per-receive histograms: 1, 2, 4 … 64 segments, +Inf.
pub const SEGMENT_BUCKETS: usize = 8;
/// Buckets of the TUN size histograms: 1, 2, 4 … 65536 bytes, +Inf.
pub const SIZE_BUCKETS: usize = 18;

/// Monotonic counters of one shard. `#[repr(align(128))]` keeps shards off each other's lines.
///
/// What is counted where (control messages are kept apart so data counters can be exact):
/// - `udp_rx_*`/`udp_tx_*`/`udp_recvs`/`udp_sends` count everything on the shard's socket:
///   data, handshake messages, keepalives and junk alike;
/// - `udp_rx_data_*` counts only authenticated transport packets that carried data (not
///   keepalives); `udp_rx_control_*` counts handshake messages (types 1–3, whatever became of
///   them) and authenticated keepalives; `udp_tx_control_*` counts the handshake replies the
///   shard sent. So data sent by a shard = `udp_tx_datagrams - udp_tx_control_datagrams`
///   ([`StatsSnapshot::udp_tx_data_datagrams`]);
/// - initiations, keepalives and packets that waited for a session are sent by the control
///   plane, not a shard: see [`ControlStats`].
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
    /// UDP datagrams received after GRO splitting (all kinds).
    pub udp_rx_datagrams: AtomicU64,
    /// UDP bytes received (all kinds).
    pub udp_rx_bytes: AtomicU64,
    /// UDP send calls/SQEs (each may carry many GSO segments).
    pub udp_sends: AtomicU64,
    /// UDP datagrams sent (data and handshake replies).
    pub udp_tx_datagrams: AtomicU64,
    /// UDP bytes sent (data and handshake replies).
    pub udp_tx_bytes: AtomicU64,
    /// Authenticated transport datagrams that carried data (keepalives excluded).
    pub udp_rx_data_datagrams: AtomicU64,
    /// Their bytes on the wire.
    pub udp_rx_data_bytes: AtomicU64,
    /// Handshake messages (initiation, response, cookie reply) and authenticated keepalives
    /// received.
    pub udp_rx_control_datagrams: AtomicU64,
    /// Their bytes on the wire.
    pub udp_rx_control_bytes: AtomicU64,
    /// Handshake replies (responses, cookie replies) sent by this shard.
    pub udp_tx_control_datagrams: AtomicU64,
    /// Their bytes on the wire.
    pub udp_tx_control_bytes: AtomicU64,
    /// Syscalls made by the shard loop (`io_uring_enter` on the uring backend).
    pub syscalls: AtomicU64,
    /// Sends where GSO was refused and segments went out one by one.
    pub gso_fallbacks: AtomicU64,
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Datagrams per UDP send (per `sendmsg`/SQE; 1 when GSO is off): its count equals
    /// `udp_sends`, its sum the datagrams handed to the kernel.
    pub gso_segments: Pow2Histogram<SEGMENT_BUCKETS>,
    /// Datagrams per UDP receive (per GRO train; 1 when GRO is off).
    pub gro_datagrams: Pow2Histogram<SEGMENT_BUCKETS>,
    /// Bytes of each TUN read (IP packet or super-packet, virtio-net header excluded).
    pub tun_read_bytes: Pow2Histogram<SIZE_BUCKETS>,
    /// Bytes of each TUN write (IP packet or coalesced super-packet, header excluded).
    pub tun_write_bytes: Pow2Histogram<SIZE_BUCKETS>,
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

    /// Accounts UDP send calls for `count` datagrams: `calls` is 1 for one GSO send, else
    /// `count` (one datagram per call).
    #[inline]
    pub fn record_sends(&self, calls: usize, count: usize) {
        if calls == 1 {
            self.gso_segments.observe(count as u64);
        } else {
            self.gso_segments.observe_n(1, calls as u64);
        }
    }

    /// A plain copy of every counter (each read `Relaxed`: counters are individually
    /// monotonic, not mutually consistent to the packet).
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Relaxed);
        StatsSnapshot {
            tun_reads: l(&self.tun_reads),
            tun_rx_packets: l(&self.tun_rx_packets),
            tun_rx_bytes: l(&self.tun_rx_bytes),
            tun_writes: l(&self.tun_writes),
            tun_tx_packets: l(&self.tun_tx_packets),
            tun_tx_bytes: l(&self.tun_tx_bytes),
            udp_recvs: l(&self.udp_recvs),
            udp_rx_datagrams: l(&self.udp_rx_datagrams),
            udp_rx_bytes: l(&self.udp_rx_bytes),
            udp_sends: l(&self.udp_sends),
            udp_tx_datagrams: l(&self.udp_tx_datagrams),
            udp_tx_bytes: l(&self.udp_tx_bytes),
            udp_rx_data_datagrams: l(&self.udp_rx_data_datagrams),
            udp_rx_data_bytes: l(&self.udp_rx_data_bytes),
            udp_rx_control_datagrams: l(&self.udp_rx_control_datagrams),
            udp_rx_control_bytes: l(&self.udp_rx_control_bytes),
            udp_tx_control_datagrams: l(&self.udp_tx_control_datagrams),
            udp_tx_control_bytes: l(&self.udp_tx_control_bytes),
            syscalls: l(&self.syscalls),
            gso_fallbacks: l(&self.gso_fallbacks),
            drops: DropCounts(std::array::from_fn(|i| l(&self.drops[i]))),
            gso_segments: self.gso_segments.snapshot(),
            gro_datagrams: self.gro_datagrams.snapshot(),
            tun_read_bytes: self.tun_read_bytes.snapshot(),
            tun_write_bytes: self.tun_write_bytes.snapshot(),
        }
    }
}

/// Drop counts by reason; serialises as a map `{"malformed": 3, ...}` in [`DropReason::ALL`]
/// order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts(pub [u64; DropReason::ALL.len()]);

impl DropCounts {
    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` pairs in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.0[*r as usize]))
    }

    fn add(&mut self, other: &DropCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl Serialize for DropCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (r, n) in self.iter() {
            m.serialize_entry(r.name(), &n)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for DropCounts {
    /// The map [`Serialize`] writes; unknown reasons (from another version) are ignored.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, u64>::deserialize(d)?;
        let mut out = DropCounts::default();
        for r in DropReason::ALL {
            if let Some(n) = map.get(r.name()) {
                out.0[r as usize] = *n;
            }
        }
        Ok(out)
    }
}

/// One shard's counters (or their sum over shards) at one moment: see [`ShardStats`] for what
/// each means. Summable: `a.merge(&b)`, or `iter.sum()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // field docs are on `ShardStats`
pub struct StatsSnapshot {
    pub tun_reads: u64,
    pub tun_rx_packets: u64,
    pub tun_rx_bytes: u64,
    pub tun_writes: u64,
    pub tun_tx_packets: u64,
    pub tun_tx_bytes: u64,
    pub udp_recvs: u64,
    pub udp_rx_datagrams: u64,
    pub udp_rx_bytes: u64,
    pub udp_sends: u64,
    pub udp_tx_datagrams: u64,
    pub udp_tx_bytes: u64,
    pub udp_rx_data_datagrams: u64,
    pub udp_rx_data_bytes: u64,
    pub udp_rx_control_datagrams: u64,
    pub udp_rx_control_bytes: u64,
    pub udp_tx_control_datagrams: u64,
    pub udp_tx_control_bytes: u64,
    pub syscalls: u64,
    pub gso_fallbacks: u64,
    pub drops: DropCounts,
    pub gso_segments: HistogramSnapshot,
    pub gro_datagrams: HistogramSnapshot,
    pub tun_read_bytes: HistogramSnapshot,
    pub tun_write_bytes: HistogramSnapshot,
}

impl StatsSnapshot {
    /// Encrypted data datagrams the shard sent (all sends minus its handshake replies).
    pub fn udp_tx_data_datagrams(&self) -> u64 {
        self.udp_tx_datagrams
            .saturating_sub(self.udp_tx_control_datagrams)
    }

    /// Their bytes on the wire.
    pub fn udp_tx_data_bytes(&self) -> u64 {
        self.udp_tx_bytes.saturating_sub(self.udp_tx_control_bytes)
    }

    /// Adds `other` field by field.
    pub fn merge(&mut self, o: &StatsSnapshot) {
        self.tun_reads += o.tun_reads;
        self.tun_rx_packets += o.tun_rx_packets;
        self.tun_rx_bytes += o.tun_rx_bytes;
        self.tun_writes += o.tun_writes;
        self.tun_tx_packets += o.tun_tx_packets;
        self.tun_tx_bytes += o.tun_tx_bytes;
        self.udp_recvs += o.udp_recvs;
        self.udp_rx_datagrams += o.udp_rx_datagrams;
        self.udp_rx_bytes += o.udp_rx_bytes;
        self.udp_sends += o.udp_sends;
        self.udp_tx_datagrams += o.udp_tx_datagrams;
        self.udp_tx_bytes += o.udp_tx_bytes;
        self.udp_rx_data_datagrams += o.udp_rx_data_datagrams;
        self.udp_rx_data_bytes += o.udp_rx_data_bytes;
        self.udp_rx_control_datagrams += o.udp_rx_control_datagrams;
        self.udp_rx_control_bytes += o.udp_rx_control_bytes;
        self.udp_tx_control_datagrams += o.udp_tx_control_datagrams;
        self.udp_tx_control_bytes += o.udp_tx_control_bytes;
        self.syscalls += o.syscalls;
        self.gso_fallbacks += o.gso_fallbacks;
        self.drops.add(&o.drops);
        self.gso_segments.merge(&o.gso_segments);
        self.gro_datagrams.merge(&o.gro_datagrams);
        self.tun_read_bytes.merge(&o.tun_read_bytes);
        self.tun_write_bytes.merge(&o.tun_write_bytes);
    }
}

impl<'a> std::iter::Sum<&'a StatsSnapshot> for StatsSnapshot {
    fn sum<I: Iterator<Item = &'a StatsSnapshot>>(iter: I) -> Self {
        let mut total = StatsSnapshot::default();
        for s in iter {
            total.merge(s);
        }
        total
    }
}

/// Counters of the control plane (handshakes, timers). Written under the control mutex, so
/// one writer at a time; `Relaxed` atomics so readers never take that mutex.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Handshake initiations sent (by the timer thread).
    pub initiations_sent: AtomicU64,
    /// Handshake initiations received (valid or not).
    pub initiations_received: AtomicU64,
    /// Handshake responses produced for a shard to send.
    pub responses_sent: AtomicU64,
    /// Handshake responses received (valid or not).
    pub responses_received: AtomicU64,
    /// Cookie replies produced for a shard to send (we were under load).
    pub cookie_replies_sent: AtomicU64,
    /// Cookie replies received.
    pub cookie_replies_received: AtomicU64,
    /// Handshakes completed (a new session, as initiator or responder).
    pub handshakes_completed: AtomicU64,
    /// Handshake messages refused, by reason (also counted as shard drops).
    pub handshake_failures: [AtomicU64; DropReason::ALL.len()],
    /// Keepalives sent by the control plane.
    pub keepalives_sent: AtomicU64,
    /// Data packets that waited for a session and were then sent by the control plane.
    pub staged_tx_datagrams: AtomicU64,
    /// Their bytes on the wire.
    pub staged_tx_bytes: AtomicU64,
    /// Datagrams of any kind sent by the control plane (initiations, keepalives, staged data).
    pub tx_datagrams: AtomicU64,
    /// Their bytes.
    pub tx_bytes: AtomicU64,
    /// Control-plane sends the kernel refused.
    pub tx_errors: AtomicU64,
}

impl ControlStats {
    /// Adds one to a counter.
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// A plain copy.
    pub fn snapshot(&self) -> ControlSnapshot {
        let l = |a: &AtomicU64| a.load(Relaxed);
        ControlSnapshot {
            initiations_sent: l(&self.initiations_sent),
            initiations_received: l(&self.initiations_received),
            responses_sent: l(&self.responses_sent),
            responses_received: l(&self.responses_received),
            cookie_replies_sent: l(&self.cookie_replies_sent),
            cookie_replies_received: l(&self.cookie_replies_received),
            handshakes_completed: l(&self.handshakes_completed),
            handshake_failures: DropCounts(std::array::from_fn(|i| l(&self.handshake_failures[i]))),
            keepalives_sent: l(&self.keepalives_sent),
            staged_tx_datagrams: l(&self.staged_tx_datagrams),
            staged_tx_bytes: l(&self.staged_tx_bytes),
            tx_datagrams: l(&self.tx_datagrams),
            tx_bytes: l(&self.tx_bytes),
            tx_errors: l(&self.tx_errors),
        }
    }
}

/// [`ControlStats`] at one moment (field docs there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct ControlSnapshot {
    pub initiations_sent: u64,
    pub initiations_received: u64,
    pub responses_sent: u64,
    pub responses_received: u64,
    pub cookie_replies_sent: u64,
    pub cookie_replies_received: u64,
    pub handshakes_completed: u64,
    pub handshake_failures: DropCounts,
    pub keepalives_sent: u64,
    pub staged_tx_datagrams: u64,
    pub staged_tx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// One peer at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSnapshot {
    /// Its public key, base64 (public: fine to print and label with).
    pub public_key: String,
    /// Current endpoint.
    pub endpoint: Option<std::net::SocketAddr>,
    /// Inner bytes received from it (after decryption).
    pub rx_bytes: u64,
    /// Inner bytes sent to it (before encryption).
    pub tx_bytes: u64,
    /// Wall-clock time of the latest completed handshake, seconds since the Unix epoch.
    pub last_handshake_unix_secs: Option<u64>,
}

/// Everything the engine counts, at one moment: what `show` and the metrics endpoint print.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Per shard, in shard order.
    pub shards: Vec<StatsSnapshot>,
    /// The sum over the shards.
    pub total: StatsSnapshot,
    /// Handshakes and control-plane sends.
    pub control: ControlSnapshot,
    /// Configured peers.
    pub peers: Vec<PeerSnapshot>,
}

/// A cloneable, thread-safe handle on a running engine's counters (from
/// [`crate::Engine::stats_handle`]): what a metrics thread or `show` keeps. Reading never
/// touches the datapath; [`StatsHandle::peers`] takes the control mutex briefly.
#[derive(Debug, Clone)]
pub struct StatsHandle {
    shards: Vec<std::sync::Arc<ShardStats>>,
    control: std::sync::Arc<crate::control::ControlPlane>,
    shared: std::sync::Arc<crate::peers::Shared>,
}

impl StatsHandle {
    pub(crate) fn new(
        shards: Vec<std::sync::Arc<ShardStats>>,
        control: std::sync::Arc<crate::control::ControlPlane>,
        shared: std::sync::Arc<crate::peers::Shared>,
    ) -> Self {
        StatsHandle {
            shards,
            control,
            shared,
        }
    }

    /// Per-shard snapshots, in shard order.
    pub fn shards(&self) -> Vec<StatsSnapshot> {
        self.shards.iter().map(|s| s.snapshot()).collect()
    }

    /// Handshake and control-plane counters.
    pub fn control(&self) -> ControlSnapshot {
        self.control.stats().snapshot()
    }

    /// Every configured peer: key, endpoint, byte counters, latest handshake.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        self.shared
            .peers
            .load()
            .iter()
            .flatten()
            .map(|p| PeerSnapshot {
                public_key: p.public_key.to_base64(),
                endpoint: p.endpoint.load().as_deref().copied(),
                rx_bytes: p.rx_bytes.load(Relaxed),
                tx_bytes: p.tx_bytes.load(Relaxed),
                last_handshake_unix_secs: self.control.last_handshake(p.id).and_then(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs())
                }),
            })
            .collect()
    }

    /// Everything at once.
    pub fn snapshot(&self) -> EngineStats {
        let shards = self.shards();
        EngineStats {
            total: shards.iter().sum(),
            shards,
            control: self.control(),
            peers: self.peers(),
        }
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
    fn histogram_buckets_are_powers_of_two() {
        type H = Pow2Histogram<8>;
        let want = [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (64, 6),
            (65, 7),
            (u64::MAX, 7),
        ];
        for (v, b) in want {
            assert_eq!(H::bucket_of(v), b, "{v}");
        }
        let h = H::default();
        for v in [1, 3, 4, 46, 100] {
            h.observe(v);
        }
        h.observe_n(2, 3);
        let s = h.snapshot();
        assert_eq!(s.bounds, vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(s.counts, vec![1, 3, 2, 0, 0, 0, 1, 1]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 1 + 3 + 4 + 46 + 100 + 6);
        assert_eq!(s.cumulative(), vec![1, 4, 6, 6, 6, 6, 7, 8]);
    }

    #[test]
    fn snapshots_sum_over_shards() {
        let (a, b) = (ShardStats::default(), ShardStats::default());
        ShardStats::add(&a.tun_rx_packets, 5);
        ShardStats::add(&b.tun_rx_packets, 7);
        ShardStats::add(&a.udp_tx_datagrams, 10);
        ShardStats::add(&a.udp_tx_control_datagrams, 1);
        a.drop_packet(DropReason::Malformed);
        b.drop_packet(DropReason::Malformed);
        b.drop_packet(DropReason::UnknownIndex);
        a.tun_read_bytes.observe(1500);
        b.tun_read_bytes.observe(65000);
        b.record_sends(1, 46);
        b.record_sends(3, 3);
        let snaps = [a.snapshot(), b.snapshot()];
        let t: StatsSnapshot = snaps.iter().sum();
        assert_eq!(t.tun_rx_packets, 12);
        assert_eq!(t.udp_tx_data_datagrams(), 9);
        assert_eq!(t.drops.get(DropReason::Malformed), 2);
        assert_eq!(t.drops.total(), 3);
        assert_eq!(t.tun_read_bytes.count, 2);
        assert_eq!(t.tun_read_bytes.sum, 66500);
        assert_eq!(t.tun_read_bytes.counts[11], 1); // 1500 ≤ 2048
        assert_eq!(t.tun_read_bytes.counts[16], 1); // 65000 ≤ 65536
        assert_eq!(t.gso_segments.counts, vec![3, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(t.gso_segments.sum, 49);
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
