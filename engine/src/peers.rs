//! State shared by all shards: peers, the allowed-IPs table and the session index.
//!
//! Shards only read this on the hot path: `ArcSwap` loads and `Relaxed` atomics, never a lock.
//! Writers are the control plane (handshakes, timers, configuration), which replace whole
//! snapshots (`ArcSwap::store`) so a shard sees either the old or the new table, never a mix.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use uring_tunnel_crypto::keys::PublicKey;
use uring_tunnel_crypto::transport::Keypair;

use crate::allowed_ips::{AllowedIps, PeerId};

/// Packets kept per peer while its handshake runs; older ones are dropped first.
pub const STAGED_PACKETS: usize = 128;

/// A time stamp stored in an atomic: nanoseconds since the engine's origin, plus one, so that
/// zero means "never".
#[derive(Debug, Default)]
pub struct AtomicTime(AtomicU64);

impl AtomicTime {
    /// Records `now`.
    #[inline]
    pub fn set(&self, now: Duration) {
        self.0.store(now.as_nanos() as u64 + 1, Relaxed);
    }

    /// The last recorded time, if any.
    #[inline]
    pub fn get(&self) -> Option<Duration> {
        match self.0.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }
}

/// What the data plane knows about one peer.
#[derive(Debug)]
pub struct PeerState {
    /// Index in [`Shared::peers`].
    pub id: PeerId,
    /// The peer's static public key.
    pub public_key: PublicKey,
    /// Where to send; updated on every authenticated packet from a new address (roaming).
    pub endpoint: ArcSwapOption<SocketAddr>,
    /// The keypair used to send, if a session is established.
    pub current: ArcSwapOption<Keypair>,
    /// A responder's fresh keypair, promoted to `current` by the first packet received on it.
    pub next: ArcSwapOption<Keypair>,
    /// Inner bytes received from this peer (after decryption).
    pub rx_bytes: AtomicU64,
    /// Inner bytes sent to this peer (before encryption).
    pub tx_bytes: AtomicU64,
    /// Last time a data (non-keepalive) packet was sent to this peer.
    pub last_data_sent: AtomicTime,
    /// Last time a data packet was received from this peer.
    pub last_data_received: AtomicTime,
    /// Last time any authenticated packet (incl. keepalive) was sent.
    pub last_auth_sent: AtomicTime,
    /// Last time any authenticated packet was received.
    pub last_auth_received: AtomicTime,
    /// Set by a shard when it needs a (new) handshake: no session, or rekey due.
    pub wants_handshake: AtomicBool,
    /// Packets waiting for a session (rare path: a lock is fine here).
    pub staged: Mutex<VecDeque<Box<[u8]>>>,
}

impl PeerState {
    /// A peer with no session yet.
    pub fn new(id: PeerId, public_key: PublicKey, endpoint: Option<SocketAddr>) -> Self {
        PeerState {
            id,
            public_key,
            endpoint: ArcSwapOption::new(endpoint.map(Arc::new)),
            current: ArcSwapOption::empty(),
            next: ArcSwapOption::empty(),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            last_data_sent: AtomicTime::default(),
            last_data_received: AtomicTime::default(),
            last_auth_sent: AtomicTime::default(),
            last_auth_received: AtomicTime::default(),
            wants_handshake: AtomicBool::new(false),
            staged: Mutex::new(VecDeque::new()),
        }
    }

    /// Keeps a copy of `packet` until a session exists; returns false if one had to be
    /// dropped to make room.
    pub fn stage(&self, packet: &[u8]) -> bool {
        let mut q = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept_all = true;
        if q.len() >= STAGED_PACKETS {
            q.pop_front();
            kept_all = false;
        }
        q.push_back(packet.into());
        self.wants_handshake.store(true, Relaxed);
        kept_all
    }

    /// Updates the endpoint after an authenticated packet from `src` (roaming).
    #[inline]
    pub fn note_source(&self, src: SocketAddr) {
        let cur = self.endpoint.load();
        if cur.as_deref() != Some(&src) {
            self.endpoint.store(Some(Arc::new(src)));
        }
    }
}

/// A receiving session: which keypair and peer a receiver index belongs to.
#[derive(Debug, Clone)]
pub struct Session {
    /// The keypair.
    pub keypair: Arc<Keypair>,
    /// Its peer.
    pub peer: PeerId,
}

/// Receiver index → session, replaced as a whole on every change (rare: per handshake).
pub type IndexTable = HashMap<u32, Session>;

/// Everything the shards share.
#[derive(Debug)]
pub struct Shared {
    /// Peers by id (slots of removed peers stay `None` until reused).
    pub peers: ArcSwap<Vec<Option<Arc<PeerState>>>>,
    /// Inner destination/source → peer.
    pub allowed: ArcSwap<AllowedIps>,
    /// Receiver index → session.
    pub indices: ArcSwap<IndexTable>,
    /// Tunnel MTU (inner packets larger than this are still sent, padded to 16). It follows the
    /// TUN device's MTU at run time ([`Shared::set_mtu`]); the datapath reads it once per TUN
    /// read.
    pub mtu: AtomicUsize,
    /// Set to stop every shard.
    pub stop: AtomicBool,
}

impl Shared {
    /// Peer by id.
    #[inline]
    pub fn peer(&self, id: PeerId) -> Option<Arc<PeerState>> {
        self.peers.load().get(id as usize).and_then(|p| p.clone())
    }

    /// The tunnel MTU now.
    #[inline]
    pub fn mtu(&self) -> usize {
        self.mtu.load(Relaxed)
    }

    /// Changes the tunnel MTU (the device's MTU changed); returns the previous value.
    pub fn set_mtu(&self, mtu: usize) -> usize {
        self.mtu.swap(mtu, Relaxed)
    }

    /// Session by our receiver index.
    #[inline]
    pub fn session(&self, index: u32) -> Option<Session> {
        self.indices.load().get(&index).cloned()
    }
}
