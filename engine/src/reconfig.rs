//! Live reconfiguration: a snapshot of the running configuration ([`Engine::config`]) and
//! changes applied while the shards keep running ([`Engine::apply`]).
//!
//! A change is validated first (peer keys, new sockets bound, fwmark set) and only then
//! applied, so a refused change leaves the tunnel as it was. The protocol device changes
//! under the control lock; the shards see new peer and allowed-IPs tables through `ArcSwap`
//! stores, as for every other control-plane change, so the hot path takes no new lock.
//! A new listen port binds a new set of shard sockets; each shard leaves its loop at the next
//! iteration and re-enters it with its new socket (the TUN queue, buffers and thread stay).
//!
//! Routes are not touched: like wireguard-go, the engine only moves packets; whoever adds
//! allowed IPs at run time adds routes for them (wg-quick, the user).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};
use uring_tunnel_crypto::peer::{PeerConfig, PeerId as DevicePeerId};

use crate::allowed_ips::AllowedIpsBuilder;
use crate::engine::Engine;
use crate::peers::PeerState;
use crate::sys::udp::{UdpConfig, UdpError, UdpSocket};

/// Engine-side configuration kept for live changes (the device holds the rest).
#[derive(Debug)]
pub(crate) struct ReconfState {
    /// Our private key (the device keeps its own copy inside the handshake state).
    pub(crate) private_key: StaticSecret,
    /// Prefix → peer assignments, the source of `Shared::allowed`.
    pub(crate) allowed: AllowedIpsBuilder,
    /// How the shard sockets were made (port, fwmark, GRO).
    pub(crate) udp_cfg: UdpConfig,
    /// Whether UDP GSO is allowed on new sockets.
    pub(crate) udp_gso: bool,
}

/// The running configuration, as `wg show`/`wg showconf` report it.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Our private key.
    pub private_key: StaticSecret,
    /// Our public key.
    pub public_key: PublicKey,
    /// The UDP port the shards are bound to.
    pub listen_port: u16,
    /// fwmark on the shard sockets, if any.
    pub fwmark: Option<u32>,
    /// Peers, in the order they were added.
    pub peers: Vec<PeerInfo>,
}

/// One peer of a [`DeviceConfig`]: configuration plus live state.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Its public key.
    pub public_key: PublicKey,
    /// Pre-shared key (all zero = none).
    pub preshared_key: PresharedKey,
    /// Current endpoint (configured, or learnt from its packets).
    pub endpoint: Option<SocketAddr>,
    /// Allowed IPs, in address order.
    pub allowed_ips: Vec<IpNet>,
    /// Persistent keepalive interval.
    pub persistent_keepalive: Option<Duration>,
    /// Wall-clock time of the last completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Inner bytes received from it.
    pub rx_bytes: u64,
    /// Inner bytes sent to it.
    pub tx_bytes: u64,
}

/// A change of configuration: the meaning of the WireGuard UAPI `set` keys.
#[derive(Debug, Default)]
pub struct DeviceUpdate {
    /// New private key (sessions drop and peers re-handshake).
    pub private_key: Option<StaticSecret>,
    /// New listen port (0 = let the kernel pick); the shard sockets are rebound.
    pub listen_port: Option<u16>,
    /// `Some(None)` clears the fwmark, `Some(Some(m))` sets it.
    pub fwmark: Option<Option<u32>>,
    /// Remove every peer before applying `peers`.
    pub replace_peers: bool,
    /// Per-peer changes, applied in order.
    pub peers: Vec<PeerUpdate>,
}

/// A change to one peer (created unless `update_only` or `remove`).
#[derive(Debug, Clone)]
pub struct PeerUpdate {
    /// Which peer.
    pub public_key: PublicKey,
    /// Remove it (the other fields are ignored).
    pub remove: bool,
    /// Change it only if it exists; never create it.
    pub update_only: bool,
    /// New pre-shared key (all zero removes it).
    pub preshared_key: Option<PresharedKey>,
    /// New endpoint.
    pub endpoint: Option<SocketAddr>,
    /// `Some(None)` turns the persistent keepalive off.
    pub persistent_keepalive: Option<Option<Duration>>,
    /// Drop its allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    /// Prefixes to add (a prefix another peer has moves to this one).
    pub allowed_ips: Vec<IpNet>,
    /// Prefixes to remove from it.
    pub remove_allowed_ips: Vec<IpNet>,
}

impl PeerUpdate {
    /// A change that only names the peer (creates it if missing).
    pub fn new(public_key: PublicKey) -> Self {
        PeerUpdate {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
            remove_allowed_ips: Vec::new(),
        }
    }
}

/// Why a change was refused (nothing of it was applied).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A peer's public key is not usable (low-order point).
    #[error("peer {0}: invalid public key")]
    InvalidPeerKey(String),
    /// The new listen port could not be bound.
    #[error("listen port {port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// Why.
        source: UdpError,
    },
    /// Setting the fwmark failed (needs `CAP_NET_ADMIN`).
    #[error("fwmark: {0}")]
    Fwmark(std::io::Error),
}

impl ConfigError {
    /// The errno a UAPI `set` answers with.
    pub fn errno(&self) -> i32 {
        match self {
            ConfigError::InvalidPeerKey(_) => libc::EINVAL,
            ConfigError::Bind { .. } => libc::EADDRINUSE,
            ConfigError::Fwmark(e) => e.raw_os_error().unwrap_or(libc::EPERM),
        }
    }
}

/// Forgets a removed peer's shard state and prefixes.
fn remove(id: DevicePeerId, peers: &mut [Option<Arc<PeerState>>], allowed: &mut AllowedIpsBuilder) {
    if let Some(slot) = peers.get_mut(id.0 as usize) {
        *slot = None;
    }
    allowed.remove_peer(id.0);
}

impl Engine {
    /// A snapshot of the running configuration and per-peer state.
    pub fn config(&self) -> DeviceConfig {
        let rc = self.reconf.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = self.sockets.load();
        let fwmark = match sockets[0].fwmark() {
            Ok(0) => None,
            Ok(m) => Some(m),
            Err(_) => rc.udp_cfg.fwmark,
        };
        let now_mono = self.origin.elapsed();
        let now_wall = SystemTime::now();
        let peers = self.control.with_device(|dev| {
            dev.peers()
                .map(|p| {
                    let id = p.id().0;
                    let state = self.shared.peer(id);
                    PeerInfo {
                        public_key: *p.public_key(),
                        preshared_key: p.handshake().preshared_key().clone(),
                        endpoint: state
                            .as_ref()
                            .and_then(|s| s.endpoint.load().as_deref().copied())
                            .or(p.endpoint()),
                        allowed_ips: rc.allowed.prefixes_of(id).collect(),
                        persistent_keepalive: p.timers().config().persistent_keepalive,
                        last_handshake: p
                            .timers()
                            .last_handshake()
                            .and_then(|t| now_wall.checked_sub(now_mono.saturating_sub(t))),
                        rx_bytes: state.as_ref().map_or(0, |s| s.rx_bytes.load(Relaxed)),
                        tx_bytes: state.as_ref().map_or(0, |s| s.tx_bytes.load(Relaxed)),
                    }
                })
                .collect()
        });
        DeviceConfig {
            private_key: StaticSecret::from_bytes(*rc.private_key.to_bytes()),
            public_key: rc.private_key.public_key(),
            listen_port: sockets[0].local_addr().port(),
            fwmark,
            peers,
        }
    }

    /// Applies a change while the shards keep running. Validates everything that can fail
    /// first; on error nothing was changed. A new listen port binds the new sockets in the
    /// calling thread's network namespace (call it from the tunnel's namespace).
    pub fn apply(&self, update: DeviceUpdate) -> Result<(), ConfigError> {
        let mut rc = self.reconf.lock().unwrap_or_else(|e| e.into_inner());
        let rc = &mut *rc;
        // 1. Validation: keys against the (new) private key.
        let secret = update.private_key.as_ref().unwrap_or(&rc.private_key);
        let own = secret.public_key();
        for p in update.peers.iter().filter(|p| !p.remove) {
            if p.public_key != own && secret.diffie_hellman(&p.public_key).is_err() {
                return Err(ConfigError::InvalidPeerKey(p.public_key.to_base64()));
            }
        }
        // 2. Sockets: a new port binds a whole new set; a new fwmark is set on the live ones.
        let old_sockets = self.sockets.load_full();
        let mut udp_cfg = rc.udp_cfg.clone();
        if let Some(mark) = update.fwmark {
            udp_cfg.fwmark = mark.filter(|m| *m != 0);
        }
        let current_port = old_sockets[0].local_addr().port();
        let new_sockets = match update.listen_port {
            Some(port) if port != current_port => {
                udp_cfg.port = port;
                let socks = UdpSocket::bind_shards(&udp_cfg, old_sockets.len())
                    .map_err(|source| ConfigError::Bind { port, source })?;
                if !rc.udp_gso {
                    socks.iter().for_each(UdpSocket::disable_gso);
                }
                udp_cfg.port = socks[0].local_addr().port();
                Some(socks.into_iter().map(Arc::new).collect::<Vec<_>>())
            }
            _ => None,
        };
        if let (Some(mark), None) = (update.fwmark, &new_sockets) {
            let mark = mark.unwrap_or(0);
            for (i, s) in old_sockets.iter().enumerate() {
                if let Err(e) = s.set_fwmark(mark) {
                    let old = rc.udp_cfg.fwmark.unwrap_or(0);
                    for s in &old_sockets[..i] {
                        let _ = s.set_fwmark(old);
                    }
                    return Err(ConfigError::Fwmark(e));
                }
            }
        }
        rc.udp_cfg = udp_cfg;
        // 3. From here on nothing fails.
        if let Some(socks) = &new_sockets {
            self.sockets.store(Arc::new(socks.clone()));
            self.control.set_socket(Arc::clone(&socks[0]));
            for l in self.leaves.iter() {
                l.store(true, Release);
            }
        }
        let shared = &self.shared;
        let keepalive_from = new_sockets.as_ref().map(|s| Arc::clone(&s[0]));
        self.control.reconfigure(|dev, now| {
            let mut peers: Vec<Option<Arc<PeerState>>> = (**shared.peers.load()).clone();
            if let Some(key) = update.private_key {
                rc.private_key = StaticSecret::from_bytes(*key.to_bytes());
                for id in dev.set_private_key(key, now) {
                    remove(id, &mut peers, &mut rc.allowed);
                }
                for s in peers.iter().flatten() {
                    s.current.store(None);
                    s.next.store(None);
                    if s.endpoint.load().is_some() {
                        s.wants_handshake.store(true, Release);
                    }
                }
            }
            if update.replace_peers {
                let ids: Vec<DevicePeerId> = dev.peers().map(|p| p.id()).collect();
                for id in ids {
                    let _ = dev.remove_peer(id);
                    remove(id, &mut peers, &mut rc.allowed);
                }
            }
            for pu in update.peers {
                if &pu.public_key == dev.public_key() {
                    continue; // like wireguard-go: a peer with our own key is ignored
                }
                let existing = dev.peer_by_key(&pu.public_key);
                if pu.remove {
                    if let Some(id) = existing {
                        let _ = dev.remove_peer(id);
                        remove(id, &mut peers, &mut rc.allowed);
                    }
                    continue;
                }
                let id = match existing {
                    Some(id) => id,
                    None if pu.update_only => continue,
                    None => {
                        let Ok(id) = dev.add_peer(PeerConfig::new(pu.public_key), now) else {
                            continue; // validated above; cannot happen
                        };
                        let slot = id.0 as usize;
                        if peers.len() <= slot {
                            peers.resize(slot + 1, None);
                        }
                        peers[slot] = Some(Arc::new(PeerState::new(id.0, pu.public_key, None)));
                        id
                    }
                };
                let Ok(p) = dev.peer_mut(id) else { continue };
                let state = peers.get(id.0 as usize).and_then(Clone::clone);
                if let Some(psk) = pu.preshared_key {
                    p.set_preshared_key(psk);
                }
                if let Some(ep) = pu.endpoint {
                    p.set_endpoint(ep);
                    if let Some(s) = &state {
                        s.endpoint.store(Some(Arc::new(ep)));
                        s.wants_handshake.store(true, Release);
                    }
                }
                if let Some(ka) = pu.persistent_keepalive {
                    p.timers_mut().set_persistent_keepalive(ka, now);
                }
                if pu.replace_allowed_ips {
                    rc.allowed.remove_peer(id.0);
                }
                for net in pu.allowed_ips {
                    rc.allowed.insert(net, id.0);
                }
                for net in pu.remove_allowed_ips {
                    rc.allowed.remove(net, id.0);
                }
            }
            shared.peers.store(Arc::new(peers));
            shared.allowed.store(Arc::new(rc.allowed.build()));
            // After a port change, tell every peer with a session where we are now: an
            // authenticated keepalive from the new port makes it roam to it.
            if let Some(sock) = keepalive_from {
                let ids: Vec<DevicePeerId> = dev.peers().map(|p| p.id()).collect();
                let mut buf = [0u8; 64];
                for id in ids {
                    let to = dev.peer(id).and_then(|p| p.endpoint());
                    if let (Some(to), Ok(n)) = (to, dev.encapsulate(id, &mut buf, 0, now))
                        && sock.send_to(&buf[..n], to).is_ok()
                        && let Some(s) = shared.peer(id.0)
                    {
                        s.last_auth_sent.set(now);
                    }
                }
            }
        });
        Ok(())
    }
}
