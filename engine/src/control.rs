//! The control plane: handshakes, timers and session hand-over to the shards.
//!
//! The protocol state ([`Device`]) lives behind one mutex. It is taken only on rare paths: a
//! handshake datagram reaching a shard, and the timer thread's ticks (at most every
//! [`TICK`], earlier when a shard asks for a handshake). The datapath never takes it: shards
//! read sessions from `ArcSwap`s in [`Shared`] and leave timer events as atomic time stamps,
//! which the timer thread feeds into the protocol timers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rand_core::OsRng;
use uring_tunnel_crypto::messages::{MessageType, classify};
use uring_tunnel_crypto::peer::{Device, Event, PeerId as DevicePeerId};
use uring_tunnel_crypto::transport::{
    TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD, padded_len_for_mtu,
};

use crate::datapath::Control;
use crate::peers::{IndexTable, PeerState, Session, Shared};
use crate::ratelog::{RateLimit, WARN_INTERVAL};
use crate::stats::{ControlStats, DropReason};
use crate::sys::udp::UdpSocket;

/// Longest sleep of the timer thread.
pub const TICK: Duration = Duration::from_millis(50);
/// Handshake messages per second above which we answer with cookies (under load).
pub const UNDER_LOAD_PER_SEC: u32 = 256;

/// What the timer thread remembers per peer between ticks.
#[derive(Debug, Default, Clone, Copy)]
struct Synced {
    data_sent: Option<Duration>,
    data_received: Option<Duration>,
    auth_sent: Option<Duration>,
    auth_received: Option<Duration>,
    /// The endpoint last agreed between the device and the shards.
    endpoint: Option<SocketAddr>,
}

#[derive(Debug)]
struct Inner {
    device: Device,
    synced: Vec<Synced>,
    load_window: Duration,
    load_count: u32,
    /// Wall-clock time of each peer's latest completed handshake.
    last_handshake: HashMap<u32, SystemTime>,
    /// Handshake failures are logged at most this often.
    log_failures: RateLimit,
}

/// The control plane shared by the shards and the timer thread.
#[derive(Debug)]
pub struct ControlPlane {
    inner: Mutex<Inner>,
    shared: Arc<Shared>,
    /// Socket for sends from the timer thread (a shard's socket: same port, so replies come
    /// back to the reuseport group).
    socket: ArcSwap<UdpSocket>,
    origin: Instant,
    timer_thread: Mutex<Option<Thread>>,
    stats: ControlStats,
}

impl ControlPlane {
    /// A control plane over `device`, whose peer ids equal the indices of `shared.peers`.
    pub fn new(
        device: Device,
        shared: Arc<Shared>,
        socket: Arc<UdpSocket>,
        origin: Instant,
    ) -> Self {
        let n = shared.peers.load().len();
        ControlPlane {
            inner: Mutex::new(Inner {
                device,
                synced: vec![Synced::default(); n],
                load_window: Duration::ZERO,
                load_count: 0,
                last_handshake: HashMap::new(),
                log_failures: RateLimit::new(WARN_INTERVAL),
            }),
            stats: ControlStats::default(),
            shared,
            socket: ArcSwap::new(socket),
            origin,
            timer_thread: Mutex::new(None),
        }
    }

    /// Monotonic time since the engine's origin.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Handshake and control-plane send counters.
    pub fn stats(&self) -> &ControlStats {
        &self.stats
    }

    /// Wall-clock time of the latest handshake completed with peer `id` (takes the control
    /// mutex briefly: for `show` and metrics, not the datapath).
    pub fn last_handshake(&self, id: u32) -> Option<SystemTime> {
        self.lock().last_handshake.get(&id).copied()
    }

    /// Sends a datagram from the control plane and counts it.
    fn send(&self, datagram: &[u8], to: SocketAddr) -> bool {
        match self.socket.load().send_to(datagram, to) {
            Ok(_) => {
                ControlStats::inc(&self.stats.tx_datagrams);
                self.stats
                    .tx_bytes
                    .fetch_add(datagram.len() as u64, Relaxed);
                true
            }
            Err(e) => {
                ControlStats::inc(&self.stats.tx_errors);
                tracing::debug!(%to, error = %e, "control-plane send failed");
                false
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the protocol device under the control lock (configuration changes), then
    /// publishes sessions to the shards and wakes the timer thread. `f` gets `now` and must
    /// keep `shared.peers` indexed like the device's peer ids (store it before returning).
    pub(crate) fn reconfigure<R>(&self, f: impl FnOnce(&mut Device, Duration) -> R) -> R {
        let mut inner = self.lock();
        let r = f(&mut inner.device, self.now());
        let n = self.shared.peers.load().len();
        if inner.synced.len() < n {
            inner.synced.resize(n, Synced::default());
        }
        self.publish(&mut inner);
        drop(inner);
        self.wake();
        r
    }

    /// Reads the protocol device under the control lock.
    pub(crate) fn with_device<R>(&self, f: impl FnOnce(&Device) -> R) -> R {
        f(&self.lock().device)
    }

    /// Replaces the socket the timer thread sends from (listen port changed).
    pub(crate) fn set_socket(&self, socket: Arc<UdpSocket>) {
        self.socket.store(socket);
    }

    /// Runs the timer loop on the current thread until `shared.stop`.
    pub fn run_timers(&self) {
        *self.timer_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
        while !self.shared.stop.load(Acquire) {
            let now = self.now();
            let next = self.tick(now);
            let sleep = next
                .map_or(TICK, |d| d.saturating_sub(self.now()))
                .min(TICK);
            std::thread::park_timeout(sleep.max(Duration::from_millis(1)));
        }
    }

    /// Wakes the timer thread (a shard wants a handshake).
    pub fn wake(&self) {
        if let Some(t) = self
            .timer_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            t.unpark();
        }
    }

    /// One round of timers: feeds the shards' events to the protocol timers, sends what is
    /// due, publishes session changes and flushes packets that waited for a session. Returns
    /// the next deadline.
    pub fn tick(&self, now: Duration) -> Option<Duration> {
        let mut inner = self.lock();
        let peers = self.shared.peers.load();
        for (i, state) in peers.iter().enumerate() {
            let Some(state) = state else { continue };
            let id = DevicePeerId(i as u32);
            let synced = inner.synced.get(i).copied().unwrap_or_default();
            // Promotion of a responder's `next` session happens on the datapath; mirror it.
            let promoted = match (state.current.load_full(), inner.device.peer(id)) {
                (Some(cur), Some(p)) => p.next().is_some_and(|n| Arc::ptr_eq(&cur, n)),
                _ => false,
            };
            if promoted {
                inner.device.confirm_next(id, now);
            }
            let Ok(p) = inner.device.peer_mut(id) else {
                continue;
            };
            let mut events = [
                (state.last_auth_received.get(), synced.auth_received, 0u8),
                (state.last_data_received.get(), synced.data_received, 1),
                (state.last_auth_sent.get(), synced.auth_sent, 2),
                (state.last_data_sent.get(), synced.data_sent, 3),
            ];
            events.sort_by_key(|e| e.0);
            let timers = p.timers_mut();
            for (t, old, kind) in events {
                if let Some(t) = t
                    && Some(t) != old
                {
                    match kind {
                        0 => timers.on_authenticated_packet_received(t),
                        1 => timers.on_data_received(t),
                        2 => timers.on_authenticated_packet_sent(t),
                        _ => timers.on_data_sent(t),
                    }
                }
            }
            let wanted = state.wants_handshake.swap(false, Relaxed);
            if wanted && !has_usable_session(state, now)
                || state
                    .current
                    .load()
                    .as_ref()
                    .is_some_and(|k| k.should_rekey_on_send(now))
            {
                timers.request_handshake(now);
            }
            // The datapath roams on authenticated transport packets: tell the device, so its
            // initiations and keepalives go to the new address too.
            let shard_ep = state.endpoint.load().as_deref().copied();
            if let Some(ep) = shard_ep
                && shard_ep != synced.endpoint
            {
                if let Some(old) = synced.endpoint {
                    tracing::info!(peer = %short_key(&state.public_key), %old, new = %ep, "peer endpoint changed");
                }
                p.set_endpoint(ep);
            }
            if let Some(s) = inner.synced.get_mut(i) {
                *s = Synced {
                    data_sent: state.last_data_sent.get(),
                    data_received: state.last_data_received.get(),
                    auth_sent: state.last_auth_sent.get(),
                    auth_received: state.last_auth_received.get(),
                    endpoint: shard_ep.or(synced.endpoint),
                };
            }
        }
        let transmits = inner.device.tick(now, SystemTime::now(), &mut OsRng);
        for t in &transmits {
            let sent = self.send(&t.datagram, t.to);
            let state = peers.get(t.peer.0 as usize).and_then(|p| p.as_deref());
            match classify(&t.datagram) {
                Ok(MessageType::Initiation) => {
                    if sent {
                        ControlStats::inc(&self.stats.initiations_sent);
                    }
                    if let Some(state) = state {
                        tracing::debug!(peer = %short_key(&state.public_key), to = %t.to, "sending handshake initiation");
                    }
                }
                Ok(MessageType::Transport) if sent => {
                    ControlStats::inc(&self.stats.keepalives_sent)
                }
                _ => {}
            }
            if let Some(state) = state {
                state.last_auth_sent.set(now);
            }
        }
        // Keepalives the device sent count as authenticated sends for our bookkeeping too.
        for (i, s) in inner.synced.iter_mut().enumerate() {
            if let Some(Some(state)) = peers.get(i) {
                s.auth_sent = state.last_auth_sent.get();
            }
        }
        self.publish(&mut inner);
        self.flush_staged(now, None);
        inner.device.next_deadline()
    }

    /// Copies the device's sessions, and endpoints it learned from handshakes, into the shared
    /// tables.
    fn publish(&self, inner: &mut Inner) {
        let device = &inner.device;
        let peers = self.shared.peers.load();
        let mut table = IndexTable::new();
        for p in device.peers() {
            let Some(Some(state)) = peers.get(p.id().0 as usize) else {
                continue;
            };
            for kp in [p.current(), p.previous(), p.next()].into_iter().flatten() {
                table.insert(
                    kp.local_index,
                    Session {
                        keypair: Arc::clone(kp),
                        peer: p.id().0,
                    },
                );
            }
            store_if_changed(&state.current, p.current());
            store_if_changed(&state.next, p.next());
            // Handshakes roam here; transport packets roam on the datapath. Only a change the
            // device made since the last agreement is pushed, so a roam the datapath just
            // did is never undone by a stale device endpoint.
            let synced = inner.synced.get_mut(p.id().0 as usize);
            if let (Some(ep), Some(synced)) = (p.endpoint(), synced)
                && synced.endpoint != Some(ep)
            {
                tracing::info!(
                    peer = %short_key(&state.public_key),
                    old = ?synced.endpoint,
                    new = %ep,
                    "peer endpoint set by a handshake"
                );
                synced.endpoint = Some(ep);
                if state.endpoint.load().as_deref() != Some(&ep) {
                    state.endpoint.store(Some(Arc::new(ep)));
                }
            }
        }
        let old = self.shared.indices.load();
        if !same_table(&old, &table) {
            self.shared.indices.store(Arc::new(table));
        }
    }

    /// Sends packets that waited for a session, now that one exists. With `confirm_peer`, a
    /// peer whose handshake we just completed as initiator gets a keepalive if nothing was
    /// waiting, so the responder can start using the session (whitepaper §6.5).
    fn flush_staged(&self, now: Duration, confirm_peer: Option<u32>) {
        let peers = self.shared.peers.load();
        // Allocated only when something is to be sent (this runs on every timer tick).
        let mut buf = Vec::new();
        for state in peers.iter().flatten() {
            let (Some(kp), Some(dst)) = (state.current.load_full(), state.endpoint.load_full())
            else {
                continue;
            };
            if kp.is_expired(now) {
                continue;
            }
            let mut q = state.staged.lock().unwrap_or_else(|e| e.into_inner());
            if q.is_empty() && confirm_peer != Some(state.id) {
                continue;
            }
            if buf.is_empty() {
                buf = vec![0u8; 65536 + TRANSPORT_OVERHEAD];
            }
            if q.is_empty() {
                let Ok(counter) = kp.next_counter() else {
                    continue;
                };
                if let Ok(n) = kp.encapsulate(counter, &mut buf[..TRANSPORT_OVERHEAD], 0, now)
                    && self.send(&buf[..n], *dst)
                {
                    ControlStats::inc(&self.stats.keepalives_sent);
                    state.last_auth_sent.set(now);
                }
                continue;
            }
            while let Some(pkt) = q.pop_front() {
                let len = pkt.len();
                let mtu = self.shared.mtu();
                let dlen = TRANSPORT_OVERHEAD + padded_len_for_mtu(len, mtu);
                if dlen > buf.len() {
                    continue;
                }
                buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len].copy_from_slice(&pkt);
                let Ok(counter) = kp.next_counter() else {
                    break;
                };
                if let Ok(n) = kp.encapsulate_mtu(counter, &mut buf[..dlen], len, mtu, now)
                    && self.send(&buf[..n], *dst)
                {
                    ControlStats::inc(&self.stats.staged_tx_datagrams);
                    self.stats.staged_tx_bytes.fetch_add(n as u64, Relaxed);
                    state.tx_bytes.fetch_add(len as u64, Relaxed);
                    state.last_data_sent.set(now);
                    state.last_auth_sent.set(now);
                }
            }
        }
    }
}

/// A public key abbreviated for logs: the first 8 base64 characters and an ellipsis (never
/// use this, or anything else, on private or preshared keys).
pub fn short_key(key: &uring_tunnel_crypto::keys::PublicKey) -> String {
    let mut s = key.to_base64();
    s.truncate(8);
    s.push('…');
    s
}

fn has_usable_session(state: &PeerState, now: Duration) -> bool {
    state
        .current
        .load()
        .as_ref()
        .is_some_and(|k| !k.is_expired(now) && !k.should_rekey_on_send(now))
}

fn store_if_changed(
    slot: &arc_swap::ArcSwapOption<uring_tunnel_crypto::transport::Keypair>,
    want: Option<&Arc<uring_tunnel_crypto::transport::Keypair>>,
) {
    let cur = slot.load();
    let same = match (cur.as_ref(), want) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same {
        slot.store(want.cloned());
    }
}

fn same_table(a: &IndexTable, b: &IndexTable) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, s)| {
            b.get(k)
                .is_some_and(|t| Arc::ptr_eq(&s.keypair, &t.keypair) && s.peer == t.peer)
        })
}

impl Control for ControlPlane {
    fn handshake(
        &self,
        datagram: &[u8],
        src: SocketAddr,
        now: Duration,
        reply: &mut [u8],
    ) -> Result<Option<usize>, DropReason> {
        let mut inner = self.lock();
        // Under load: more handshake messages in the current second than we want to do
        // Diffie-Hellman for. Then only initiations with a valid cookie (MAC2) get work.
        let second = Duration::from_secs(now.as_secs());
        if inner.load_window != second {
            inner.load_window = second;
            inner.load_count = 0;
        }
        inner.load_count = inner.load_count.saturating_add(1);
        let under_load = inner.load_count > UNDER_LOAD_PER_SEC;
        match classify(datagram) {
            Ok(MessageType::Initiation) => ControlStats::inc(&self.stats.initiations_received),
            Ok(MessageType::Response) => ControlStats::inc(&self.stats.responses_received),
            Ok(MessageType::CookieReply) => {
                ControlStats::inc(&self.stats.cookie_replies_received);
            }
            _ => {}
        }
        let outcome = match inner
            .device
            .handle_handshake(datagram, src, now, under_load, &mut OsRng)
        {
            Ok(o) => o,
            Err(e) => {
                let reason = DropReason::from(e);
                ControlStats::inc(&self.stats.handshake_failures[reason as usize]);
                if let Some(suppressed) = inner.log_failures.check() {
                    tracing::debug!(%src, reason = reason.name(), error = %e, suppressed, "handshake message refused");
                }
                return Err(reason);
            }
        };
        let established = match &outcome.event {
            Some(Event::SessionEstablished { peer, .. }) => Some(peer.0),
            _ => None,
        };
        // A handshake is complete for the initiator when it consumes the response, for the
        // responder when it sends one (its session then waits for the first packet).
        let completed = match &outcome.event {
            Some(Event::SessionEstablished { peer, .. }) => Some((peer.0, "initiator")),
            Some(Event::SessionPending { peer, .. }) => Some((peer.0, "responder")),
            _ => None,
        };
        if let Some((id, role)) = completed {
            ControlStats::inc(&self.stats.handshakes_completed);
            inner.last_handshake.insert(id, SystemTime::now());
            if let Some(Some(state)) = self.shared.peers.load().get(id as usize) {
                tracing::debug!(peer = %short_key(&state.public_key), %src, role, "handshake completed");
            }
        }
        let n = match &outcome.reply {
            Some(r) => {
                let b = r.as_bytes();
                match classify(b) {
                    Ok(MessageType::Response) => ControlStats::inc(&self.stats.responses_sent),
                    Ok(MessageType::CookieReply) => {
                        ControlStats::inc(&self.stats.cookie_replies_sent);
                    }
                    _ => {}
                }
                let n = b.len().min(reply.len());
                reply[..n].copy_from_slice(&b[..n]);
                Some(n)
            }
            None => None,
        };
        if let Some(id) = outcome.peer
            && let Some(Some(state)) = self.shared.peers.load().get(id.0 as usize)
        {
            state.last_auth_received.set(now);
            if n.is_some() {
                state.last_auth_sent.set(now);
            }
        }
        self.publish(&mut inner);
        drop(inner);
        if established.is_some() {
            self.flush_staged(now, established);
        }
        Ok(n)
    }
}
