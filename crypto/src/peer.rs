//! Peers and the device that owns them, sans-IO: ties the handshake, cookies, keypairs
//! (current / previous / next) and timers together.
//!
//! [`Device`] owns our static key, the peers (found by public key) and the table from our
//! 32-bit indices to the peer and session they belong to. The caller feeds it datagrams with
//! their source address, `now` (monotonic) and, for handshakes, an `under_load` flag; it
//! returns the bytes to send back and what changed.
//!
//! Keypair rotation (whitepaper §6, as the reference implementations do it):
//! * initiator: the new keypair becomes `current` when the response is consumed (the old
//!   current, or a pending `next`, becomes `previous`);
//! * responder: the new keypair goes to `next` (the old `next` and `previous` are dropped) and
//!   becomes `current` when the first transport packet arrives on it.
//!
//! A keypair's index stays in the index table while it sits in one of the three slots.

use core::time::Duration;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rand_core::{CryptoRng, RngCore};

use crate::Error;
use crate::cookie::{CookieChecker, MacVerdict};
use crate::handshake::{Handshake, LocalStatic, SessionKeys, open_initiation};
use crate::keys::{PresharedKey, PublicKey, StaticSecret};
use crate::messages::{
    COOKIE_REPLY_LEN, CookieReply, INITIATION_LEN, Initiation, MessageType, RESPONSE_LEN, Response,
    classify,
};
use crate::timers::{TimerConfig, Timers};
use crate::transport::{Decapsulated, Keypair, transport_receiver_index};

/// Identifies a peer of a [`Device`] (stable for the device's lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// Configuration of one peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's static public key.
    pub public_key: PublicKey,
    /// Optional pre-shared key (all zero = none).
    pub preshared_key: PresharedKey,
    /// Where to send initiations until the peer tells us otherwise.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval.
    pub persistent_keepalive: Option<Duration>,
}

impl PeerConfig {
    /// A peer with only its public key set.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            preshared_key: PresharedKey::none(),
            endpoint: None,
            persistent_keepalive: None,
        }
    }
}

/// One peer: handshake and cookie state, sessions, timers, endpoint.
#[derive(Debug)]
pub struct Peer {
    id: PeerId,
    handshake: Handshake,
    endpoint: Option<SocketAddr>,
    current: Option<Arc<Keypair>>,
    previous: Option<Arc<Keypair>>,
    next: Option<Arc<Keypair>>,
    timers: Timers,
}

impl Peer {
    /// This peer's id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The peer's static public key.
    pub fn public_key(&self) -> &PublicKey {
        self.handshake.remote_static()
    }

    /// The address of the last authenticated packet from the peer (or the configured one).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Sets the endpoint (configuration; the device updates it from authenticated packets).
    pub fn set_endpoint(&mut self, endpoint: SocketAddr) {
        self.endpoint = Some(endpoint);
    }

    /// Replaces the pre-shared key (all zero = none); sessions already derived are kept.
    pub fn set_preshared_key(&mut self, psk: PresharedKey) {
        self.handshake.set_preshared_key(psk);
    }

    /// The session to send on.
    pub fn current(&self) -> Option<&Arc<Keypair>> {
        self.current.as_ref()
    }

    /// The session before the current one (still accepted for receiving).
    pub fn previous(&self) -> Option<&Arc<Keypair>> {
        self.previous.as_ref()
    }

    /// A responder session not yet confirmed by a transport packet (receive only).
    pub fn next(&self) -> Option<&Arc<Keypair>> {
        self.next.as_ref()
    }

    /// The handshake state.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The timer state.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// The timer state, to feed events the device does not see.
    pub fn timers_mut(&mut self) -> &mut Timers {
        &mut self.timers
    }
}

/// What an index of ours refers to.
#[derive(Debug, Clone)]
enum IndexEntry {
    /// An initiation we sent (awaiting its response).
    Handshake(PeerId),
    /// A session in one of the peer's slots.
    Session(PeerId, Arc<Keypair>),
}

/// A handshake message to send back to the source of the datagram that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A handshake response (type 2).
    Response([u8; RESPONSE_LEN]),
    /// A cookie reply (type 3).
    CookieReply([u8; COOKIE_REPLY_LEN]),
}

impl Reply {
    /// The datagram.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Reply::Response(b) => b,
            Reply::CookieReply(b) => b,
        }
    }
}

/// What changed because of a handshake datagram.
#[derive(Debug, Clone)]
pub enum Event {
    /// We completed a handshake as initiator: `keypair` is the peer's new current session.
    /// Send queued packets now (or a keepalive if none, to confirm the session).
    SessionEstablished {
        /// The peer.
        peer: PeerId,
        /// The new current session.
        keypair: Arc<Keypair>,
    },
    /// We answered an initiation: `keypair` is the peer's `next` session, good for
    /// receiving; it becomes current with the first transport packet received on it.
    SessionPending {
        /// The peer.
        peer: PeerId,
        /// The new next session.
        keypair: Arc<Keypair>,
    },
    /// A cookie reply from the peer was accepted; its next handshake message carries MAC2.
    CookieStored {
        /// The peer.
        peer: PeerId,
    },
}

/// Result of [`Device::handle_handshake`].
#[derive(Debug, Clone, Default)]
pub struct HandshakeOutcome {
    /// The peer the datagram belonged to, when known.
    pub peer: Option<PeerId>,
    /// Bytes to send to the datagram's source.
    pub reply: Option<Reply>,
    /// What changed.
    pub event: Option<Event>,
}

/// Result of [`Device::decapsulate`].
#[derive(Debug, Clone)]
pub struct Received {
    /// The sending peer.
    pub peer: PeerId,
    /// Counter and plaintext range within the caller's buffer.
    pub packet: Decapsulated,
    /// The packet confirmed a `next` session, which is now current.
    pub promoted: bool,
}

/// A datagram the device wants sent (from [`Device::tick`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer it is for.
    pub peer: PeerId,
    /// Where to send it.
    pub to: SocketAddr,
    /// The datagram.
    pub datagram: Vec<u8>,
}

/// Peers by id; a removed peer leaves an empty slot so ids stay stable (never reused).
#[derive(Debug, Default)]
struct PeerSlots(Vec<Option<Peer>>);

impl PeerSlots {
    fn get(&self, i: usize) -> Option<&Peer> {
        self.0.get(i).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.0.get_mut(i).and_then(Option::as_mut)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn push(&mut self, p: Peer) {
        self.0.push(Some(p));
    }

    fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.0.iter().flatten()
    }

    fn take(&mut self, i: usize) -> Option<Peer> {
        self.0.get_mut(i).and_then(Option::take)
    }
}

/// Our static identity, the peers and the index table.
#[derive(Debug)]
pub struct Device {
    local: LocalStatic,
    checker: CookieChecker,
    peers: PeerSlots,
    by_key: HashMap<PublicKey, PeerId>,
    indices: HashMap<u32, IndexEntry>,
    timer_config: TimerConfig,
}

impl Device {
    /// A device with our static key; peers get timers with `timer_config`.
    pub fn new(secret: StaticSecret, timer_config: TimerConfig) -> Self {
        let local = LocalStatic::new(secret);
        let checker = CookieChecker::new(local.public_key());
        Self {
            local,
            checker,
            peers: PeerSlots::default(),
            by_key: HashMap::new(),
            indices: HashMap::new(),
            timer_config,
        }
    }

    /// Our static public key.
    pub fn public_key(&self) -> &PublicKey {
        self.local.public_key()
    }

    /// Adds a peer (or updates the PSK, endpoint and keepalive of a known one).
    /// `InvalidKey` if its public key is a low-order point or our own key.
    pub fn add_peer(&mut self, config: PeerConfig, now: Duration) -> Result<PeerId, Error> {
        if let Some(&id) = self.by_key.get(&config.public_key) {
            let peer = self.peer_mut(id)?;
            peer.handshake.set_preshared_key(config.preshared_key);
            if config.endpoint.is_some() {
                peer.endpoint = config.endpoint;
            }
            peer.timers
                .set_persistent_keepalive(config.persistent_keepalive, now);
            return Ok(id);
        }
        if &config.public_key == self.local.public_key() {
            return Err(Error::InvalidKey);
        }
        let handshake = Handshake::new(&self.local, config.public_key, config.preshared_key)?;
        let id = PeerId(u32::try_from(self.peers.len()).map_err(|_| Error::InvalidKey)?);
        let mut timers = Timers::new(self.timer_config);
        if config.persistent_keepalive.is_some() {
            timers.set_persistent_keepalive(config.persistent_keepalive, now);
        }
        self.peers.push(Peer {
            id,
            handshake,
            endpoint: config.endpoint,
            current: None,
            previous: None,
            next: None,
            timers,
        });
        self.by_key.insert(config.public_key, id);
        Ok(id)
    }

    /// Removes a peer: its sessions, pending handshakes and indices go at once (packets on
    /// them are then `UnknownIndex`). Its id is never reused. `UnknownPeer` if there is none.
    pub fn remove_peer(&mut self, id: PeerId) -> Result<(), Error> {
        let peer = self.peers.take(id.0 as usize).ok_or(Error::UnknownPeer)?;
        self.by_key.remove(peer.public_key());
        self.indices.retain(|_, e| match e {
            IndexEntry::Handshake(p) | IndexEntry::Session(p, _) => *p != id,
        });
        Ok(())
    }

    /// Replaces our static private key. Every session and pending handshake is dropped (they
    /// were derived from the old key) and each peer's handshake state is rebuilt; timers are
    /// told to initiate anew. A peer whose public key equals the new public key is removed
    /// (it would be ourselves); its id is returned. Cookie secrets follow the new key.
    pub fn set_private_key(&mut self, secret: StaticSecret, now: Duration) -> Vec<PeerId> {
        let local = LocalStatic::new(secret);
        let mut removed = Vec::new();
        let ids: Vec<PeerId> = self.peers.iter().map(|p| p.id).collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(id.0 as usize) else {
                continue;
            };
            let remote = *p.public_key();
            let psk = p.handshake.preshared_key().clone();
            match Handshake::new(&local, remote, psk) {
                Ok(h) if &remote != local.public_key() => {
                    p.handshake = h;
                    p.current = None;
                    p.previous = None;
                    p.next = None;
                    if p.endpoint.is_some() {
                        p.timers.request_handshake(now);
                    }
                }
                _ => {
                    self.peers.take(id.0 as usize);
                    self.by_key.remove(&remote);
                    removed.push(id);
                }
            }
        }
        self.indices.clear();
        self.checker = CookieChecker::new(local.public_key());
        self.local = local;
        removed
    }

    /// The peer with this id.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.0 as usize)
    }

    /// The peer with this id, mutably.
    pub fn peer_mut(&mut self, id: PeerId) -> Result<&mut Peer, Error> {
        self.peers.get_mut(id.0 as usize).ok_or(Error::UnknownPeer)
    }

    /// The peer with this public key.
    pub fn peer_by_key(&self, key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// All peers.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    /// The session our index `index` names, with its peer (for receiving transport packets).
    pub fn session_for_index(&self, index: u32) -> Option<(PeerId, &Arc<Keypair>)> {
        match self.indices.get(&index)? {
            IndexEntry::Session(peer, kp) => Some((*peer, kp)),
            IndexEntry::Handshake(_) => None,
        }
    }

    /// Number of indices in use (handshakes in flight plus sessions held).
    pub fn index_count(&self) -> usize {
        self.indices.len()
    }

    fn allocate_index(&mut self, entry: IndexEntry, rng: &mut (impl RngCore + CryptoRng)) -> u32 {
        loop {
            let idx = rng.next_u32();
            if let std::collections::hash_map::Entry::Vacant(v) = self.indices.entry(idx) {
                v.insert(entry);
                return idx;
            }
        }
    }

    /// Builds a handshake initiation to `peer` (new ephemeral, new random index; replaces any
    /// initiation still in flight). Send it to [`Peer::endpoint`].
    pub fn create_initiation(
        &mut self,
        peer: PeerId,
        wall: SystemTime,
        now: Duration,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<[u8; INITIATION_LEN], Error> {
        let old = self.peer_mut(peer)?.handshake.pending_initiation_index();
        if let Some(old) = old
            && matches!(self.indices.get(&old), Some(IndexEntry::Handshake(_)))
        {
            self.indices.remove(&old);
        }
        let index = self.allocate_index(IndexEntry::Handshake(peer), rng);
        let local = &self.local;
        let p = self
            .peers
            .get_mut(peer.0 as usize)
            .ok_or(Error::UnknownPeer)?;
        match p.handshake.create_initiation(local, index, wall, now, rng) {
            Ok(msg) => {
                p.timers.on_handshake_initiated(now);
                Ok(msg)
            }
            Err(e) => {
                self.indices.remove(&index);
                Err(e)
            }
        }
    }

    /// Processes a handshake datagram (types 1, 2, 3) from `src`.
    ///
    /// * MAC1 is checked first; when `under_load`, initiations and responses without a valid
    ///   MAC2 for `src` (IP and port) are answered with a cookie reply and go no further.
    /// * An initiation from a known peer is answered with a response; the new session goes to
    ///   the peer's `next` slot and the peer's endpoint becomes `src`.
    /// * A response to our initiation makes the new session current; endpoint := `src`.
    /// * A cookie reply is stored for the peer's next message; the endpoint is not changed.
    ///
    /// Transport datagrams are refused with `UnknownMessageType` (use
    /// [`Device::decapsulate`]).
    pub fn handle_handshake(
        &mut self,
        datagram: &[u8],
        src: SocketAddr,
        now: Duration,
        under_load: bool,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<HandshakeOutcome, Error> {
        let kind = classify(datagram)?;
        if matches!(kind, MessageType::Initiation | MessageType::Response) {
            // MAC1 always; under load also a valid MAC2 for `src`, else a cookie reply.
            if let MacVerdict::CookieReply(reply) =
                self.checker.check(datagram, src, now, under_load, rng)?
            {
                return Ok(HandshakeOutcome {
                    peer: None,
                    reply: Some(Reply::CookieReply(reply)),
                    event: None,
                });
            }
        }
        match kind {
            MessageType::Initiation => self.handle_initiation(datagram, src, now, rng),
            MessageType::Response => self.handle_response(datagram, src, now),
            MessageType::CookieReply => self.handle_cookie_reply(datagram, now),
            MessageType::Transport => Err(Error::UnknownMessageType),
        }
    }

    fn handle_initiation(
        &mut self,
        datagram: &[u8],
        src: SocketAddr,
        now: Duration,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<HandshakeOutcome, Error> {
        let msg = Initiation::parse(datagram)?;
        let received = open_initiation(&self.local, &msg)?;
        let id = self
            .peer_by_key(received.initiator_static())
            .ok_or(Error::UnknownPeer)?;
        self.peer_mut(id)?
            .handshake
            .consume_initiation(received, now)?;
        let index = self.allocate_index(IndexEntry::Handshake(id), rng);
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(Error::UnknownPeer)?;
        let (response, keys) = match p.handshake.create_response(index, now, rng) {
            Ok(r) => r,
            Err(e) => {
                self.indices.remove(&index);
                return Err(e);
            }
        };
        let keypair = Arc::new(keypair_from(&keys, now));
        p.endpoint = Some(src);
        p.timers.on_authenticated_packet_received(now);
        p.timers.on_session_derived(now, false);
        p.timers.on_authenticated_packet_sent(now);
        // Responder: the new session waits in `next`; old `next` and `previous` go.
        let dropped = [p.next.replace(keypair.clone()), p.previous.take()];
        self.retire(dropped);
        self.indices
            .insert(index, IndexEntry::Session(id, keypair.clone()));
        Ok(HandshakeOutcome {
            peer: Some(id),
            reply: Some(Reply::Response(response)),
            event: Some(Event::SessionPending { peer: id, keypair }),
        })
    }

    fn handle_response(
        &mut self,
        datagram: &[u8],
        src: SocketAddr,
        now: Duration,
    ) -> Result<HandshakeOutcome, Error> {
        let msg = Response::parse(datagram)?;
        let index = msg.receiver_index();
        let Some(IndexEntry::Handshake(id)) = self.indices.get(&index).cloned() else {
            return Err(Error::UnknownIndex);
        };
        let local = &self.local;
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(Error::UnknownPeer)?;
        let keys = p.handshake.consume_response(local, &msg)?;
        let keypair = Arc::new(keypair_from(&keys, now));
        p.endpoint = Some(src);
        p.timers.on_authenticated_packet_received(now);
        p.timers.on_handshake_complete(now);
        p.timers.on_session_derived(now, true);
        // Initiator: the new session is current at once. A pending `next` becomes previous
        // (the old current goes), else the old current becomes previous.
        let old_current = p.current.replace(keypair.clone());
        let dropped = match p.next.take() {
            Some(next) => [p.previous.replace(next), old_current],
            None => [core::mem::replace(&mut p.previous, old_current), None],
        };
        self.retire(dropped);
        self.indices
            .insert(index, IndexEntry::Session(id, keypair.clone()));
        Ok(HandshakeOutcome {
            peer: Some(id),
            reply: None,
            event: Some(Event::SessionEstablished { peer: id, keypair }),
        })
    }

    fn handle_cookie_reply(
        &mut self,
        datagram: &[u8],
        now: Duration,
    ) -> Result<HandshakeOutcome, Error> {
        let reply = CookieReply::parse(datagram)?;
        let id = match self.indices.get(&reply.receiver_index()) {
            Some(IndexEntry::Handshake(id) | IndexEntry::Session(id, _)) => *id,
            None => return Err(Error::UnknownIndex),
        };
        // Deliberately no endpoint change: a cookie reply is not authenticated by the peer's
        // static key.
        self.peer_mut(id)?
            .handshake
            .consume_cookie_reply(&reply, now)?;
        Ok(HandshakeOutcome {
            peer: Some(id),
            reply: None,
            event: Some(Event::CookieStored { peer: id }),
        })
    }

    fn retire(&mut self, dropped: [Option<Arc<Keypair>>; 2]) {
        for kp in dropped.into_iter().flatten() {
            if matches!(self.indices.get(&kp.local_index), Some(IndexEntry::Session(_, k)) if Arc::ptr_eq(k, &kp))
            {
                self.indices.remove(&kp.local_index);
            }
        }
    }

    /// Authenticates and decrypts a transport datagram in place (see
    /// [`Keypair::decapsulate`]). On success the peer's endpoint becomes `src`, the timers
    /// hear of it, and a `next` session it arrived on becomes current.
    pub fn decapsulate(
        &mut self,
        buf: &mut [u8],
        src: SocketAddr,
        now: Duration,
    ) -> Result<Received, Error> {
        let index = transport_receiver_index(buf)?;
        let Some(IndexEntry::Session(id, keypair)) = self.indices.get(&index).cloned() else {
            return Err(Error::UnknownIndex);
        };
        let packet = keypair.decapsulate(buf, now)?;
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(Error::UnknownPeer)?;
        p.endpoint = Some(src);
        let mut promoted = false;
        let mut dropped = None;
        if p.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, &keypair)) {
            let next = p.next.take();
            let old_current = core::mem::replace(&mut p.current, next);
            dropped = core::mem::replace(&mut p.previous, old_current);
            promoted = true;
            p.timers.on_handshake_complete(now);
        }
        p.timers.on_authenticated_packet_received(now);
        if !packet.is_keepalive() {
            p.timers.on_data_received(now);
        }
        self.retire([dropped, None]);
        Ok(Received {
            peer: id,
            packet,
            promoted,
        })
    }

    /// A shard received a transport packet on `peer`'s `next` session (the datapath decrypts
    /// without [`Device::decapsulate`]): make it current exactly as `decapsulate` would.
    /// Returns whether a promotion happened.
    pub fn confirm_next(&mut self, peer: PeerId, now: Duration) -> bool {
        let Some(p) = self.peers.get_mut(peer.0 as usize) else {
            return false;
        };
        if p.next.is_none() {
            return false;
        }
        let next = p.next.take();
        let old_current = core::mem::replace(&mut p.current, next);
        let dropped = core::mem::replace(&mut p.previous, old_current);
        p.timers.on_handshake_complete(now);
        self.retire([dropped, None]);
        true
    }

    /// Encrypts a packet for `peer` on its current session (see [`Keypair::encapsulate`]).
    /// `NoSession` without a current session (the timers are asked for a handshake).
    pub fn encapsulate(
        &mut self,
        peer: PeerId,
        buf: &mut [u8],
        payload_len: usize,
        now: Duration,
    ) -> Result<usize, Error> {
        let p = self.peer_mut(peer)?;
        let Some(kp) = p.current.clone() else {
            p.timers.request_handshake(now);
            return Err(Error::NoSession);
        };
        let sent = kp
            .next_counter()
            .and_then(|c| kp.encapsulate(c, buf, payload_len, now));
        match sent {
            Ok(n) => {
                p.timers.on_authenticated_packet_sent(now);
                if payload_len > 0 {
                    p.timers.on_data_sent(now);
                }
                if kp.should_rekey_on_send(now) {
                    p.timers.request_handshake(now);
                }
                Ok(n)
            }
            Err(e) => {
                if matches!(e, Error::CounterExhausted | Error::SessionExpired) {
                    p.timers.request_handshake(now);
                }
                Err(e)
            }
        }
    }

    /// The earliest time at which [`Device::tick`] has work.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.peers
            .iter()
            .filter_map(|p| p.timers.next_deadline())
            .min()
    }

    /// Runs every peer's timers: sends initiations and keepalives that are due, erases keys
    /// whose time has come. Returns the datagrams to send.
    pub fn tick(
        &mut self,
        now: Duration,
        wall: SystemTime,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Vec<Transmit> {
        let mut out = Vec::new();
        for i in 0..self.peers.len() {
            let id = PeerId(u32::try_from(i).unwrap_or(u32::MAX));
            let Some(p) = self.peers.get_mut(i) else {
                continue;
            };
            let actions = p.timers.tick(now, rng);
            if actions.zero_keys {
                let dropped = [p.current.take(), p.previous.take()];
                let next = p.next.take();
                p.handshake.clear();
                self.retire(dropped);
                self.retire([next, None]);
                self.indices
                    .retain(|_, e| !matches!(e, IndexEntry::Handshake(pid) if *pid == id));
            }
            if actions.send_initiation {
                let endpoint = self.peers.get(i).and_then(|p| p.endpoint);
                if let Some(to) = endpoint {
                    if let Ok(msg) = self.create_initiation(id, wall, now, rng) {
                        out.push(Transmit {
                            peer: id,
                            to,
                            datagram: msg.to_vec(),
                        });
                    }
                } else if let Some(p) = self.peers.get_mut(i) {
                    // Nowhere to send: still run the retry timer, as if sent.
                    p.timers.on_handshake_initiated(now);
                }
            }
            if actions.send_keepalive {
                let endpoint = self.peers.get(i).and_then(|p| p.endpoint);
                let mut buf = vec![0u8; 32];
                if let (Some(to), Ok(n)) = (endpoint, self.encapsulate(id, &mut buf, 0, now)) {
                    buf.truncate(n);
                    out.push(Transmit {
                        peer: id,
                        to,
                        datagram: buf,
                    });
                }
            }
        }
        out
    }
}

fn keypair_from(keys: &SessionKeys, now: Duration) -> Keypair {
    Keypair::new(
        keys.send_key,
        keys.recv_key,
        keys.local_index,
        keys.remote_index,
        keys.is_initiator,
        now,
    )
}
